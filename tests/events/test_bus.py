"""The event bus on the memory broker, on asyncio and trio: handlers, release, failures, limits.

Every test builds its own `Tether`; calls go through `api.send` / `api.call` (in-process,
which finishes the outcome, so releases the events, before returning) or through the app
over an in-memory ASGI transport. `api.events.settle()` waits until the handlers are done.
"""

# No `from __future__ import annotations`: handlers here annotate with local types.
import itertools
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from starlette.requests import HTTPConnection

import tether.dependencies as tether_dependencies
from tether import (
    Conflict,
    EventSettings,
    InternalError,
    NotFound,
    PerBatch,
    Service,
    Tether,
    TetherError,
    command,
)
from tether.brokers import MemoryBroker
from tether.errors import ConfigurationError
from tether.events import Command, Event, EventLoopError, Events, SubscriptionOverflow
from tether.events.bus import EVENTS_STREAM


class NoteOut(BaseModel):
    id: int
    title: str


class CreateNote(Command[NoteOut]):
    title: str


class NoteCreated(Event):
    note_id: int


class NoteDeleted(Event):
    note_id: int


class Durable(Event, durable=True):
    n: int


def quick(**options: Any) -> EventSettings:
    """Settings with short waits, for tests."""
    return EventSettings(**{"backoff": 0.001, "max_backoff": 0.01, "grace": 5.0, **options})


def note_api(**options: Any) -> tuple[Tether, list[int]]:
    """A Tether whose `create_note` emits NoteCreated(note_id=int(title)); `record` notes each."""
    options.setdefault("events", quick())
    api = Tether(**options)
    seen: list[int] = []

    @api.handler
    async def create_note(cmd: CreateNote, events: Events = Depends()) -> NoteOut:
        events.emit(NoteCreated(note_id=int(cmd.title)))
        return NoteOut(id=int(cmd.title), title=cmd.title)

    @api.on(NoteCreated)
    async def record(event: NoteCreated) -> None:
        seen.append(event.note_id)

    return api, seen


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tether" and r.levelno >= level]


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[BaseException]:
    """The exceptions logged with a traceback."""
    return [r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1] is not None]


# -- delivery -------------------------------------------------------------------------------


async def test_a_handler_runs_once_per_event() -> None:
    api, seen = note_api()
    for n in range(20):
        await api.send(CreateNote(title=str(n)))
    await api.events.settle()
    assert sorted(seen) == list(range(20))
    stats = api.events.stats
    assert (stats.published, stats.handled, stats.failed, stats.dropped) == (20, 20, 0, 0)
    await anyio.sleep(0.05)  # nothing comes twice, later
    assert len(seen) == 20


async def test_an_event_reaches_each_handler_of_its_type() -> None:
    api, seen = note_api()
    other: list[int] = []
    both: list[str] = []

    @api.on(NoteCreated)
    def sync_handler(event: NoteCreated) -> None:  # sync: runs in a worker thread
        other.append(event.note_id)

    @api.on(NoteCreated, NoteDeleted)
    async def either(event: NoteCreated | NoteDeleted) -> None:
        both.append(f"{type(event).__name__} {event.note_id}")

    await api.send(CreateNote(title="1"))
    await api.events.publish(NoteDeleted(note_id=2))
    await api.events.settle()
    assert (seen, other) == ([1], [1])
    assert sorted(both) == ["NoteCreated 1", "NoteDeleted 2"]
    assert api.events.stats.handled == 4


async def test_each_group_gets_every_event_once() -> None:
    api, seen = note_api()
    mail: list[int] = []
    billing: list[int] = []

    @api.on(NoteCreated, group="mail")
    async def send_mail(event: NoteCreated) -> None:
        mail.append(event.note_id)

    @api.on(NoteCreated, group="billing")
    async def bill(event: NoteCreated) -> None:
        await anyio.sleep(0.001)
        billing.append(event.note_id)

    for n in range(10):
        await api.send(CreateNote(title=str(n)))
    await api.events.settle()
    assert sorted(seen) == sorted(mail) == sorted(billing) == list(range(10))


async def test_a_group_registered_after_start_gets_events_too() -> None:
    api, seen = note_api()
    await api.send(CreateNote(title="1"))
    await api.events.settle()
    late: list[int] = []

    @api.on(NoteCreated, group="late")
    async def later(event: NoteCreated) -> None:
        late.append(event.note_id)

    # Registered before the event was published: it must get it, although its consumer
    # starts in the background.
    await api.events.publish(NoteCreated(note_id=2))
    await api.events.settle()
    assert (seen, late) == ([1, 2], [2])


