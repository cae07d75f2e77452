"""The examples of docs/cache.md (examples/docs/cache_*.py and cache_client.js), exercised: each
statement the page makes about them is checked here, in-process and on a real uvicorn.

Each test loads a fresh copy of its example, so module-level state (the todos, the names)
starts empty. The wire tests run the page's own Python client (cache_client.py) against the
server; the JavaScript client runs in Chromium (tests/e2e/test_docs_cache_browser.py).
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import anyio
import httpx
import pytest
from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect

from tests._docs_examples import assert_links_resolve, load, relative_links
from tests.conftest import LiveServer
from tether import (
    Command,
    ConfigurationError,
    LiveSettings,
    NotFound,
    Query,
    Service,
    Tether,
    Unauthorized,
    ValidationFailed,
    command,
    query,
)
from tether.context import CallContext, in_process_scope

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cache.md"
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])
ADA = {"Authorization": "Bearer 1"}
BOB = {"Authorization": "Bearer 2"}
MILK = {"id": 1, "owner_id": 5, "title": "milk", "done": False}
OWNER_5 = [{"context": "todos", "params": {"owner_id": 5}}]
INVALIDATE_HEADER = '[{"context":"todos","params":{"owner_id":5}}]'


def body(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@asynccontextmanager
async def running(name: str) -> AsyncIterator[ModuleType]:
    """Load an example afresh; close its live hub and event bus when the test ends."""
    module = load(name)
    try:
        yield module
    finally:
        await module.api.live.close()
        await module.api.events.close()


class Sink:
    """A live subscriber's sink that keeps what it is pushed (as the transports' sinks do)."""

    waiting: ClassVar[list[anyio.Event]] = []
    """Set, then forgotten, when any sink is pushed something (see `until`)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.ended: list[str] = []

    def push(self, entry_id: str, payload: bytes) -> bool:
        self.ids.append(entry_id)
        self.items.append(json.loads(payload))
        for waiter in Sink.waiting:
            waiter.set()
        Sink.waiting.clear()
        return True

    def end(self, reason: str) -> None:
        self.ended.append(reason)


async def subscribe(
    module: ModuleType, topics: Any, headers: dict[str, str] | None = None
) -> tuple[Any, Sink]:
    api = module.api
    ctx = CallContext("inprocess", in_process_scope(api.app, "/api/live", headers))
    sink = Sink()
    subscription = await api.live.subscribe(ctx, api.live.topics(topics), sink)
    return subscription, sink


async def until(check: Callable[[], bool]) -> None:
    """Wait (at most 5 s, then fail) until `check()` holds: pushes arrive from the feed task."""
    with anyio.fail_after(5):
        while not check():
            waiter = anyio.Event()
            Sink.waiting.append(waiter)
            await waiter.wait()


# -- contexts, affects, merge (cache_todos) ----------------------------------------------------


async def test_cache_todos_contexts_as_the_page_describes() -> None:
    async with running("cache_todos") as module:
        contexts = {context.name: context for context in module.api.contexts}
        todos, user = contexts["todos"], contexts["user"]
        assert [slot.name for slot in todos.slots] == ["todos", "open_count"]
        assert dict(todos.params) == {"owner_id": True, "done": False}  # required, optional
        assert (todos.rev, todos.per_user) == ("2", False)
        assert todos.description == "One owner's todos, and how many are open"
        assert [slot.name for slot in user.slots] == ["current_user"]
        assert (user.rev, user.per_user) == (None, True)  # inferred from the user resolver


def test_cache_context_declarations() -> None:
    # "Declaring is optional"; a context no query joins is refused when the Tether is mounted.
    api = Tether()
    api.context("ghost", rev=1)
    with pytest.raises(ConfigurationError, match="no query has context='ghost'"):
        api.mount(FastAPI())
    with pytest.raises(ConfigurationError, match="already declared"):
        api.context("ghost")


