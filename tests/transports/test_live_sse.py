"""Live push over SSE in memory (asyncio and trio): `GET /api/live`, its wire, resume, limits, errors.

`LiveStream` drives the ASGI app as a server would, reading the stream while it is open:
the app runs in a task, and every message it sends is read as it comes. Nothing waits for
a duration: a stream is read until it holds what is expected, and that something did
*not* arrive is shown by a later entry that did (the hub hands entries out in order).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Annotated, Any

import anyio
import orjson
import pytest
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from starlette.types import Message

from tests._cache_users import Todo, User, current_user
from tether import LiveSettings, Tether
from tether.brokers.base import BrokerUnavailable
from tether.brokers.memory import MemoryBroker
from tether.transports import HttpTransport, _live_sse
from tether.transports._live_sse import _LiveStream
from tether.transports.sse import SseTransport


class Profile(BaseModel):
    name: str


def build_api(*, maxlen: int = 10_000, **options: Any) -> Tether:
    """Contexts `todos` (by owner), `me` (per user), `secret` (staff only); `stats` (no context)."""
    api = Tether(
        prefix="/api", broker=MemoryBroker(maxlen=maxlen), user=Depends(current_user), **options
    )

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[Todo]:
        return []

    @api.query(context="todos")
    async def todo_count(owner_id: int) -> int:
        return 0

    @api.query
    async def stats(owner_id: int) -> int:
        return 0

    @api.query(context="me")
    async def me(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(name="nobody" if user is None else user.name)

    @api.query(context="secret", auth="staff")
    async def secret() -> str:
        return "s"

    @api.query(context="tagged")
    async def tagged(tags: list[str]) -> int:
        return 0

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> Todo:
        return Todo(id=1, owner_id=owner_id, title=title)

    @api.command(affects=["stats"])
    async def bump_stats(owner_id: int) -> None: ...

    @api.command(merge=["me"], affects=["me"])
    async def rename(name: str) -> Profile:
        return Profile(name=name)

    @api.command(affects=["secret"])
    async def reveal() -> None: ...

    return api


def mount(api: Tether, heartbeat: float = 15.0) -> FastAPI:
    app = FastAPI()
    api.mount(app, transports=[HttpTransport(), SseTransport(heartbeat=heartbeat)])
    return app


def parse(text: str) -> list[dict[str, str]]:
    """Parse complete text/event-stream events (comments left out)."""
    events: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        event: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
        if event:
            events.append(event)
    return events


class LiveStream:
    """A client of `GET /api/live` in memory: reads the stream as it comes, and may leave.

    `blocked` makes the client stop reading: the app's `send` waits until it is cleared.
    """

    def __init__(
        self, app: Any, query: str, headers: Sequence[tuple[str, str]] = (), method: str = "GET"
    ) -> None:
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/api/live",
            "raw_path": b"/api/live",
            "root_path": "",
            "query_string": query.encode(),
            "headers": [
                (b"host", b"test"),
                *((k.lower().encode(), v.encode()) for k, v in headers),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
            "state": {},
        }
        pair: tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message]]
        pair = anyio.create_memory_object_stream(math.inf)
        self._out, self._in = pair
        self._read = False
        self.gone = anyio.Event()
        self.done = anyio.Event()
        self.reading = anyio.Event()
        self.reading.set()
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.text = ""
        self.complete = False
        self.bodies: list[bytes] = []
        self._group: TaskGroup | None = None

    async def _receive(self) -> Message:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.gone.is_set():
            await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        await self.reading.wait()
        await self._out.send(message)

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self._receive, self._send)
        finally:
            self.done.set()
            self._out.close()

    async def __aenter__(self) -> LiveStream:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._run)
        with anyio.fail_after(5):
            start = await self._in.receive()
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = dict(start["headers"])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._group is not None
        # The client leaves; the app would notice on its next heartbeat: the test ends it.
        self.gone.set()
        self.reading.set()
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        self._in.close()

    async def _one(self) -> bool:
        """Read one body message; False once the response is complete."""
        if self.complete:
            return False
        try:
            message = await self._in.receive()
        except anyio.EndOfStream:
            return False
        assert message["type"] == "http.response.body", message
        self.bodies.append(message.get("body", b""))
        self.text += message.get("body", b"").decode()
        if not message.get("more_body", False):
            self.complete = True
        return True

    @property
    def events(self) -> list[dict[str, str]]:
        complete = self.text[: self.text.rfind("\n\n") + 2] if "\n\n" in self.text else ""
        return parse(complete)

    async def wait_events(self, count: int) -> list[dict[str, str]]:
        """Read until `count` events have come; return them all."""
        with anyio.fail_after(5):
            while len(self.events) < count:
                assert await self._one(), f"the stream ended after {self.events}"
        return self.events

    async def wait_end(self) -> list[dict[str, str]]:
        """Read until the app has returned; return every event."""
        with anyio.fail_after(10):
            while await self._one():
                pass
            await self.done.wait()
        return self.events

    def data(self, index: int) -> Any:
        return orjson.loads(self.events[index]["data"])


@pytest.fixture
async def apps() -> AsyncIterator[Callable[..., tuple[Tether, FastAPI]]]:
    made: list[Tether] = []

    def make(heartbeat: float = 15.0, **options: Any) -> tuple[Tether, FastAPI]:
        api = build_api(**options)
        made.append(api)
        return api, mount(api, heartbeat)

    yield make
    for api in made:
        await api.live.close()
        await api.live.broker.close()


def entry(owner_id: int) -> dict[str, Any]:
    return {"context": "todos", "params": {"owner_id": owner_id}}


class TestWire:
    async def test_ready_then_the_effects_of_other_clients_calls(self, apps: Any) -> None:
        api, app = apps()
        async with LiveStream(app, "contexts=todos&owner_id=5") as five:
            assert five.status == 200
            assert five.headers[b"content-type"] == b"text/event-stream; charset=utf-8"
            assert five.headers[b"cache-control"] == b"no-cache"
            await five.wait_events(1)
            assert five.bodies[0] == (
                b'id: 0\nevent: ready\ndata: {"id":"0","topics":'
                b'[{"context":"todos","params":{"owner_id":5}}]}\n\n'
            )
            async with LiveStream(app, "contexts=todos") as every:
                await every.wait_events(1)
                await api.call("add_todo", {"owner_id": 6, "title": "a"})
                await api.call("add_todo", {"owner_id": 5, "title": "b"})
                await every.wait_events(3)
                await five.wait_events(2)
            assert five.bodies[1] == (
                b'id: 2\nevent: effects\ndata: {"id":"2","invalidate":'
                b'[{"context":"todos","params":{"owner_id":5}}],"merge":[]}\n\n'
            )
            assert [e.get("id") for e in every.events] == ["0", "1", "2"]
            assert [every.data(i)["invalidate"] for i in (1, 2)] == [[entry(6)], [entry(5)]]
            assert len(five.events) == 2  # owner 6's entry never reached owner 5's stream

    async def test_a_query_of_no_context_and_merge_values(self, apps: Any) -> None:
        api, app = apps()
        async with LiveStream(app, "contexts=stats,me&owner_id=3", [("x-user", "1")]) as stream:
            ready = (await stream.wait_events(1))[0]
            assert ready["event"] == "ready"
            assert orjson.loads(ready["data"])["topics"] == [
                {"query": "stats", "params": {"owner_id": 3}},
                {"context": "me", "params": {}},
            ]
            await api.call("bump_stats", {"owner_id": 3})
            await api.call("rename", {"name": "ada2"}, headers={"x-user": "1"})
            events = await stream.wait_events(3)
        assert [e["event"] for e in events] == ["ready", "effects", "effects"]
        assert stream.data(1)["invalidate"] == [{"query": "stats", "params": {"owner_id": 3}}]
        assert stream.data(2)["merge"] == [
            {"context": "me", "slot": "me", "value": {"name": "ada2"}}
        ]

    async def test_contexts_repeated_and_comma_separated(self, apps: Any) -> None:
        _, app = apps()
        async with LiveStream(app, "contexts=todos,stats&contexts=me&owner_id=1") as stream:
            await stream.wait_events(1)
        names = [next(iter(t.values())) for t in stream.data(0)["topics"]]
        assert names == ["todos", "stats", "me"]

    @pytest.mark.parametrize(
        ("query", "params"),
        [("tags=a&tags=b", {"tags": ["a", "b"]}), ("tags=a", {"tags": ["a"]})],
    )
    async def test_list_params_repeat(self, apps: Any, query: str, params: Any) -> None:
        _, app = apps()
        async with LiveStream(app, f"contexts=tagged&{query}") as stream:
            await stream.wait_events(1)
        assert stream.data(0)["topics"] == [{"context": "tagged", "params": params}]


class TestResume:
    async def test_since_replays_exactly_what_was_missed_then_live(self, apps: Any) -> None:
        api, app = apps()
        for n in (1, 2, 3):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with LiveStream(app, "contexts=todos&since=1") as stream:
            await stream.wait_events(3)
            await api.call("add_todo", {"owner_id": 4, "title": "t"})
            events = await stream.wait_events(4)
        assert [e["event"] for e in events] == ["ready", "effects", "effects", "effects"]
        assert "id" not in events[0]  # the replayed events carry the ids that follow
        assert stream.data(0)["id"] == "3"
        assert [e["id"] for e in events[1:]] == ["2", "3", "4"]
        assert [stream.data(i)["invalidate"] for i in (1, 2, 3)] == [
            [entry(2)],
            [entry(3)],
            [entry(4)],
        ]

    async def test_last_event_id_wins_over_since(self, apps: Any) -> None:
        api, app = apps()
        for n in (1, 2, 3):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with LiveStream(app, "contexts=todos&since=1", [("last-event-id", "2")]) as stream:
            events = await stream.wait_events(2)
            await api.call("add_todo", {"owner_id": 4, "title": "t"})
            events = await stream.wait_events(3)
        assert [e.get("id") for e in events[1:]] == ["3", "4"]

    async def test_a_gap_too_old_gets_one_resync(self, apps: Any) -> None:
        api, app = apps(maxlen=2)
        for n in range(1, 6):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with LiveStream(app, "contexts=todos&since=1") as stream:
            await stream.wait_events(2)
            await api.call("add_todo", {"owner_id": 6, "title": "t"})
            events = await stream.wait_events(3)
        assert [e["event"] for e in events] == ["ready", "resync", "effects"]
        assert events[1]["id"] == "5"
        assert stream.data(1) == {"id": "5", "resync": True}
        assert stream.data(2)["invalidate"] == [entry(6)]

    async def test_a_replay_longer_than_the_queue_collapses_into_one_resync(
        self, apps: Any
    ) -> None:
        api, app = apps(live=LiveSettings(subscriber_queue=2))
        for n in range(1, 6):
            await api.call("add_todo", {"owner_id": n, "title": "t"})
        async with LiveStream(app, "contexts=todos&since=1") as stream:
            await stream.wait_events(2)
            await api.call("add_todo", {"owner_id": 6, "title": "t"})
            events = await stream.wait_events(3)
        assert [(e["event"], e.get("id")) for e in events] == [
            ("ready", None),
            ("resync", "5"),
            ("effects", "6"),
        ]

    async def test_ready_carries_the_token_when_nothing_was_missed(self, apps: Any) -> None:
        api, app = apps()
        await api.call("add_todo", {"owner_id": 1, "title": "t"})
        async with LiveStream(app, "contexts=todos&since=1") as stream:
            events = await stream.wait_events(1)
        assert events[0]["id"] == "1"
        assert stream.data(0)["id"] == "1"


class TestErrors:
    @pytest.mark.parametrize(
        ("query", "headers", "status", "code"),
        [
            ("contexts=nope", [], 404, "NOT_FOUND"),
            ("contexts=todos,nope", [], 404, "NOT_FOUND"),
            ("", [], 422, "VALIDATION_FAILED"),
            ("contexts=", [], 422, "VALIDATION_FAILED"),
            ("contexts=todos&owner_id=abc", [], 422, "VALIDATION_FAILED"),
            ("contexts=todos&color=red", [], 422, "VALIDATION_FAILED"),
            ("contexts=todos&owner_id=1&owner_id=2", [], 422, "VALIDATION_FAILED"),
            ("contexts=secret", [], 401, "UNAUTHORIZED"),
            ("contexts=secret", [("x-user", "1")], 403, "FORBIDDEN"),
        ],
    )
    async def test_refused_before_the_stream_starts(
        self, apps: Any, query: str, headers: list[tuple[str, str]], status: int, code: str
    ) -> None:
        api, app = apps()
        async with LiveStream(app, query, headers) as stream:
            events = await stream.wait_end()
        assert stream.status == status
        assert [e["event"] for e in events] == ["error"]
        assert orjson.loads(events[0]["data"])["error"]["code"] == code
        assert api.live.subscribers == 0

    async def test_staff_may_read_the_secret_context(self, apps: Any) -> None:
        api, app = apps()
        async with LiveStream(app, "contexts=secret", [("x-user", "9")]) as stream:
            await stream.wait_events(1)
            await api.call("reveal", {})
            events = await stream.wait_events(2)
        assert orjson.loads(events[1]["data"])["invalidate"] == [{"context": "secret"}]

    async def test_a_broker_that_cannot_be_read_is_a_503(
        self, apps: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        api, app = apps()

        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise BrokerUnavailable("redis is down")

        # The broker fails under the hub, which answers 503 for the transports.
        monkeypatch.setattr(api.live.broker, "position", unavailable)
        async with LiveStream(app, "contexts=todos") as stream:
            events = await stream.wait_end()
        assert stream.status == 503
        assert orjson.loads(events[0]["data"])["error"]["code"] == "SERVICE_UNAVAILABLE"

    async def test_other_methods_are_not_allowed(self, apps: Any) -> None:
        _, app = apps()
        async with LiveStream(app, "contexts=todos", method="POST") as stream:
            events = await stream.wait_end()
        assert stream.status == 405
        assert stream.headers[b"allow"] == b"GET"
        assert orjson.loads(events[0]["data"])["error"]["code"] == "METHOD_NOT_ALLOWED"


class TestPerUser:
    async def test_a_users_effects_never_reach_another_user(self, apps: Any) -> None:
        api, app = apps()
        async with (
            LiveStream(app, "contexts=me", [("x-user", "1")]) as ada,
            LiveStream(app, "contexts=me", [("x-user", "2")]) as bob,
        ):
            await ada.wait_events(1)
            await bob.wait_events(1)
            await api.call("rename", {"name": "ada2"}, headers={"x-user": "1"})
            await api.call("rename", {"name": "bob2"}, headers={"x-user": "2"})
            await ada.wait_events(2)
            await bob.wait_events(2)
        assert ada.data(1)["merge"] == [{"context": "me", "slot": "me", "value": {"name": "ada2"}}]
        assert ada.data(1)["invalidate"] == [{"context": "me"}]
        assert bob.data(1)["merge"] == [{"context": "me", "slot": "me", "value": {"name": "bob2"}}]
        assert "ada2" not in bob.text
        assert "bob2" not in ada.text


class TestLifecycle:
    async def test_a_client_that_does_not_read_is_dropped_and_others_go_on(self, apps: Any) -> None:
        api, app = apps(live=LiveSettings(subscriber_queue=3))
        async with (
            LiveStream(app, "contexts=todos") as slow,
            LiveStream(app, "contexts=todos") as ok,
        ):
            await slow.wait_events(1)
            await ok.wait_events(1)
            slow.reading = anyio.Event()  # stops reading
            for n in range(1, 7):
                await api.call("add_todo", {"owner_id": n, "title": "t"})
                await ok.wait_events(n + 1)
            assert api.live.dropped == 1
            slow.reading.set()  # reads again: the stream has ended, cleanly
            events = await slow.wait_end()
        assert slow.complete
        assert len(events) < 7
        assert [e.get("id") for e in ok.events[1:]] == ["1", "2", "3", "4", "5", "6"]
        assert api.live.subscribers == 0

    async def test_a_dropped_client_that_never_reads_again_is_let_go(
        self, apps: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Dropped while its `send` waits for the client: that send is cancelled, and the
        # last (empty) message is given up after `_GIVE_UP_AFTER`: the request returns.
        monkeypatch.setattr(_live_sse, "_GIVE_UP_AFTER", 0.05)
        api, app = apps(live=LiveSettings(subscriber_queue=2))
        async with LiveStream(app, "contexts=todos") as slow:
            await slow.wait_events(1)
            slow.reading = anyio.Event()  # stops reading, for good
            with anyio.fail_after(5):
                await api.call("add_todo", {"owner_id": 1, "title": "t"})
                await anyio.wait_all_tasks_blocked()  # the stream waits in `send`
                for n in range(2, 7):
                    await api.call("add_todo", {"owner_id": n, "title": "t"})
                await slow.done.wait()  # dropped (its queue full), then let go
            assert api.live.dropped == 1
        assert api.live.subscribers == 0

    async def test_a_client_that_left_is_noticed_on_the_heartbeat(self, apps: Any) -> None:
        api, app = apps(heartbeat=0.01)
        async with LiveStream(app, "contexts=todos") as stream:
            await stream.wait_events(1)
            while b": ping\n\n" not in stream.bodies:
                assert await stream._one()
            assert api.live.subscribers == 1
            stream.gone.set()
            await stream.wait_end()
        assert not stream.complete  # nobody to complete the response for
        assert api.live.subscribers == 0

    async def test_shutdown_ends_live_streams_cleanly(self, apps: Any) -> None:
        api, app = apps()
        async with LiveStream(app, "contexts=todos") as stream:
            await stream.wait_events(1)
            await api.shutdown()
            events = await stream.wait_end()
            assert stream.complete
            assert stream.bodies[-1] == b""
        assert [e["event"] for e in events] == ["ready"]
        assert api.live.subscribers == 0
        async with LiveStream(app, "contexts=todos") as late:
            assert await late.wait_end() == []
        assert late.status == 200
        assert late.complete

    async def test_a_shutdown_while_it_subscribes_ends_it_once_ready(
        self, apps: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        api, app = apps()
        release = anyio.Event()
        subscribe = api.live.subscribe

        async def held(*args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return await subscribe(*args, **kwargs)

        monkeypatch.setattr(api.live, "subscribe", held)
        async with anyio.create_task_group() as group:
            stream = LiveStream(app, "contexts=todos")
            group.start_soon(stream._run)
            await anyio.wait_all_tasks_blocked()  # the request is subscribing
            await api.shutdown()
            release.set()
            with anyio.fail_after(5):
                start = await stream._in.receive()
            assert start["status"] == 200
            events = await stream.wait_end()
        stream._in.close()
        assert [e["event"] for e in events] == ["ready"]
        assert stream.complete
        assert api.live.subscribers == 0

    async def test_the_hub_closing_ends_the_streams(self, apps: Any) -> None:
        api, app = apps()
        async with LiveStream(app, "contexts=todos") as stream:
            await stream.wait_events(1)
            await api.live.close()
            await stream.wait_end()
        assert stream.complete


class TestOpenApi:
    async def test_live_is_documented(self, apps: Any) -> None:
        _, app = apps()
        document = app.openapi()
        operation = document["paths"]["/api/live"]["get"]
        params = {(p["in"], p["name"]): p for p in operation["parameters"]}
        assert params["query", "contexts"]["required"] is True
        assert params["query", "contexts"]["schema"]["pattern"] == "^[^,]+(,[^,]+)*$"
        assert params["query", "since"]["required"] is False
        assert ("header", "Last-Event-ID") in params
        answers = operation["responses"]
        events = answers["200"]["content"]["text/event-stream"]["itemSchema"]["oneOf"]
        assert [e["properties"]["event"]["const"] for e in events] == ["ready", "effects", "resync"]
        assert {"401", "403", "404", "405", "422", "503"} <= set(answers)
        # Each error is one event; `itemSchema` alone describes it (no whole-body `schema`).
        assert set(answers["404"]["content"]["text/event-stream"]) == {"itemSchema"}
        assert set(document["paths"]["/api/live"]) == {"get"}


class TestSinks:
    """The sinks alone: what they hold while the subscription is set up, and once it runs."""

    async def test_the_sse_sink_collapses_a_long_setup_into_one_resync(self) -> None:
        stream = _LiveStream(2)
        assert all(stream.push(str(n), b'{"id":"%d"}' % n) for n in (1, 2, 3, 4))
        assert stream._take() == b'id: 4\nevent: resync\ndata: {"id":"4","resync":true}\n\n'
        assert not stream.queued

    async def test_the_sse_sink_refuses_when_full_once_it_runs(self) -> None:
        stream = _LiveStream(2)
        stream._running = True
        assert stream.push("1", b"{}")
        assert stream.push("2", b"{}")
        assert not stream.push("3", b"{}")
        assert (
            stream._take()
            == b"id: 1\nevent: effects\ndata: {}\n\nid: 2\nevent: effects\ndata: {}\n\n"
        )
