"""The WebSocket transport in memory: JSON-RPC, subscriptions, dependencies, guards, limits."""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
from fastapi import BackgroundTasks, Cookie, Depends, Header, HTTPException, Response

from tether import NotFound, PerConnection, Tether

from .test_websocket import Closed, MemorySocket, mount, small_api

# -- JSON-RPC dialect ---------------------------------------------------------------------

JSONRPC_MESSAGES: list[Any] = [
    {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]},
    {"jsonrpc": "2.0", "id": "s", "method": "add", "params": {"a": 3, "b": 4}},
    {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},
    {"jsonrpc": "2.0", "id": 2, "method": "nope"},
    {"jsonrpc": "2.0", "id": 3, "method": "add", "params": {"a": "x"}},
    {"jsonrpc": "2.0", "id": 4, "method": "add", "params": "bad"},
    {"jsonrpc": "1.0", "id": 5, "method": "add"},
    {"jsonrpc": "2.0", "id": {"a": 1}, "method": "add"},
    {"jsonrpc": "2.0", "id": 6, "method": 5},
    [],
    [1],
    [1, 2, 3],
    [
        {"jsonrpc": "2.0", "id": 7, "method": "add", "params": [1, 1]},
        {"jsonrpc": "2.0", "method": "add", "params": [1, 1]},
        {"jsonrpc": "2.0", "id": 8, "method": "nope"},
        {"foo": "boo"},
    ],
    [
        {"jsonrpc": "2.0", "method": "add", "params": [1, 1]},
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},
    ],
    [{"jsonrpc": "2.0", "id": 9, "method": "ticks", "params": {"n": 2}}],
    {"jsonrpc": "2.0", "id": 10, "method": "ticks", "params": "bad"},
    {"jsonrpc": "2.0", "id": True, "method": "ticks"},
    {"jsonrpc": "2.0", "method": "ticks", "params": {"n": 1}},
    {"jsonrpc": "2.0", "id": 11, "method": "rpc.cancel", "params": "bad"},
    {"jsonrpc": "2.0", "id": [1], "method": "rpc.cancel", "params": [1]},
    {"jsonrpc": "2.0", "id": 12, "method": "rpc.cancel", "params": None},
    {"jsonrpc": "2.0", "id": 13, "method": "ticks", "params": None},
]


@pytest.mark.parametrize("message", JSONRPC_MESSAGES, ids=range(len(JSONRPC_MESSAGES)))
async def test_jsonrpc_is_answered_exactly_as_over_http(message: Any) -> None:
    app, _ = mount(small_api())
    body = orjson.dumps(message)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://test"
    ) as client:
        http = await client.post(
            "/api/jsonrpc", content=body, headers={"content-type": "application/json"}
        )
    async with MemorySocket(app) as ws:
        await ws.send_text(body.decode())
        if http.status_code == 204:
            await ws.nothing_pending()
        else:
            assert http.status_code == 200
            assert await ws.receive() == http.json()
            await ws.nothing_pending()


async def test_jsonrpc_discovery_names_the_socket() -> None:
    app, _ = mount(small_api())
    async with MemorySocket(app) as ws:
        reply = await ws.call({"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"})
    assert reply["result"]["servers"][0]["url"] == "/api/ws"
    assert {method["name"] for method in reply["result"]["methods"]} >= {"add", "math.sum"}


