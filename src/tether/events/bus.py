"""The event bus: handlers registered per event type, events released after a successful call.

Where an event goes once emitted depends on the delivery mode (see docs/events.md):

- **in-process** (the memory broker, no outbox): the call's outcome publishes its events to
  a bounded in-memory stream *after* the answer is sent and its yield dependencies closed;
- **durable** (an outbox): the invoker writes them to the outbox *before* the answer (a
  failed write fails the call with 503), and the outbox relay publishes them to the broker
  at least once; handlers skip event ids they already processed;
- **Redis Streams** (no outbox): the invoker publishes them *before* the answer (Redis
  down: the call fails fast with 503).

Handlers are grouped; each group is one consumer group of the broker's `tether.events`
stream, so each event reaches each group once, whichever process consumes it. Within a
group, up to `concurrency` events are handled at once; every handler of the group that
takes the event's type runs, each failure retried with exponential backoff, then logged,
counted and the event parked (dead letters), never silently swallowed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import ValidationError

from .._runtime import BackgroundTask, runner_token, spawn
from ..brokers.base import Broker, BrokerError, BrokerFull, Entry
from ..brokers.memory import MemoryBroker
from ..context import CallContext
from ..errors import ConfigurationError, ServiceUnavailable
from .emitter import CHAIN_STATE_KEY, LOOP_STATE_KEY, MAX_DEPTH_STATE_KEY
from .handlers import EventHandler
from .messages import Event, EventEnvelope

if TYPE_CHECKING:
    from starlette.types import Scope

    from ..invoke import Invoker

__all__ = ("EVENTS_STREAM", "EventBus", "EventSettings", "EventStats", "SubscriptionOverflow")

logger = logging.getLogger("tether")

E = TypeVar("E", bound=Event)

EVENTS_STREAM = "tether.events"
"""The broker stream events travel on."""

_ACK_BATCH = 64
"""Handled entries acknowledged together under load (one XACK for many)."""


@dataclass(frozen=True, slots=True)
class EventSettings:
    """How a Tether's event bus delivers: concurrency, retries, limits, shutdown grace."""

    group: str = "tether"
    """The handler group of `@api.on` handlers that name none."""
    concurrency: int = 64
    """Events each group handles at once, in each process."""
    retries: int = 3
    """Attempts after the first, per handler and event, before the event is parked."""
    backoff: float = 0.1
    """Seconds before the first retry; doubled each time, up to `max_backoff`."""
    max_backoff: float = 5.0
    """Longest wait between two attempts, in seconds."""
    max_depth: int = 8
    """Longest chain of handlers emitting events in turn."""
    queue_size: int = 10_000
    """Entries the in-process stream holds (the memory broker's bound)."""
    grace: float = 10.0
    """Seconds shutdown waits for queued events to be handled."""
    reclaim_after: float = 30.0
    """Seconds after which a group takes over events a dead consumer left pending."""
    subscriber_queue: int = 1000
    """Events an `api.events.subscribe` reader may leave unread before it is dropped."""

    def __post_init__(self) -> None:
        for name in ("concurrency", "queue_size", "max_depth", "subscriber_queue"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"EventSettings.{name} must be at least 1")
        if self.retries < 0:
            raise ConfigurationError("EventSettings.retries must be 0 or more")
        for name in ("backoff", "max_backoff", "grace", "reclaim_after"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"EventSettings.{name} must not be negative")


class SubscriptionOverflow(RuntimeError):
    """An `api.events.subscribe` reader left more events unread than its queue holds, and was dropped."""


class _Subscriber:
    """One reader of `subscribe`: the type names it wants, and its bounded queue."""

    __slots__ = ("dropped", "names", "send")

    def __init__(self, names: set[str], send: MemoryObjectSendStream[Event]) -> None:
        self.names = names
        self.send = send
        self.dropped = False


@dataclass(slots=True)
class EventStats:
    """Counters of what the bus did in this process, since it was made."""

    published: int = 0
    """Events handed to the broker (or written to the outbox)."""
    handled: int = 0
    """Handler runs that succeeded."""
    retried: int = 0
    """Handler attempts that failed and were tried again."""
    failed: int = 0
    """Handler runs that failed every attempt (their event was parked)."""
    parked: int = 0
    """Entries set aside: undecodable, or failed by a handler every attempt."""
    dropped: int = 0
    """Events lost because the in-process stream stayed full (logged each time)."""
    duplicates: int = 0
    """Deliveries skipped because the handler had already processed the event id."""


