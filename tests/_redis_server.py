"""A throwaway Redis for the tests: Debian's `redis-server`, a temp directory, a free loopback port.

`redis_server()` yields a URL (`redis://127.0.0.1:P/0`). When `TETHER_TEST_REDIS_URL` is set
(`.ci/run` starts one server for the whole run), it yields that; otherwise it starts
`/usr/bin/redis-server` bound to 127.0.0.1 on a free port, without persistence (`--save ""
--appendonly no`), in a temporary directory, waits until it answers PING, and stops it by its
PID afterwards (SIGTERM, then SIGKILL). A missing `redis-server` fails the test that needs it
(pytest.fail): never a skip.

`RedisServer` is the same server as an object that can also be stopped, paused and started again
on the same port, for the tests of what happens while Redis is down.

A command line for CI scripts, which want one server for the whole run:

    eval "$(python -m tests._redis_server start)"   # exports TETHER_TEST_REDIS_URL, _DIR
    python -m tests._redis_server stop "$TETHER_TEST_REDIS_DIR"
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests._processes import free_port, stop_pid as _stop

REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class RedisUnavailable(RuntimeError):
    """Debian's redis-server is missing, or it would not start."""


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING (plain socket: no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop_pid(pid: int) -> None:
    """SIGTERM (and SIGCONT, in case it is paused), then SIGKILL if it lingers."""
    _stop(pid, signal.SIGTERM, STOP_TIMEOUT, poll=0.02)


class RedisServer:
    """One redis-server process on a fixed loopback port, in its own temporary directory.

    `persistent=True` turns the append-only file on (fsync always), so that a restart keeps
    the data: a restarted server without it comes back empty.
    """

    def __init__(self, *, port: int | None = None, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self.directory = Path(tempfile.mkdtemp(prefix="tether-redis-"))
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RedisUnavailable(
                f"Redis is not installed: no {REDIS_SERVER} "
                "(apt-get install redis-server; make test and .ci/run install it)"
            )
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        log = self.directory / "redis.log"
        with open(log, "ab") as out:
            server = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    *persistence,
                    "--dir",
                    str(self.directory),
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid, self._process = server.pid, server
        (self.directory / "server.pid").write_text(str(server.pid))
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(
                    f"redis-server did not answer PING on port {self.port}:\n"
                    f"{log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server by its PID (the directory stays, for a restart)."""
        if self.pid is not None:
            stop_pid(self.pid)
            if self._process is not None:
                self._process.wait(timeout=STOP_TIMEOUT)  # reaped here: no zombie, no warning
            self.pid = self._process = None

    def restart(self) -> None:
        """Stop the server and start a new one on the same port."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, but nothing answers."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT)."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def running_redis(*, persistent: bool = False) -> Iterator[RedisServer]:
    """A `RedisServer` of this block's own (never the shared one), started, closed at the end."""
    import pytest

    server = RedisServer(persistent=persistent)
    try:
        try:
            server.start()
        except RedisUnavailable as error:
            pytest.fail(str(error), pytrace=False)
        yield server
    finally:
        server.close()


@contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a real Redis: `TETHER_TEST_REDIS_URL`, or a throwaway server."""
    url = os.environ.get("TETHER_TEST_REDIS_URL")
    if url:
        yield url
        return
    with running_redis() as server:
        yield server.url


def main(argv: list[str]) -> int:
    """`start` prints shell exports of the URL and the directory; `stop DIR` stops that server."""
    if argv[:1] == ["start"] and len(argv) == 1:
        server = RedisServer()
        try:
            server.start()
        except RedisUnavailable as error:
            server.close()
            sys.stderr.write(f"tests._redis_server: {error}\n")
            return 1
        sys.stdout.write(f"export TETHER_TEST_REDIS_URL={server.url}\n")
        sys.stdout.write(f"export TETHER_TEST_REDIS_DIR={server.directory}\n")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        directory = Path(argv[1])
        pid_file = directory / "server.pid"
        if pid_file.exists():
            stop_pid(int(pid_file.read_text()))
        shutil.rmtree(directory, ignore_errors=True)
        return 0
    sys.stderr.write("usage: python -m tests._redis_server start | stop DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