async def test_a_group_handles_up_to_concurrency_events_at_once() -> None:
    api = Tether(events=quick(concurrency=3))
    running = 0
    most = 0
    gate, three = anyio.Event(), anyio.Event()

    @api.on(NoteCreated)
    async def busy(event: NoteCreated) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running == 3:
            three.set()
        await gate.wait()
        running -= 1

    for n in range(10):
        await api.events.publish(NoteCreated(note_id=n))
    with anyio.fail_after(5):
        await three.wait()
    await anyio.sleep(0.05)  # room for a fourth, were the bound not kept
    assert (running, most) == (3, 3)
    gate.set()
    await api.events.settle()
    assert (most, api.events.stats.handled) == (3, 10)


async def test_handlers_get_dependencies_and_their_yield_dependencies_close() -> None:
    api, _ = note_api()
    log: list[str] = []

    async def session() -> AsyncIterator[str]:
        log.append("open")
        yield "db"
        log.append("close")

    def settings() -> str:
        return "real"

    @api.on(NoteCreated)
    async def index(
        event: NoteCreated,
        db: Annotated[str, Depends(session)],
        mode: Annotated[str, Depends(settings)],
    ) -> None:
        log.append(f"index {event.note_id} {db} {mode}")

    app = FastAPI()
    api.mount(app)
    app.dependency_overrides[settings] = lambda: "overridden"
    await api.send(CreateNote(title="3"))
    await api.events.settle()
    assert log == ["open", "index 3 db overridden", "close"]


async def test_a_handler_can_emit_events_in_turn() -> None:
    api, _ = note_api()
    deleted: list[int] = []
    chains: list[list[str]] = []

    @api.on(NoteCreated)
    async def cascade(event: NoteCreated, events: Events = Depends()) -> None:
        events.emit(NoteDeleted(note_id=event.note_id))

    @api.on(NoteDeleted)
    async def gone(event: NoteDeleted) -> None:
        deleted.append(event.note_id)

    async def watch() -> None:
        async for entry in api.events.broker.subscribe(EVENTS_STREAM):
            chains.append(orjson.loads(entry.data)["chain"])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        await anyio.wait_all_tasks_blocked()
        await api.send(CreateNote(title="5"))
        await api.events.settle()
        tasks.cancel_scope.cancel()
    assert deleted == [5]
    assert chains == [[], ["NoteCreated"]]


# -- nothing from a failed call -------------------------------------------------------------


async def test_a_failed_call_releases_no_event(caplog: pytest.LogCaptureFixture) -> None:
    api, seen = note_api()

    def emitting(events: Events = Depends()) -> None:
        events.emit(NoteCreated(note_id=-2))  # emitted by a dependency, then another fails

    def failing() -> None:
        raise Conflict("no")

    async def teardown_fails() -> AsyncIterator[None]:
        yield
        raise RuntimeError("commit failed")

    @api.command
    async def raises(events: Events = Depends()) -> None:
        events.emit(NoteCreated(note_id=-1))
        raise NotFound("nothing")

    @api.command
    async def dependency_raises(
        first: Annotated[None, Depends(emitting)], second: Annotated[None, Depends(failing)]
    ) -> None:
        raise AssertionError("never runs")

    @api.command
    async def teardown_raises(
        tx: Annotated[None, Depends(teardown_fails)], events: Events = Depends()
    ) -> int:
        events.emit(NoteCreated(note_id=-3))
        return 1

    @api.command
    async def validation_fails(n: int, events: Events = Depends()) -> None:
        events.emit(NoteCreated(note_id=-4))

    with pytest.raises(NotFound):
        await api.call("raises")
    with pytest.raises(Conflict):
        await api.call("dependency_raises")
    with pytest.raises(TetherError):
        await api.call("validation_fails", {"n": "x"})
    with caplog.at_level(logging.ERROR, logger="tether"):
        assert await api.call("teardown_raises") == 1  # answered: the teardown came after
    await api.send(CreateNote(title="7"))
    await api.events.settle()
    assert seen == [7]
    assert api.events.stats.published == 1
    assert any(
        "'teardown_raises': 1 event(s) not released, since a yield dependency failed" in m
        for m in messages(caplog)
    )


