"""Which browser origins may open the WebSocket: parsing, the allow-list, refusals in memory."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from fastapi import Depends, FastAPI

from tests.transports.test_websocket import MemorySocket, mount, small_api
from tether import Tether
from tether._origins import OriginPolicy, check_allowed_origins, parse_origin
from tether.errors import ConfigurationError


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("https://app.example.com", ("https", "app.example.com", None)),
        ("HTTPS://App.Example.COM:443", ("https", "app.example.com", None)),
        ("http://app.example.com:80", ("http", "app.example.com", None)),
        ("http://app.example.com:443", ("http", "app.example.com", 443)),
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", ("http", "[::1]", 8000)),
        ("http://[::1]", ("http", "[::1]", None)),
        ("chrome-extension://abcdef", ("chrome-extension", "abcdef", None)),
    ],
)
def test_origins_parse_to_scheme_host_and_port(text: str, parsed: Any) -> None:
    assert parse_origin(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "null",
        "",
        "app.example.com",
        "https://",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "https://app.example.com:99999",
        "https://app.example.com:",
        "https://app.example.com:8x",
        "https://[::1",
        "https://[::1]x",
        "ht tp://app.example.com",
    ],
)
def test_what_is_not_an_origin(text: str) -> None:
    assert parse_origin(text) is None


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"http://127.0.0.1:8000", b"127.0.0.1:8000"),
        (b"http://APP.example.com", b"app.example.com"),
        (b"https://app.example.com", b"app.example.com:443"),
        (b"http://app.example.com:80", b"app.example.com"),
        (b"http://[::1]:8000", b"[::1]:8000"),
    ],
)
def test_the_default_allows_the_requests_own_host(origin: bytes, host: bytes) -> None:
    assert OriginPolicy(()).allows(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (b"https://evil.example", b"app.example.com"),
        (b"http://127.0.0.1:8001", b"127.0.0.1:8000"),
        (b"http://app.example.com", b"app.example.com:8000"),
        (b"https://app.example.com", b"app.example.com:80"),
        (b"http://localhost:8000", b"127.0.0.1:8000"),
        (b"null", b"app.example.com"),
        (b"https://app.example.com", None),
        (b"https://app.example.com", b"app.example.com/x"),
    ],
)
def test_the_default_refuses_every_other_origin(origin: bytes, host: bytes | None) -> None:
    assert not OriginPolicy(()).allows(origin, host)


def test_a_client_without_origin_is_no_browser_and_is_allowed() -> None:
    assert OriginPolicy(()).allows(None, b"app.example.com")
    assert OriginPolicy(()).allows(None, None)


def test_allowed_origins_compare_case_insensitively_with_default_ports() -> None:
    policy = OriginPolicy(["https://App.Example.com", "http://localhost:3000"])
    assert policy.allows(b"https://app.example.com", b"api.example.com")
    assert policy.allows(b"https://app.example.com:443", b"api.example.com")
    assert policy.allows(b"http://LocalHost:3000", b"api.example.com")
    assert not policy.allows(b"http://app.example.com", b"api.example.com")
    assert not policy.allows(b"https://app.example.com:8443", b"api.example.com")
    assert not policy.allows(b"http://localhost", b"api.example.com")
    assert not policy.allows(b"null", b"api.example.com")
    # The request's own host is still allowed.
    assert policy.allows(b"https://api.example.com", b"api.example.com")


def test_a_star_allows_every_origin() -> None:
    policy = OriginPolicy(["*"])
    assert policy.allows(b"https://evil.example", b"app.example.com")
    assert policy.allows(b"null", b"app.example.com")


@pytest.mark.parametrize(
    "entry",
    [
        "https://app.example.com/",
        "app.example.com",
        "https://app.example.com:99999",
        "null",
        "",
        b"https://app.example.com",
        None,
    ],
)
def test_tether_refuses_an_allowed_origin_that_is_not_one(entry: Any) -> None:
    with pytest.raises(ConfigurationError) as error:
        Tether(allowed_origins=["https://fine.example", entry])
    assert repr(entry) in str(error.value)
    assert "scheme://host[:port]" in str(error.value)


@pytest.mark.parametrize("whole", ["https://app.example.com", b"https://app.example.com"])
def test_tether_refuses_one_string_for_the_whole_list(whole: Any) -> None:
    with pytest.raises(ConfigurationError, match="a list of origins, not one string"):
        Tether(allowed_origins=whole)


def test_tether_keeps_valid_allowed_origins_as_given() -> None:
    api = Tether(allowed_origins=["https://App.Example.com", "*"])
    assert api.allowed_origins == ("https://App.Example.com", "*")
    assert check_allowed_origins(iter(["http://a.example:81"])) == ("http://a.example:81",)


# -- the handshake, in memory ---------------------------------------------------------------


async def handshake(app: FastAPI, headers: list[tuple[bytes, bytes]], **scope: Any) -> list[Any]:
    """Send a handshake to the app's socket; return what the app sent until it finished."""
    sent: list[Any] = []
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    full_scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": "/api/ws",
        "raw_path": b"/api/ws",
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
        "state": {},
        **scope,
    }
    with anyio.fail_after(5):
        await app(full_scope, receive, send)
    return sent


FOREIGN = [(b"host", b"app.example.com"), (b"origin", b"https://evil.example")]


async def test_a_foreign_origin_gets_the_denial_response_when_the_server_offers_it() -> None:
    app, _ = mount(small_api())
    sent = await handshake(app, FOREIGN, extensions={"websocket.http.response": {}})
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert sent[0]["status"] == 403
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[1]["body"].startswith(b'{"error":{"code":"FORBIDDEN"')


async def test_without_the_extension_a_foreign_origin_is_closed_before_accept() -> None:
    # Closing before accepting is answered by the server with 403.
    app, _ = mount(small_api())
    sent = await handshake(app, FOREIGN)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_the_origin_is_checked_before_any_connection_dependency_runs() -> None:
    ran: list[str] = []

    def connection_dependency() -> None:
        ran.append("dependency")

    api = Tether(connection_dependencies=[Depends(connection_dependency)])

    @api.query
    async def ping() -> str:
        return "pong"

    app, _ = mount(api)
    sent = await handshake(app, FOREIGN)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert ran == []
    async with MemorySocket(app, headers=[("host", "app.example.com")]) as ws:
        assert (await ws.call({"uuid": 1, "route": "ping"}))["payload"] == "pong"
    assert ran == ["dependency"]


async def test_the_apps_own_origin_is_accepted_in_memory() -> None:
    app, _ = mount(small_api())
    headers = [("host", "app.example.com"), ("origin", "https://app.example.com")]
    async with MemorySocket(app, headers=headers) as ws:
        assert (await ws.call({"uuid": 1, "route": "PING"})) == {"uuid": 1, "route": "PONG"}
