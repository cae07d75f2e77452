"""Live push on a real uvicorn: SSE `/api/live`, WebSocket `LIVE` and `rpc.live`, over loopback.

Mutations are HTTP calls by one client; the subscribers are other clients: the `websockets`
client (both dialects), an httpx stream reading `/api/live`, and raw sockets that never
read (slow subscribers). The server runs in a thread of this process, so the test reads
the hub's counters (`api.live.dropped`) directly.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer
from tests.e2e.test_websocket_server import open_raw, read_until_close, text_frame
from tether import LiveSettings, Tether
from tether.brokers.memory import MemoryBroker
from tether.transports import HttpTransport
from tether.transports.jsonrpc import JsonRpcTransport
from tether.transports.sse import SseTransport
from tether.transports.websocket import WebSocketTransport

pytestmark = pytest.mark.e2e

# Pushes this large fill the kernel's buffers (a few MB) and the server's queues soon.
BIG = 256 * 1024


class Profile(BaseModel):
    name: str


class Blob(BaseModel):
    text: str


class User(BaseModel):
    id: int
    name: str


USERS = {"1": User(id=1, name="ada"), "2": User(id=2, name="bob")}


async def current_user(x_user: Annotated[str | None, Header()] = None) -> User | None:
    return USERS.get(x_user) if x_user is not None else None


def build(*, maxlen: int = 10_000, queue: int = 256, outbox: int = 256) -> tuple[Tether, FastAPI]:
    api = Tether(
        prefix="/api",
        broker=MemoryBroker(maxlen=maxlen),
        user=Depends(current_user),
        live=LiveSettings(subscriber_queue=queue),
    )

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[str]:
        return []

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> str:
        return title

    @api.query(context="me")
    async def me(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(name="nobody" if user is None else user.name)

    @api.command(merge=["me"], affects=["me"])
    async def rename(name: str) -> Profile:
        return Profile(name=name)

    @api.query(context="blob")
    async def blob() -> Blob:
        return Blob(text="")

    @api.command(merge=["blob"])
    async def fill(seq: int, size: int) -> Blob:
        return Blob(text=f"{seq}:" + "x" * size)

    app = FastAPI()
    transports = [
        HttpTransport(),
        JsonRpcTransport(),
        # A short heartbeat: a client that left is noticed (and the server stops) quickly.
        SseTransport(heartbeat=0.2),
        WebSocketTransport(max_queued_messages=outbox),
    ]
    api.mount(app, transports=transports)
    return api, app


class SseReader:
    """Reads server-sent events from an open httpx stream, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        self.lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        for line in self.lines:
            if not line:
                if event:
                    if "data" in event:
                        event["data"] = json.loads(event["data"])
                    return event
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
        raise AssertionError(f"the stream ended (after {event})")


@contextmanager
def sse(
    server: LiveServer, query: str, headers: dict[str, str] | None = None
) -> Iterator[SseReader]:
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/api/live?{query}", headers=headers) as response,
    ):
        yield SseReader(response)


def ask(ws: ClientConnection, message: Any) -> Any:
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=5))


