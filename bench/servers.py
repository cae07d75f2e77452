"""Serving the bench apps: one uvicorn process per app, pinned to one core, on loopback."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

APPS_DIR = Path(__file__).resolve().parent / "apps"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def uvicorn_options() -> list[str]:
    """The uvicorn settings every server gets: one worker, uvloop + httptools when installed."""
    options = ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    if importlib.util.find_spec("uvloop") is not None:
        options += ["--loop", "uvloop"]
    if importlib.util.find_spec("httptools") is not None:
        options += ["--http", "httptools"]
    return options


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process `pid`, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def core_busy_seconds(core: int) -> float:
    """Seconds core `core` spent not idle since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            return (sum(values[:8]) - idle) / CLOCK_TICKS
    raise RuntimeError(f"no cpu{core} line in /proc/stat")


@dataclass
class Server:
    """One uvicorn process serving `module:app` from bench/apps on a loopback port."""

    name: str
    module: str
    core: int
    port: int = field(default_factory=free_port)
    env: dict[str, str] | None = None
    """The process's environment (see tether_source.environment); None: this process's."""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"{self.module}:app",
            "--app-dir",
            str(APPS_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *uvicorn_options(),
        ]

    def start(self, log_dir: Path, timeout: float = 20.0) -> None:
        """Start the server and wait until it answers; raise with its log if it cannot."""
        self.log_path = log_dir / f"{self.name}.log"
        log = self.log_path.open("wb")
        core = self.core
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            # Pinned to one core, so that the server cannot borrow the load driver's core.
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                httpx.get(self.url + "/openapi.json", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
