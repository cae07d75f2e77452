"""docs/cache.md's JavaScript client (examples/docs/cache_client.js) in a real browser.

Debian's Chromium, driven by playwright-core (tests/node_browser/), loads the file as a module
from a page of a real uvicorn serving the page's todos app, and keeps a cache of bundles with
`fetch` and `EventSource`, as the page says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from tests._docs_examples import load, serve_example_script
from tests._node import NODE_BROWSER, require_browser, run_node
from tests.conftest import LiveServer

pytestmark = pytest.mark.e2e

MILK = {"id": 1, "owner_id": 5, "title": "milk", "done": False}


def create_app() -> FastAPI:
    # The page's app, plus a page and the client file, served from the same origin.
    return serve_example_script(load("cache_todos").app, "cache_client.js")


def run_in_browser(server: LiveServer) -> dict[str, Any]:
    require_browser()
    completed = run_node(NODE_BROWSER / "cache_client.mjs", f"{server.url}/page")
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def test_the_javascript_client_keeps_its_bundles_fresh(
    tether_server: Callable[..., LiveServer],
) -> None:
    steps = run_in_browser(tether_server(create_app()))
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