async def test_events_are_released_after_the_answer_and_the_teardown() -> None:
    api = Tether(events=quick())
    order: list[str] = []

    async def transaction() -> AsyncIterator[None]:
        yield
        await anyio.sleep(0.05)  # time for a handler to run, were the events released already
        order.append("teardown")

    @api.command
    async def create(tx: Annotated[None, Depends(transaction)], events: Events = Depends()) -> int:
        events.emit(NoteCreated(note_id=1))
        order.append("function")
        return 1

    @api.on(NoteCreated)
    async def handle(event: NoteCreated) -> None:
        order.append("handler")

    app = FastAPI()
    api.mount(app)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                await anyio.sleep(0.05)  # the same, before the answer
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                order.append("answer")

        await app(scope, receive, sending)

    async with client_for(recording) as client:
        response = await client.post("/api/call/create", json={})
    await api.events.settle()
    assert response.json() == {"result": 1}
    assert order == ["function", "answer", "teardown", "handler"]


# -- failing handlers -----------------------------------------------------------------------


async def test_a_failing_handler_is_retried_with_backoff_then_parked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, seen = note_api(events=quick(backoff=0.02, max_backoff=0.03))
    attempts: list[float] = []

    @api.on(NoteCreated, retries=3)
    async def flaky(event: NoteCreated) -> None:
        attempts.append(anyio.current_time())
        raise ConnectionError("the mail server is down")

    with caplog.at_level(logging.WARNING, logger="tether"):
        await api.send(CreateNote(title="1"))
        await api.events.settle()
    assert seen == [1]  # the other handler is not affected
    assert len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.02 * 0.9
    assert gaps[1] >= 0.03 * 0.9  # doubled, then capped at max_backoff
    assert gaps[2] >= 0.03 * 0.9
    assert max(gaps) < 1
    stats = api.events.stats
    assert (stats.handled, stats.retried, stats.failed, stats.parked) == (1, 3, 1, 1)
    errors = messages(caplog)
    assert any(
        "event handler" in m
        and "flaky" in m
        and "failed on NoteCreated" in m
        and "after 4 attempt(s)" in m
        and "parked" in m
        for m in errors
    ), errors
    retries = [m for m in messages(caplog, logging.WARNING) if "retry" in m]
    assert len(retries) == 3
    tracebacks = [e for e in logged_errors(caplog) if isinstance(e, ConnectionError)]
    assert len(tracebacks) == 4  # each failure, with its traceback
    broker = api.events.broker
    assert isinstance(broker, MemoryBroker)
    (parked,) = broker.parked(EVENTS_STREAM)
    record = orjson.loads(parked.data)
    assert "flaky" in record["reason"]
    assert "failed" in record["reason"]
    assert orjson.loads(record["data"])["event"]["note_id"] == 1


async def test_a_handler_that_fails_then_succeeds_is_not_parked() -> None:
    api, _ = note_api()
    attempts: list[int] = []

    @api.on(NoteCreated)  # the app's default: 3 retries
    async def flaky(event: NoteCreated) -> None:
        attempts.append(event.note_id)
        if len(attempts) < 3:
            raise Conflict("busy")  # a TetherError is retried like any other failure

    await api.send(CreateNote(title="4"))
    await api.events.settle()
    stats = api.events.stats
    assert attempts == [4, 4, 4]
    assert (stats.handled, stats.retried, stats.failed, stats.parked) == (2, 2, 0, 0)


async def test_a_failed_handler_attempt_releases_none_of_its_events() -> None:
    api, _ = note_api()
    attempts: list[int] = []
    deleted: list[int] = []

    @api.on(NoteCreated)
    async def cascade(event: NoteCreated, events: Events = Depends()) -> None:
        attempts.append(event.note_id)
        events.emit(NoteDeleted(note_id=len(attempts)))
        if len(attempts) < 3:
            raise ConnectionError("try again")

    @api.on(NoteDeleted)
    async def gone(event: NoteDeleted) -> None:
        deleted.append(event.note_id)

    await api.send(CreateNote(title="1"))
    await api.events.settle()
    assert attempts == [1, 1, 1]
    assert deleted == [3]  # from the attempt that succeeded only


