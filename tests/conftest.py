"""Shared fixtures: anyio backends, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import uvicorn

from tests._processes import free_port as free_port


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


class LiveServer:
    """A uvicorn server running an ASGI app in a background thread, on loopback.

    With `tether=True` it is tether's `TetherServer` (as `tether serve` runs), whose shutdown
    ends open live streams, stream responses and sockets at once; plain uvicorn would wait for
    each SSE subscriber's next heartbeat to notice its client had left.
    """

    def __init__(self, app: Any, *, tether: bool = False, **config: Any) -> None:
        self.port = free_port()
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            **config,
        )
        if tether:
            from tether.server import TetherServer

            self.server: uvicorn.Server = TetherServer(self.config)
        else:
            self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.thread.is_alive():
            raise RuntimeError("uvicorn did not stop")


@contextmanager
def serve(app: Any, *, tether: bool = False, **config: Any) -> Iterator[LiveServer]:
    """Run `app` on a real uvicorn server (`TetherServer` if `tether`) for the duration of the block."""
    server = LiveServer(app, tether=tether, **config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory fixture: `live_server(app)` starts a real server, stopped after the test."""
    servers: list[LiveServer] = []

    def start(app: Any, *, tether: bool = False, **config: Any) -> LiveServer:
        server = LiveServer(app, tether=tether, **config)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def tether_server(live_server: Callable[..., LiveServer]) -> Callable[..., LiveServer]:
    """Factory fixture: `tether_server(app)` starts a real `TetherServer`, stopped after the test.

    Its shutdown ends open live streams at once (see `LiveServer`).
    """
    return partial(live_server, tether=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server on a free loopback port (Debian's redis-server), for the session.

    `.ci/run` starts one and passes `TETHER_TEST_REDIS_URL`; otherwise one is started here and
    stopped by PID. A missing `redis-server` fails the tests that need it: they never skip.
    """
    from tests._redis_server import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (`postgresql+asyncpg://...`) of a real PostgreSQL on a free loopback port.

    `.ci/run` starts a throwaway cluster and passes `TETHER_TEST_POSTGRES_URL`; otherwise one is
    made in a temporary directory here and stopped by PID. Never skipped when missing: it fails.
    """
    from tests._postgres_server import postgres_server

    with postgres_server() as url:
        yield url
