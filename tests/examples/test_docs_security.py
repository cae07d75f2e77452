"""The examples of docs/security.md: a cookie session, the CSRF rules, origins and CORS.

They run in memory: HTTP through httpx's ASGI transport, the socket through the in-memory
ASGI driver of tests/transports (a handshake with the denial-response extension, as uvicorn
offers it). tests/e2e/test_websocket_hostile.py checks the same rules on a real server,
tests/e2e/test_cross_site_browser.py in Chromium.
"""

from __future__ import annotations

import json
from types import ModuleType

import httpx
import pytest

from tests._docs_examples import load
from tests.transports.test_websocket import MemorySocket
from tests.transports.test_websocket_origins import handshake

PASSWORD = "correct horse battery staple"


def https_client(module: ModuleType, host: str = "testserver") -> httpx.AsyncClient:
    # https: the session cookie is Secure, so the client sends it back over https only.
    return httpx.AsyncClient(transport=httpx.ASGITransport(module.app), base_url=f"https://{host}")


async def sign_in(client: httpx.AsyncClient) -> str:
    answer = await client.post("/api/call/sign_in", json={"name": "ada", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=lax"):
        assert attribute in cookie
    return client.cookies["session"]


async def test_security_1_the_session_cookie_authenticates_every_wire() -> None:
    module = load("security_1")
    async with https_client(module) as client:
        anonymous = await client.get("/api/call/balance")
        assert anonymous.status_code == 401
        session = await sign_in(client)
        assert (await client.get("/api/call/balance")).json() == {"result": 100}
        moved = await client.post("/api/call/transfer", json={"to": "alan", "amount": 30})
        assert moved.json() == {"result": 70}
        call = {"jsonrpc": "2.0", "id": 1, "method": "transfer", "params": ["alan", 5]}
        assert (await client.post("/api/jsonrpc", json=call)).json()["result"] == 65
        wrong = await client.post("/api/call/sign_in", json={"name": "ada", "password": "guess"})
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
    # The socket's handshake carries the cookie; the page's own origin may open it.
    headers = [
        ("host", "testserver"),
        ("origin", "https://testserver"),
        ("cookie", f"session={session}"),
    ]
    async with MemorySocket(module.app, headers=headers) as ws:
        assert (await ws.call({"uuid": 1, "route": "balance"}))["payload"] == 65
    assert module.BALANCES == {"ada": 65, "alan": 35}


@pytest.mark.parametrize(
    "headers",
    [
        {},  # fetch(..., {mode: "no-cors", body: new Blob([...])}): no Content-Type at all
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
    ],
)
async def test_security_1_a_post_without_a_json_content_type_does_nothing(
    headers: dict[str, str],
) -> None:
    module = load("security_1")
    async with https_client(module) as client:
        await sign_in(client)
        transfer = {"jsonrpc": "2.0", "id": 1, "method": "transfer", "params": ["alan", 1]}
        answer = await client.post(
            "/api/call/transfer", content=json.dumps({"to": "alan", "amount": 30}), headers=headers
        )
        assert answer.status_code == 415, answer.text
        assert answer.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        answer = await client.post("/api/jsonrpc", content=json.dumps(transfer), headers=headers)
        assert answer.status_code == 415, answer.text
        assert answer.json()["error"]["data"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        # A command is never called with GET (a link, an <img>, a top-level navigation).
        answer = await client.get("/api/call/transfer?to=alan&amount=30")
        assert answer.status_code == 405
    assert module.BALANCES == {"ada": 100, "alan": 0}


async def test_security_1_a_foreign_origin_cannot_open_the_socket_with_the_cookie() -> None:
    module = load("security_1")
    async with https_client(module) as client:
        session = await sign_in(client)
    cookie = (b"cookie", f"session={session}".encode())
    sent = await handshake(
        module.app,
        [(b"host", b"testserver"), (b"origin", b"https://evil.example"), cookie],
        extensions={"websocket.http.response": {}},
    )
    assert sent[0]["status"] == 403
    assert json.loads(sent[1]["body"])["error"]["code"] == "FORBIDDEN"
    # No Origin: not a browser, so no borrowed cookie; it still needs its credentials.
    async with MemorySocket(module.app, headers=[("cookie", cookie[1].decode())]) as ws:
        assert (await ws.call({"uuid": 1, "route": "balance"}))["payload"] == 100
    async with MemorySocket(module.app) as ws:
        assert (await ws.call({"uuid": 1, "route": "balance"}))["status"] == 401


async def preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/api/call/greet",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )


async def test_security_2_cors_and_the_socket_let_the_front_end_in_and_no_one_else() -> None:
    module = load("security_2")
    async with https_client(module, "api.example.com") as client:
        allowed = await preflight(client, "https://app.example.com")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
        assert (await preflight(client, "https://evil.example")).status_code == 400
        answer = await client.post(
            "/api/call/greet", json={"name": "Ada"}, headers={"origin": "https://app.example.com"}
        )
        assert answer.json() == {"result": "Hello, Ada!"}
        assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
    # CORS does not cover sockets: `allowed_origins` lets the same front-end open one.
    headers = [("host", "api.example.com"), ("origin", "https://app.example.com")]
    async with MemorySocket(module.app, headers=headers) as ws:
        reply = await ws.call({"uuid": 1, "route": "greet", "payload": {"name": "Ada"}})
        assert reply["payload"] == "Hello, Ada!"
    sent = await handshake(
        module.app,
        [(b"host", b"api.example.com"), (b"origin", b"https://evil.example")],
        extensions={"websocket.http.response": {}},
    )
    assert sent[0]["status"] == 403