def call(
    client: httpx.Client, name: str, params: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    response = client.post(f"/api/call/{name}", json=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def todo(owner_id: int) -> dict[str, Any]:
    return {"context": "todos", "params": {"owner_id": owner_id}}


def test_a_mutation_reaches_every_subscriber_on_every_wire(live_server: Any) -> None:
    _, app = build()
    server = live_server(app)
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        connect(f"{server.ws_url}/api/ws") as envelope,
        connect(f"{server.ws_url}/api/ws") as jsonrpc,
        sse(server, "contexts=todos&owner_id=5") as stream,
    ):
        ready = ask(envelope, {"uuid": "e", "route": "LIVE", "payload": {"contexts": [todo(5)]}})
        assert ready["headers"] == {"stream": "ready"}
        answer = ask(
            jsonrpc,
            {"jsonrpc": "2.0", "id": 1, "method": "rpc.live", "params": {"contexts": ["todos"]}},
        )
        assert answer["result"]["subscription"] == 1
        first = stream.next()
        assert (first["event"], first["data"]["topics"]) == ("ready", [todo(5)])
        # The caller's own answer carries the invalidation; every other client is pushed it.
        assert call(client, "add_todo", {"owner_id": 5, "title": "a"})["invalidate"] == [todo(5)]
        pushed = stream.next()
        assert pushed["event"] == "effects"
        entry_id = pushed["id"]
        assert pushed["data"] == {"id": entry_id, "invalidate": [todo(5)], "merge": []}
        assert json.loads(envelope.recv(timeout=5)) == {
            "uuid": "e",
            "status": 200,
            "headers": {"stream": "item"},
            "payload": pushed["data"],
        }
        assert json.loads(jsonrpc.recv(timeout=5)) == {
            "jsonrpc": "2.0",
            "method": "subscription",
            "params": {"subscription": 1, "result": pushed["data"]},
        }


def test_resume_by_since_and_by_last_event_id(live_server: Any) -> None:
    _, app = build()
    server = live_server(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        with connect(f"{server.ws_url}/api/ws") as ws:
            ready = ask(ws, {"uuid": 1, "route": "LIVE", "payload": {"contexts": ["todos"]}})
        ws_token = ready["payload"]["id"]
        with sse(server, "contexts=todos") as stream:
            sse_token = stream.next()["id"]  # the ready event's id line
        assert ws_token == sse_token
        for n in (1, 2, 3):
            call(client, "add_todo", {"owner_id": n, "title": "missed"})
        with connect(f"{server.ws_url}/api/ws") as ws:
            message = {
                "uuid": 2,
                "route": "LIVE",
                "payload": {"contexts": ["todos"], "since": ws_token},
            }
            ws.send(json.dumps(message))
            assert json.loads(ws.recv(timeout=5))["headers"] == {"stream": "ready"}
            replayed = [json.loads(ws.recv(timeout=5))["payload"] for _ in range(3)]
            call(client, "add_todo", {"owner_id": 4, "title": "live"})
            live = json.loads(ws.recv(timeout=5))["payload"]
        assert [p["invalidate"] for p in [*replayed, live]] == [[todo(n)] for n in (1, 2, 3, 4)]
        ids = [p["id"] for p in [*replayed, live]]
        with sse(server, "contexts=todos", {"Last-Event-ID": sse_token}) as stream:
            assert stream.next()["event"] == "ready"
            events = [stream.next() for _ in range(4)]
            call(client, "add_todo", {"owner_id": 5, "title": "live"})
            events.append(stream.next())
        assert [e["id"] for e in events[:4]] == ids  # the same entries, the same ids, in order
        assert [e["data"]["invalidate"] for e in events] == [[todo(n)] for n in (1, 2, 3, 4, 5)]
        assert len({e["id"] for e in events}) == 5


def test_a_gap_too_old_gets_one_resync(live_server: Any) -> None:
    _, app = build(maxlen=3)
    server = live_server(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        with sse(server, "contexts=todos") as stream:
            token = stream.next()["id"]
        for n in range(1, 7):
            call(client, "add_todo", {"owner_id": n, "title": "t"})
        with (
            sse(server, "contexts=todos", {"Last-Event-ID": token}) as stream,
            connect(f"{server.ws_url}/api/ws") as ws,
        ):
            assert stream.next()["event"] == "ready"
            resync = stream.next()
            message = {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "rpc.live",
                "params": {"contexts": ["todos"], "since": token},
            }
            assert "result" in ask(ws, message)
            assert json.loads(ws.recv(timeout=5))["params"]["result"] == resync["data"]
            call(client, "add_todo", {"owner_id": 7, "title": "t"})
            after = stream.next()
            rpc_after = json.loads(ws.recv(timeout=5))["params"]["result"]
        assert resync["event"] == "resync"
        assert resync["data"] == {"id": resync["id"], "resync": True}
        assert after["event"] == "effects"
        assert after["data"]["invalidate"] == [todo(7)]
        assert rpc_after == after["data"]


def test_a_users_effects_never_reach_another_user(live_server: Any) -> None:
    _, app = build()
    server = live_server(app)
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        sse(server, "contexts=me", {"x-user": "1"}) as ada_sse,
        sse(server, "contexts=me", {"x-user": "2"}) as bob_sse,
        connect(f"{server.ws_url}/api/ws", additional_headers={"x-user": "1"}) as ada_ws,
        connect(f"{server.ws_url}/api/ws", additional_headers={"x-user": "2"}) as bob_ws,
    ):
        for reader in (ada_sse, bob_sse):
            assert reader.next()["event"] == "ready"
        ready = ask(ada_ws, {"uuid": "me", "route": "LIVE", "payload": {"contexts": ["me"]}})
        assert ready["headers"] == {"stream": "ready"}
        rpc = {"jsonrpc": "2.0", "id": "me", "method": "rpc.live", "params": {"contexts": ["me"]}}
        assert "result" in ask(bob_ws, rpc)
        call(client, "rename", {"name": "ada-secret"}, {"x-user": "1"})
        call(client, "rename", {"name": "bob-secret"}, {"x-user": "2"})
        ada = [ada_sse.next()["data"], json.loads(ada_ws.recv(timeout=5))["payload"]]
        bob = [bob_sse.next()["data"], json.loads(bob_ws.recv(timeout=5))["params"]["result"]]
    # Each user's first push is their own rename: the other user's, published before it,
    # never arrived.
    for payload, name in [(ada[0], "ada"), (ada[1], "ada"), (bob[0], "bob"), (bob[1], "bob")]:
        assert payload["invalidate"] == [{"context": "me"}]
        assert payload["merge"] == [
            {"context": "me", "slot": "me", "value": {"name": f"{name}-secret"}}
        ]
    assert ada[0]["id"] == ada[1]["id"] != bob[0]["id"] == bob[1]["id"]


def open_raw_sse(port: int, query: str) -> socket.socket:
    """A GET of `/api/live` on a plain socket, which then reads only when told to."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET /api/live?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(15)
    data = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return data
        data += chunk
        if data.endswith(b"\r\n0\r\n\r\n"):
            return data


def test_slow_subscribers_are_dropped_and_nobody_else_waits(live_server: Any) -> None:
    api, app = build(queue=16, outbox=16)
    server = live_server(app)
    pushes = 160
    stuck_ws = open_raw(server.port)
    stuck_ws.sendall(
        text_frame(
            json.dumps({"uuid": 1, "route": "LIVE", "payload": {"contexts": ["blob"]}}).encode()
        )
    )
    stuck_sse = open_raw_sse(server.port, "contexts=blob")
    received: dict[str, list[int]] = {"ws": [], "sse": []}
    ready = threading.Barrier(3)

    def read_ws() -> None:
        with connect(f"{server.ws_url}/api/ws", max_size=None) as ws:
            ask(ws, {"uuid": 1, "route": "LIVE", "payload": {"contexts": ["blob"]}})
            ready.wait()
            while len(received["ws"]) < pushes:
                value = json.loads(ws.recv(timeout=10))["payload"]["merge"][0]["value"]
                received["ws"].append(int(value["text"].split(":")[0]))

    def read_sse() -> None:
        with sse(server, "contexts=blob") as stream:
            assert stream.next()["event"] == "ready"
            ready.wait()
            while len(received["sse"]) < pushes:
                value = stream.next()["data"]["merge"][0]["value"]
                received["sse"].append(int(value["text"].split(":")[0]))

    readers = [threading.Thread(target=read_ws), threading.Thread(target=read_sse)]
    for reader in readers:
        reader.start()
    ready.wait(timeout=10)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for seq in range(pushes):
                call(client, "fill", {"seq": seq, "size": BIG})
        for reader in readers:
            reader.join(timeout=30)
            assert not reader.is_alive()
        # Every push reached the subscribers that read, in order, while both slow ones
        # were dropped.
        assert received == {"ws": list(range(pushes)), "sse": list(range(pushes))}
        assert api.live.dropped == 2
        frames, code = read_until_close(stuck_ws)
        assert code == 1013
        assert frames < pushes
        answer = read_to_end(stuck_sse)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"event: ready" in answer
        assert answer.count(b"event: effects") < pushes
    finally:
        stuck_ws.close()
        stuck_sse.close()


def test_the_socket_closing_ends_its_subscriptions(live_server: Any) -> None:
    api, app = build()
    server = live_server(app)
    with connect(f"{server.ws_url}/api/ws") as ws:
        ask(ws, {"uuid": 1, "route": "LIVE", "payload": {"contexts": ["todos"]}})
        ask(ws, {"jsonrpc": "2.0", "id": 2, "method": "rpc.live", "params": {"contexts": ["me"]}})
        assert api.live.subscribers == 2
        ws.close()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    # The server closes the subscriptions as the connection's task ends, which the client
    # does not see: another client's calls show the hub once that happened.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(100):
            if api.live.subscribers == 0:
                break
            call(client, "add_todo", {"owner_id": 1, "title": "t"})
    assert api.live.subscribers == 0


# -- a browser's own EventSource ------------------------------------------------------------

NODE_BROWSER = Path(__file__).resolve().parents[1] / "node_browser"
CHROMIUM = Path("/usr/bin/chromium")

# `readEvents(url)` (run by tests/node_browser/eventsource.mjs): follow `url` with the
# browser's EventSource; a call is pushed; the server ends the stream; a call is made
# while the browser is away; the browser reconnects by itself and is given what it missed.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tether live</title>
<script>
window.readEvents = async (url) => {
  const log = [];
  const source = new EventSource(url);
  for (const name of ["ready", "effects", "resync"]) {
    source.addEventListener(name, (event) => {
      log.push({ event: name, id: event.lastEventId, data: JSON.parse(event.data) });
    });
  }
  const until = (check) => new Promise((resolve) => {
    const look = () => (check() ? resolve() : setTimeout(look, 10));
    look();
  });
  const count = (name) => log.filter((entry) => entry.event === name).length;
  const call = (owner_id) => fetch("/api/call/add_todo", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ owner_id, title: "t" }),
  });
  await until(() => count("ready") === 1);
  await call(1);
  await until(() => count("effects") === 1);
  const dropped = new Promise((resolve) => source.addEventListener("error", resolve, { once: true }));
  await fetch("/end-live", { method: "POST" });
  await dropped;
  const state = source.readyState;
  await call(2);
  await until(() => count("effects") === 2);
  await call(3);
  await until(() => count("effects") === 3);
  source.close();
  return { log, state };
};
</script>
"""


class RecordLastEventId:
    """ASGI middleware: records the `Last-Event-ID` of every `/api/live` request (None: none)."""

    def __init__(self, app: Any, seen: list[str | None]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/live":
            value = dict(scope["headers"]).get(b"last-event-id")
            self.seen.append(None if value is None else value.decode())
        await self.app(scope, receive, send)


def test_a_browsers_eventsource_reconnects_and_is_given_what_it_missed(
    live_server: Any,
) -> None:
    api, app = build()
    seen: list[str | None] = []
    app.add_middleware(RecordLastEventId, seen=seen)

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/end-live")
    async def end_live() -> None:
        for transport in api.transports:
            if isinstance(transport, SseTransport) and transport.live is not None:
                transport.live.shutdown()

    server = live_server(app)
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it"
    node = shutil.which("node")
    assert node is not None, "node is missing"
    completed = subprocess.run(
        [
            node,
            str(NODE_BROWSER / "eventsource.mjs"),
            f"{server.url}/page",
            "/api/live?contexts=todos",
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    [result] = json.loads(completed.stdout)
    log = result["log"]
    assert result["state"] == 0  # EventSource.CONNECTING: the browser reconnects by itself
    assert [(entry["event"], entry["id"]) for entry in log] == [
        ("ready", "0"),
        ("effects", "1"),
        ("ready", "1"),  # no id line of its own: the replayed entry that follows has one
        ("effects", "2"),
        ("effects", "3"),
    ]
    assert [entry["data"]["invalidate"] for entry in log if entry["event"] == "effects"] == [
        [todo(1)],
        [todo(2)],
        [todo(3)],
    ]
    assert seen == [None, "1"]  # the reconnection presented the last id it saw
