"""Call the quickstart app once over each transport, as a new user's first try would.

Usage: python .ci/smoke_client.py PORT SERVER_PID

Runs in the fresh venv that has only `tether[server]`: it uses the standard library and
`websockets` (which uvicorn[standard] brings), nothing from the checkout or the dev extra.
The app is examples/docs/quickstart_1.py: `greet(name) -> "Hello, {name}!"`, and the stream
`countdown(start)` yielding start, start - 1, ..., 1. Exits 1 with a message on the first
wrong answer.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from typing import Any

from websockets.sync.client import connect

HOST = "127.0.0.1"
TIMEOUT = 10.0
GREETING = "Hello, Ada!"


class SmokeFailure(Exception):
    """An answer that is not the documented one."""


def expect(what: str, got: object, wanted: object) -> None:
    """Fail unless `got` equals `wanted`; print a line when it does."""
    if got != wanted:
        raise SmokeFailure(f"{what}: expected {wanted!r}, got {got!r}")
    print(f"smoke: ok   {what}")  # noqa: T201 - the report of a CI step


def wait_for_server(port: int, pid: int) -> None:
    """Wait (up to 30 s) until the server accepts connections; fail if its process ends."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            try:
                os.kill(pid, 0)
            except OSError:
                raise SmokeFailure("the server process exited before it answered") from None
            if time.monotonic() > deadline:
                raise SmokeFailure(f"nothing listens on {HOST}:{port} after 30 s") from None
            time.sleep(0.1)


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST `body` as JSON; return the status and the decoded answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.status, json.loads(response.read())


def sse_events(url: str) -> list[tuple[str, str]]:
    """GET an SSE stream to its end; return its (event, data) pairs."""
    events: list[tuple[str, str]] = []
    event, data = "message", ""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith("text/event-stream"):
            raise SmokeFailure(f"SSE: Content-Type is {content_type!r}")
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    events.append((event, data))
                event, data = "message", ""
            elif line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data = line[len("data:") :].strip()
    return events


def run(port: int) -> None:
    """Call `greet` over HTTP, JSON-RPC and both WebSocket dialects, and `countdown` over SSE."""
    base = f"http://{HOST}:{port}/api"
    expect(
        "HTTP POST /api/call/greet",
        post_json(f"{base}/call/greet", {"name": "Ada"}),
        (200, {"result": GREETING}),
    )
    expect(
        "JSON-RPC POST /api/jsonrpc",
        post_json(
            f"{base}/jsonrpc",
            {"jsonrpc": "2.0", "id": 1, "method": "greet", "params": {"name": "Ada"}},
        ),
        (200, {"jsonrpc": "2.0", "id": 1, "result": GREETING}),
    )
    with connect(f"ws://{HOST}:{port}/api/ws", open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"uuid": "1", "route": "greet", "payload": {"name": "Ada"}}))
        expect(
            "WebSocket /api/ws envelope",
            json.loads(ws.recv(timeout=TIMEOUT)),
            {"uuid": "1", "status": 200, "headers": {}, "payload": GREETING},
        )
        ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "greet", "params": {"name": "Ada"}})
        )
        expect(
            "WebSocket /api/ws JSON-RPC",
            json.loads(ws.recv(timeout=TIMEOUT)),
            {"jsonrpc": "2.0", "id": 2, "result": GREETING},
        )
    events = sse_events(f"{base}/stream/countdown?start=3")
    expect(
        "SSE GET /api/stream/countdown?start=3",
        ([json.loads(data) for event, data in events if event == "data"], events[-1][0]),
        ([3, 2, 1], "end"),
    )


def main() -> int:
    """Run the smoke calls against the server on the port given; 0 if all answers are right."""
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    try:
        wait_for_server(port, pid)
        run(port)
    except Exception as exc:  # any failure, a wrong answer or an error, fails the smoke test
        print(f"smoke: FAIL {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