async def test_retries_zero_parks_at_once_and_a_tether_error_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, _ = note_api()

    @api.on(NoteCreated, retries=0)
    async def refuses(event: NoteCreated) -> None:
        raise NotFound("no such mailbox")

    with caplog.at_level(logging.ERROR, logger="tether"):
        await api.send(CreateNote(title="1"))
        await api.events.settle()
    stats = api.events.stats
    assert (stats.retried, stats.failed, stats.parked) == (0, 1, 1)
    assert any("after 1 attempt(s)" in m and "no such mailbox" in m for m in messages(caplog))


async def test_an_event_cycle_is_refused_logged_counted_and_parked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, seen = note_api()

    @api.on(NoteCreated, retries=0)
    async def echo(event: NoteCreated, events: Events = Depends()) -> None:
        events.emit(NoteCreated(note_id=event.note_id + 1))  # its own type: a cycle

    with caplog.at_level(logging.ERROR, logger="tether"):
        await api.send(CreateNote(title="1"))
        await api.events.settle()
        await anyio.sleep(0.02)
    assert seen == [1]  # only the call's event: the cycle stopped at once
    stats = api.events.stats
    assert (stats.published, stats.failed, stats.parked) == (1, 1, 1)
    assert any(  # the invoker logs the handler's exception, with its traceback
        isinstance(error, EventLoopError) and "'NoteCreated' would loop" in str(error)
        for error in logged_errors(caplog)
    )
    assert any("failed on NoteCreated" in m and "parked" in m for m in messages(caplog))


async def test_a_chain_deeper_than_max_depth_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    api = Tether(events=quick(max_depth=2, retries=0))
    reached: list[str] = []

    class Step1(Event):
        pass

    class Step2(Event):
        pass

    class Step3(Event):
        pass

    @api.on(Step1)
    async def one(event: Step1, events: Events = Depends()) -> None:
        reached.append("one")
        events.emit(Step2())

    @api.on(Step2)
    async def two(event: Step2, events: Events = Depends()) -> None:
        reached.append("two")
        events.emit(Step3())  # a chain of 3: past max_depth=2

    @api.on(Step3)
    async def three(event: Step3) -> None:
        reached.append("three")

    with caplog.at_level(logging.ERROR, logger="tether"):
        await api.events.publish(Step1())
        await api.events.settle()
    assert reached == ["one", "two"]
    stats = api.events.stats
    assert (stats.published, stats.handled, stats.failed, stats.parked) == (2, 1, 1, 1)
    assert any(
        isinstance(error, EventLoopError) and "past the limit of 2: Step1 -> Step2" in str(error)
        for error in logged_errors(caplog)
    )
    assert any("failed on Step2" in m for m in messages(caplog))


# -- the bounded in-process stream ------------------------------------------------------------


async def test_a_full_stream_makes_publishes_wait_then_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker(maxlen=2, full_timeout=0.25)
    api, _ = note_api(broker=broker, events=quick(concurrency=1))
    gate = anyio.Event()
    handled: list[int] = []

    @api.on(NoteCreated, group="slow")
    async def slow(event: NoteCreated) -> None:
        await gate.wait()
        handled.append(event.note_id)

    waits: list[float] = []
    with caplog.at_level(logging.ERROR, logger="tether"):
        for n in range(7):
            start = anyio.current_time()
            await api.send(CreateNote(title=str(n)))  # in-process: returns once released
            waits.append(anyio.current_time() - start)
            ring = broker._streams[EVENTS_STREAM].entries  # what memory holds
            assert len(ring) <= 2
    # The slow group holds one event in its handler and one read ahead; two more fit in
    # the ring; then the stream is full: each publish waited, then the event was dropped.
    assert api.events.stats.dropped == 3
    assert [w >= 0.25 * 0.9 for w in waits] == [False] * 4 + [True] * 3
    dropped = [m for m in messages(caplog) if "dropped" in m]
    assert len(dropped) == 3
    assert "is full" in dropped[0]
    gate.set()
    await api.events.settle()
    assert sorted(handled) == [0, 1, 2, 3]
    assert api.events.stats.published == 4


async def test_the_default_stream_is_bounded_by_queue_size() -> None:
    api = Tether(events=EventSettings(queue_size=123))
    broker = api.events.broker
    assert isinstance(broker, MemoryBroker)
    assert broker.maxlen == 123


# -- subscribers and publishing outside a call ----------------------------------------------


