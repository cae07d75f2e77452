"""The demo's React page, built from the generated client, in a real browser.

Debian's Chromium, driven by playwright-core, opens the page a real uvicorn serves
(`tether.demo.app.create_app` on a fresh database) in two browser contexts, ada's and bob's,
and records every request each makes. Two scenarios run once each: tests/node_browser/
demo_page.mjs on the page's default wires (JSON-RPC calls, SSE for the counter and live push),
and demo_websocket.mjs with `?wire=websocket` (one socket per window; it records the messages
sent). Each test checks one step, and names the requests it saw when it fails.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests._node import NODE_BROWSER, require_browser, run_node
from tests.conftest import serve
from tether.demo.app import create_app

pytestmark = pytest.mark.e2e


Request = dict[str, Any]

# What a page loads besides calls and bundles: itself, its script, live push, the counter.
PAGE = frozenset({"GET /", "GET /app.js"})
COUNTER = "POST /api/stream/counter"


def run_scenario(script: str, database: Path) -> dict[str, Any]:
    """Serve the demo on a free loopback port and run one browser scenario against it."""
    require_browser()
    # TetherServer ends open live and stream responses (and sockets) at once when it stops.
    with serve(create_app(database), tether=True) as server:
        completed = run_node(NODE_BROWSER / script, server.url, timeout=180)
    result: dict[str, Any] = json.loads(completed.stdout)
    assert result["failed"] is None, (
        f"the scenario failed at {result['failed']!r}: {result['error']}\n"
        f"pages showed: {json.dumps(result['pages'], indent=1)}\n"
        f"steps before: {json.dumps(result['steps'], indent=1)}"
    )
    steps: dict[str, Any] = result["steps"]
    return steps


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The default wires (JSON-RPC calls, SSE streams and live push): demo_page.mjs's steps."""
    return run_scenario("demo_page.mjs", tmp_path_factory.mktemp("demo") / "todo.db")


