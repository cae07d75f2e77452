"""Live push on the WebSocket in memory (asyncio and trio): the `LIVE` route and `rpc.live`.

The socket is `MemorySocket` (tests/transports/test_websocket.py); the app is the one of
test_live_sse.py. Nothing waits for a duration: that a push did *not* arrive is shown by
a later message that did (the hub hands entries out in order, the outbox keeps it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import anyio
import orjson
import pytest
from fastapi import FastAPI

from tests.transports.test_live_sse import build_api
from tests.transports.test_websocket import MemorySocket
from tether import LiveSettings, Tether
from tether.brokers.base import BrokerUnavailable
from tether.transports._ws_live import LiveSocketSubscription
from tether.transports.http import HttpTransport
from tether.transports.jsonrpc import JsonRpcTransport
from tether.transports.websocket import WebSocketTransport


@pytest.fixture
async def apps() -> AsyncIterator[Callable[..., tuple[Tether, FastAPI]]]:
    made: list[Tether] = []

    def make(*, socket: dict[str, Any] | None = None, **options: Any) -> tuple[Tether, FastAPI]:
        api = build_api(**options)
        made.append(api)
        app = FastAPI()
        transports = [HttpTransport(), JsonRpcTransport(), WebSocketTransport(**(socket or {}))]
        api.mount(app, transports=transports)
        return api, app

    yield make
    for api in made:
        await api.live.close()
        await api.live.broker.close()


def live(uuid: Any, contexts: Any, **more: Any) -> dict[str, Any]:
    return {"uuid": uuid, "route": "LIVE", "payload": {"contexts": contexts, **more}}


def rpc_live(id_value: Any, contexts: Any, **more: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id_value,
        "method": "rpc.live",
        "params": {"contexts": contexts, **more},
    }


def todo(owner_id: int) -> dict[str, Any]:
    return {"context": "todos", "params": {"owner_id": owner_id}}


def item(uuid: Any, entry_id: str, invalidate: list[Any], merge: list[Any] | None = None) -> Any:
    payload = {"id": entry_id, "invalidate": invalidate, "merge": merge or []}
    return {"uuid": uuid, "status": 200, "headers": {"stream": "item"}, "payload": payload}


def notification(sub: Any, entry_id: str, invalidate: list[Any]) -> Any:
    result = {"id": entry_id, "invalidate": invalidate, "merge": []}
    return {
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {"subscription": sub, "result": result},
    }


class TestEnvelope:
    async def test_ready_then_items_of_other_clients_calls(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            ready = await ws.call(live("a", [todo(5)]))
            assert ready == {
                "uuid": "a",
                "status": 200,
                "headers": {"stream": "ready"},
                "payload": {"id": "0", "topics": [todo(5)]},
            }
            await api.call("add_todo", {"owner_id": 6, "title": "x"})
            await api.call("add_todo", {"owner_id": 5, "title": "y"})
            assert await ws.receive() == item("a", "2", [todo(5)])
            await ws.nothing_pending()

    async def test_since_replays_what_was_missed(self, apps: Any) -> None:
        api, app = apps()
        for n in (1, 2, 3):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with MemorySocket(app) as ws:
            ready = await ws.call(live(7, ["todos"], since="1"))
            assert ready["headers"] == {"stream": "ready"}
            assert ready["payload"]["id"] == "3"
            assert await ws.receive_many(2) == [item(7, "2", [todo(2)]), item(7, "3", [todo(3)])]
            await api.call("add_todo", {"owner_id": 4, "title": "t"})
            assert await ws.receive() == item(7, "4", [todo(4)])

    async def test_a_gap_too_old_gets_one_resync(self, apps: Any) -> None:
        api, app = apps(maxlen=2)
        for n in range(1, 6):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with MemorySocket(app) as ws:
            await ws.call(live("a", ["todos"], since="1"))
            resync = await ws.receive()
            assert resync == {
                "uuid": "a",
                "status": 200,
                "headers": {"stream": "item"},
                "payload": {"id": "5", "resync": True},
            }
            await api.call("add_todo", {"owner_id": 6, "title": "t"})
            assert await ws.receive() == item("a", "6", [todo(6)])

    async def test_a_replay_longer_than_the_queue_collapses_into_one_resync(
        self, apps: Any
    ) -> None:
        api, app = apps(live=LiveSettings(subscriber_queue=2))
        for n in range(1, 6):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with MemorySocket(app) as ws:
            await ws.call(live("a", ["todos"], since="1"))
            assert (await ws.receive())["payload"] == {"id": "5", "resync": True}
            await ws.nothing_pending()

    async def test_cancel_ends_it(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            await ws.call(live("a", ["todos"]))
            await ws.call(live("b", ["todos"]))
            assert api.live.subscribers == 2
            assert await ws.call({"uuid": "a", "route": "CANCEL"}) == {
                "uuid": "a",
                "status": 200,
                "headers": {"stream": "cancelled"},
                "payload": None,
            }
            assert api.live.subscribers == 1
            await api.call("add_todo", {"owner_id": 1, "title": "t"})
            assert await ws.receive() == item("b", "1", [todo(1)])  # and none for "a"
            await ws.nothing_pending()
            again = await ws.call({"uuid": "a", "route": "CANCEL"})
            assert again["status"] == 404
            # The uuid is free again.
            assert (await ws.call(live("a", ["todos"])))["headers"] == {"stream": "ready"}

    async def test_the_hub_ending_it_says_end(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            await ws.call(live("a", ["todos"]))
            await api.live.close()
            assert await ws.receive() == {
                "uuid": "a",
                "status": 200,
                "headers": {"stream": "end"},
                "payload": None,
            }
            # Its uuid is free again, and it no longer counts.
            assert (await ws.call({"uuid": "a", "route": "CANCEL"}))["status"] == 404

    async def test_message_headers_reach_the_gate(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            refused = await ws.call(live("a", ["secret"]))
            assert refused["status"] == 401
            message = {**live("b", ["secret"]), "headers": {"x-user": "9"}}
            assert (await ws.call(message))["headers"] == {"stream": "ready"}
            await api.call("reveal", {})
            assert await ws.receive() == item("b", "1", [{"context": "secret"}])


class TestJsonRpc:
    async def test_result_then_notifications(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            answer = await ws.call(rpc_live(7, [todo(5)]))
            assert answer == {"jsonrpc": "2.0", "id": 7, "result": {"subscription": 7, "id": "0"}}
            await api.call("add_todo", {"owner_id": 6, "title": "x"})
            await api.call("add_todo", {"owner_id": 5, "title": "y"})
            assert await ws.receive() == notification(7, "2", [todo(5)])
            await ws.nothing_pending()

    async def test_since_and_cancel(self, apps: Any) -> None:
        api, app = apps()
        for n in (1, 2):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with MemorySocket(app) as ws:
            answer = await ws.call(rpc_live("s", ["todos"], since="1"))
            assert answer["result"] == {"subscription": "s", "id": "2"}
            assert await ws.receive() == notification("s", "2", [todo(2)])
            cancel = {
                "jsonrpc": "2.0",
                "id": 8,
                "method": "rpc.cancel",
                "params": {"subscription": "s"},
            }
            assert await ws.call(cancel) == {
                "jsonrpc": "2.0",
                "id": 8,
                "result": {"cancelled": True},
            }
            assert api.live.subscribers == 0
            await api.call("add_todo", {"owner_id": 3, "title": "t"})
            await ws.nothing_pending()
            assert (await ws.call(cancel))["error"]["data"]["code"] == "NOT_FOUND"

    async def test_the_hub_ending_it_sends_an_end_notification(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            await ws.call(rpc_live(3, ["todos"]))
            await api.live.close()
            assert await ws.receive() == {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"subscription": 3, "end": "closed"},
            }

    @pytest.mark.parametrize(
        ("params", "code", "jsonrpc_code"),
        [
            ({"contexts": ["nope"]}, "NOT_FOUND", -32004),
            ({"contexts": []}, "VALIDATION_FAILED", -32602),
            ({}, "VALIDATION_FAILED", -32602),
            ({"contexts": ["todos"], "since": 5}, "VALIDATION_FAILED", -32602),
            ({"contexts": ["todos"], "extra": 1}, "VALIDATION_FAILED", -32602),
            (
                {"contexts": [{"context": "todos", "params": {"owner_id": "x"}}]},
                "VALIDATION_FAILED",
                -32602,
            ),
            (["todos"], "VALIDATION_FAILED", -32602),
            ({"contexts": ["secret"]}, "UNAUTHORIZED", -32001),
        ],
    )
    async def test_errors(self, apps: Any, params: Any, code: str, jsonrpc_code: int) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            message = {"jsonrpc": "2.0", "id": 1, "method": "rpc.live", "params": params}
            answer = await ws.call(message)
            assert answer["id"] == 1
            assert answer["error"]["data"]["code"] == code
            assert answer["error"]["code"] == jsonrpc_code
        assert api.live.subscribers == 0

    async def test_an_id_that_cannot_name_a_subscription(self, apps: Any) -> None:
        _, app = apps()
        async with MemorySocket(app) as ws:
            answer = await ws.call(rpc_live(None, ["todos"]))
            assert answer["id"] is None
            assert answer["error"]["data"]["code"] == "BAD_REQUEST"
            # A notification opens nothing and is not answered.
            await ws.send_json(
                {"jsonrpc": "2.0", "method": "rpc.live", "params": {"contexts": ["todos"]}}
            )
            await ws.nothing_pending()

    async def test_an_open_id_is_a_conflict(self, apps: Any) -> None:
        _, app = apps()
        async with MemorySocket(app) as ws:
            await ws.call(rpc_live(1, ["todos"]))
            answer = await ws.call(rpc_live(1, ["todos"]))
            assert answer["error"]["data"]["code"] == "CONFLICT"


class TestLimitsAndErrors:
    @pytest.mark.parametrize(
        ("payload", "status", "code"),
        [
            ({"contexts": ["nope"]}, 404, "NOT_FOUND"),
            ({"contexts": "todos,me"}, 404, "NOT_FOUND"),
            ({"contexts": []}, 422, "VALIDATION_FAILED"),
            ({"contexts": [5]}, 422, "VALIDATION_FAILED"),
            ({"contexts": ["todos"], "since": 1}, 422, "VALIDATION_FAILED"),
            ({"contexts": ["todos"], "other": 1}, 422, "VALIDATION_FAILED"),
            ({"since": "1"}, 422, "VALIDATION_FAILED"),
            ("todos", 422, "VALIDATION_FAILED"),
            (None, 422, "VALIDATION_FAILED"),
            (
                {"contexts": [{"context": "todos", "params": {"color": 1}}]},
                422,
                "VALIDATION_FAILED",
            ),
            ({"contexts": ["secret"]}, 401, "UNAUTHORIZED"),
        ],
    )
    async def test_refused(self, apps: Any, payload: Any, status: int, code: str) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            answer = await ws.call({"uuid": "u", "route": "LIVE", "payload": payload})
            assert answer["uuid"] == "u"
            assert answer["status"] == status
            assert answer["payload"]["error"]["code"] == code
            # Nothing stays open: the uuid is free.
            assert (await ws.call({"uuid": "u", "route": "CANCEL"}))["status"] == 404
        assert api.live.subscribers == 0

    async def test_a_broker_that_cannot_be_read_is_a_503(
        self, apps: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        api, app = apps()

        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise BrokerUnavailable("redis is down")

        # The broker fails under the hub, which answers 503 for the transports.
        monkeypatch.setattr(api.live.broker, "position", unavailable)
        async with MemorySocket(app) as ws:
            answer = await ws.call(live("u", ["todos"]))
            assert (answer["status"], answer["payload"]["error"]["code"]) == (
                503,
                "SERVICE_UNAVAILABLE",
            )
            answer = await ws.call(rpc_live(1, ["todos"]))
            assert answer["error"]["data"]["code"] == "SERVICE_UNAVAILABLE"
            # Nothing counts: the limit is untouched.
            assert (await ws.call({"uuid": "u", "route": "CANCEL"}))["status"] == 404

    async def test_a_non_staff_user_is_forbidden(self, apps: Any) -> None:
        _, app = apps()
        async with MemorySocket(app, headers=[("x-user", "1")]) as ws:
            answer = await ws.call(live("u", ["secret"]))
            assert (answer["status"], answer["payload"]["error"]["code"]) == (403, "FORBIDDEN")

    async def test_bad_headers_are_a_bad_request(self, apps: Any) -> None:
        _, app = apps()
        async with MemorySocket(app) as ws:
            answer = await ws.call({**live("u", ["todos"]), "headers": []})
            assert answer["status"] == 400

    async def test_a_uuid_in_flight_is_a_conflict(self, apps: Any) -> None:
        _, app = apps()
        async with MemorySocket(app) as ws:
            await ws.call(live("u", ["todos"]))
            assert (await ws.call(live("u", ["todos"])))["status"] == 409

    async def test_live_subscriptions_count_toward_max_subscriptions(self, apps: Any) -> None:
        api, app = apps(socket={"max_subscriptions": 2})
        async with MemorySocket(app) as ws:
            await ws.call(live("a", ["todos"]))
            await ws.call(rpc_live(1, ["todos"]))
            refused = await ws.call(live("b", ["todos"]))
            assert (refused["status"], refused["payload"]["error"]["code"]) == (
                429,
                "TOO_MANY_REQUESTS",
            )
            refused_rpc = await ws.call(rpc_live(2, ["todos"]))
            assert refused_rpc["error"]["data"]["code"] == "TOO_MANY_REQUESTS"
            await ws.call({"uuid": "a", "route": "CANCEL"})
            assert (await ws.call(live("b", ["todos"])))["headers"] == {"stream": "ready"}
            assert api.live.subscribers == 2

    async def test_a_socket_that_does_not_read_is_closed_with_1013(self, apps: Any) -> None:
        api, app = apps(socket={"max_queued_messages": 4})
        async with MemorySocket(app, outgoing_buffer=0) as ws, MemorySocket(app) as other:
            await ws.send_json(live("a", ["todos"]))
            assert (await ws.receive())["headers"] == {"stream": "ready"}
            await other.call(live("b", ["todos"]))
            for n in range(1, 9):
                await api.call("add_todo", {"owner_id": n, "title": "t"})
                assert await other.receive() == item("b", str(n), [todo(n)])
            frames = await ws.close_frames()
            assert frames[-1] == {
                "type": "websocket.close",
                "code": 1013,
                "reason": "Live subscriber fell behind",
            }
            with anyio.fail_after(5):
                await ws.app_done.wait()
            assert api.live.dropped == 1
            assert api.live.subscribers == 1

    async def test_closing_the_connection_closes_its_subscriptions(self, apps: Any) -> None:
        api, app = apps()
        async with MemorySocket(app) as ws:
            await ws.call(live("a", ["todos"]))
            await ws.call(rpc_live(1, ["me"]))
            assert api.live.subscribers == 2
            await ws.disconnect()
        assert api.live.subscribers == 0

    async def test_a_cancel_while_the_gate_runs(self, apps: Any) -> None:
        api, app = apps()
        release = anyio.Event()
        async with MemorySocket(app) as ws:

            async def held_subscribe(*args: Any, **kwargs: Any) -> Any:
                await release.wait()
                return await subscribe(*args, **kwargs)

            subscribe = api.live.subscribe
            api.live.subscribe = held_subscribe  # type: ignore[method-assign]
            await ws.send_json(live("a", ["todos"]))
            await ws.send_json(rpc_live(1, ["todos"]))
            await ws.send_json({"uuid": "a", "route": "CANCEL"})
            cancel = {"jsonrpc": "2.0", "id": 2, "method": "rpc.cancel", "params": [1]}
            assert await ws.call(cancel) == {
                "jsonrpc": "2.0",
                "id": 2,
                "result": {"cancelled": True},
            }
            release.set()
            answers = await ws.receive_many(2)
            assert {
                "uuid": "a",
                "status": 200,
                "headers": {"stream": "cancelled"},
                "payload": None,
            } in answers
            assert {"jsonrpc": "2.0", "id": 1, "result": {"subscription": 1, "id": "0"}} in answers
            await ws.nothing_pending()
            assert api.live.subscribers == 0


class TestPerUser:
    async def test_a_users_effects_never_reach_another_user(self, apps: Any) -> None:
        api, app = apps()
        async with (
            MemorySocket(app, headers=[("x-user", "1")]) as ada,
            MemorySocket(app, headers=[("x-user", "2")]) as bob,
        ):
            await ada.call(live("me", ["me"]))
            await bob.call(rpc_live("me", ["me"]))
            await api.call("rename", {"name": "ada2"}, headers={"x-user": "1"})
            await api.call("rename", {"name": "bob2"}, headers={"x-user": "2"})
            merge_ada = [{"context": "me", "slot": "me", "value": {"name": "ada2"}}]
            assert await ada.receive() == item("me", "1", [{"context": "me"}], merge_ada)
            pushed = await bob.receive()
            assert pushed["params"]["result"] == {
                "id": "2",
                "invalidate": [{"context": "me"}],
                "merge": [{"context": "me", "slot": "me", "value": {"name": "bob2"}}],
            }
            await ada.nothing_pending()
            await bob.nothing_pending()


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self._messages = None
        self.capacity = 8

    def put(self, message: bytes) -> None:
        self.sent.append(orjson.loads(message))


class FakeHub:
    """Pushes `count` entries into the sink while it subscribes (a replay, then the feed's)."""

    def __init__(self, count: int, queue: int) -> None:
        self.count = count
        self.settings = LiveSettings(subscriber_queue=queue)

    async def subscribe(self, ctx: Any, topics: Any, sink: Any, **options: Any) -> Any:
        for n in range(1, self.count + 1):
            assert sink.push(str(n), orjson.dumps({"id": str(n), "invalidate": [], "merge": []}))
        return SimpleNamespace(last_id=str(self.count), closed=False)


def fake_connection(hub: FakeHub) -> Any:
    return SimpleNamespace(
        handle=SimpleNamespace(live=hub),
        outbox=FakeOutbox(),
        seed={},
        pending={},
        rpc_subscriptions={},
        subscriptions=1,
    )


class TestSink:
    async def test_pushes_during_setup_follow_the_ready_reply(self) -> None:
        conn = fake_connection(FakeHub(count=2, queue=2))
        sink = LiveSocketSubscription(conn, "a", b'"a"', envelope=True)
        await sink.open({"type": "websocket"}, [], "0")
        assert [m["headers"]["stream"] for m in conn.outbox.sent] == ["ready", "item", "item"]
        assert [m["payload"]["id"] for m in conn.outbox.sent[1:]] == ["1", "2"]

    async def test_a_setup_longer_than_the_queue_collapses_into_one_resync(self) -> None:
        conn = fake_connection(FakeHub(count=5, queue=2))
        sink = LiveSocketSubscription(conn, 1, b"1", envelope=False)
        await sink.open({"type": "websocket"}, [], "0")
        assert conn.outbox.sent == [
            {"jsonrpc": "2.0", "id": 1, "result": {"subscription": 1, "id": "5"}},
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"subscription": 1, "result": {"id": "5", "resync": True}},
            },
        ]