async def test_subscribe_sees_its_types_only() -> None:
    api, _ = note_api()
    got: list[Event] = []
    everything: list[str] = []

    async def listen() -> None:
        async with aclosing(api.events.subscribe(NoteCreated)) as events:
            async for event in events:
                got.append(event)
                if len(got) == 2:
                    return

    async def listen_all() -> None:
        async with aclosing(api.events.subscribe()) as events:
            async for event in events:
                everything.append(type(event).__name__)
                if len(everything) == 3:
                    return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(listen)
            tasks.start_soon(listen_all)
            await anyio.wait_all_tasks_blocked()
            await api.send(CreateNote(title="1"))
            await api.events.publish(NoteDeleted(note_id=2))
            await api.send(CreateNote(title="3"))
    assert [(type(e), e.note_id) for e in got] == [(NoteCreated, 1), (NoteCreated, 3)]  # type: ignore[attr-defined]
    assert everything == ["NoteCreated", "NoteDeleted", "NoteCreated"]


async def test_a_stream_operation_forwards_subscribed_events() -> None:
    api, _ = note_api()

    @api.stream
    async def feed(limit: int) -> AsyncIterator[NoteCreated]:
        count = 0
        async with aclosing(api.events.subscribe(NoteCreated)) as events:
            async for event in events:
                yield event
                count += 1
                if count == limit:
                    return

    got: list[int] = []

    async def read() -> None:
        async for item in api.stream_call("feed", {"limit": 2}):
            got.append(item.note_id)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await api.send(CreateNote(title="8"))
            await api.send(CreateNote(title="9"))
    assert got == [8, 9]


async def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Tether(events=quick(subscriber_queue=2))
    slow_events = api.events.subscribe(NoteCreated)
    fast_events = api.events.subscribe(NoteCreated)
    async with aclosing(slow_events) as slow, aclosing(fast_events) as fast:
        got: list[int] = []
        fast_got: list[int] = []

        async def first(events: Any, into: list[int]) -> None:
            into.append((await anext(events)).note_id)

        with anyio.fail_after(5), caplog.at_level(logging.WARNING, logger="tether"):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(first, slow, got)
                tasks.start_soon(first, fast, fast_got)
                await anyio.wait_all_tasks_blocked()
                await api.events.publish(NoteCreated(note_id=0))
            for n in range(1, 6):  # the slow one reads none of these: its queue holds 2
                await api.events.publish(NoteCreated(note_id=n))
                await first(fast, fast_got)  # the fast one keeps up
            # What was queued before the drop is still read, then the overflow is raised.
            got.extend([(await anext(slow)).note_id, (await anext(slow)).note_id])
            with pytest.raises(SubscriptionOverflow, match="subscriber_queue"):
                await anext(slow)
            await api.events.publish(NoteCreated(note_id=6))
            await first(fast, fast_got)
    assert got == [0, 1, 2]
    assert fast_got == [0, 1, 2, 3, 4, 5, 6]
    assert any("was dropped" in m for m in messages(caplog, logging.WARNING))


async def test_subscribers_share_one_reader_of_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Tether(events=quick())
    opened: list[str | None] = []
    subscribe = api.events.broker.subscribe

    def counting(stream: str, *, since: str | None = None) -> Any:
        opened.append(since)
        return subscribe(stream, since=since)

    monkeypatch.setattr(api.events.broker, "subscribe", counting)
    readers = [api.events.subscribe(NoteCreated) for _ in range(5)]
    got: list[list[int]] = [[] for _ in readers]

    async def read(index: int) -> None:
        got[index].append((await anext(readers[index])).note_id)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for index in range(len(readers)):
                tasks.start_soon(read, index)
            await anyio.wait_all_tasks_blocked()
            await api.events.publish(NoteCreated(note_id=7))
        for reader in readers:
            await reader.aclose()
    assert got == [[7]] * 5
    assert opened == ["0"]  # one reader, positioned where the stream stood


def test_event_settings_are_checked() -> None:
    for bad in ({"concurrency": 0}, {"queue_size": 0}, {"max_depth": 0}, {"retries": -1}):
        with pytest.raises(ConfigurationError, match="must"):
            EventSettings(**bad)
    with pytest.raises(ConfigurationError, match="must not be negative"):
        EventSettings(backoff=-1)
    with pytest.raises(ConfigurationError, match=r"events= takes EventSettings\(...\)"):
        Tether(events={"retries": 1})  # type: ignore[arg-type]