async def test_cache_params_every_slot_declares_with_a_default_stay_optional() -> None:
    api = Tether()

    @api.query(context="page")
    async def rows(limit: int = 10) -> list[int]:
        return list(range(limit))

    @api.query(context="page")
    async def total(limit: int | None = None) -> int:
        return 99

    assert dict(api.contexts.get("page").params) == {"limit": False}
    assert await api.fetch_context("page") == {"rows": list(range(10)), "total": 99}


async def test_cache_todos_bundles_in_process() -> None:
    async with running("cache_todos") as module:
        api = module.api
        assert await api.fetch_context("todos", {"owner_id": 5}) == {"todos": [], "open_count": 0}
        await api.call("add_todo", {"owner_id": 5, "title": "milk"})
        await api.call("add_todo", {"owner_id": 6, "title": "eggs"})
        bundle = await api.fetch_context("todos", {"owner_id": 5})
        assert [todo.model_dump() for todo in bundle["todos"]] == [MILK]
        assert bundle["open_count"] == 1
        # `done` is optional and goes to `todos` alone.
        done = await api.fetch_context("todos", {"owner_id": 5, "done": True})
        assert done == {"todos": [], "open_count": 1}
        with pytest.raises(ValidationFailed) as missing:
            await api.fetch_context("todos", {})
        assert [error.loc for error in missing.value.details] == [["owner_id"]]  # type: ignore[union-attr]
        with pytest.raises(ValidationFailed) as unknown:
            await api.fetch_context("todos", {"owner_id": 5, "colour": "red"})
        assert [error.loc for error in unknown.value.details] == [["colour"]]  # type: ignore[union-attr]
        with pytest.raises(NotFound):
            await api.fetch_context("todo", {"owner_id": 5})
        with pytest.raises(Unauthorized):  # current_user has auth=True
            await api.fetch_context("user")
        assert await api.fetch_context("user", headers=ADA) == {
            "current_user": module.Profile(id=1, name="ada")
        }


async def test_cache_todos_effects_in_process() -> None:
    async with running("cache_todos") as module:
        api = module.api
        added = await api.call("add_todo", {"owner_id": 5, "title": "milk"}, effects=True)
        assert (added.invalidate, added.merge) == (OWNER_5, [])
        toggled = await api.call("toggle_todo", {"owner_id": 5, "id": 1}, effects=True)
        assert toggled.invalidate == OWNER_5
        cleared = await api.call("clear_done", {}, effects=True)  # no argument scopes it
        assert (cleared.result, cleared.invalidate) == (1, [{"context": "todos"}])
        renamed = await api.call("rename_user", {"name": "Ada"}, headers=ADA, effects=True)
        assert renamed.invalidate == []
        assert renamed.merge == [
            {"context": "user", "slot": "current_user", "value": module.Profile(id=1, name="Ada")}
        ]
        # A failed call has no effects: it raises, and pushes nothing.
        with pytest.raises(NotFound):
            await api.call("toggle_todo", {"owner_id": 6, "id": 1}, effects=True)
        await api.live.settle()  # pushes are published by the hub's own task
        assert api.live.published == 4


async def test_cache_testing() -> None:
    load("cache_todos")
    module = load("cache_testing")
    try:
        await module.test_adding_a_todo_invalidates_its_owners_todos()
        await module.test_renaming_merges_the_new_profile()
    finally:
        await module.api.live.close()


# -- the forms of affects (cache_affects) -------------------------------------------------------


async def test_cache_affects_entries() -> None:
    async with running("cache_affects") as module:
        api = module.api
        repriced = await api.call(
            "reprice", {"sku": "pen", "category": "office", "cents": 120}, effects=True
        )
        assert repriced.invalidate == [
            {"context": "catalog", "params": {"category": "office"}},
            {"query": "price", "params": {"sku": "pen"}},
        ]
        sale = await api.call("sale", {"percent": 10}, effects=True)
        assert sale.invalidate == [{"query": "price"}, {"context": "catalog"}]
        assert await api.fetch_context("catalog", {"category": "office"}) == {
            "products": ["ink", "pen"],
            "cheapest": 108,
        }


