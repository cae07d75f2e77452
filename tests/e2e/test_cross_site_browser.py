"""A page from another origin cannot act for a signed-in user; the app's own page can (Chromium).

The app (one loopback port) signs the browser in with a `SameSite=Lax` session cookie. A
page served from another port of 127.0.0.1 is another origin of the same site, so the
browser sends that cookie with its requests to the app. The page tries both doors:
"simple" `fetch` POSTs (`mode: "no-cors"`, a Blob body of no type: no CORS preflight) to
`/api/call/bump` and `/api/jsonrpc`, and `new WebSocket(...)` followed by a call. The
server records every request it gets: they all arrive with the cookie, and none runs the
operation. Then the app's own page does the same calls, and each one runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Cookie, Depends, FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.conftest import LiveServer
from tether import Tether, Unauthorized

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parents[1] / "node_browser"
CHROMIUM = Path("/usr/bin/chromium")
SESSION = "alice-7f3a"

# The calls both pages make. `app` is the app's origin; `json` says whether the page may
# declare a JSON body (the app's own page does; a cross-site page cannot without a CORS
# preflight, so it sends a "simple" request instead).
CALLS = """
const post = (url, body, json) =>
  fetch(url, json
    ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }
    : { method: "POST", mode: "no-cors", credentials: "include",
        body: new Blob([JSON.stringify(body)]) })
    .then(async (r) => (r.type === "opaque" ? "opaque" : { status: r.status, body: await r.json() }))
    .catch((e) => "failed: " + e);

const socket = (url) => new Promise((resolve) => {
  const seen = [];
  const ws = new WebSocket(url);
  const done = setTimeout(() => { ws.close(); resolve({ seen, timedOut: true }); }, 10000);
  ws.onopen = () => {
    seen.push("open");
    ws.send(JSON.stringify({ uuid: 1, route: "bump", payload: { by: 1 } }));
  };
  ws.onmessage = (event) => { seen.push(JSON.parse(event.data)); ws.close(1000); };
  ws.onerror = () => seen.push("error");
  ws.onclose = (event) => { clearTimeout(done); resolve({ seen, code: event.code }); };
});

window.run = async () => ({
  call: await post(APP + "/api/call/bump", { by: 1 }, JSON_BODY),
  jsonrpc: await post(APP + "/api/jsonrpc",
                      { jsonrpc: "2.0", id: 1, method: "bump", params: { by: 1 } }, JSON_BODY),
  ws: await socket(APP.replace("http", "ws") + "/api/ws"),
});
"""


def page(app_origin: str, *, json_body: bool) -> str:
    return (
        '<!doctype html><meta charset="utf-8"><title>tether cross-site</title><script>\n'
        f"const APP = {json.dumps(app_origin)};\n"
        f"const JSON_BODY = {json.dumps(json_body)};\n"
        f"{CALLS}</script>\n"
    )


@dataclass
class Seen:
    """What the app's server saw: the counter the operation bumps, and every request."""

    count: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)


class Recorder:
    """ASGI middleware that notes each request's path, Origin, cookie, first answer and the count."""

    def __init__(self, app: ASGIApp, seen: Seen) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        entry: dict[str, Any] = {
            "type": scope["type"],
            "method": scope.get("method"),
            "path": scope["path"],
            "origin": headers.get(b"origin", b"").decode(),
            "cookie": SESSION.encode() in headers.get(b"cookie", b""),
            "answer": None,
            "count": self.seen.count,  # the counter when the request arrived
        }
        self.seen.requests.append(entry)

        async def noting(message: Message) -> None:
            if entry["answer"] is None:
                kind = message["type"]
                entry["answer"] = (
                    message["status"] if kind.endswith("response.start") else kind.split(".")[-1]
                )
            await send(message)

        await self.app(scope, receive, noting)


def signed_in(session: Annotated[str | None, Cookie()] = None) -> str:
    # Module level: the operation's annotations are resolved from this module's globals.
    if session != SESSION:
        raise Unauthorized("Sign in first")
    return session


def create_app(seen: Seen) -> Recorder:
    api = Tether(prefix="/api")

    @api.command
    async def bump(by: int, user: Annotated[str, Depends(signed_in)]) -> int:
        seen.count += by
        return seen.count

    app = FastAPI()
    api.mount(app)

    @app.get("/login")
    async def login() -> PlainTextResponse:
        response = PlainTextResponse("signed in")
        response.set_cookie("session", SESSION, httponly=True, samesite="lax")
        return response

    @app.get("/page", response_class=HTMLResponse)
    async def own_page() -> str:
        return page("", json_body=True)

    return Recorder(app, seen)


def create_attacker(app_origin: str) -> FastAPI:
    attacker = FastAPI()

    @attacker.get("/", response_class=HTMLResponse)
    async def evil_page() -> str:
        return page(app_origin, json_body=False)

    return attacker


def visit(*urls: str) -> list[Any]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it"
    node = shutil.which("node")
    assert node is not None, "node is missing"
    assert (NODE_DIR / "node_modules" / "playwright-core").exists(), (
        "run `npm install` in tests/node_browser (make test does)"
    )
    completed = subprocess.run(
        [node, str(NODE_DIR / "pages.mjs"), *urls],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def test_a_cross_site_page_cannot_act_for_the_signed_in_user(
    live_server: Any,
) -> None:
    seen = Seen()
    server: LiveServer = live_server(create_app(seen))
    attacker: LiveServer = live_server(create_attacker(server.url))

    signed_in, evil, own = visit(f"{server.url}/login", f"{attacker.url}/", f"{server.url}/page")

    assert signed_in is None
    # The cross-site page: its no-cors POSTs got opaque answers, its socket never opened.
    assert evil["call"] == "opaque"
    assert evil["jsonrpc"] == "opaque"
    assert "open" not in evil["ws"]["seen"]
    assert evil["ws"]["code"] == 1006
    # The server got all three, each with the user's cookie, and refused each before the
    # operation: the counter never moved.
    foreign = [r for r in seen.requests if r["origin"] == attacker.url]
    assert [(r["type"], r["path"], r["cookie"], r["answer"]) for r in foreign] == [
        ("http", "/api/call/bump", True, 415),
        ("http", "/api/jsonrpc", True, 415),
        ("websocket", "/api/ws", True, 403),
    ]
    own_page_load = next(r for r in seen.requests if r["path"] == "/page")
    assert own_page_load["count"] == 0

    # The app's own page: each call runs, over HTTP, JSON-RPC and the socket.
    assert own["call"] == {"status": 200, "body": {"result": 1}}
    assert own["jsonrpc"] == {"status": 200, "body": {"jsonrpc": "2.0", "id": 1, "result": 2}}
    assert own["ws"]["seen"] == [
        "open",
        {"uuid": 1, "status": 200, "headers": {}, "payload": 3},
    ]
    assert seen.count == 3
    socket_handshakes = [r for r in seen.requests if r["type"] == "websocket"]
    assert [(r["origin"], r["cookie"], r["answer"]) for r in socket_handshakes] == [
        (attacker.url, True, 403),
        (server.url, True, "accept"),
    ]