async def test_publish_outside_a_call() -> None:
    api, seen = note_api()
    await api.events.publish(NoteCreated(note_id=1), NoteCreated(note_id=2))
    await api.events.settle()
    assert sorted(seen) == [1, 2]  # handled concurrently: in no promised order
    with pytest.raises(TypeError, match="publish\\(\\) takes Event instances"):
        await api.events.publish("NoteCreated")  # type: ignore[arg-type]


async def test_emit_refuses_what_is_not_an_event() -> None:
    api = Tether(events=quick())

    @api.command
    async def wrong(events: Events = Depends()) -> None:
        events.emit({"note_id": 1})  # type: ignore[arg-type]

    with pytest.raises(InternalError):
        await api.call("wrong")


async def test_the_emitter_is_made_on_the_event_loop_not_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker-thread round trip per call would cost every emitting call ~100 µs.
    threads: list[int] = []
    made: list[int] = []
    make = Events.__init__
    make_for_call = Events.for_call

    def recording(self: Events, connection: HTTPConnection) -> None:
        threads.append(threading.get_ident())
        make(self, connection)

    def recording_for_call(ctx: Any) -> Events:
        made.append(threading.get_ident())
        return make_for_call(ctx)

    monkeypatch.setattr(Events, "__init__", recording)
    # The factory tether registered for the class (tether.dependencies.provide_per_call).
    monkeypatch.setitem(tether_dependencies._PER_CALL, Events, recording_for_call)
    api, seen = note_api()
    await api.send(CreateNote(title="1"))
    await api.events.settle()
    assert seen == [1]
    assert made == [threading.get_ident()]  # made on the loop's own thread
    assert threads == []  # never constructed by FastAPI (in a worker thread)


async def test_settle_times_out_while_a_handler_is_stuck() -> None:
    api, _ = note_api()
    gate = anyio.Event()

    @api.on(NoteCreated)
    async def stuck(event: NoteCreated) -> None:
        await gate.wait()

    await api.send(CreateNote(title="1"))
    with pytest.raises(TimeoutError):
        await api.events.settle(timeout=0.05)
    gate.set()
    await api.events.settle()
    assert api.events.stats.handled == 2


# -- shutdown -----------------------------------------------------------------------------------


async def test_shutdown_drains_queued_events() -> None:
    api, _ = note_api(events=quick(concurrency=1))
    done: list[int] = []

    @api.on(NoteCreated, group="slow")
    async def slow(event: NoteCreated) -> None:
        await anyio.sleep(0.03)
        done.append(event.note_id)

    app = FastAPI()
    api.mount(app)
    async with app.router.lifespan_context(app):
        for n in range(10):
            await api.send(CreateNote(title=str(n)))
        assert len(done) < 10  # still queued when shutdown starts
    assert done == list(range(10))
    # The bus starts again with the app (a test server run twice).
    async with app.router.lifespan_context(app):
        await api.send(CreateNote(title="10"))
    assert done[-1] == 10


async def test_shutdown_logs_when_the_grace_ends_first(caplog: pytest.LogCaptureFixture) -> None:
    api, _ = note_api(events=quick(grace=0.1))
    started = anyio.Event()
    finished: list[int] = []

    @api.on(NoteCreated)
    async def stuck(event: NoteCreated) -> None:
        started.set()
        await anyio.sleep(30)
        finished.append(event.note_id)

    app = FastAPI()
    api.mount(app)
    with caplog.at_level(logging.ERROR, logger="tether"), anyio.fail_after(10):
        async with app.router.lifespan_context(app):
            await api.send(CreateNote(title="1"))
            await started.wait()
        assert any(
            "shutdown grace of 0.1 s ended with events still queued" in m for m in messages(caplog)
        )
    assert finished == []


# -- bad entries ------------------------------------------------------------------------------