async def test_cache_affects_a_query_of_a_context_stands_for_it() -> None:
    async with running("cache_todos") as module:

        @module.api.command(affects=[module.todos])
        async def archive(owner_id: int) -> None:
            pass

        archived = await module.api.call("archive", {"owner_id": 5}, effects=True)
        assert archived.invalidate == OWNER_5


async def test_cache_affects_refuses_what_clients_do_not_cache() -> None:
    async with running("cache_affects") as module:
        with pytest.raises(ConfigurationError, match="neither a context nor a registered query"):

            @module.api.command(affects=["catalogue"])
            async def typo(sku: str) -> None:
                pass

        message = "affects= names command 'sale'; only queries and contexts are cached by clients"
        with pytest.raises(ConfigurationError, match=re.escape(message)):

            @module.api.command(affects=["sale"])
            async def again(sku: str) -> None:
                pass

        assert "only queries and contexts are cached by clients" in PAGE.read_text(encoding="utf-8")


class Notes(Service):
    @query(context="notes")
    async def list_notes(self, folder: str) -> list[str]:
        return [folder]

    @command(affects=[list_notes])
    async def clear(self, folder: str) -> None:
        pass


class ReadFolder(Query[list[str]]):
    folder: str


class Touch(Command[None]):
    folder: str


async def test_cache_affects_in_services_and_message_handlers() -> None:
    # The page's "Services and messages" bullet.
    api = Tether()
    api.include(Notes)

    @api.handler(context="folders")
    async def read_folder(message: ReadFolder) -> list[str]:
        return [message.folder]

    @api.handler(affects=["folders", api.get("notes.list_notes")])
    async def touch(message: Touch) -> None:
        pass

    cleared = await api.call("notes.clear", {"folder": "a"}, effects=True)
    assert cleared.invalidate == [{"context": "notes", "params": {"folder": "a"}}]
    touched = await api.call("touch", {"folder": "b"}, effects=True)
    assert touched.invalidate == [
        {"context": "folders", "params": {"folder": "b"}},
        {"context": "notes", "params": {"folder": "b"}},
    ]
    assert await api.fetch_context("folders", {"folder": "c"}) == {"read_folder": ["c"]}
    await api.live.close()


# -- merge (cache_merge) ------------------------------------------------------------------------


async def test_cache_merge_named_slot() -> None:
    async with running("cache_merge") as module:
        api = module.api
        changed = await api.call(
            "set_billing_contact",
            {"account_id": 7, "name": "bob", "email": "bob@example.com"},
            effects=True,
        )
        bob = module.Person(name="bob", email="bob@example.com")
        assert changed.merge == [
            {
                "context": "account",
                "slot": "billing_contact",
                "params": {"account_id": 7},
                "value": bob,
            }
        ]
        assert await api.fetch_context("account", {"account_id": 7}) == {
            "owner": module.Person(name="ada", email="ada@example.com"),
            "billing_contact": bob,
        }


def _merge_error(decl: str, returns: str) -> str:
    module = load("cache_merge")
    namespace = {"api": module.api, "Person": module.Person}
    source = f"@api.command(merge={decl})\nasync def set_owner(account_id: int) -> {returns}: ..."
    with pytest.raises(ConfigurationError) as refused:
        exec(source, namespace)
    assert "set_owner" not in module.api  # the command was not registered
    return str(refused.value)


def test_cache_merge_errors_are_the_ones_the_page_shows() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for decl, returns, shown in [
        ('["account"]', "Person", '| `merge=["account"]`, two `Person` slots |'),
        ('["account"]', "int", '| `merge=["account"]`, returns `int` |'),
        ('{"account": "owner"}', "int", '| `merge={"account": "owner"}`, returns `int` |'),
        ('["acount"]', "Person", '| `merge=["acount"]` (no such context) |'),
    ]:
        assert f"{shown} `{_merge_error(decl, returns)}` |" in page


# -- live push, in-process: per-user scoping, user_key, LiveSettings (cache_per_user) ------------


