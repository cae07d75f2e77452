"""The code shown in docs/transports/websocket.md and docs/observable-socket.md, exercised."""

import pytest

from tests._docs_examples import load

from .test_websocket import Closed, MemorySocket


class TestWebSocketApp:
    async def test_the_connection_dependency_refuses_a_socket_without_the_key(self) -> None:
        example = load("websocket_app")
        async with MemorySocket(example.app) as ws:
            with pytest.raises(Closed) as closed:
                await ws.receive()
        assert closed.value.code == 1008
        assert closed.value.reason == "A valid X-Api-Key header is required"
        # The Tether-level one runs first: the operation's was never opened.
        assert example.CONNECTION_LOG == []

    async def test_calls_subscriptions_headers_and_connection_dependencies(self) -> None:
        example = load("websocket_app")
        headers = [("x-api-key", "let-me-in"), ("x-user", "ada")]
        async with MemorySocket(example.app, headers=headers) as ws:
            total = await ws.call({"uuid": 1, "route": "math/sum", "payload": [1, 2, 3, 4]})
            assert total == {"uuid": 1, "status": 200, "headers": {}, "payload": {"sum": 10}}
            me = await ws.call({"uuid": 2, "route": "whoami"})
            assert me["payload"] == {"user": "ada", "connections_opened": 1}
            other = await ws.call({"uuid": 3, "route": "whoami", "headers": {"x-user": "bob"}})
            assert other["payload"] == {"user": "bob", "connections_opened": 1}
            await ws.send_json({"uuid": "t", "route": "ticks", "payload": {"n": 2}})
            items = await ws.receive_many(3)
            assert [m["payload"] for m in items] == [1, 2, None]
            rpc = await ws.call({"jsonrpc": "2.0", "id": 1, "method": "math.sum", "params": [[5]]})
            assert rpc == {"jsonrpc": "2.0", "id": 1, "result": {"sum": 5}}
            assert example.CONNECTION_LOG == ["open"]
        assert example.CONNECTION_LOG == ["open", "close"]
        assert example.socket.max_in_flight == 64


class TestPortedRoute:
    async def test_articles_get_validates_loads_checks_access_and_shapes_output(self) -> None:
        example = load("websocket_port")
        async with MemorySocket(example.app) as ws:
            public = await ws.call({"uuid": 1, "route": "articles/get", "payload": 1})
            assert public == {
                "uuid": 1,
                "status": 200,
                "headers": {},
                "payload": {"title": "Hello", "author": "ada", "body": "..."},
            }
            named = await ws.call(
                {"uuid": 2, "route": "articles.get", "payload": {"article_id": 1}}
            )
            assert named["payload"] == public["payload"]
            draft = await ws.call({"uuid": 3, "route": "articles/get", "payload": 2})
            assert draft["status"] == 403
            assert draft["payload"]["error"]["message"] == "Members only"
            member = await ws.call(
                {
                    "uuid": 4,
                    "route": "articles/get",
                    "headers": {"authorization": "m"},
                    "payload": 2,
                }
            )
            assert member["payload"]["title"] == "Draft"
            assert "editor_notes" not in member["payload"]
            missing = await ws.call({"uuid": 5, "route": "articles/get", "payload": 99})
            assert missing["status"] == 404
            assert missing["payload"]["error"]["details"] == {"article_id": 99}
            invalid = await ws.call({"uuid": 6, "route": "articles/get", "payload": 0})
            assert invalid["status"] == 422
            assert invalid["payload"]["error"]["details"][0]["loc"] == ["article_id"]
            anonymous = await ws.call({"uuid": 7, "route": "articles/drafts"})
            assert anonymous["status"] == 401

    async def test_access_by_auth_policy_for_a_signed_in_socket(self) -> None:
        example = load("websocket_port")
        async with MemorySocket(example.app, headers=[("authorization", "ada")]) as ws:
            drafts = await ws.call({"uuid": 1, "route": "articles/drafts"})
        assert drafts["payload"] == [{"title": "Draft", "author": "bob", "body": "..."}]
