"""The examples of docs/events.md and docs/from-python-cqrs.md (examples/docs/events_*.py,
from_python_cqrs_*.py), exercised: each statement the pages make about them is checked here.

Each test loads a fresh copy of its example, so module-level state starts empty, and closes
the example's event bus at the end. The memory bus runs on asyncio and trio; the outbox and
Redis examples run on asyncio only (aiosqlite, asyncpg and redis-py are asyncio libraries).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from websockets.sync.client import connect

from tests._docs_examples import assert_links_resolve, client_for, load, relative_links
from tests.conftest import LiveServer
from tether import ConfigurationError, EventSettings, NotFound
from tether.events import EventStats

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def body(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@asynccontextmanager
async def running(name: str) -> AsyncIterator[ModuleType]:
    """Load an example afresh, and close its event bus (draining it) when the test ends."""
    module = load(name)
    try:
        yield module
    finally:
        await module.api.events.close()


def rpc(method: str, params: dict[str, Any], id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


# -- messages, handlers, emitting (events_notes) ---------------------------------------------


async def test_events_notes_over_http_and_jsonrpc() -> None:
    async with running("events_notes") as module, client_for(module) as client:
        created = await client.post("/api/call/create_note", json={"title": "groceries"})
        assert body(created) == {"result": {"id": 1, "title": "groceries"}}
        read = await client.get("/api/call/get_note", params={"id": 1})
        assert body(read) == {"result": {"id": 1, "title": "groceries"}}
        over_rpc = await client.post("/api/jsonrpc", json=rpc("create_note", {"title": "books"}))
        assert body(over_rpc)["result"] == {"id": 2, "title": "books"}
        unknown = await client.post("/api/call/create_note", json={"title": "x", "tags": []})
        assert body(unknown, 422)["error"]["details"][0]["loc"] == ["tags"]
        missing = await client.get("/api/call/get_note", params={"id": 9})
        assert body(missing, 404)["error"] == {
            "code": "NOT_FOUND",
            "message": "no note 9",
            "details": {"id": 9},
        }
        await module.api.events.settle()
        # Each handler ran once per released event; the failed calls released nothing.
        assert module.STORE.index == {"groceries": 1, "books": 2}
        # Handled concurrently (a sync handler, in the thread pool): in no promised order.
        assert sorted(mail.split(" at ")[0] for mail in module.MAILS) == [
            "note 1 created",
            "note 2 created",
        ]
        assert module.api.events.stats.handled == 4
    assert module.api.get("create_note").kind == "command"
    handlers = module.api.events.handlers(module.NoteCreated)
    assert {(handler.name, handler.group) for handler in handlers} == {
        ("examples.docs.events_notes.index_note", "tether"),  # the default group
        ("examples.docs.events_notes.mail_note", "mail"),
    }
    assert module.api.get("get_note").kind == "query"


@pytest.mark.e2e
def test_events_notes_over_the_websocket(live_server: Callable[..., LiveServer]) -> None:
    # A handler is an operation on the socket too; its event is handled in the server's bus.
    module = load("events_notes")
    server = live_server(module.app)
    with connect(f"{server.ws_url}/api/ws") as socket:
        call = {"uuid": "1", "route": "create_note", "payload": {"title": "groceries"}}
        socket.send(json.dumps(call))
        answer = json.loads(socket.recv(timeout=5))
    assert (answer["uuid"], answer["status"]) == ("1", 200)
    assert answer["payload"] == {"id": 1, "title": "groceries"}
    deadline = time.monotonic() + 5
    while module.STORE.index != {"groceries": 1} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert module.STORE.index == {"groceries": 1}


async def test_events_notes_send_is_typed_and_in_process() -> None:
    async with running("events_notes") as module:
        note = await module.create_and_read("groceries")
        assert note == module.Note(id=1, title="groceries")
        with pytest.raises(NotFound):
            await module.api.send(module.GetNote(id=5))
        await module.api.events.settle()
        assert module.STORE.index == {"groceries": 1}


async def test_events_notes_events_carry_an_id_and_a_time() -> None:
    module = load("events_notes")
    first = module.NoteCreated(note_id=1, title="a")
    second = module.NoteCreated(note_id=1, title="a")
    assert first.event_id != second.event_id
    assert first.occurred_at.tzinfo is not None
    with pytest.raises(Exception, match="frozen"):
        first.note_id = 2


async def test_events_notes_one_handler_per_message() -> None:
    module = load("events_notes")

    async def another(cmd: module.CreateNote) -> module.Note:  # type: ignore[name-defined]
        raise AssertionError("never runs")

    with pytest.raises(ConfigurationError):
        module.api.handler(another)

    async def not_a_message(title: str) -> None:
        raise AssertionError("never runs")

    with pytest.raises(ConfigurationError):
        module.api.handler(not_a_message)


async def test_events_testing() -> None:
    load("events_notes")
    module = load("events_testing")
    try:
        await module.test_a_new_note_is_indexed_and_mailed()
    finally:
        await module.api.events.close()


# -- released only on success; retries, emitting in turn, parking (events_failures) ---------


async def test_events_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tether")
    async with running("events_failures") as module, client_for(module) as client:
        placed = await client.post("/api/call/place_order", json={"order_id": 1, "sku": "pen"})
        assert body(placed) == {"result": 0}
        await module.api.events.settle()
        # book_shipping failed twice, succeeded on its third attempt, and emitted StockRanOut.
        assert module.SHIPPING_ATTEMPTS == [1, 1, 1]
        assert module.REORDERED == ["pen"]
        stats = module.api.events.stats
        assert (stats.retried, stats.failed, stats.parked) == (2, 1, 1)
        refused = await client.post("/api/call/place_order", json={"order_id": 2, "sku": "pen"})
        assert body(refused, 409)["error"]["code"] == "CONFLICT"
        await module.api.events.settle()
        assert module.SHIPPING_ATTEMPTS == [1, 1, 1]  # order 2's OrderPlaced never left
        assert stats.published == 2  # OrderPlaced of order 1 and StockRanOut
    # Each failure is logged with its exception and traceback; the last one says "parked".
    raised = [str(r.exc_info[1]) for r in caplog.records if r.exc_info and r.exc_info[1]]
    assert raised.count("the carrier's API is busy") == 2
    assert raised.count("the audit log is offline") == 1
    messages = [record.getMessage() for record in caplog.records]
    assert sum("book_shipping" in m and "retry" in m for m in messages) == 2
    assert any("audit" in m and "parked" in m for m in messages)


# -- events to clients (events_feed) ----------------------------------------------------------


async def test_events_feed_in_process() -> None:
    async with running("events_feed") as module:
        api = module.api
        received: list[Any] = []

        async def read() -> None:
            async with aclosing(api.stream_call("messages", {"room": "general"})) as stream:
                async for event in stream:
                    received.append(event)
                    if len(received) == 2:
                        return

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await api.call("post", {"room": "random", "author": "ada", "text": "off topic"})
            await api.call("post", {"room": "general", "author": "ada", "text": "hello"})
            await api.call("post", {"room": "general", "author": "bob", "text": "hi"})
        assert [(e.author, e.text) for e in received] == [("ada", "hello"), ("bob", "hi")]
        assert type(received[0]).event_type == "chat.message_posted"


@pytest.mark.e2e
def test_events_feed_over_sse(live_server: Callable[..., LiveServer]) -> None:
    # A real server: the bus runs with the app's lifespan, and the stream is read over SSE.
    module = load("events_feed")
    server = live_server(module.app)
    stop = threading.Event()

    def post_until_stopped() -> None:
        # The subscription starts after the SSE headers: post until the reader has seen two.
        with httpx.Client(base_url=server.url) as client:
            for i in range(200):
                for room in ("random", "general"):
                    params = {"room": room, "author": "ada", "text": f"{room} {i}"}
                    assert client.post("/api/call/post", json=params).status_code == 200
                if stop.wait(0.05):
                    return

    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        client.stream("GET", "/api/stream/messages", params={"room": "general"}) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        poster = threading.Thread(target=post_until_stopped)
        poster.start()
        try:
            data = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data.append(json.loads(line.removeprefix("data: ")))
                    if len(data) == 2:
                        break
        finally:
            stop.set()
            poster.join()
    assert {item["room"] for item in data} == {"general"}
    first, second = (int(item["text"].split()[1]) for item in data)
    assert second == first + 1
    assert set(data[0]) == {"event_id", "occurred_at", "room", "author", "text"}


# -- the outbox (events_durable) ------------------------------------------------------------


@asyncio_only
async def test_events_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "payments.sqlite3"
    monkeypatch.setenv("PAYMENTS_OUTBOX", f"sqlite+aiosqlite:///{database}")
    monkeypatch.delenv("TETHER_BROKER", raising=False)
    async with running("events_durable") as module, client_for(module) as client:
        events = module.api.events
        paid = await client.post("/api/call/pay", json={"invoice": "inv-1", "cents": 1250})
        assert body(paid) == {"result": "inv-1"}
        # Written to the outbox before the answer, in WAL mode; relayed, then marked sent.
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            ((data,),) = db.execute("SELECT data FROM tether_outbox").fetchall()
        await events.settle()
        assert module.RECEIPTS == ["inv-1: 12.50"]
        assert await events.outbox.pending() == 0
        with sqlite3.connect(database) as db:
            assert db.execute(
                "SELECT count(*) FROM tether_outbox WHERE sent_at IS NULL"
            ).fetchone() == (0,)
        # The same event delivered again (as after a crash) is skipped: once per event_id.
        await events.broker.publish(events.stream, data)
        await events.settle()
        assert module.RECEIPTS == ["inv-1: 12.50"]
        assert (events.stats.handled, events.stats.duplicates) == (1, 1)


# -- choosing a broker (events_scaleout) --------------------------------------------------------


async def test_events_scaleout_memory_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_BROKER", raising=False)
    async with running("events_scaleout") as module:
        assert module.api.events.broker.url == "memory://"
        for job_id in (1, 2, 3):
            await module.api.call("queue_job", {"job_id": job_id})
        await module.api.events.settle()
        assert sorted(module.HANDLED) == [1, 2, 3]


@asyncio_only
async def test_events_scaleout_on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_BROKER", redis_url)
    async with running("events_scaleout") as module:
        assert type(module.api.events.broker).__name__ == "RedisBroker"
        for job_id in (1, 2, 3):
            await module.api.call("queue_job", {"job_id": job_id})
        await module.api.events.settle()
        assert sorted(module.HANDLED) == [1, 2, 3]


# -- from python-cqrs ---------------------------------------------------------------------------


async def test_from_python_cqrs_1() -> None:
    async with running("from_python_cqrs_1") as module, client_for(module) as client:
        joined = await client.post(
            "/api/call/join_meeting", json={"meeting_id": "standup", "user_id": "ada"}
        )
        assert body(joined) == {"result": None}
        read = await client.get("/api/call/read_meeting", params={"meeting_id": "standup"})
        assert body(read) == {"result": {"meeting_id": "standup", "users": ["ada"]}}
        unknown = await client.post(
            "/api/call/join_meeting", json={"meeting_id": "retro", "user_id": "ada"}
        )
        assert body(unknown, 404)["error"]["code"] == "NOT_FOUND"
        over_rpc = rpc("join_meeting", {"meeting_id": "standup", "user_id": "bob"})
        assert body(await client.post("/api/jsonrpc", json=over_rpc))["result"] is None
        meeting = await module.api.send(module.ReadMeeting(meeting_id="standup"))
        assert meeting == module.Meeting(meeting_id="standup", users=["ada", "bob"])
        await module.api.events.settle()
        assert sorted(module.ANNOUNCED) == ["ada joined standup", "bob joined standup"]


async def test_from_python_cqrs_1_events_belong_to_their_call() -> None:
    # Concurrent calls of one handler each release their own event, once: nothing is shared.
    async with running("from_python_cqrs_1") as module:
        api, join = module.api, module.JoinMeeting

        async def send(user: str, meeting: str = "standup") -> None:
            try:
                await api.send(join(meeting_id=meeting, user_id=user))
            except NotFound:
                pass

        async with anyio.create_task_group() as tasks:
            for user in ("u1", "u2", "u3"):
                tasks.start_soon(send, user)
            tasks.start_soon(send, "u4", "retro")
        await api.events.settle()
        assert sorted(module.ANNOUNCED) == [f"u{i} joined standup" for i in (1, 2, 3)]


# -- the tables of docs/events.md ---------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _table(heading: str) -> dict[str, str]:
    """The `| `name` | cell | ...` rows of the first table under `heading` in docs/events.md."""
    section = PAGE.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    section = re.split(r"^#{1,3} ", section, maxsplit=1, flags=re.MULTILINE)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {name: cell.strip() for name, cell in rows}


def test_events_page_shows_every_setting_with_its_default() -> None:
    table = _table("## Settings")
    defaults = {field.name: field.default for field in dataclasses.fields(EventSettings)}
    assert set(table) == set(defaults)
    for name, default in defaults.items():
        shown = f'`"{default}"`' if isinstance(default, str) else f"`{default!r}`"
        assert table[name] == shown, f"EventSettings.{name} is {default!r}"


def test_events_page_shows_every_counter() -> None:
    table = _table("## Running, stopping, statistics")
    assert set(table) == {field.name for field in dataclasses.fields(EventStats)}


def test_events_pages_links_resolve() -> None:
    # Links from the two pages, and links from any page into them, reach a file and a heading.
    pages = ("events.md", "from-python-cqrs.md")
    links = relative_links(
        PAGE.parent.rglob("*.md"),
        lambda page, target: page.name in pages or target.split("#")[0] in pages,
    )
    assert len(links) > 10
    assert_links_resolve(links)