async def test_cache_per_user_settings() -> None:
    async with running("cache_per_user") as module:
        api = module.api
        assert api.live.settings == LiveSettings(subscriber_queue=64, max_topics=8)
        assert api.contexts.get("drafts").per_user is True  # declared
        assert api.user_key(module.MEMBERS["k-ada"]) == "ada@example.com"
        saved = await api.call("save_draft", {"text": "hi"}, headers={"x-api-key": "k-ada"})
        assert saved is None
        assert await api.fetch_context("drafts", headers={"x-api-key": "k-ada"}) == {
            "drafts": ["hi"]
        }
        with pytest.raises(ValidationFailed):  # more topics than max_topics
            api.live.topics(["drafts"] * 9)


async def test_cache_per_user_pushes_reach_their_user_only() -> None:
    async with running("cache_per_user") as module:
        api = module.api
        module.MEMBERS["k-bob"] = module.Member(email="bob@example.com", team="core")
        _, ada = await subscribe(module, ["drafts"], {"x-api-key": "k-ada"})
        _, bob = await subscribe(module, ["drafts"], {"x-api-key": "k-bob"})
        with pytest.raises(Unauthorized):  # the slot's auth=True, checked when subscribing
            await subscribe(module, ["drafts"])
        await api.call("save_draft", {"text": "bob's"}, headers={"x-api-key": "k-bob"})
        await api.call("save_draft", {"text": "ada's"}, headers={"x-api-key": "k-ada"})
        await until(lambda: len(ada.items) == 1 and len(bob.items) == 1)
        # Each one saw only their own call's entry (the second and first published).
        assert ada.items == [{"id": ada.ids[0], "invalidate": [{"context": "drafts"}], "merge": []}]
        assert bob.items == [{"id": bob.ids[0], "invalidate": [{"context": "drafts"}], "merge": []}]
        assert int(bob.ids[0]) < int(ada.ids[0])


async def test_cache_todos_pushes_match_topics() -> None:
    async with running("cache_todos") as module:
        api = module.api
        _, five = await subscribe(module, [{"context": "todos", "params": {"owner_id": 5}}])
        _, everyone = await subscribe(module, ["todos"])
        _, ada = await subscribe(module, ["user"], ADA)
        _, bob = await subscribe(module, ["user"], BOB)
        await api.call("add_todo", {"owner_id": 6, "title": "eggs"})  # not owner 5's
        await api.call("add_todo", {"owner_id": 5, "title": "milk"})
        await api.call("clear_done", {})  # the whole context: every subscriber of it
        await api.call("rename_user", {"name": "Bob"}, headers=BOB)
        await until(lambda: len(everyone.items) == 3 and len(bob.items) == 1)
        assert [item["invalidate"] for item in five.items] == [OWNER_5, [{"context": "todos"}]]
        assert [item["invalidate"][0].get("params") for item in everyone.items] == [
            {"owner_id": 6},
            {"owner_id": 5},
            None,
        ]
        assert bob.items[0]["merge"] == [
            {"context": "user", "slot": "current_user", "value": {"id": 2, "name": "Bob"}}
        ]
        assert ada.items == []  # a per-user context: bob's rename never reaches ada


@asyncio_only
async def test_cache_pushes_travel_through_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Across processes": with TETHER_BROKER set, the same app pushes through Redis Streams,
    # whose entry ids are the resume tokens.
    monkeypatch.setenv("TETHER_BROKER", redis_url)
    async with running("cache_todos") as module:
        api = module.api
        assert type(api.live.broker).__name__ == "RedisBroker"
        await api.live.broker.start()
        subscription, sink = await subscribe(
            module, [{"context": "todos", "params": {"owner_id": 5}}]
        )
        ready = subscription.last_id
        await api.call("add_todo", {"owner_id": 5, "title": "milk"})
        await until(lambda: len(sink.items) == 1)
        assert re.fullmatch(r"\d+-\d+", sink.ids[0])
        assert sink.items == [{"id": sink.ids[0], "invalidate": OWNER_5, "merge": []}]
        # Resuming from the ready id replays the entry missed.
        again = Sink()
        ctx = CallContext("inprocess", in_process_scope(api.app, "/api/live"))
        await api.live.subscribe(ctx, api.live.topics(["todos"]), again, since=ready)
        assert again.items == sink.items
        await api.live.broker.close()


