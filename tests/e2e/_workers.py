"""`uvicorn --workers N` in a subprocess on a free loopback port, stopped by PID: the scale-out tests' server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests._processes import alive, free_port

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """`uvicorn --workers N app` in a subprocess, stopped by PID (the supervisor, then workers left).

    `env` is added to the environment (with `PYTHONPATH` at the repository); `options` are
    more uvicorn flags.
    """

    def __init__(
        self,
        app: str,
        log: Path,
        *,
        env: Mapping[str, str],
        workers: int = 3,
        options: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    app,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(workers),
                    "--log-level",
                    "warning",
                    *options,
                ],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pids: set[int] = set()
        """Worker PIDs seen in answers (each is killed at the end if it outlived the supervisor)."""

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"uvicorn exited:\n{self.output()}")
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not answer within 30 s:\n{self.output()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        for pid in self.pids:
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def running_workers(
    app: str, log: Path, *, env: Mapping[str, str], options: Sequence[str] = ()
) -> Iterator[Workers]:
    """Start the workers, wait until they answer, and stop them (by PID) afterwards."""
    server = Workers(app, log, env=env, options=options)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
