"""A browser's own EventSource (Debian's Chromium, driven by playwright-core) reads SSE streams."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from examples.conformance.app import create_api
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tests.conftest import LiveServer
from tether import NotFound

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parents[1] / "node_browser"
CHROMIUM = Path("/usr/bin/chromium")

# Each stream is read by `new EventSource(url)`: `data` events until `end`; the `error`
# listener sees both an `event: error` (a MessageEvent with data) and a failed connection
# (a plain Event, after which a non-200 answer leaves the source CLOSED: no reconnect).
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tether SSE</title>
<script>
window.readEvents = (url) => new Promise((resolve) => {
  const items = [];
  const ids = [];
  const source = new EventSource(url);
  source.addEventListener("data", (event) => {
    items.push(JSON.parse(event.data));
    ids.push(event.lastEventId);
  });
  source.addEventListener("end", (event) => {
    source.close();
    resolve({ items, ids, end: JSON.parse(event.data) });
  });
  source.addEventListener("error", (event) => {
    const state = source.readyState;
    source.close();
    resolve({
      items,
      ids,
      error: event.data === undefined ? null : JSON.parse(event.data),
      closedByServer: state === EventSource.CLOSED,
    });
  });
});
</script>
"""


def create_app() -> FastAPI:
    # The conformance app's operations (its `ticks` is what the browser reads), plus one
    # stream that fails midway.
    api = create_api()

    @api.stream
    async def failing(after: int) -> AsyncIterator[int]:
        for i in range(after):
            yield i
        raise NotFound("the rest is gone")

    app = FastAPI()
    api.mount(app)

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    return app


def read_in_browser(server: LiveServer, *streams: str) -> list[dict[str, Any]]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it"
    node = shutil.which("node")
    assert node is not None, "node is missing"
    assert (NODE_DIR / "node_modules" / "playwright-core").exists(), (
        "run `npm install` in tests/node_browser (make test does)"
    )
    completed = subprocess.run(
        [node, str(NODE_DIR / "eventsource.mjs"), f"{server.url}/page", *streams],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def test_browser_eventsource_reads_a_stream(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_app())
    ticks, failing, invalid = read_in_browser(
        server,
        "/api/stream/ticks?n=5&ms=10",
        "/api/stream/failing?after=2",
        "/api/stream/ticks?n=x",
    )
    assert ticks == {"items": [1, 2, 3, 4, 5], "ids": ["1", "2", "3", "4", "5"], "end": None}
    # An error while streaming arrives as an `error` event carrying the envelope.
    assert failing == {
        "items": [0, 1],
        "ids": ["1", "2"],
        "error": {"error": {"code": "NOT_FOUND", "message": "the rest is gone", "details": None}},
        "closedByServer": False,
    }
    # An error before the stream (422 here): the browser gives up instead of reconnecting.
    assert invalid == {"items": [], "ids": [], "error": None, "closedByServer": True}