# -- the page itself: LiveSettings table, the JavaScript block, links ---------------------------


def _table(page: Path, heading_row: str) -> dict[str, str]:
    """The `| `name` | cell |` rows of the table whose header row is `heading_row`."""
    text = page.read_text(encoding="utf-8")
    if page != PAGE:  # the table under the `LiveSettings(...)` heading
        text = text.split("### `LiveSettings(...)`\n", 1)[1]
    section = text.split(f"\n{heading_row}\n", 1)[1]
    section = section.split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {name: cell.strip() for name, cell in rows}


@pytest.mark.parametrize(
    ("page", "heading_row"),
    [
        (PAGE, "| `LiveSettings` field | default | what it does |"),
        (ROOT / "docs" / "configuration.md", "| field | default | what it does |"),
    ],
    ids=["cache.md", "configuration.md"],
)
def test_pages_show_every_live_setting_with_its_default(page: Path, heading_row: str) -> None:
    table = _table(page, heading_row)
    defaults = {field.name: field.default for field in dataclasses.fields(LiveSettings)}
    assert set(table) == set(defaults)
    for name, default in defaults.items():
        assert table[name] == f"`{default!r}`", f"LiveSettings.{name} is {default!r}"


def test_cache_page_shows_the_javascript_client_verbatim() -> None:
    blocks = re.findall(r"^```js\n(.*?)^```$", PAGE.read_text(encoding="utf-8"), re.M | re.S)
    expected = (ROOT / "examples" / "docs" / "cache_client.js").read_text(encoding="utf-8")
    assert blocks == [expected]


def test_cache_page_links_resolve() -> None:
    # Links from the page, and links from any page (or the README) into it, reach a file and
    # a heading.
    links = relative_links(
        [*PAGE.parent.rglob("*.md"), ROOT / "README.md"],
        lambda page, target: page == PAGE or target.split("#")[0].endswith("cache.md"),
    )
    assert len(links) > 8
    assert_links_resolve(links)


# -- on the wire, on a real uvicorn ---------------------------------------------------------------