async def test_an_undecodable_entry_is_parked_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, seen = note_api()
    await api.events.start()
    broker = api.events.broker
    with caplog.at_level(logging.ERROR, logger="tether"):
        await broker.publish(EVENTS_STREAM, b"\xff not json")
        await broker.publish(
            EVENTS_STREAM, orjson.dumps({"type": "NoteCreated", "event": {"note_id": "x"}})
        )
        await broker.publish(EVENTS_STREAM, orjson.dumps({"type": "Unknown", "event": {}}))
        await api.send(CreateNote(title="6"))
        await api.events.settle()
    assert seen == [6]
    assert api.events.stats.parked == 2
    assert isinstance(broker, MemoryBroker)
    reasons = [orjson.loads(entry.data)["reason"] for entry in broker.parked(EVENTS_STREAM)]
    assert reasons[0].startswith("not an event envelope")
    assert reasons[1].startswith("not a valid NoteCreated")
    assert len(reasons) == 2  # a type no handler takes is skipped, not parked
    logged = [m for m in messages(caplog) if "parked" in m]
    assert len(logged) == 2


# -- services, dependency scopes, durability ------------------------------------------------


async def test_a_service_method_emits_events() -> None:
    api, seen = note_api()

    class Notes(Service):
        events: Annotated[Events, Depends()]

        @command
        async def make(self, n: int) -> int:
            self.events.emit(NoteCreated(note_id=n))
            return n

        @command
        async def make_then_fail(self, n: int) -> int:
            self.events.emit(NoteCreated(note_id=n))
            raise Conflict("no")

        @command
        async def by_parameter(self, n: int, emitter: Events = Depends()) -> int:
            emitter.emit(NoteCreated(note_id=n))
            return n

    api.include(Notes)
    assert await api.call("notes.make", {"n": 11}) == 11
    with pytest.raises(Conflict):
        await api.call("notes.make_then_fail", {"n": 12})
    assert await api.call("notes.by_parameter", {"n": 13}) == 13
    await api.events.settle()
    assert sorted(seen) == [11, 13]  # handled concurrently: in no promised order


async def test_events_in_batch_dependencies_is_a_clear_configuration_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Refused when the Tether is made, for batch and connection dependencies alike.
    for option in ("batch_dependencies", "connection_dependencies"):
        with pytest.raises(ConfigurationError, match="per-call dependency such as Events"):
            Tether(**{option: [Depends(Events)]}, events=quick())


async def test_events_per_batch_is_refused_the_same_way(caplog: pytest.LogCaptureFixture) -> None:
    api = Tether(events=quick())

    @api.command
    async def ping(events: Annotated[Events, PerBatch(Events)]) -> int:
        return 1

    app = FastAPI()
    api.mount(app)
    with caplog.at_level(logging.ERROR, logger="tether"):
        async with client_for(app) as client:
            reply = await client.post(
                "/api/jsonrpc", json=[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]
            )
    assert reply.json()[0]["error"]["data"]["code"] == "INTERNAL_ERROR"
    assert any(
        isinstance(error, ConfigurationError) and "Events is a per-call dependency" in str(error)
        for error in logged_errors(caplog)
    )


async def test_a_durable_event_without_an_outbox_fails_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, seen = note_api()

    @api.command
    async def keep(events: Events = Depends()) -> int:
        events.emit(NoteCreated(note_id=1), Durable(n=1))
        return 1

    with caplog.at_level(logging.ERROR, logger="tether"), pytest.raises(InternalError):
        await api.call("keep")
    await api.events.settle()
    assert seen == []  # neither event of the failed call
    assert any(
        isinstance(error, ConfigurationError)
        and "'Durable' is durable=True, but this Tether has no outbox" in str(error)
        for error in logged_errors(caplog)
    )


async def test_the_parked_reason_and_the_log_name_the_handlers_own_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The client-facing mapping (INTERNAL_ERROR) hides the cause; dead letters must not.
    api, _ = note_api(broker=MemoryBroker(), events=quick(retries=1))

    @api.on(NoteCreated)
    async def broken(event: NoteCreated) -> None:
        raise KeyError("the index is gone")

    with caplog.at_level(logging.WARNING, logger="tether"):
        await api.send(CreateNote(title="4"))
        await api.events.settle()
    broker = api.events.broker
    assert isinstance(broker, MemoryBroker)
    (parked,) = broker.parked(api.events.stream)
    reason = orjson.loads(parked.data)["reason"]
    assert "KeyError: 'the index is gone'" in reason
    assert any(
        "KeyError: 'the index is gone'" in m and "retry 1 of 1" in m
        for m in messages(caplog, logging.WARNING)
    )
    assert any("KeyError: 'the index is gone'" in m and "parked" in m for m in messages(caplog))
