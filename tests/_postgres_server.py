"""A throwaway PostgreSQL for the tests: Debian's binaries, a temp directory, a free loopback port.

`postgres_server()` yields a SQLAlchemy URL (`postgresql+asyncpg://postgres@127.0.0.1:P/tether`).
When `TETHER_TEST_POSTGRES_URL` is set (`.ci/run` starts one cluster for the whole run), it
yields that; otherwise it makes a cluster with `initdb` in a temporary directory, starts
`postgres` on a free loopback port (trust authentication, loopback only), creates the
database `tether`, and stops the server by its PID afterwards. The machine runs the tests as
root, and PostgreSQL refuses to run as root: the cluster is owned by, and the server runs as,
the `postgres` user. Missing binaries fail the test that needs them (pytest.fail): never a skip.

A command line for CI scripts, which want one server for the whole run:

    eval "$(python -m tests._postgres_server start)"   # exports TETHER_TEST_POSTGRES_URL, _DIR
    python -m tests._postgres_server stop "$TETHER_TEST_POSTGRES_DIR"
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests._processes import free_port, stop_pid

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


_servers: dict[Path, subprocess.Popen[bytes]] = {}
"""Servers this process started, by directory: reaped when stopped."""


class PostgresUnavailable(RuntimeError):
    """Debian's PostgreSQL binaries are missing, or the throwaway cluster would not start."""


def bin_dir() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin` that has initdb and postgres."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: (
            int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb "
            "(apt-get install postgresql; make test and .ci/run install it)"
        )
    return Path(found[-1]).parent


def _as_postgres() -> dict[str, Any]:
    """Popen options that run a child as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def start(directory: Path) -> str:
    """Make a cluster under `directory`, start it on a free loopback port, return its URL.

    The server runs in its own session, so it outlives this process (for the CLI); stop it
    with `stop(directory)`.
    """
    binaries = bin_dir()
    data, sockets = directory / "data", directory / "socket"
    _chown_to_postgres(directory)
    sockets.mkdir()
    _chown_to_postgres(sockets)
    log = directory / "postgres.log"
    with open(log, "ab") as out:
        initdb = subprocess.run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            **_as_postgres(),
        )
    if initdb.returncode != 0:
        raise PostgresUnavailable(f"initdb failed:\n{log.read_text(errors='replace')[-2000:]}")
    port = free_port()
    with open(log, "ab") as out:
        # Durability of a throwaway cluster does not matter: fsync off keeps the tests quick.
        server = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_postgres(),
        )
    (directory / "server.pid").write_text(str(server.pid))
    _servers[directory] = server
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited with {server.returncode}:\n"
                f"{log.read_text(errors='replace')[-2000:]}"
            )
        created = subprocess.run(
            [
                str(binaries / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "tether",
            ],
            capture_output=True,
            check=False,
        )
        if created.returncode == 0:
            return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/tether"
        if time.monotonic() > deadline:
            _stop_pid(server.pid)
            raise PostgresUnavailable(
                f"postgres did not accept connections within {START_TIMEOUT:.0f} s: "
                f"{created.stderr.decode(errors='replace')}"
            )
        time.sleep(0.1)


def _stop_pid(pid: int) -> None:
    """SIGINT (PostgreSQL's fast shutdown), then SIGKILL if it lingers."""
    stop_pid(pid, signal.SIGINT, STOP_TIMEOUT)


def stop(directory: Path) -> None:
    """Stop the server started in `directory` by its PID, and remove the directory."""
    pid_file = directory / "server.pid"
    if pid_file.exists():
        _stop_pid(int(pid_file.read_text()))
    server = _servers.pop(directory, None)
    if server is not None:
        server.wait(timeout=STOP_TIMEOUT)
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a real PostgreSQL: `TETHER_TEST_POSTGRES_URL`, or a throwaway cluster."""
    url = os.environ.get("TETHER_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import pytest

    directory = Path(tempfile.mkdtemp(prefix="tether-pg-"))
    try:
        try:
            url = start(directory)
        except PostgresUnavailable as error:
            pytest.fail(str(error), pytrace=False)
        yield url
    finally:
        stop(directory)


def main(argv: list[str]) -> int:
    """`start` prints shell exports of the URL and the directory; `stop DIR` stops that server."""
    if argv[:1] == ["start"] and len(argv) == 1:
        directory = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        try:
            url = start(directory)
        except PostgresUnavailable as error:
            stop(directory)
            sys.stderr.write(f"tests._postgres_server: {error}\n")
            return 1
        sys.stdout.write(f"export TETHER_TEST_POSTGRES_URL={url}\n")
        sys.stdout.write(f"export TETHER_TEST_POSTGRES_DIR={directory}\n")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        stop(Path(argv[1]))
        return 0
    sys.stderr.write("usage: python -m tests._postgres_server start | stop DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