def _envelope(socket: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    socket.send(json.dumps(message))
    return json.loads(socket.recv(timeout=5))  # type: ignore[no-any-return]


@pytest.mark.e2e
def test_cache_wire_http(tether_server: Callable[..., LiveServer]) -> None:
    module = load("cache_todos")
    server = tether_server(module.app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        added = client.post("/api/call/add_todo", json={"owner_id": 5, "title": "milk"})
        assert body(added) == {"result": MILK, "invalidate": OWNER_5}
        assert added.headers["cache-control"] == "no-store"
        assert added.headers["x-tether-invalidate"] == INVALIDATE_HEADER
        failed = client.post("/api/call/toggle_todo", json={"owner_id": 6, "id": 1})
        assert set(body(failed, 404)) == {"error"}  # no effects on a failed call
        assert failed.headers["cache-control"] == "no-store"  # every command's answer
        assert "x-tether-invalidate" not in failed.headers
        query = client.get("/api/call/todos", params={"owner_id": 5})
        assert body(query) == {"result": [MILK]}
        assert "x-tether-invalidate" not in query.headers
        bundle = client.get("/api/context/todos", params={"owner_id": 5})
        assert body(bundle) == {"result": {"todos": [MILK], "open_count": 1}}
        assert (bundle.headers["cache-control"], bundle.headers["x-tether-rev"]) == (
            "no-cache",
            "2",
        )
        posted = client.post("/api/context/todos", json={"owner_id": 5})
        assert body(posted) == body(bundle)
        assert body(client.get("/api/context/todos"), 422)["error"]["code"] == "VALIDATION_FAILED"
        assert body(client.get("/api/context/nope"), 404)["error"]["code"] == "NOT_FOUND"
        assert body(client.get("/api/context/user"), 401)["error"]["code"] == "UNAUTHORIZED"
        profile = client.get("/api/context/user", headers=ADA)
        assert body(profile) == {"result": {"current_user": {"id": 1, "name": "ada"}}}
        assert "x-tether-rev" not in profile.headers  # a context with no rev
        renamed = client.post("/api/call/rename_user", json={"name": "Ada"}, headers=ADA)
        value = {"id": 1, "name": "Ada"}
        assert body(renamed) == {
            "result": value,
            "merge": [{"context": "user", "slot": "current_user", "value": value}],
        }
        assert "x-tether-invalidate" not in renamed.headers  # merges stay in the body


@pytest.mark.e2e
def test_cache_wire_jsonrpc_over_http(tether_server: Callable[..., LiveServer]) -> None:
    module = load("cache_todos")
    server = tether_server(module.app)
    call = {"jsonrpc": "2.0", "id": 1, "method": "add_todo"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        pure = client.post(
            "/api/jsonrpc", json={**call, "params": {"owner_id": 5, "title": "milk"}}
        )
        assert body(pure) == {"jsonrpc": "2.0", "id": 1, "result": MILK}  # the specification's
        # The headers say it, opted in or not.
        assert pure.headers["x-tether-invalidate"] == INVALIDATE_HEADER
        assert pure.headers["cache-control"] == "no-store"
        read = client.post(
            "/api/jsonrpc",
            json={"jsonrpc": "2.0", "id": 2, "method": "todos", "params": {"owner_id": 5}},
        )
        assert body(read)["result"] == [MILK]
        assert "cache-control" not in read.headers  # no command, no effects
        assert "x-tether-invalidate" not in read.headers
        eggs = {**MILK, "id": 2, "title": "eggs"}
        opted = client.post(
            "/api/jsonrpc",
            json={**call, "params": {"owner_id": 5, "title": "eggs"}},
            headers={"X-Tether-Effects": "1"},
        )
        assert body(opted) == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": eggs,
            "effects": {"invalidate": OWNER_5, "merge": []},
        }
        assert opted.headers["x-tether-invalidate"] == INVALIDATE_HEADER
        assert opted.headers["cache-control"] == "no-store"


@pytest.mark.e2e
def test_cache_wire_websocket(tether_server: Callable[..., LiveServer]) -> None:
    module = load("cache_todos")
    server = tether_server(module.app)
    params = {"owner_id": 5, "title": "milk"}
    with connect(f"{server.ws_url}/api/ws") as socket:
        reply = _envelope(socket, {"uuid": "c1", "route": "add_todo", "payload": params})
        assert reply == {
            "uuid": "c1",
            "status": 200,
            "headers": {"invalidate": OWNER_5},
            "payload": MILK,
        }
        hello = {"jsonrpc": "2.0", "id": 1, "method": "rpc.hello", "params": {"effects": True}}
        assert _envelope(socket, hello) == {"jsonrpc": "2.0", "id": 1, "result": {"effects": True}}
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "add_todo",
            "params": {**params, "title": "eggs"},
        }
        answer = _envelope(socket, call)
        assert answer["effects"] == {"invalidate": OWNER_5, "merge": []}
    with connect(f"{server.ws_url}/api/ws?effects=1") as socket:
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "add_todo",
            "params": {**params, "title": "tea"},
        }
        assert _envelope(socket, call)["effects"] == {"invalidate": OWNER_5, "merge": []}
    with connect(f"{server.ws_url}/api/ws") as socket:
        call = {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "add_todo",
            "params": {**params, "title": "jam"},
        }
        assert "effects" not in _envelope(socket, call)  # no opt-in: the specification's