@pytest.fixture(scope="module")
def run_websocket(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The page with `?wire=websocket`: demo_websocket.mjs's steps."""
    return run_scenario("demo_websocket.mjs", tmp_path_factory.mktemp("demo-ws") / "todo.db")


def line(request: Request) -> str:
    return f"{request['method']} {request['path']}"


def show(requests: list[Request]) -> str:
    """The requests, one a line: method, path, Authorization, JSON body."""
    if not requests:
        return "  (none)"
    return "\n".join(
        f"  {line(r)} [{r['auth']}] {json.dumps(r['body'], sort_keys=True)}" for r in requests
    )


def is_background(request: Request) -> bool:
    text = line(request)
    return text in PAGE or text == COUNTER or text.startswith(("GET /?", "GET /api/live?"))


def live_contexts(request: Request) -> set[str]:
    """The context names a live subscription (`GET /api/live?contexts=a,b`) asked for."""
    return set(parse_qs(urlsplit(request["path"]).query)["contexts"][0].split(","))


def foreground(requests: list[Request]) -> list[Request]:
    """The calls and bundle fetches: everything but the page, live push and the counter."""
    return [r for r in requests if not is_background(r)]


def bundles(requests: list[Request]) -> Counter[str]:
    return Counter(line(r) for r in requests if r["path"].startswith("/api/context/"))


def rpc(request: Request) -> list[dict[str, Any]]:
    """A JSON-RPC request's messages (a batch's array, or the one object as a list of one)."""
    body = request["body"]
    return body if isinstance(body, list) else [body]


def methods(request: Request) -> list[str]:
    return [message["method"] for message in rpc(request)]


def test_first_load_fetches_each_mounted_context_once(run: dict[str, Any]) -> None:
    step = run["firstLoad"]
    requests: list[Request] = step["requests"]
    seen = f"first load requested:\n{show(requests)}"
    assert bundles(requests) == {"POST /api/context/todos": 1, "POST /api/context/user": 1}, seen
    # No call: the staff-only stats are not mounted for ada, the bundles hold the rest.
    assert Counter(line(r) for r in foreground(requests)) == bundles(requests), seen
    for request in foreground(requests):
        assert request["body"] == {}, seen
        assert request["auth"] == "Bearer ada", seen
    # The background: the page, its script, the counter's stream and live push for both.
    assert Counter(line(r) for r in requests if line(r) == COUNTER) == {COUNTER: 1}, seen
    assert [r["body"] for r in requests if line(r) == COUNTER] == [{"every_ms": 1000}], seen
    # One live subscription, for both, made once both loaded (not one per bundle).
    live = [r for r in requests if r["path"].startswith("/api/live?")]
    assert len(live) == 1, seen
    assert live_contexts(live[0]) == {"todos", "user"}, seen
    assert live[0]["auth"] == "Bearer ada", seen
    assert len(requests) == 6, seen  # and the page and its script
    assert step["displayName"] == "ada"
    assert step["staff"] == 0
    assert step["titles"] == []
    assert step["live"] == "live push: ready"


def test_rename_merges_with_no_further_request(run: dict[str, Any]) -> None:
    step = run["rename"]
    requests: list[Request] = step["requests"]
    seen = f"rename requested:\n{show(requests)}"
    assert [line(r) for r in requests] == ["POST /api/jsonrpc"], seen
    (message,) = rpc(requests[0])
    assert message["method"] == "rename_user", seen
    assert message["params"] == {"display_name": "Ada Lovelace"}, seen
    assert requests[0]["auth"] == "Bearer ada", seen
    assert step["displayName"] == "Ada Lovelace"


def test_add_is_one_call_and_one_refetch_of_todos(run: dict[str, Any]) -> None:
    step = run["add"]
    requests: list[Request] = step["requests"]
    seen = f"add requested:\n{show(requests)}"
    assert [line(r) for r in requests] == ["POST /api/jsonrpc", "POST /api/context/todos"], seen
    assert methods(requests[0]) == ["add_todo"], seen
    assert rpc(requests[0])[0]["params"] == {"title": "milk"}, seen
    assert requests[1]["body"] == {}, seen
    assert step["titles"] == ["milk"]


def test_a_second_window_follows_by_live_push(run: dict[str, Any]) -> None:
    opened = run["secondWindow"]
    seen = f"bob's window requested on load:\n{show(opened['requests'])}"
    assert bundles(opened["requests"]) == {
        "POST /api/context/todos": 1,
        "POST /api/context/user": 1,
    }, seen
    live = [r for r in opened["requests"] if r["path"].startswith("/api/live?")]
    assert [live_contexts(r) for r in live] == [{"todos", "user"}], seen
    assert opened["titles"] == ["milk"]
    assert opened["displayName"] == "bob"

    step = run["push"]
    seen = (
        f"ada's window (which added eggs) requested:\n{show(step['requestsA'])}\n"
        f"bob's window requested:\n{show(step['requestsB'])}"
    )
    # bob's window made exactly its one refetch, told by the push, and did not reload.
    assert [line(r) for r in step["requestsB"]] == ["POST /api/context/todos"], seen
    assert step["requestsB"][0]["auth"] == "Bearer bob", seen
    assert not step["reloadedB"]
    assert [line(r) for r in step["requestsA"]] == [
        "POST /api/jsonrpc",
        "POST /api/context/todos",
    ], seen
    assert step["titlesA"] == step["titlesB"] == ["milk", "eggs"]
    # ada's rename merged into ada's `user` only: it is per user.
    assert step["displayNameB"] == "bob"


def test_a_user_who_is_not_staff_sees_the_typed_403(run: dict[str, Any]) -> None:
    step = run["forbidden"]
    requests: list[Request] = step["requests"]
    seen = f"Show stats requested:\n{show(requests)}"
    assert [line(r) for r in requests] == ["POST /api/jsonrpc"], seen
    assert methods(requests[0]) == ["stats"], seen
    assert step["error"] == "403 FORBIDDEN: Requires staff"
    assert step["code"] == "FORBIDDEN"
    assert step["stats"] == 0


def test_two_deletes_in_one_tick_travel_as_one_batch(run: dict[str, Any]) -> None:
    toggled = run["toggle"]["requestsA"]
    seen = f"the two toggles requested:\n{show(toggled)}"
    assert [methods(r) for r in toggled if line(r) == "POST /api/jsonrpc"] == [
        ["toggle_todo"],
        ["toggle_todo"],
    ], seen

    step = run["clearDone"]
    requests: list[Request] = step["requestsA"]
    seen = (
        f"Clear done requested:\n{show(requests)}\n"
        f"bob's window requested:\n{show(step['requestsB'])}"
    )
    batches = [r for r in requests if line(r) == "POST /api/jsonrpc"]
    assert len(batches) == 1, seen
    assert isinstance(batches[0]["body"], list), seen
    assert methods(batches[0]) == ["delete_todo", "delete_todo"], seen
    assert sorted(message["params"]["id"] for message in rpc(batches[0])) == [1, 2], seen
    # Besides the batch, only refetches of todos: the batch's answer and the two pushes (one a
    # call) all invalidate it; a push that arrives while a refetch is in flight runs one more.
    assert requests[0] is batches[0], seen
    assert [line(r) for r in requests[1:]] in (
        ["POST /api/context/todos"],
        ["POST /api/context/todos"] * 2,
    ), seen
    # bob's window only refetched, once or once per push (no call, no reload).
    assert [line(r) for r in step["requestsB"]] in (
        ["POST /api/context/todos"],
        ["POST /api/context/todos"] * 2,
    ), seen
    assert step["titlesA"] == step["titlesB"] == []


def test_signing_in_as_staff_resets_the_cache_and_shows_the_stats(run: dict[str, Any]) -> None:
    step = run["staff"]
    requests: list[Request] = step["requests"]
    seen = f"signing in as admin requested:\n{show(requests)}"
    assert bundles(requests) == {"POST /api/context/todos": 1, "POST /api/context/user": 1}, seen
    stats = [r for r in requests if line(r) == "POST /api/jsonrpc"]
    assert [methods(r) for r in stats] == [["stats"]], seen
    assert {r["auth"] for r in foreground(requests)} == {"Bearer admin"}, seen
    # Live push reconnected with the new user's headers; stats, mounted later, joined it.
    live = [r for r in requests if r["path"].startswith("/api/live?")]
    assert live, seen
    assert {r["auth"] for r in live} == {"Bearer admin"}, seen
    assert live_contexts(live[-1]) == {"stats", "todos", "user"}, seen
    assert step["displayName"] == "admin"
    assert step["stats"] == "0 todos, 0 done, 0 open"
    assert step["errors"] == []


def test_the_counter_streams_and_nothing_failed(run: dict[str, Any]) -> None:
    counter = run["counter"]
    # One number a second since each window opened (ada's opened first).
    assert counter["a"] >= 5, counter
    assert counter["b"] >= 1, counter
    assert counter["statusA"] == "open", counter
    assert run["pageErrors"] == []


# -- the same page with ?wire=websocket: calls, the counter and live push on one socket ------


def traffic(entries: list[dict[str, Any]]) -> str:
    """A window's HTTP requests and sent socket messages, one a line."""
    if not entries:
        return "  (none)"
    return "\n".join(
        f"  {e['method']} {e['path']} [{e['auth']}]"
        if e["kind"] == "http"
        else f"  {e['kind']} {e.get('path') or json.dumps(e['message'], sort_keys=True)}"
        for e in entries
    )


def http(entries: list[dict[str, Any]]) -> list[str]:
    """The HTTP requests but the page's own (`/`, `/app.js`)."""
    return [
        f"{e['method']} {e['path']}"
        for e in entries
        if e["kind"] == "http" and not e["path"].startswith(("/?", "/app.js"))
    ]


def sent(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["message"] for e in entries if e["kind"] == "sent"]


def test_over_websocket_only_the_bundles_use_http(run_websocket: dict[str, Any]) -> None:
    for window, user in (("a", "ada"), ("b", "bob")):
        entries = run_websocket["load"][window]
        seen = f"{user}'s window, on load:\n{traffic(entries)}"
        assert sorted(http(entries)) == ["POST /api/context/todos", "POST /api/context/user"], seen
        assert [e["path"] for e in entries if e["kind"] == "open"] == ["/api/ws"], seen
        messages = sent(entries)
        # The browser cannot set the handshake's headers: each message carries them.
        assert {
            json.dumps(m.get("headers"), sort_keys=True) for m in messages if "payload" in m
        } == {json.dumps({"Authorization": f"Bearer {user}"})}, seen
        assert [m["payload"] for m in messages if m["route"] == "counter"] == [
            {"every_ms": 1000}
        ], seen
        # One subscription on the socket, for both contexts, and nothing cancelled.
        lives = [m for m in messages if m["route"] == "LIVE"]
        assert [sorted(m["payload"]["contexts"]) for m in lives] == [["todos", "user"]], seen
        assert [m for m in messages if m["route"] == "CANCEL"] == [], seen


def test_over_websocket_add_pushes_to_the_other_window(run_websocket: dict[str, Any]) -> None:
    step = run_websocket["add"]
    seen = f"ada's window:\n{traffic(step['a'])}\nbob's window:\n{traffic(step['b'])}"
    assert [(m["route"], m["payload"]) for m in sent(step["a"])] == [
        ("add_todo", {"title": "milk"})
    ], seen
    assert http(step["a"]) == ["POST /api/context/todos"], seen
    # bob's window: its one refetch, told by the push on its socket; it sent nothing.
    assert http(step["b"]) == ["POST /api/context/todos"], seen
    assert sent(step["b"]) == [], seen


def test_over_websocket_rename_merges_and_403_is_typed(run_websocket: dict[str, Any]) -> None:
    step = run_websocket["rename"]
    seen = f"ada's window:\n{traffic(step['a'])}\nbob's window:\n{traffic(step['b'])}"
    assert [m["route"] for m in sent(step["a"])] == ["rename_user"], seen
    assert http(step["a"]) == [], seen
    assert step["b"] == [], seen
    assert step["displayNameA"] == "Ada L."
    assert step["displayNameB"] == "bob"

    forbidden = run_websocket["forbidden"]
    seen = f"bob's window:\n{traffic(forbidden['b'])}"
    assert [m["route"] for m in sent(forbidden["b"])] == ["stats"], seen
    assert http(forbidden["b"]) == [], seen
    assert forbidden["error"] == "403 FORBIDDEN: Requires staff"

    counter = run_websocket["counter"]
    assert counter["a"] >= 3, counter
    assert counter["b"] >= 3, counter
    assert run_websocket["pageErrors"] == []