class EventBus:
    """The event handlers of one Tether, and the delivery of the events its calls emit."""

    def __init__(
        self,
        invoker: Invoker,
        broker: Broker,
        *,
        outbox: Any = None,
        settings: EventSettings | None = None,
        scope_for: Callable[[str], Scope],
    ) -> None:
        self.invoker = invoker
        """The invoker that runs handlers (validation and dependencies, as for any call)."""
        self.broker = broker
        """The broker events travel through."""
        self.outbox = outbox
        """The outbox durable events are written to (None: no durable delivery)."""
        self.settings = settings or EventSettings()
        """Concurrency, retries, limits and grace."""
        self.stats = EventStats()
        """Counters of what the bus did in this process."""
        self.stream = EVENTS_STREAM
        """The broker stream of events."""
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        """This process's consumer name in every group."""
        self._scope_for = scope_for
        self._local = isinstance(broker, MemoryBroker)
        self._types: dict[str, type[Event]] = {}
        self._handlers: dict[str, list[EventHandler]] = {}
        self._groups: dict[str, list[EventHandler]] = {}
        self._runner: object = None
        self._started: anyio.Event | None = None
        self._tasks: dict[str, BackgroundTask] = {}
        self._relay: Any = None
        self._active = 0
        self._unready: set[str] = set()
        self._handling: dict[tuple[str, str], anyio.Event] = {}
        self._subscribers: set[_Subscriber] = set()
        self._feed_lock: anyio.Lock | None = None

    # -- registration -------------------------------------------------------------------

    def add(self, handler: EventHandler) -> None:
        """Register an event handler (`@api.on` does).

        Raises:
            ConfigurationError: its name is taken, or two event classes share a type name.
        """
        if any(h.name == handler.name for hs in self._groups.values() for h in hs):
            raise ConfigurationError(f"event handler {handler.name!r} is already registered")
        for event_type in handler.types:
            self.know(event_type)
            self._handlers.setdefault(event_type.event_type, []).append(handler)
        new_group = handler.group not in self._groups
        self._groups.setdefault(handler.group, []).append(handler)
        if new_group and self._runner is not None:
            # Running already: the group is created on the broker, and its consumer started,
            # by the next `start()`, which every publish awaits first.
            self._unready.add(handler.group)

    def know(self, event_type: type[Event]) -> None:
        """Register an event class under its type name, so that entries decode into it.

        Raises:
            ConfigurationError: another class already has that type name.
        """
        present = self._types.setdefault(event_type.event_type, event_type)
        if present is not event_type:
            raise ConfigurationError(
                f"two event classes are named {event_type.event_type!r} on the wire"
                f" ({present.__module__}.{present.__qualname__} and"
                f" {event_type.__module__}.{event_type.__qualname__}): give one `name=`"
            )

    def handlers(self, event_type: type[Event]) -> tuple[EventHandler, ...]:
        """Return the handlers of `event_type`, in every group."""
        return tuple(self._handlers.get(event_type.event_type, ()))

    # -- emitting -------------------------------------------------------------------------

    def _durable(self, event: Event) -> bool:
        durable = type(event).durable
        if durable is None:
            return self.outbox is not None
        if durable and self.outbox is None:
            raise ConfigurationError(
                f"event {type(event).event_type!r} is durable=True, but this Tether has no"
                " outbox: Tether(outbox='sqlite+aiosqlite:///outbox.sqlite3')"
            )
        return durable

    async def stage(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Make a successful call's events safe *before* its answer: outbox, or a remote broker.

        In-process events wait for `release`, after the answer.

        Raises:
            ServiceUnavailable: the outbox or the broker cannot take them (the call fails).
        """
        durable: list[EventEnvelope] = []
        direct: list[bytes] = []
        for envelope in envelopes:
            if self._durable(envelope.event):
                durable.append(envelope)
            elif not self._local:
                direct.append(envelope.encode())
        if durable:
            await self.start()
            from .outbox import OutboxUnavailable

            try:
                await self.outbox.write(
                    [(str(e.event.event_id), self.stream, e.encode()) for e in durable]
                )
            except OutboxUnavailable as exc:
                # The cause (a path, a host) is the server's: logged, never sent.
                logger.error("events: the outbox cannot be written: %s", exc)
                raise ServiceUnavailable(
                    "the event outbox cannot be written: the call was not completed"
                ) from None
            self.stats.published += len(durable)
        if direct:
            await self.start()
            try:
                await self.broker.publish_many(self.stream, direct)
            except BrokerError as exc:
                logger.error("events: the broker cannot take a call's events: %s", exc)
                raise ServiceUnavailable(
                    "the event broker is unavailable: the call's events were not published"
                ) from None
            self.stats.published += len(direct)

    async def release(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Deliver a successful call's events *after* its answer (in-process), or wake the relay.

        Never raises: an event the full in-process stream cannot take is logged and counted.
        """
        await self.start()
        wake = False
        full: BrokerFull | None = None
        for envelope in envelopes:
            if self._durable(envelope.event):
                wake = True
            elif self._local:
                try:
                    if full is not None:
                        raise full  # waited once already for this call: the rest go too
                    await self.broker.publish(self.stream, envelope.encode())
                except BrokerFull as exc:
                    full = exc
                    self.stats.dropped += 1
                    logger.error(
                        "event %s %s dropped: %s",
                        type(envelope.event).event_type,
                        envelope.event.event_id,
                        exc,
                    )
                else:
                    self.stats.published += 1
        if wake and self._relay is not None:
            self._relay.wake()

    async def publish(self, *events: Event) -> None:
        """Publish events outside any call (from a script, a task), as a successful call would.

        Raises:
            ServiceUnavailable: the outbox or a remote broker cannot take them.
        """
        for event in events:
            if not isinstance(event, Event):
                raise TypeError(f"publish() takes Event instances, not {event!r}")
            self.know(type(event))
        envelopes = [EventEnvelope(event) for event in events]
        await self.stage(envelopes)
        await self.release(envelopes)

    # -- reading --------------------------------------------------------------------------

    async def subscribe(self, *types: type[E]) -> AsyncIterator[E]:
        """Iterate events of the given types (all, if none) published from now on, from every process.

        Meant for a `@api.stream` that forwards events to SSE and WebSocket clients. Every
        subscriber of this process shares one reader of the broker (one Redis connection),
        which hands each one the events it wants through a bounded queue
        (`EventSettings.subscriber_queue`). A subscriber that leaves its queue full is
        dropped: its iteration raises `SubscriptionOverflow`, and the others go on.

        Raises:
            SubscriptionOverflow: this subscriber fell too far behind.
        """
        for event_type in types:
            self.know(event_type)
        names = {event_type.event_type for event_type in types}
        await self.start()
        send, receive = anyio.create_memory_object_stream[Event](self.settings.subscriber_queue)
        subscriber = _Subscriber(names, send)
        # Registered before the feed takes its position: nothing published after this call
        # began is missed.
        self._subscribers.add(subscriber)
        try:
            await self._ensure_feed()
            async with receive:
                async for event in receive:
                    yield event  # type: ignore[misc]
            if subscriber.dropped:
                raise SubscriptionOverflow(
                    f"this subscriber left {self.settings.subscriber_queue} events unread"
                    " (EventSettings.subscriber_queue) and was dropped"
                )
        finally:
            self._subscribers.discard(subscriber)
            send.close()

    async def _ensure_feed(self) -> None:
        """Start this process's one reader of the events stream, unless it runs."""
        lock = self._feed_lock
        assert lock is not None
        async with lock:
            feed = self._tasks.get("feed")
            if feed is not None and not feed.done:
                return
            since = await self.broker.position(self.stream)
            self._tasks["feed"] = spawn("events: subscribers' feed", partial(self._feed, since))

    async def _feed(self, since: str) -> None:
        """Read the events stream from `since` and hand each event to the subscribers that want it."""
        entries = self.broker.subscribe(self.stream, since=since)
        try:
            async for entry in entries:
                if entry.resync:
                    logger.warning("events: the subscribers' feed fell behind; events were skipped")
                    continue
                if not self._subscribers:
                    continue
                self._hand_out(entry)
        finally:
            aclose = getattr(entries, "aclose", None)
            if aclose is not None:
                await aclose()
            # The feed ended (the broker closed): so do the subscriptions.
            for subscriber in list(self._subscribers):
                subscriber.send.close()

    def _hand_out(self, entry: Entry) -> None:
        try:
            parsed = EventEnvelope.peek(entry.data)
        except ValueError:
            logger.warning("events: entry %s of %r is not an event; skipped", entry.id, self.stream)
            return
        name = parsed["type"]
        wanted = [s for s in self._subscribers if not s.names or name in s.names]
        event_type = self._types.get(name)
        if not wanted or event_type is None:
            return
        try:
            event = event_type.model_validate(parsed["event"])
        except ValidationError as exc:
            logger.warning("events: entry %s is not a valid %s: %s", entry.id, name, exc)
            return
        for subscriber in wanted:
            try:
                subscriber.send.send_nowait(event)
            except anyio.WouldBlock:
                subscriber.dropped = True
                subscriber.send.close()
                self._subscribers.discard(subscriber)
                logger.warning(
                    "events: a subscriber left %d events unread and was dropped",
                    self.settings.subscriber_queue,
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(subscriber)

    # -- running --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the consumers of every handler group in the running loop (idempotent).

        Mounting runs it with the app's lifespan; the first event or subscriber starts it
        otherwise (scripts, tests).
        """
        token = runner_token()
        if self._runner is token:
            started = self._started
            if started is not None and not started.is_set():
                await started.wait()
            if self._unready:
                await self._start_groups(sorted(self._unready))
            return
        # First start, or an earlier loop has ended (tests run one loop per test): its
        # tasks died with it.
        self._runner = token
        self._tasks = {}
        self._relay = None
        self._active = 0
        self._unready = set()
        self._handling = {}
        self._subscribers = set()
        self._feed_lock = anyio.Lock()
        started = self._started = anyio.Event()
        try:
            await self.broker.start()
            if self.outbox is not None:
                await self.outbox.start()  # before the groups: their handlers read it
            await self._start_groups(list(self._groups))
            if self.outbox is not None:
                from .outbox import OutboxRelay

                # An in-process broker loses its entries with the process: rows count as
                # sent once every group has handled them, not once published.
                settle = self._handled_by_groups if self._local else None
                self._relay = OutboxRelay(self.outbox, self.broker, settle=settle)
                self._tasks["relay"] = spawn("events: outbox relay", self._relay.run)
        except BaseException:
            self._runner = None
            raise
        finally:
            started.set()

    async def _start_groups(self, groups: Sequence[str]) -> None:
        """Create each group on the broker (so it gets every later event), then its consumer."""
        for group in groups:
            self._unready.discard(group)
            await self.broker.ensure_group(self.stream, group)
            self._tasks[group] = spawn(f"events: group {group}", partial(self._consume, group))

    async def _handled_by_groups(self, stream: str, ids: Sequence[str]) -> None:
        """Return once every handler group has handled (acknowledged) the entries `ids`."""
        broker = self.broker
        assert isinstance(broker, MemoryBroker)
        # Polled, as settle is: a relay batch waits here, never a call.
        while not all(  # noqa: ASYNC110
            broker.acknowledged(stream, group, ids) for group in self._groups
        ):
            await anyio.sleep(0.005)

    async def settle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a test helper's bound)
        """Wait until every event published so far has been handled by every group (for tests).

        Raises:
            TimeoutError: events were still waiting after `timeout` seconds.
        """
        await self.start()
        with anyio.fail_after(timeout):
            # Polled: the backlog may live in Redis, which signals nothing.
            while not await self._idle():  # noqa: ASYNC110
                await anyio.sleep(0.005)

    async def _idle(self) -> bool:
        if self._active:
            return False
        if self.outbox is not None and await self.outbox.pending():
            return False
        for group in self._groups:
            if await self.broker.backlog(self.stream, group):
                return False
        return True

    async def close(self, grace: float | None = None) -> None:
        """Drain the events already queued (within `grace` seconds), then stop and disconnect.

        The app's lifespan shutdown runs it (mounting arranges that). Events still queued
        after the grace are logged as not handled.
        """
        if self._runner is None:
            return
        grace = self.settings.grace if grace is None else grace
        settled = False
        with anyio.move_on_after(grace):
            try:
                while not await self._idle():  # noqa: ASYNC110 (polled, as in settle)
                    await anyio.sleep(0.01)
                settled = True
            except Exception as exc:  # the broker went away: nothing more can be drained
                logger.warning("events: could not drain at shutdown: %s", exc)
        if not settled:
            logger.error(
                "events: shutdown grace of %s s ended with events still queued or in handlers",
                grace,
            )
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        with anyio.move_on_after(5):
            for task in tasks:
                await task.wait()
        self._tasks = {}
        self._runner = None
        self._relay = None
        await self.broker.close()
        if self.outbox is not None:
            await self.outbox.close()

    # -- consuming --------------------------------------------------------------------------

    async def _consume(self, group: str) -> None:
        """Read the group's entries and hand them to `concurrency` workers, forever.

        A fixed pool of workers, not a task per entry: starting a task costs more than
        most handlers. The reader reads no more than there are idle workers, so at most
        `concurrency` entries are in hand at once.
        """
        settings = self.settings
        failures = 0
        next_reclaim = anyio.current_time() + settings.reclaim_after / 2
        send, receive = anyio.create_memory_object_stream[Entry](0)
        busy = [0]
        done: list[str] = []
        async with anyio.create_task_group() as workers, send, receive:
            for _ in range(settings.concurrency):
                workers.start_soon(self._work, group, receive, busy, done)
            while True:
                if done:
                    # Also here, at least once a `block` second: handled entries never wait
                    # long for their acknowledgement behind a slow handler.
                    ids = done[:]
                    done.clear()
                    await self._ack(group, ids)
                idle = max(1, settings.concurrency - busy[0])
                try:
                    entries: list[Entry] = []
                    if not self._local and anyio.current_time() >= next_reclaim:
                        next_reclaim = anyio.current_time() + settings.reclaim_after / 2
                        entries = await self.broker.reclaim(
                            self.stream,
                            group,
                            self.consumer,
                            min_idle=settings.reclaim_after,
                            count=idle,
                        )
                    if not entries:
                        entries = await self.broker.read_group(
                            self.stream, group, self.consumer, count=idle, block=1.0
                        )
                    failures = 0
                except BrokerError as exc:
                    failures += 1
                    delay = min(settings.backoff * 2**failures, settings.max_backoff)
                    if failures == 1 or failures % 10 == 0:
                        logger.warning(
                            "events: group %r cannot read from the broker (%s); retrying",
                            group,
                            exc,
                        )
                    await anyio.sleep(delay)
                    continue
                for entry in entries:
                    self._active += 1
                    busy[0] += 1
                    await send.send(entry)  # waits for an idle worker

    async def _work(
        self,
        group: str,
        receive: anyio.abc.ObjectReceiveStream[Entry],
        busy: list[int],
        done: list[str],
    ) -> None:
        """One worker of a group: handles the entries the reader hands it, one at a time.

        Handled entries are acknowledged together (`done`, shared by the group's workers):
        at once when the group is idle, else by 64, so that a remote broker gets one XACK
        for many entries under load.
        """
        async for entry in receive:
            try:
                if await self._handle_entry(group, entry):
                    done.append(entry.id)
            finally:
                busy[0] -= 1
                try:
                    if done and (self._local or busy[0] == 0 or len(done) >= _ACK_BATCH):
                        ids = done[:]
                        done.clear()
                        await self._ack(group, ids)
                finally:
                    self._active -= 1

    async def _ack(self, group: str, ids: Sequence[str]) -> None:
        try:
            await self.broker.ack(self.stream, group, *ids)
        except BrokerError as exc:
            logger.warning(
                "events: could not acknowledge %d entries of group %r (%s); they may come again",
                len(ids),
                group,
                exc,
            )

    async def _handle_entry(self, group: str, entry: Entry) -> bool:
        """Deliver an entry to its group's handlers; return whether to acknowledge it."""
        try:
            await self._deliver(group, entry)
        except Exception as exc:
            # The outbox (processed ids) or the broker failed around the handlers: the entry
            # stays unacknowledged, to come again (reclaimed, or sent again by the outbox
            # relay), and the group goes on.
            logger.error(
                "events: entry %s of group %r could not be handled; it stays pending",
                entry.id,
                group,
                exc_info=exc,
            )
            return False
        return True

    async def _deliver(self, group: str, entry: Entry) -> None:
        try:
            parsed = EventEnvelope.peek(entry.data)
        except ValueError as exc:
            await self._park(entry, f"not an event envelope: {exc}")
            return
        handlers = [
            handler for handler in self._handlers.get(parsed["type"], ()) if handler.group == group
        ]
        if not handlers:
            return  # an event this group does not handle
        event_type = self._types[parsed["type"]]
        try:
            event = event_type.model_validate(parsed["event"])
        except ValidationError as exc:
            await self._park(entry, f"not a valid {parsed['type']}: {exc}")
            return
        chain = tuple(str(item) for item in parsed.get("chain", ()))
        for handler in handlers:
            await self._run_handler(handler, event, chain, entry)

    async def _run_handler(
        self, handler: EventHandler, event: Event, chain: tuple[str, ...], entry: Entry
    ) -> None:
        outbox = self.outbox
        event_id = str(event.event_id)
        if outbox is None:
            await self._attempts(handler, event, chain, entry)
            return
        # One copy of an event at a time per handler in this process: a copy that arrives
        # while another is being handled (an outbox row sent again, an entry reclaimed)
        # waits for it, then finds it processed.
        key = (handler.name, event_id)
        while (running := self._handling.get(key)) is not None:
            await running.wait()
        done = self._handling[key] = anyio.Event()
        try:
            if await outbox.seen(handler.name, event_id):
                self.stats.duplicates += 1
                return
            if await self._attempts(handler, event, chain, entry):
                await outbox.mark_processed(handler.name, event_id)
        finally:
            del self._handling[key]
            done.set()

    async def _attempts(
        self, handler: EventHandler, event: Event, chain: tuple[str, ...], entry: Entry
    ) -> bool:
        """Run a handler on an event, with retries; return whether it succeeded (else parked)."""
        event_id = str(event.event_id)
        settings = self.settings
        attempt = 0
        while True:
            ctx = CallContext("event", self._scope_for(handler.op.name))
            ctx.state[CHAIN_STATE_KEY] = (*chain, type(event).event_type)
            ctx.state[MAX_DEPTH_STATE_KEY] = settings.max_depth
            outcome = await self.invoker.run(ctx, handler.op, {handler.param: event})
            await outcome.finish()
            if outcome.error is None:
                self.stats.handled += 1
                return True
            failure = _describe(outcome.error)
            if attempt >= handler.retries or ctx.state.get(LOOP_STATE_KEY):
                self.stats.failed += 1
                logger.error(
                    "event handler %r failed on %s %s after %d attempt(s): %s; the event is parked",
                    handler.name,
                    type(event).event_type,
                    event_id,
                    attempt + 1,
                    failure,
                )
                await self._park(entry, f"handler {handler.name!r} failed: {failure}")
                return False
            attempt += 1
            self.stats.retried += 1
            delay = min(settings.backoff * 2 ** (attempt - 1), settings.max_backoff)
            logger.warning(
                "event handler %r failed on %s %s (%s); retry %d of %d in %.2f s",
                handler.name,
                type(event).event_type,
                event_id,
                failure,
                attempt,
                handler.retries,
                delay,
            )
            await anyio.sleep(delay)

    async def _park(self, entry: Entry, reason: str) -> None:
        self.stats.parked += 1
        logger.error("events: entry %s parked: %s", entry.id, reason)
        try:
            await self.broker.park(self.stream, entry, reason)
        except BrokerError as exc:
            logger.error("events: entry %s could not be parked (%s); it is lost", entry.id, exc)


def _describe(error: BaseException) -> str:
    """A handler's failure in words: the unexpected exception behind an INTERNAL_ERROR, if any."""
    cause = error.__cause__
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return f"{type(error).__name__}: {error}"
