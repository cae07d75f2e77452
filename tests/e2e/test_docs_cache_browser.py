"""docs/cache.md's JavaScript client (examples/docs/cache_client.js) in a real browser.

Debian's Chromium, driven by playwright-core (tests/node_browser/), loads the file as a module
from a page of a real uvicorn serving the page's todos app, and keeps a cache of bundles with
`fetch` and `EventSource`, as the page says.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

from tests._docs_examples import EXAMPLES, load
from tests.conftest import LiveServer
from tether.server import TetherServer

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parents[1] / "node_browser"
CHROMIUM = Path("/usr/bin/chromium")
MILK = {"id": 1, "owner_id": 5, "title": "milk", "done": False}


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Real servers run by `TetherServer`, whose shutdown ends open live streams at once."""
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app)
        server.server = TetherServer(server.config)
        server.thread = threading.Thread(target=server.server.run, daemon=True)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def create_app() -> FastAPI:
    # The page's app, plus a page and the client file, served from the same origin.
    app: FastAPI = load("cache_todos").app

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return '<!doctype html><meta charset="utf-8"><title>cache</title>'

    @app.get("/cache_client.js")
    async def client() -> Response:
        source = (EXAMPLES / "cache_client.js").read_text(encoding="utf-8")
        return Response(source, media_type="text/javascript")

    return app


def run_in_browser(server: LiveServer) -> dict[str, Any]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it"
    node = shutil.which("node")
    assert node is not None, "node is missing"
    assert (NODE_DIR / "node_modules" / "playwright-core").exists(), (
        "run `npm install` in tests/node_browser (make test does)"
    )
    completed = subprocess.run(
        [node, str(NODE_DIR / "cache_client.mjs"), f"{server.url}/page"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def test_the_javascript_client_keeps_its_bundles_fresh(
    live_server: Callable[..., LiveServer],
) -> None:
    steps = run_in_browser(live_server(create_app()))
    assert steps["before"] == {"todos": [], "open_count": 0}
    # The push (another client's add_todo for owner 5) dropped owner 5's bundle only.
    assert steps["keptAfterPush"] == ["todos?owner_id=6"]
    assert steps["after"] == {"todos": [MILK], "open_count": 1}
    # The cache's own call dropped owner 6's bundle from its answer.
    assert steps["added"] == {"id": 2, "owner_id": 6, "title": "eggs", "done": False}
    assert steps["keptAfterCall"] == ["todos?owner_id=5"]
    assert steps["merged"] == {"todos": [MILK], "open_count": 9}
    assert steps["keptAfterResync"] == []
    assert steps["error"] == "NOT_FOUND: Unknown context 'nope'"
