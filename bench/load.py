"""The load driver: wrk on its own core, POSTing one JSON body, with CPU accounting.

Each measurement records the server's CPU time (from /proc/<pid>/stat) and wrk's own CPU
time (from the rusage of its exit), so the report can show which side was the limit: a
server-bound run has the server's core near 100% busy while wrk's core has room to spare.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from servers import core_busy_seconds, process_cpu_seconds

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "post.lua"
SETUP_SCRIPT = Path(__file__).resolve().parent / "setup.sh"

CONTENDED = 0.15
"""Share of the server's or wrk's core taken by other processes above which a measurement is
noisy: bench/run.py measures it once more, and leaves it out of the medians when the
scenario has uncontended rounds."""


def ensure_wrk() -> str:
    """Return the path of wrk, installing it with bench/setup.sh when it is missing."""
    path = shutil.which("wrk")
    if path is None:
        print("wrk is missing: installing it with bench/setup.sh (apt-get install -y wrk)")
        subprocess.run(["bash", str(SETUP_SCRIPT)], check=True)
        path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is still missing after bench/setup.sh")
    return path


@dataclass
class LoadResult:
    """What one wrk run against one endpoint measured."""

    requests: int
    seconds: float
    requests_per_s: float
    bad: int
    bad_sample: str
    socket_errors: dict[str, int]
    latency_us: dict[str, float]
    server_cpu_s: float
    client_cpu_s: float
    server_core_busy_s: float
    client_core_busy_s: float

    @property
    def server_cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def server_util(self) -> float:
        """Share of one core the server process used during the run."""
        return self.server_cpu_s / self.seconds

    @property
    def client_util(self) -> float:
        """Share of one core wrk used during the run."""
        return self.client_cpu_s / self.seconds

    @property
    def other_load_on_server_core(self) -> float:
        """Share of the server's core used by other processes (noise from the machine)."""
        return max(0.0, self.server_core_busy_s - self.server_cpu_s) / self.seconds

    @property
    def other_load_on_client_core(self) -> float:
        """Share of wrk's core used by other processes (noise that could starve the client)."""
        return max(0.0, self.client_core_busy_s - self.client_cpu_s) / self.seconds

    @property
    def contention(self) -> float:
        """The larger share of either core taken by processes outside the benchmark."""
        return max(self.other_load_on_server_core, self.other_load_on_client_core)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["server_cpu_us_per_request"] = self.server_cpu_us_per_request
        data["server_util"] = self.server_util
        data["client_util"] = self.client_util
        data["other_load_on_server_core"] = self.other_load_on_server_core
        data["other_load_on_client_core"] = self.other_load_on_client_core
        return data


class LoadDriver:
    """Runs wrk on one thread pinned to `core`, measuring the server pinned to `server_core`."""

    def __init__(self, *, core: int, server_core: int) -> None:
        self.wrk = ensure_wrk()
        self.core = core
        self.server_core = server_core
        self._tmp = Path(tempfile.mkdtemp(prefix="tether-bench-"))

    def run(
        self,
        url: str,
        body: bytes,
        *,
        expect: str,
        seconds: float,
        connections: int,
        server_pid: int,
    ) -> LoadResult:
        """POST `body` to `url` on `connections` keep-alive connections for `seconds`.

        Every answer must hold `expect`; wrong answers are counted as bad.

        Raises:
            RuntimeError: wrk failed, or no request completed in time.
        """
        body_file = self._tmp / f"body-{abs(hash(body))}.json"
        body_file.write_bytes(body)
        env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_EXPECT": expect}
        command = [
            self.wrk,
            "--threads",
            "1",
            "--connections",
            str(connections),
            "--duration",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "--script",
            str(LUA_SCRIPT),
            url,
        ]
        core = self.core
        server_cpu_before = process_cpu_seconds(server_pid)
        core_busy_before = core_busy_seconds(self.server_core)
        client_busy_before = core_busy_seconds(self.core)
        started = time.perf_counter()
        with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
            process = subprocess.Popen(
                command,
                stdout=out_file,
                stderr=err_file,
                env=env,
                preexec_fn=lambda: os.sched_setaffinity(0, {core}),
            )
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = time.perf_counter() - started
            server_cpu = process_cpu_seconds(server_pid) - server_cpu_before
            core_busy = core_busy_seconds(self.server_core) - core_busy_before
            client_busy = core_busy_seconds(self.core) - client_busy_before
            process.returncode = os.waitstatus_to_exitcode(status)
            out_file.seek(0)
            err_file.seek(0)
            out = out_file.read().decode(errors="replace")
            err = err_file.read().decode(errors="replace")
        line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
        if process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{out}\n{err}")
        data = json.loads(line.removeprefix("BENCH_JSON "))
        if data["requests"] == 0:
            raise RuntimeError(
                f"no request completed in {seconds:g} s on {connections} connections "
                f"(socket errors {data['errors']})"
            )
        seconds_measured = data["duration_us"] / 1e6
        return LoadResult(
            requests=data["requests"],
            seconds=seconds_measured,
            requests_per_s=data["requests"] / seconds_measured,
            bad=data["bad"],
            bad_sample=data["bad_sample"],
            socket_errors=data["errors"],
            latency_us=data["latency_us"],
            server_cpu_s=server_cpu,
            client_cpu_s=usage.ru_utime + usage.ru_stime,
            # wrk's run is a little shorter than the wall time around it: scale the cores'
            # busy time to the measured window.
            server_core_busy_s=core_busy * seconds_measured / elapsed,
            client_core_busy_s=client_busy * seconds_measured / elapsed,
        )
