"""A call whose events cannot be made safe fails fast with 503, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from tests.conftest import LiveServer, free_port
from tether import Event, Events, Tether
from tether.events.outbox import Outbox, OutboxUnavailable

pytestmark = pytest.mark.e2e


class Noted(Event):
    n: int


def app_with(**options: Any) -> FastAPI:
    api = Tether(**options)

    @api.command
    async def note(n: int, events: Events = Depends()) -> int:
        events.emit(Noted(n=n))
        return n

    @api.command
    async def quiet(n: int) -> int:
        return n

    app = FastAPI()
    api.mount(app)
    return app


class BrokenOutbox(Outbox):
    """An outbox whose database is gone: every write fails as the real one does."""

    async def write(self, records: Any) -> None:
        raise OutboxUnavailable("database /srv/secret/outbox.sqlite3 is locked")


@pytest.mark.parametrize(
    "options",
    [
        # Nothing listens on that port: Redis is down.
        pytest.param(
            lambda tmp: {"broker": f"redis://127.0.0.1:{free_port()}/0?timeout=0.5"},
            id="redis-down",
        ),
        pytest.param(
            lambda tmp: {"outbox": BrokenOutbox(f"sqlite+aiosqlite:///{tmp}/outbox.sqlite3")},
            id="outbox-down",
        ),
    ],
)
def test_unsafe_events_fail_the_call_with_503_fast_and_nothing_leaks(
    options: Callable[[Any], dict[str, Any]],
    tmp_path: Any,
    live_server: Callable[..., LiveServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = live_server(app_with(**options(tmp_path)))
    # A hang would be the client's ReadTimeout: the broker's own timeout is 0.5 s.
    with (
        caplog.at_level("ERROR", logger="tether"),
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        for n in range(3):
            reply = client.post("/api/call/note", json={"n": n})
            assert reply.status_code == 503, reply.text
            assert reply.json() == {
                "error": {
                    "code": "SERVICE_UNAVAILABLE",
                    "message": reply.json()["error"]["message"],
                    "details": None,
                }
            }
            assert "event" in reply.json()["error"]["message"]
            # The cause (a host, a path) stays in the server's log.
            assert "127.0.0.1" not in reply.text
            assert "/srv/secret" not in reply.text
            # JSON-RPC maps it the same way, and the server keeps serving.
            rpc = client.post(
                "/api/jsonrpc",
                json={"jsonrpc": "2.0", "id": 1, "method": "note", "params": {"n": n}},
            ).json()
            assert rpc["error"]["code"] == -32053
            assert rpc["error"]["data"]["code"] == "SERVICE_UNAVAILABLE"
            assert client.post("/api/call/quiet", json={"n": n}).json() == {"result": n}
    causes = [r.getMessage() for r in caplog.records if r.name == "tether"]
    assert any("127.0.0.1" in m or "/srv/secret" in m for m in causes), causes
