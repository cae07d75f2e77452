"""Durable events survive SIGKILL: 5,000 commands, the server killed 5 times, nothing acknowledged lost.

A uvicorn subprocess serves tests/e2e/_durable_app.py, whose `ping` command emits an event
through a SQLite outbox; its handler records each delivery in a SQLite file of its own. A
few concurrent clients send 5,000 commands, each until one attempt is answered 200, and keep
the event_id of every answer. Meanwhile the test kills the server with SIGKILL at 5 random
moments and starts it again at once on the same files and port. At the end every
acknowledged event_id must have been handled, and duplicate deliveries must be suppressed by
the processed-id record: only a kill that lands between a handler's own commit and its
processed record may make a second delivery (the handler's UNIQUE table absorbs it).
Run with the memory broker and with Redis.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tether import EventSettings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e._durable_app:app"
COMMANDS = 5000
KILLS = 5
CLIENTS = 16


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The app's broker: in-process memory, or a real Redis (a database of this test's own)."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    base, _, _ = url.rpartition("/")
    import redis

    client = redis.Redis.from_url(f"{base}/7")
    try:
        client.flushdb()
    finally:
        client.close()
    return f"{base}/7"


class Server:
    """The app under uvicorn in a subprocess, on a fixed port, killed and restarted at will."""

    def __init__(self, tmp: Path, broker: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "TETHER_TEST_HANDLED": str(tmp / "handled.sqlite3"),
            "TETHER_TEST_OUTBOX": f"sqlite+aiosqlite:///{tmp / 'outbox.sqlite3'}",
            "TETHER_TEST_BROKER": broker,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.killed: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with open(self.tmp / f"server-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    APP,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=self.tmp,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.killed.append(self.process.pid)
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- server-{i}.log\n"
            + (self.tmp / f"server-{i}.log").read_text(errors="replace")[-3000:]
            for i in range(1, self.starts + 1)
        )


@contextmanager
def running_server(tmp: Path, broker: str) -> Iterator[Server]:
    server = Server(tmp, broker)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


async def wait_until_up(client: httpx.AsyncClient, server: Server) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert server.process is not None
        assert server.process.poll() is None, f"the server died:\n{server.logs()}"
        try:
            await client.get(f"{server.url}/openapi.json")
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the server did not start:\n{server.logs()}"
            await asyncio.sleep(0.05)


async def test_sigkill_loses_no_acknowledged_event(tmp_path: Path, broker_url: str) -> None:
    rng = random.Random()
    # Kill points: when this many commands have been acknowledged (random, spread over the run).
    kill_at = sorted(rng.sample(range(300, COMMANDS - 300), KILLS))
    acknowledged: dict[int, str] = {}
    failed_attempts = 0
    next_command = 0
    kills_done = 0
    started = time.monotonic()

    with running_server(tmp_path, broker_url) as server:
        async with httpx.AsyncClient(timeout=10.0) as client:
            await wait_until_up(client, server)
            restarted = asyncio.Event()
            restarted.set()
            progress = asyncio.Event()

            async def killer() -> None:
                nonlocal kills_done
                for threshold in kill_at:
                    while len(acknowledged) < threshold:
                        progress.clear()
                        await progress.wait()
                    await asyncio.sleep(rng.uniform(0, 0.05))
                    restarted.clear()
                    server.kill()
                    kills_done += 1
                    server.start()
                    await wait_until_up(client, server)
                    restarted.set()

            async def sender() -> None:
                nonlocal next_command, failed_attempts
                while next_command < COMMANDS:
                    n = next_command
                    next_command += 1
                    # Each command until one attempt is acknowledged (a new event each time:
                    # an attempt cut by a kill may or may not have committed its own).
                    while True:
                        try:
                            response = await client.post(
                                f"{server.url}/api/call/ping", json={"n": n}
                            )
                        except httpx.TransportError:
                            response = None
                        if response is not None and response.status_code == 200:
                            acknowledged[n] = response.json()["result"]
                            progress.set()
                            break
                        failed_attempts += 1
                        if response is not None and response.status_code != 503:
                            raise AssertionError(
                                f"unexpected answer {response.status_code}: {response.text}"
                            )
                        await restarted.wait()
                        await asyncio.sleep(0.01)

            # A failure in any of them stops the others (and fails the test).
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(killer())
                for _ in range(CLIENTS):
                    tasks.create_task(sender())
            sent_in = time.monotonic() - started

            # Every acknowledged event handled, the outbox empty: waited for, with a bound.
            outbox_db, handled_db = tmp_path / "outbox.sqlite3", tmp_path / "handled.sqlite3"
            expected = set(acknowledged.values())
            deadline = time.monotonic() + 30
            progress_at, last_count = time.monotonic(), -1
            while True:
                handled = {row[0] for row in query(handled_db, "SELECT event_id FROM handled")}
                unsent = query(
                    outbox_db, "SELECT count(*) FROM tether_outbox WHERE sent_at IS NULL"
                )[0][0]
                if expected <= handled and unsent == 0:
                    break
                if len(handled) != last_count:
                    progress_at, last_count = time.monotonic(), len(handled)
                # Given up when nothing moved for a while with the outbox empty, or at last.
                stalled = unsent == 0 and time.monotonic() - progress_at > 5
                if stalled or time.monotonic() > deadline:
                    missing = expected - handled
                    raise AssertionError(
                        f"{len(missing)} acknowledged events never handled (of {len(expected)});"
                        f" {unsent} rows unsent in the outbox\n{server.logs()}"
                    )
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # deliveries still in flight would show as duplicates

    assert kills_done == KILLS
    assert len(acknowledged) == COMMANDS
    assert len(expected) == COMMANDS  # one event per command, each its own id
    # Duplicates: a kill between a handler's own commit and its processed record makes the
    # next process deliver that event again; nothing else may. So each delivery of an event
    # but its last was made by a process that was then killed, among the last handler runs
    # it made (no more than run at once), and no process delivered one event twice.
    deliveries = query(handled_db, "SELECT event_id, pid FROM deliveries ORDER BY rowid")
    runs: dict[object, int] = Counter(pid for _, pid in deliveries)
    made: dict[object, list[tuple[object, int]]] = defaultdict(list)
    seen_by_pid: Counter[object] = Counter()
    for event_id, pid in deliveries:
        made[event_id].append((pid, seen_by_pid[pid]))
        seen_by_pid[pid] += 1
    repeated = {event_id: runs_of for event_id, runs_of in made.items() if len(runs_of) > 1}
    for event_id, runs_of in repeated.items():
        pids = [pid for pid, _ in runs_of]
        assert len(set(pids)) == len(pids), (event_id, runs_of)
        for pid, index in runs_of[:-1]:
            assert pid in server.killed, (event_id, runs_of, server.killed)
            assert runs[pid] - index <= EventSettings().concurrency, (event_id, runs_of)
    sys.stderr.write(
        f"\n{COMMANDS} commands, {KILLS} kills (after {kill_at} answers) in {sent_in:.1f} s;"
        f" {failed_attempts} attempts failed; {len(handled)} events handled;"
        f" {len(repeated)} delivered twice\n"
    )