class Follower:
    """Reads `GET /api/live` with the page's own `follow`, in a thread, into a queue."""

    def __init__(
        self,
        url: str,
        contexts: list[str],
        last_id: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> None:
        self.messages: queue.Queue[tuple[str, str, dict[str, Any]] | BaseException] = queue.Queue()
        self.sockets: list[socket.socket] = []
        self.client = httpx.Client(
            base_url=url, timeout=10, headers=headers, event_hooks={"response": [self._opened]}
        )
        self.closing = False
        self.module = load("cache_client")
        self.thread = threading.Thread(
            target=self._run, args=(contexts, last_id, params), daemon=True
        )
        self.thread.start()

    def _run(self, contexts: list[str], last_id: str | None, params: dict[str, Any]) -> None:
        try:
            for message in self.module.follow(self.client, contexts, last_id, **params):
                self.messages.put(message)
        except Exception as exc:
            if not self.closing:  # otherwise: the client was closed under the stream
                self.messages.put(exc)

    def _opened(self, response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        self.sockets.append(stream.get_extra_info("socket"))

    def next(self) -> tuple[str, str, dict[str, Any]]:
        message = self.messages.get(timeout=5)
        if isinstance(message, BaseException):
            raise message
        return message

    def close(self) -> None:
        # Shutting the socket down wakes the reading thread at once; the server sees the
        # client leave (closing the httpx client from this thread would not).
        self.closing = True
        for opened in self.sockets:
            opened.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.client.close()


@pytest.mark.e2e
def test_cache_live_over_sse_and_resume(tether_server: Callable[..., LiveServer]) -> None:
    module = load("cache_todos")
    server = tether_server(module.app)
    follower = Follower(server.url, ["todos", "user"], headers=ADA, owner_id=5)
    try:
        event, ready_id, ready = follower.next()
        assert (event, ready_id) == ("ready", ready["id"])  # an `id:` line: nothing followed
        assert ready["topics"] == [
            {"context": "todos", "params": {"owner_id": 5}},
            {"context": "user", "params": {}},
        ]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for owner, title in [(6, "eggs"), (5, "milk"), (5, "tea")]:
                client.post("/api/call/add_todo", json={"owner_id": owner, "title": title})
        first = follower.next()
        second = follower.next()
    finally:
        follower.close()
    assert first[0] == second[0] == "effects"
    assert first[2] == {"id": first[1], "invalidate": OWNER_5, "merge": []}
    assert int(ready["id"]) < int(first[1]) < int(second[1])
    # Resuming from the ready id (Last-Event-ID) replays both, in order; from `since`, the last.
    resumed = Follower(server.url, ["todos"], ready["id"], owner_id=5)
    try:
        replayed = [resumed.next(), resumed.next(), resumed.next()]
    finally:
        resumed.close()
    assert [message[0] for message in replayed] == ["ready", "effects", "effects"]
    assert [message[1:] for message in replayed[1:]] == [first[1:], second[1:]]
    since = Follower(server.url, ["todos"], None, owner_id=5, since=first[1])
    try:
        assert since.next()[0] == "ready"
        assert since.next()[1:] == second[1:]
    finally:
        since.close()


@pytest.mark.e2e
def test_cache_live_over_sse_refusals(tether_server: Callable[..., LiveServer]) -> None:
    module = load("cache_todos")
    server = tether_server(module.app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for params, status in [
            ({"contexts": "nope"}, 404),
            ({"contexts": "todos", "colour": "red"}, 422),
            ({"contexts": "user"}, 401),
        ]:
            refused = client.get("/api/live", params=params)
            assert refused.status_code == status
            assert refused.text.startswith("event: error\ndata: ")


@pytest.mark.e2e
def test_cache_live_over_the_websocket(tether_server: Callable[..., LiveServer]) -> None:
    module = load("cache_todos")
    server = tether_server(module.app)
    topics = [{"context": "todos", "params": {"owner_id": 5}}, "user"]
    with connect(f"{server.ws_url}/api/ws", additional_headers=ADA) as socket:
        live = {"uuid": "live-1", "route": "LIVE", "payload": {"contexts": topics}}
        ready = _envelope(socket, live)
        assert (ready["uuid"], ready["status"], ready["headers"]) == (
            "live-1",
            200,
            {"stream": "ready"},
        )
        assert ready["payload"]["topics"][1] == {"context": "user", "params": {}}
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.post("/api/call/add_todo", json={"owner_id": 5, "title": "milk"})
        item = json.loads(socket.recv(timeout=5))
        assert item["headers"] == {"stream": "item"}
        assert item["payload"]["invalidate"] == OWNER_5
        cancelled = _envelope(socket, {"uuid": "live-1", "route": "CANCEL"})
        assert cancelled["headers"]["stream"] == "cancelled"
        # JSON-RPC: rpc.live resumes from the ready id and replays the entry.
        rpc = {"jsonrpc": "2.0", "id": 7, "method": "rpc.live"}
        answer = _envelope(
            socket, {**rpc, "params": {"contexts": ["todos"], "since": ready["payload"]["id"]}}
        )
        assert answer["result"]["subscription"] == 7
        pushed = json.loads(socket.recv(timeout=5))
        assert pushed == {
            "jsonrpc": "2.0",
            "method": "subscription",
            "params": {"subscription": 7, "result": item["payload"]},
        }


@pytest.mark.e2e
def test_cache_client_against_a_server(tether_server: Callable[..., LiveServer]) -> None:
    # The page's Python client: a bundle cached, kept fresh by answers and by pushes.
    module = load("cache_todos")
    server = tether_server(module.app)
    client_module = load("cache_client")
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        httpx.Client(base_url=server.url, timeout=10) as other,
    ):
        cache = client_module.BundleCache(client)
        assert cache.get("todos", owner_id=5) == {"todos": [], "open_count": 0}
        assert cache.get("todos", owner_id=6) == {"todos": [], "open_count": 0}
        follower = Follower(server.url, ["todos"], owner_id=5)
        try:
            assert follower.next()[0] == "ready"
            other.post("/api/call/add_todo", json={"owner_id": 5, "title": "milk"})
            cache.apply(follower.next()[2])
        finally:
            follower.close()
        assert cache.get("todos", owner_id=5) == {"todos": [MILK], "open_count": 1}
        assert len(cache.bundles) == 2  # owner 6's bundle was kept
        cache.apply(client.post("/api/call/clear_done", json={}).json())
        assert cache.bundles == {}  # the whole context
        client.headers.update(ADA)
        assert cache.get("user") == {"current_user": {"id": 1, "name": "ada"}}
        cache.apply(client.post("/api/call/rename_user", json={"name": "Ada"}).json())
        assert cache.bundles[("user", "{}")] == {"current_user": {"id": 1, "name": "Ada"}}
        cache.apply({"id": "9", "resync": True})
        assert cache.bundles == {}


@pytest.mark.e2e
def test_cache_per_user_over_sse(tether_server: Callable[..., LiveServer]) -> None:
    # A per-user context's entries reach their own user's streams only.
    module = load("cache_per_user")
    module.MEMBERS["k-bob"] = module.Member(email="bob@example.com", team="core")
    server = tether_server(module.app)
    ada = Follower(server.url, ["drafts"], headers={"x-api-key": "k-ada"})
    bob = Follower(server.url, ["drafts"], headers={"x-api-key": "k-bob"})
    try:
        assert ada.next()[0] == bob.next()[0] == "ready"
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for key in ("k-ada", "k-bob"):
                saved = client.post(
                    "/api/call/save_draft", json={"text": key}, headers={"x-api-key": key}
                )
                assert body(saved) == {"result": None, "invalidate": [{"context": "drafts"}]}
        ada_event, ada_id, ada_push = ada.next()
        bob_event, bob_id, bob_push = bob.next()
    finally:
        ada.close()
        bob.close()
    # Each stream's first push is its own user's call: bob never saw ada's (published first).
    assert (ada_event, bob_event) == ("effects", "effects")
    assert int(ada_id) < int(bob_id)
    assert ada_push == {"id": ada_id, "invalidate": [{"context": "drafts"}], "merge": []}
    assert bob_push == {"id": bob_id, "invalidate": [{"context": "drafts"}], "merge": []}