class TestJsonRpcSubscriptions:
    async def test_items_are_notifications_then_one_response(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 7, "method": "ticks", "params": [3]})
            messages = await ws.receive_many(4)
        assert messages == [
            *(
                {
                    "jsonrpc": "2.0",
                    "method": "subscription",
                    "params": {"subscription": 7, "result": i},
                }
                for i in (1, 2, 3)
            ),
            {"jsonrpc": "2.0", "id": 7, "result": {"items": 3, "cancelled": False}},
        ]

    async def test_invalid_params_answer_the_request_only(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            positional = await ws.call(
                {"jsonrpc": "2.0", "id": "a", "method": "ticks", "params": [1, 2, 3]}
            )
            named = await ws.call(
                {"jsonrpc": "2.0", "id": "b", "method": "ticks", "params": {"n": "x"}}
            )
            await ws.nothing_pending()
        assert positional["id"] == "a"
        assert positional["error"]["code"] == -32602
        assert named["error"]["code"] == -32602
        assert named["error"]["data"]["details"][0]["loc"] == ["n"]

    async def test_an_error_raised_by_the_stream_ends_it(self) -> None:
        api = Tether()

        @api.stream
        async def fails() -> AsyncIterator[int]:
            yield 1
            raise NotFound("gone")

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "fails"})
            item, end = await ws.receive_many(2)
        assert item["params"] == {"subscription": 1, "result": 1}
        assert end == {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {
                "code": -32004,
                "message": "gone",
                "data": {"code": "NOT_FOUND", "details": None},
            },
        }

    async def test_cancel_by_request(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_json(
                {"jsonrpc": "2.0", "id": "t", "method": "ticks", "params": {"n": 1000, "ms": 5}}
            )
            first = await ws.receive()
            assert first["params"]["result"] == 1
            await ws.send_json(
                {"jsonrpc": "2.0", "id": 2, "method": "rpc.cancel", "params": {"subscription": "t"}}
            )
            seen = []
            while True:
                message = await ws.receive()
                seen.append(message)
                if "id" in message and message["id"] == "t":
                    break
        assert {"jsonrpc": "2.0", "id": 2, "result": {"cancelled": True}} in seen
        end = seen[-1]
        assert end["result"]["cancelled"] is True
        assert 1 <= end["result"]["items"] < 1000

    async def test_cancel_by_notification_and_positional_params(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_json(
                {"jsonrpc": "2.0", "id": 5, "method": "ticks", "params": {"n": 1000, "ms": 5}}
            )
            await ws.receive()
            await ws.send_json({"jsonrpc": "2.0", "method": "rpc.cancel", "params": [5]})
            message = await ws.receive()
            while "id" not in message:
                message = await ws.receive()
        assert message["id"] == 5
        assert message["result"]["cancelled"] is True

    async def test_cancel_of_an_unknown_subscription(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call(
                {"jsonrpc": "2.0", "id": 1, "method": "rpc.cancel", "params": ["nope"]}
            )
            await ws.send_json({"jsonrpc": "2.0", "method": "rpc.cancel", "params": ["zz"]})
            await ws.nothing_pending()
        assert reply["error"]["code"] == -32004
        assert reply["error"]["data"]["details"] == {"subscription": "nope"}

    async def test_cancel_names_a_subscription_by_a_string_or_an_integer(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call(
                {"jsonrpc": "2.0", "id": 1, "method": "rpc.cancel", "params": [{"x": 1}]}
            )
            await ws.send_json({"jsonrpc": "2.0", "method": "rpc.cancel", "params": [[1]]})
            await ws.nothing_pending()
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"]["code"] == "VALIDATION_FAILED"
        assert reply["error"]["data"]["details"][0]["loc"] == ["subscription"]

    async def test_a_duplicate_open_subscription_id_is_refused(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            request = {"jsonrpc": "2.0", "id": 1, "method": "ticks", "params": {"n": 50, "ms": 5}}
            await ws.send_json(request)
            await ws.send_json(request)
            message = await ws.receive()
            while "id" not in message:
                message = await ws.receive()
        assert message["error"]["code"] == -32009


# -- envelope subscriptions -----------------------------------------------------------------


class TestEnvelopeSubscriptions:
    async def test_items_share_the_uuid_then_one_completion(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": "s", "route": "ticks", "payload": {"n": 3}})
            messages = await ws.receive_many(4)
        assert messages == [
            *(
                {"uuid": "s", "status": 200, "headers": {"stream": "item"}, "payload": i}
                for i in (1, 2, 3)
            ),
            {"uuid": "s", "status": 200, "headers": {"stream": "end", "items": 3}, "payload": None},
        ]

    async def test_an_error_ends_the_subscription_with_its_status(self) -> None:
        api = Tether()

        @api.stream
        async def fails(n: int) -> AsyncIterator[int]:
            yield n
            raise NotFound("gone")

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": 1, "route": "fails", "payload": 5})
            item, end = await ws.receive_many(2)
            invalid = await ws.call({"uuid": 2, "route": "fails", "payload": "x"})
        assert item["payload"] == 5
        assert end["status"] == 404
        assert end["headers"] == {"stream": "error", "items": 1}
        assert end["payload"]["error"]["code"] == "NOT_FOUND"
        assert invalid["status"] == 422
        assert invalid["headers"] == {"stream": "error", "items": 0}

    async def test_cancel_stops_the_generator_and_closes_its_dependencies(self) -> None:
        log: list[str] = []

        async def resource() -> AsyncIterator[str]:
            log.append("open")
            try:
                yield "r"
            finally:
                log.append("close")

        api = Tether()

        @api.stream
        async def forever(r: Annotated[str, Depends(resource)]) -> AsyncIterator[int]:
            i = 0
            try:
                while True:
                    i += 1
                    yield i
                    await anyio.sleep(0.005)
            finally:
                log.append("generator stopped")

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": "f", "route": "forever"})
            assert (await ws.receive())["payload"] == 1
            await ws.send_json({"uuid": "f", "route": "CANCEL"})
            message = await ws.receive()
            while message["headers"]["stream"] == "item":
                message = await ws.receive()
            assert message["headers"]["stream"] == "cancelled"
            assert message["status"] == 200
            assert log == ["open", "generator stopped", "close"]
            # The uuid is free again.
            await ws.send_json({"uuid": "f", "route": "forever"})
            assert (await ws.receive())["payload"] == 1

    async def test_cancel_of_an_unknown_subscription_is_404(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": "x", "route": "CANCEL"})
        assert reply["status"] == 404
        assert reply["payload"]["error"]["details"] == {"subscription": "x"}

    async def test_leaving_stops_the_generator(self) -> None:
        log: list[str] = []
        api = Tether()

        @api.stream
        async def forever() -> AsyncIterator[int]:
            try:
                while True:
                    yield 1
                    await anyio.sleep(0.005)
            finally:
                log.append("stopped")

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": 1, "route": "forever"})
            await ws.receive()
            await ws.disconnect()
        assert log == ["stopped"]

    async def test_too_many_subscriptions(self) -> None:
        app, _ = mount(small_api(), max_subscriptions=2)
        async with MemorySocket(app) as ws:
            for uuid in (1, 2):
                await ws.send_json(
                    {"uuid": uuid, "route": "ticks", "payload": {"n": 1000, "ms": 10}}
                )
            await ws.send_json({"uuid": 3, "route": "ticks", "payload": {"n": 1}})
            await ws.send_json({"jsonrpc": "2.0", "id": 4, "method": "ticks", "params": {"n": 1}})
            refused: list[Any] = []
            while len(refused) < 2:
                message = await ws.receive()
                if message.get("status") == 429 or "error" in message:
                    refused.append(message)
        assert refused[0]["uuid"] == 3
        assert refused[0]["payload"]["error"]["code"] == "TOO_MANY_REQUESTS"
        assert refused[1]["error"]["code"] == -32029

    async def test_a_fast_stream_waits_for_a_slow_reader(self) -> None:
        app, _ = mount(small_api(), max_queued_messages=4)
        async with MemorySocket(app, outgoing_buffer=0) as ws:
            await ws.send_json({"uuid": 1, "route": "ticks", "payload": {"n": 200}})
            items = []
            for _ in range(201):
                items.append(await ws.receive())
                await anyio.lowlevel.checkpoint()
        assert [m["payload"] for m in items[:-1]] == list(range(1, 201))
        assert items[-1]["headers"] == {"stream": "end", "items": 200}


# -- headers, dependencies, auth, guards --------------------------------------------------


class TestDependencies:
    async def test_handshake_headers_and_cookies_and_per_message_overrides(self) -> None:
        api = Tether()

        @api.query
        async def who(
            x_user: Annotated[str, Header()] = "anon",
            session: Annotated[str | None, Cookie()] = None,
        ) -> list[Any]:
            return [x_user, session]

        app, _ = mount(api)
        headers = [("x-user", "ada"), ("cookie", "session=abc")]
        async with MemorySocket(app, headers=headers) as ws:
            plain = await ws.call({"uuid": 1, "route": "who"})
            override = await ws.call(
                {"uuid": 2, "route": "who", "headers": {"X-User": "bob", "cookie": "session=x"}}
            )
            numeric = await ws.call({"uuid": 3, "route": "who", "headers": {"x-user": 42}})
            after = await ws.call({"uuid": 4, "route": "who", "headers": {}})
        assert plain["payload"] == ["ada", "abc"]
        assert override["payload"] == ["bob", "x"]
        assert numeric["payload"] == ["42", "abc"]
        assert after["payload"] == ["ada", "abc"]

    async def test_per_connection_dependencies_are_solved_once(self) -> None:
        log: list[str] = []

        async def pool() -> AsyncIterator[str]:
            log.append("pool open")
            yield "pool"
            log.append("pool close")

        async def session() -> AsyncIterator[str]:
            log.append("session open")
            yield "session"
            log.append("session close")

        async def per_call() -> AsyncIterator[str]:
            log.append("call open")
            yield "call"
            log.append("call close")

        api = Tether(connection_dependencies=[Depends(pool)])

        @api.query
        async def use(
            s: Annotated[str, PerConnection(session)],
            c: Annotated[str, Depends(per_call)],
            p: Annotated[str, Depends(pool)],
        ) -> str:
            return f"{p}/{s}/{c}"

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            for uuid in range(3):
                assert (await ws.call({"uuid": uuid, "route": "use"}))["payload"] == (
                    "pool/session/call"
                )
            rpc = await ws.call({"jsonrpc": "2.0", "id": 1, "method": "use"})
            assert rpc["result"] == "pool/session/call"
            assert log.count("pool open") == 1
            assert log.count("session open") == 1
            assert "pool close" not in log
        assert log.count("call open") == 4
        assert log.count("call close") == 4
        assert log[-2:] == ["session close", "pool close"] or log[-2:] == [
            "pool close",
            "session close",
        ]

    async def test_auth_is_checked_per_message(self) -> None:
        def current_user(authorization: Annotated[str | None, Header()] = None) -> Any:
            return {"name": authorization} if authorization else None

        api = Tether(user=Depends(current_user))

        @api.query(auth=True)
        async def me(user: Annotated[Any, Depends(current_user)]) -> str:
            return str(user["name"])

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            refused = await ws.call({"uuid": 1, "route": "me"})
            allowed = await ws.call({"uuid": 2, "route": "me", "headers": {"authorization": "ada"}})
            rpc = await ws.call({"jsonrpc": "2.0", "id": 3, "method": "me"})
        assert refused["status"] == 401
        assert allowed["payload"] == "ada"
        assert rpc["error"]["code"] == -32001
        async with MemorySocket(app, headers=[("authorization", "bob")]) as ws:
            assert (await ws.call({"uuid": 1, "route": "me"}))["payload"] == "bob"

    async def test_response_headers_status_and_background_tasks(self) -> None:
        done: list[str] = []
        api = Tether()

        @api.command
        async def create(response: Response, tasks: BackgroundTasks) -> str:
            response.headers["x-id"] = "7"
            response.status_code = 201
            tasks.add_task(done.append, "background")
            return "made"

        @api.command
        async def quiet(response: Response) -> str:
            return "plain"

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            made = await ws.call({"uuid": 1, "route": "create"})
            plain = await ws.call({"uuid": 2, "route": "quiet"})
        assert made == {"uuid": 1, "status": 201, "headers": {"x-id": "7"}, "payload": "made"}
        assert plain == {"uuid": 2, "status": 200, "headers": {}, "payload": "plain"}
        assert done == ["background"]


class TestConnectionDependencies:
    @staticmethod
    def token_guard(x_token: Annotated[str | None, Header()] = None) -> str:
        if x_token != "secret":
            raise HTTPException(403, "Bad token")
        return x_token

    async def test_a_failing_connection_dependency_refuses_the_handshake_with_1008(
        self,
    ) -> None:
        app, transport = mount(small_api(connection_dependencies=[Depends(self.token_guard)]))
        async with MemorySocket(app) as refused:
            with pytest.raises(Closed) as closed:
                await refused.receive()
        assert closed.value.code == 1008
        assert closed.value.reason == "Bad token"
        assert transport.connections == 0
        async with MemorySocket(app, headers=[("x-token", "secret")]) as ws:
            assert (await ws.call({"uuid": 1, "route": "hello"}))["payload"] == "hi"

    async def test_a_connection_dependency_that_fails_unexpectedly_closes_with_1011(
        self,
    ) -> None:
        def broken() -> None:
            raise RuntimeError("secret detail")

        app, _ = mount(small_api(connection_dependencies=[Depends(broken)]))
        async with MemorySocket(app) as refused:
            with pytest.raises(Closed) as closed:
                await refused.receive()
        assert closed.value.code == 1011
        assert "secret" not in closed.value.reason

    async def test_a_long_refusal_reason_is_cut_to_fit_the_close_frame(self) -> None:
        def needs_token(x_token: Annotated[str | None, Header()] = None) -> str:
            if x_token is None:
                raise HTTPException(401, "x" * 200)
            return x_token

        api = Tether(connection_dependencies=[Depends(needs_token)])

        @api.query
        async def ping() -> str:
            return "pong"

        app, _ = mount(api)
        async with MemorySocket(app) as refused:
            with pytest.raises(Closed) as closed:
                await refused.receive()
        assert closed.value.code == 1008
        assert len(closed.value.reason.encode()) <= 123
        async with MemorySocket(app, headers=[("x-token", "here")]) as ws:
            assert (await ws.call({"uuid": 1, "route": "ping"}))["payload"] == "pong"

    async def test_connection_dependency_values_live_as_long_as_the_connection(self) -> None:
        log: list[str] = []

        def guard() -> Iterator[None]:
            log.append("open")
            yield
            log.append("close")

        app, _ = mount(small_api(connection_dependencies=[Depends(guard)]))
        async with MemorySocket(app) as ws:
            await ws.call({"uuid": 1, "route": "hello"})
            await ws.call({"uuid": 2, "route": "hello"})
            assert log == ["open"]
        assert log == ["open", "close"]


# -- limits -----------------------------------------------------------------------------------


class TestLimits:
    async def test_past_the_in_flight_cap_the_server_stops_reading(self) -> None:
        api = Tether()
        release = anyio.Event()
        two_running = anyio.Event()
        running = 0
        most = 0

        @api.query
        async def slow(i: int) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            if running == 2:
                two_running.set()
            await release.wait()
            running -= 1
            return i

        app, _ = mount(api, max_in_flight=2)
        async with MemorySocket(app) as ws:
            for i in range(5):
                await ws.send_json({"uuid": i, "route": "slow", "payload": i})
            with anyio.fail_after(5):
                await two_running.wait()
            await anyio.sleep(0.05)
            assert running == 2
            assert ws.unread == 3
            release.set()
            replies = await ws.receive_many(5)
        assert sorted(r["payload"] for r in replies) == [0, 1, 2, 3, 4]
        assert most == 2

    async def test_calls_run_concurrently(self) -> None:
        api = Tether()
        both = anyio.Event()
        arrived = 0

        @api.query
        async def meet() -> str:
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both.set()
            await both.wait()
            return "met"

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": 1, "route": "meet"})
            await ws.send_json({"uuid": 2, "route": "meet"})
            replies = await ws.receive_many(2)
        assert [r["payload"] for r in replies] == ["met", "met"]

    async def test_a_client_that_does_not_read_is_closed_with_1013(self) -> None:
        app, _ = mount(small_api(), max_queued_messages=2)
        async with MemorySocket(app, outgoing_buffer=0) as stuck:
            for i in range(10):
                await stuck.send_json({"uuid": i, "route": "add", "payload": [i, i]})
            # Meanwhile another connection is served as usual.
            async with MemorySocket(app) as other:
                assert (await other.call({"uuid": 1, "route": "add", "payload": [1, 1]}))[
                    "payload"
                ] == 2
            # The server stopped reading when it gave up on this client.
            await anyio.sleep(0.1)
            assert stuck.unread > 0
            frames = await stuck.close_frames()
        assert frames[-1] == {
            "type": "websocket.close",
            "code": 1013,
            "reason": "Client is not reading its messages",
        }
        assert len(frames) == 1

    async def test_shutdown_closes_sockets_with_1001(self) -> None:
        log: list[str] = []
        api = Tether()

        @api.stream
        async def forever() -> AsyncIterator[int]:
            try:
                while True:
                    yield 1
                    await anyio.sleep(0.01)
            finally:
                log.append("stopped")

        app, transport = mount(api)
        await transport.shutdown()  # nothing open: returns at once
        transport.closing = False
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": 1, "route": "forever"})
            await ws.receive()
            assert transport.connections == 1
            with anyio.fail_after(5):
                await transport.shutdown()
            frames = await ws.close_frames()
            assert frames[-1]["code"] == 1001
            assert log == ["stopped"]
            assert transport.connections == 0
        async with MemorySocket(app) as late:
            with pytest.raises(Closed) as closed:
                await late.receive()
        assert closed.value.code == 1001

    async def test_a_connection_that_only_sends_ends_on_shutdown(self) -> None:
        api = Tether()

        @api.stream
        async def flood() -> AsyncIterator[int]:
            while True:
                yield 1

        app, transport = mount(api, max_queued_messages=8)
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": 1, "route": "flood"})
            await ws.receive()
            with anyio.fail_after(5):
                await transport.shutdown()
            frames = await ws.close_frames()
        assert frames[-1]["code"] == 1001


async def test_operations_added_after_mounting_are_served_with_their_connection_deps() -> None:
    log: list[str] = []

    async def tracked() -> AsyncIterator[str]:
        log.append("open")
        yield "conn"
        log.append("close")

    api = small_api()
    app, _ = mount(api)
    async with MemorySocket(app) as ws:
        assert (await ws.call({"uuid": 1, "route": "hello"}))["payload"] == "hi"
    assert log == []

    @api.query
    async def late(value: Annotated[str, PerConnection(tracked)]) -> str:
        return value

    async with MemorySocket(app) as ws:
        assert (await ws.call({"uuid": 1, "route": "late"}))["payload"] == "conn"
        assert (await ws.call({"uuid": 2, "route": "late"}))["payload"] == "conn"
    assert log == ["open", "close"]
