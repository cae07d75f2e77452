"""Live push: the cache effects of every call, pushed to the clients subscribed to what they touch.

After a successful call with effects has answered and closed its dependencies, its outcome
hands the effects to `LiveHub.publish`, which appends one entry to the broker stream
`tether.live` (memory in one process, Redis Streams across processes). Each process reads
that stream once (one *feed*), and hands each entry to its own subscribers whose topics it
matches:

- a topic names a context (or a query of no context) and, optionally, params; an entry
  matches when it names the same target and no param both give differs (an entry without
  params, which invalidates the whole context, matches every topic of it);
- an entry of a per-user context reaches only the subscribers of the user whose call
  produced it;
- a subscriber passes the gate of every query of its topics when it subscribes: the app's
  and the Tether's dependencies, the user resolver, and each query's `auth=`.

A subscriber is a registration, not a task: the feed calls its sink's `push` with the
entry's id (the resume token) and the JSON payload `{"id", "invalidate", "merge"}`. A sink
that has no room left (a client that does not read) is dropped: the hub calls its `end`.
A subscriber that presents the last id it saw (`since`) first receives what it missed, in
order and without duplicates; when the gap can no longer be replayed it receives one
`{"id", "resync": true}` payload instead, and should refetch what it caches.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import orjson

from ._runtime import BackgroundTask, runner_token, spawn
from .auth import check_auth
from .brokers.base import Broker, BrokerError, Entry, entry_order
from .dependencies import DependencyPlan, scope_with_stacks
from .errors import ConfigurationError, NotFound, ServiceUnavailable, ValidationFailed

if TYPE_CHECKING:
    from .context import CallContext
    from .effects import Contexts, Effects
    from .invoke import Invoker
    from .operation import Operation

__all__ = (
    "LIVE_STREAM",
    "LiveHub",
    "LiveSettings",
    "LiveSink",
    "LiveSubscription",
    "Topic",
    "resync_payload",
)

logger = logging.getLogger("tether")

LIVE_STREAM = "tether.live"
"""The broker stream live pushes travel on."""

_REPLAY_PAGE = 500
_PUBLISH_BATCH = 256
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0

RESYNC_ENTRY = b'{"resync":true}'
"""The entry a process publishes when some of its pushes were lost: every subscriber resyncs."""


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Limits of live push, per process."""

    subscriber_queue: int = 256
    """Pushes a subscriber may leave unsent (its client not reading) before it is dropped."""
    max_topics: int = 64
    """Topics one subscription may name."""
    publish_queue: int = 10_000
    """Pushes this process holds while the broker cannot take them (Redis down); past it the
    oldest are dropped, and one resync entry is published once the broker is back."""

    def __post_init__(self) -> None:
        for name in ("subscriber_queue", "max_topics", "publish_queue"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"LiveSettings.{name} must be a positive integer")


class LiveSink(Protocol):
    """Where a subscription's pushes go: a WebSocket connection, an SSE stream, a test."""

    def push(self, entry_id: str, payload: bytes) -> bool:
        """Take one payload (JSON); return False when there is no room (the client does not read)."""

    def end(self, reason: str) -> None:
        """The hub dropped the subscription: `"overflow"` (no room) or `"closed"` (shutdown)."""


@dataclass(frozen=True, slots=True)
class Topic:
    """What a subscription reads: a context (or a query of no context), narrowed by params."""

    kind: str
    """`"context"` or `"query"`."""
    name: str
    params: Mapping[str, Any]
    """JSON values; an entry whose params differ on any of these does not match."""
    per_user: bool
    slots: tuple[Operation, ...]
    """The queries the topic reads (their `auth=` admits a subscriber)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the topic as a client names it: `{"context": name, "params": {...}}`."""
        return {self.kind: self.name, "params": dict(self.params)}


def resync_payload(entry_id: str) -> bytes:
    """Return the payload that tells a subscriber its gap is gone: refetch, then go on from `id`."""
    return b'{"id":' + orjson.dumps(entry_id) + b',"resync":true}'


class LiveSubscription:
    """One subscriber: its topics, its user, its sink, and the last id it was given."""

    __slots__ = ("_backlog", "_hub", "_last", "closed", "last_id", "sink", "topics", "user_key")

    def __init__(
        self, hub: LiveHub, topics: Sequence[Topic], user_key: str | None, sink: LiveSink
    ) -> None:
        self._hub = hub
        self.topics = tuple(topics)
        """What the subscription reads."""
        self.user_key = user_key
        """The subscriber's user key (for per-user contexts)."""
        self.sink = sink
        """Where its pushes go."""
        self.last_id: str | None = None
        """The id of the last entry given to the sink (its resume token)."""
        self._last: tuple[int, int] = (-1, -1)
        self._backlog: list[tuple[str, bytes]] | None = None
        self.closed = False
        """True once cancelled or dropped."""

    def close(self) -> None:
        """Stop the subscription (idempotent); its sink hears nothing more."""
        if not self.closed:
            self.closed = True
            self._hub._remove(self)

    def _give(self, entry_id: str, order: tuple[int, int], payload: bytes) -> bool:
        """Hand one payload to the sink, unless it is not newer than the last; False: dropped."""
        if order <= self._last or self.closed:
            return True
        backlog = self._backlog
        if backlog is not None:
            # Still replaying: live entries wait (bounded) until the replay has caught up.
            if len(backlog) >= self._hub.settings.subscriber_queue:
                return False
            backlog.append((entry_id, payload))
            return True
        self._last = order
        self.last_id = entry_id
        return self.sink.push(entry_id, payload)


class LiveHub:
    """Publishes calls' effects, and serves this process's live subscribers from one feed.

    Args:
        contexts: the Tether's contexts (what topics name).
        broker: the broker of the Tether (the events' one).
        invoker: solves the subscription gate.
        gate: returns the dependency plan a subscriber passes (app and Tether
            dependencies, and the user resolver); None when there is none.
        user_key: tells users apart for per-user contexts.
        settings: queue and topic limits.
    """

    def __init__(
        self,
        contexts: Contexts,
        broker: Broker,
        invoker: Invoker,
        *,
        gate: Callable[[], DependencyPlan | None],
        user_key: Callable[[Any], str | None],
        settings: LiveSettings | None = None,
    ) -> None:
        self.contexts = contexts
        """The contexts topics name."""
        self.broker = broker
        """The broker pushes travel through."""
        self.invoker = invoker
        self.settings = settings or LiveSettings()
        """Queue and topic limits."""
        self.user_key = user_key
        """Tells users apart for per-user contexts."""
        self.stream = LIVE_STREAM
        """The broker stream of pushes."""
        self.published = 0
        """Entries this process published."""
        self.dropped = 0
        """Subscribers this process dropped because they did not read."""
        self._gate = gate
        self._queue: deque[bytes] = deque()
        self._dropped_pushes = 0
        self._token = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}".encode()
        self._sequence = 0
        self._seen = _Publishers()
        self._lost = False
        self._publisher: BackgroundTask | None = None
        self._wake: anyio.Event | None = None
        self._index = _TopicIndex()
        self._runner: object = None
        self._feed: BackgroundTask | None = None
        self._lock: anyio.Lock | None = None

    @property
    def subscribers(self) -> int:
        """How many subscriptions this process serves now."""
        return len(self._index)

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, effects: Effects) -> None:
        """Queue a call's effects for the live stream, for every process's subscribers.

        One task per process appends what is queued to the broker, in the order the calls
        finished (a pipeline of what has queued meanwhile), so that a client's mutations reach
        subscribers in the order it made them. It never waits for the broker: while the broker
        cannot take entries (Redis down) they stay queued, up to `LiveSettings.publish_queue`.
        """
        queue = self._queue
        if len(queue) >= self.settings.publish_queue:
            if not self._lost:
                logger.error(
                    "live: %d pushes wait for the broker; the oldest are dropped, and"
                    " subscribers will be told to resync",
                    len(queue),
                )
            queue.popleft()
            self._dropped_pushes += 1
            self._lost = True
        self._sequence += 1
        # Who published it, and its place in this process's order: a batch the publisher
        # retries after a broker failure may already be on the stream, and readers skip
        # what they have seen (`_Publishers`).
        head = b'{"p":"' + self._token + b'","n":' + str(self._sequence).encode() + b","
        queue.append(head + effects.push_json()[1:])
        self._start()
        wake = self._wake
        if wake is not None:
            wake.set()

    async def settle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a test helper's bound)
        """Wait until every push queued so far in this process is on the broker (tests, shutdown)."""
        with anyio.move_on_after(timeout):
            while self._queue or self._lost:  # noqa: ASYNC110 (polled, as events' settle)
                await anyio.sleep(0.005)

    def _start(self) -> None:
        self._fresh_loop()
        publisher = self._publisher
        if publisher is None or publisher.done:
            self._publisher = spawn("live: publisher", self._run_publisher)

    async def _run_publisher(self) -> None:
        queue = self._queue
        failures = 0
        while True:
            if not queue and not self._lost:
                wake = self._wake = anyio.Event()
                await wake.wait()
                continue
            batch = [queue[i] for i in range(min(len(queue), _PUBLISH_BATCH))]
            dropped = self._dropped_pushes
            try:
                if self._lost:
                    await self.broker.publish(self.stream, RESYNC_ENTRY)
                    self._lost = False
                if batch:
                    await self.broker.publish_many(self.stream, batch)
            except Exception as exc:  # the broker is down (or broken): the pushes wait
                failures += 1
                if failures == 1:
                    logger.error("live: the broker cannot take pushes (%s); they wait", exc)
                await anyio.sleep(min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1)))
                continue
            if failures:
                logger.warning("live: the broker takes pushes again")
                failures = 0
            # Pushes dropped meanwhile (a full queue) were the oldest: this batch's first ones.
            done = max(0, len(batch) - (self._dropped_pushes - dropped))
            for _ in range(done):
                queue.popleft()
            self.published += len(batch)

    # -- topics -------------------------------------------------------------------------

    def topics(self, request: Any) -> list[Topic]:
        """Read the topics a client asked for: names, or `{"context": name, "params": {...}}`.

        Raises:
            ValidationFailed: not a list of topics, or params of the wrong type.
            NotFound: a name that is neither a context nor a query of no context.
        """
        if isinstance(request, str | dict):
            request = [request]
        if type(request) is not list or not request:
            raise _bad_topics("a non-empty list of context names or topic objects")
        limit = self.settings.max_topics
        if len(request) > limit:
            raise _bad_topics(f"at most {limit} topics (LiveSettings.max_topics)")
        topics = []
        for item in request:
            if type(item) is str:
                topics.append(self.topic(item, {}))
                continue
            if type(item) is not dict:
                raise _bad_topics("context names or topic objects")
            name = item.get("context", item.get("query"))
            params = item.get("params", {})
            extra = set(item) - {"context", "query", "params"}
            if type(name) is not str or type(params) is not dict or extra:
                raise _bad_topics('objects such as {"context": "todos", "params": {"owner_id": 5}}')
            topics.append(self.topic(name, params))
        return topics

    def topic(self, name: str, params: Mapping[str, Any]) -> Topic:
        """Return the topic naming `name` with `params` (validated as its queries take them).

        Raises:
            NotFound: no context or query of no context has that name.
            ValidationFailed: a param the target does not take, or of the wrong type.
        """
        found = self.contexts.target_of(name)
        if found is None:
            raise NotFound(
                f"Unknown context {name!r} (nor a query of no context)", details={"context": name}
            )
        kind, target = found
        if kind == "context":
            context: Any = target
            # The registered name, not the request's copy: a subscriber keeps its topic.
            return Topic(
                "context", context.name, context.normalize(params), context.per_user, context.slots
            )
        op: Any = target
        normalized = _query_params(op, params)
        return Topic("query", op.name, normalized, False, (op,))

    def topics_from_query(self, names: Sequence[str], params: Mapping[str, Any]) -> list[Topic]:
        """Read topics from a query string: context names, and params given to those that take them.

        Raises:
            ValidationFailed: no name, or a param none of the named targets takes.
            NotFound: an unknown name.
        """
        if not names:
            raise _bad_topics("contexts=name,name... (at least one)")
        if len(names) > self.settings.max_topics:
            raise _bad_topics(
                f"at most {self.settings.max_topics} topics (LiveSettings.max_topics)"
            )
        topics: list[Topic] = []
        taken: set[str] = set()
        for name in names:
            found = self.contexts.target_of(name)
            if found is None:
                raise NotFound(
                    f"Unknown context {name!r} (nor a query of no context)",
                    details={"context": name},
                )
            kind, target = found
            declared = (
                set(target.params) if kind == "context" else set(target.input_names)  # type: ignore[union-attr]
            )
            own = {key: value for key, value in params.items() if key in declared}
            taken.update(own)
            topics.append(self.topic(name, own))
        unknown = [key for key in params if key not in taken]
        if unknown:
            raise ValidationFailed.from_errors(
                [
                    {
                        "loc": [key],
                        "msg": "None of the named contexts takes this parameter",
                        "type": "extra_forbidden",
                    }
                    for key in unknown
                ]
            )
        return topics

    # -- subscribing --------------------------------------------------------------------

    async def subscribe(
        self,
        ctx: CallContext,
        topics: Sequence[Topic],
        sink: LiveSink,
        *,
        since: str | None = None,
        dependency_cache: dict[Any, Any] | None = None,
    ) -> LiveSubscription:
        """Admit a subscriber (gate and every slot's `auth=`), replay what it missed, and register it.

        `ctx` is the subscriber's call context (its request); `dependency_cache` seeds the
        gate with values already solved (a WebSocket connection's). The gate's yield
        dependencies close before this returns: a subscription holds no resource.

        Raises:
            TetherError: the gate or an `auth=` refused, or the broker cannot be read.
        """
        user = await self._admit(ctx, topics, dependency_cache)
        subscription = LiveSubscription(self, topics, self.user_key(user), sink)
        try:
            return await self._open(subscription, since)
        except BrokerError as exc:
            subscription.close()
            raise ServiceUnavailable(
                "Live push cannot reach its broker; try again later",
                details={"reason": str(exc)},
            ) from None

    async def _open(self, subscription: LiveSubscription, since: str | None) -> LiveSubscription:
        await self._ensure_feed()
        if since is None:
            self._add(subscription)
            try:
                # Everything after this id reaches the subscriber: its first resume token.
                position = await self.broker.position(self.stream)
            except BaseException:
                subscription.close()
                raise
            if subscription._last < entry_order(position):
                subscription._last = entry_order(position)
                subscription.last_id = position
            return subscription
        subscription._backlog = []
        self._add(subscription)
        try:
            await self._replay(subscription, since)
        except BaseException:
            subscription.close()
            raise
        return subscription

    async def _admit(
        self, ctx: CallContext, topics: Sequence[Topic], dependency_cache: dict[Any, Any] | None
    ) -> Any:
        """Solve the gate, then check every slot's `auth=`; return the user."""
        plan = self._gate()
        user: Any = None
        if plan is not None:
            async with AsyncExitStack() as stack:
                captured: list[Any] = []

                async def gatekeeper(resolved: Any) -> None:
                    captured.append(resolved)

                try:
                    request = ctx.request(scope_with_stacks(ctx.scope, stack, stack))
                    await plan.solve(
                        request,
                        overrides_provider=self.invoker.overrides_provider or ctx.scope.get("app"),
                        dependency_cache=dict(dependency_cache) if dependency_cache else None,
                        gatekeeper=gatekeeper,
                    )
                except Exception as exc:
                    raise self.invoker.map_exception(exc, "live subscription") from None
                user = captured[0] if captured else None
        ctx.user = user
        for topic in topics:
            ctx.params = dict(topic.params)
            for op in topic.slots:
                if op.auth is not None:
                    await check_auth(op.auth, user, ctx)
        return user

    async def _replay(self, subscription: LiveSubscription, since: str) -> None:
        """Give the subscriber the entries after `since`, then what the feed held back meanwhile.

        More than `subscriber_queue` pushes to replay, a gap the stream no longer holds, or a
        resync entry inside it: the subscriber gets one resync payload instead.
        """
        limit = self.settings.subscriber_queue
        held: list[tuple[str, bytes]] = []
        seen = _Publishers()
        last = since
        resync = False
        while not resync:
            entries, gone = await self.broker.read_after(self.stream, last, _REPLAY_PAGE)
            resync = gone
            for entry in entries if not gone else ():
                last = entry.id
                if entry.data == RESYNC_ENTRY:  # pushes were lost inside the gap
                    resync = True
                    break
                decoded = _decode(entry)
                if decoded is not None and seen.repeated(decoded):
                    continue
                payload = self._payload_for(subscription, decoded)
                if payload is not None:
                    held.append((entry.id, payload))
                    if len(held) > limit:
                        resync = True
                        break
            if len(entries) < _REPLAY_PAGE:
                break
        if resync:
            last = await self.broker.position(self.stream)
            held = [(last, resync_payload(last))]
        if subscription.closed:
            return
        for entry_id, payload in held:
            if not subscription.sink.push(entry_id, payload):
                self._drop(subscription)
                return
        try:
            order = entry_order(last)
        except ValueError:
            order = (-1, -1)
        subscription._last = order
        subscription.last_id = last if order >= (0, 0) else None
        backlog = subscription._backlog or []
        subscription._backlog = None
        for entry_id, payload in backlog:
            if not subscription._give(entry_id, entry_order(entry_id), payload):
                self._drop(subscription)
                return

    # -- the feed -----------------------------------------------------------------------

    def _fresh_loop(self) -> None:
        token = runner_token()
        if self._runner is not token:
            # First use, or an earlier event loop has ended (tests): its tasks died with it.
            self._runner = token
            self._feed = None
            self._publisher = None
            self._wake = None
            self._lock = anyio.Lock()
            self._index = _TopicIndex()

    async def _ensure_feed(self) -> None:
        self._fresh_loop()
        assert self._lock is not None
        async with self._lock:
            feed = self._feed
            if feed is not None and not feed.done:
                return
            await self.broker.start()
            since = await self.broker.position(self.stream)
            self._feed = spawn("live: the subscribers' feed", partial(self._run_feed, since))

    async def _run_feed(self, since: str) -> None:
        entries = self.broker.subscribe(self.stream, since=since)
        try:
            async for entry in entries:
                if entry.resync or entry.data == RESYNC_ENTRY:
                    self._resync_all(entry.id)
                elif self._index:
                    self._hand_out(entry)
        finally:
            aclose = getattr(entries, "aclose", None)
            if aclose is not None:
                # Shielded: cancelled (the hub closing), the reader still closes its connection.
                with anyio.CancelScope(shield=True):
                    await aclose()
            for subscription in self._index.all():
                self._end(subscription, "closed")

    def _hand_out(self, entry: Entry) -> None:
        """Give one entry to every matching subscriber (one encoding per distinct selection)."""
        decoded = _decode(entry)
        if decoded is None:
            logger.warning("live: entry %s of %r is not a push; skipped", entry.id, self.stream)
            return
        if self._seen.repeated(decoded):
            return  # published twice (a retried batch): given once
        order = entry_order(entry.id)
        wanted: dict[LiveSubscription, None] = {}
        for kind in ("invalidate", "merge"):
            for item in decoded[kind]:
                self._index.candidates(item, wanted)
        encoded: dict[tuple[tuple[int, ...], tuple[int, ...]], bytes | None] = {}
        for subscription in wanted:
            selection = _select(subscription, decoded)
            payload = encoded.get(selection, b"")
            if payload == b"":
                payload = encoded[selection] = _payload(entry.id, decoded, selection)
            if payload is not None and not subscription._give(entry.id, order, payload):
                self._drop(subscription)

    def _payload_for(
        self, subscription: LiveSubscription, decoded: dict[str, Any] | None
    ) -> bytes | None:
        if decoded is None:
            return None
        return _payload(decoded["id"], decoded, _select(subscription, decoded))

    def _resync_all(self, entry_id: str) -> None:
        logger.warning("live: the feed lost entries (the broker restarted?); subscribers resync")
        order = entry_order(entry_id)
        payload = resync_payload(entry_id)
        for subscription in self._index.all():
            if subscription.closed:
                continue
            subscription._last = (-1, -1)  # a restarted broker may reuse lower ids
            if not subscription._give(entry_id, order, payload):
                self._drop(subscription)

    def _drop(self, subscription: LiveSubscription) -> None:
        if not subscription.closed:
            self.dropped += 1
            logger.warning(
                "live: a subscriber left %d pushes unsent and was dropped",
                self.settings.subscriber_queue,
            )
            self._end(subscription, "overflow")

    def _end(self, subscription: LiveSubscription, reason: str) -> None:
        if subscription.closed:
            return
        subscription.close()
        try:
            subscription.sink.end(reason)
        except Exception as exc:  # a sink must not take the feed down
            logger.error("live: a subscriber's sink failed to end", exc_info=exc)

    # -- the index ----------------------------------------------------------------------

    def _add(self, subscription: LiveSubscription) -> None:
        self._index.add(subscription)

    def _remove(self, subscription: LiveSubscription) -> None:
        self._index.remove(subscription)

    async def close(self, grace: float = 5.0) -> None:
        """Publish what is queued (within `grace` seconds), end every subscription, stop the tasks."""
        if self._publisher is not None and not self._publisher.done:
            await self.settle(grace)
            if self._queue:
                logger.error("live: %d pushes were not published before shutdown", len(self._queue))
        for task in (self._publisher, self._feed):
            if task is not None:
                task.cancel()
                with anyio.move_on_after(5):
                    await task.wait()
        self._feed = None
        self._publisher = None
        for subscription in self._index.all():
            self._end(subscription, "closed")


class _Publishers:
    """The last push number seen from each publishing process: a repeated push is skipped."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def repeated(self, decoded: dict[str, Any]) -> bool:
        """Whether this push was seen already (and note it if not)."""
        publisher = decoded.get("p")
        number = decoded.get("n")
        if type(publisher) is not str or type(number) is not int:
            return False
        if number <= self._last.get(publisher, 0):
            return True
        self._last[publisher] = number
        return False


class _Bucket:
    """The subscriptions of one target: those without params, and those narrowed by a param."""

    __slots__ = ("scoped", "unscoped")

    def __init__(self) -> None:
        self.unscoped: set[LiveSubscription] = set()
        self.scoped: dict[str, dict[str, set[LiveSubscription]]] = {}
        """param name -> the param's value (as JSON) -> subscriptions narrowed by it."""

    def __bool__(self) -> bool:
        return bool(self.unscoped or self.scoped)


class _TopicIndex:
    """Finds the subscriptions an entry may reach without scanning every subscriber of its target.

    A topic is filed under its target, then under one of its params and that param's value.
    An entry narrowed by params looks only at the topics without params, those filed under
    one of its own (param, value) pairs, and those filed under a param it does not give.
    """

    __slots__ = ("_buckets", "_count")

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def all(self) -> list[LiveSubscription]:
        """Every subscription, once each."""
        found: dict[LiveSubscription, None] = {}
        for bucket in self._buckets.values():
            found.update(dict.fromkeys(bucket.unscoped))
            for values in bucket.scoped.values():
                for subscriptions in values.values():
                    found.update(dict.fromkeys(subscriptions))
        return list(found)

    def add(self, subscription: LiveSubscription) -> None:
        """File each of the subscription's topics."""
        for topic in subscription.topics:
            self._slot(topic, create=True).add(subscription)  # type: ignore[union-attr]
        self._count += 1

    def remove(self, subscription: LiveSubscription) -> None:
        """Unfile the subscription's topics (once)."""
        removed = False
        for topic in subscription.topics:
            found = self._slot(topic, create=False)
            if found is not None and subscription in found:
                found.discard(subscription)
                removed = True
                self._prune(topic)
        if removed:
            self._count -= 1

    def candidates(self, item: dict[str, Any], into: dict[LiveSubscription, None]) -> None:
        """Add to `into` the subscriptions whose topics may match an entry item."""
        if "context" in item:
            key = ("context", str(item["context"]))
        else:
            key = ("query", str(item.get("query")))
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        into.update(dict.fromkeys(bucket.unscoped))
        params = item.get("params") or {}
        for name, values in bucket.scoped.items():
            if name in params:
                narrowed = values.get(_value_key(params[name]))
                if narrowed:
                    into.update(dict.fromkeys(narrowed))
            else:
                for subscriptions in values.values():
                    into.update(dict.fromkeys(subscriptions))

    def _slot(self, topic: Topic, *, create: bool) -> set[LiveSubscription] | None:
        key = (topic.kind, topic.name)
        bucket = self._buckets.get(key)
        if bucket is None:
            if not create:
                return None
            bucket = self._buckets[key] = _Bucket()
        if not topic.params:
            return bucket.unscoped
        name = min(topic.params)
        value = _value_key(topic.params[name])
        values = bucket.scoped.get(name)
        if values is None:
            if not create:
                return None
            values = bucket.scoped[name] = {}
        found = values.get(value)
        if found is None and create:
            found = values[value] = set()
        return found

    def _prune(self, topic: Topic) -> None:
        key = (topic.kind, topic.name)
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        if topic.params:
            name = min(topic.params)
            values = bucket.scoped.get(name, {})
            value = _value_key(topic.params[name])
            if not values.get(value, True):
                del values[value]
            if not values:
                bucket.scoped.pop(name, None)
        if not bucket:
            del self._buckets[key]


def _value_key(value: Any) -> str:
    # A str of the exact size: orjson's bytes keep a 4 KB buffer, and keys live long.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _decode(entry: Entry) -> dict[str, Any] | None:
    try:
        decoded = orjson.loads(entry.data)
    except orjson.JSONDecodeError:
        return None
    if (
        type(decoded) is not dict
        or type(decoded.get("invalidate")) is not list
        or type(decoded.get("merge")) is not list
    ):
        return None
    decoded["id"] = entry.id
    return decoded


def _matches(topic: Topic, item: dict[str, Any], user_key: str | None) -> bool:
    if item.get(topic.kind) != topic.name:
        return False
    if topic.per_user and item.get("user") != user_key:
        return False
    params = item.get("params")
    if params and topic.params:
        for name, value in topic.params.items():
            if name in params and params[name] != value:
                return False
    return True


def _select(
    subscription: LiveSubscription, decoded: dict[str, Any]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the indices of the entry's invalidations and merges the subscriber is given."""
    key = subscription.user_key
    topics = subscription.topics
    return (
        tuple(
            i
            for i, item in enumerate(decoded["invalidate"])
            if any(_matches(topic, item, key) for topic in topics)
        ),
        tuple(
            i
            for i, item in enumerate(decoded["merge"])
            if any(_matches(topic, item, key) for topic in topics)
        ),
    )


def _payload(
    entry_id: str, decoded: dict[str, Any], selection: tuple[tuple[int, ...], tuple[int, ...]]
) -> bytes | None:
    invalidate_at, merge_at = selection
    if not invalidate_at and not merge_at:
        return None
    invalidate = [_public(decoded["invalidate"][i]) for i in invalidate_at]
    merge = [_public(decoded["merge"][i]) for i in merge_at]
    return orjson.dumps({"id": entry_id, "invalidate": invalidate, "merge": merge})


def _public(item: dict[str, Any]) -> dict[str, Any]:
    if "user" in item:
        item = {key: value for key, value in item.items() if key != "user"}
    return item


def _query_params(op: Operation, params: Mapping[str, Any]) -> dict[str, Any]:
    from .effects import Context

    context = Context(
        name=op.name,
        slots=(op,),
        params=dict.fromkeys(op.input_names, False),
        rev=None,
        per_user=False,
    )
    return context.normalize(params)


def _bad_topics(expected: str) -> ValidationFailed:
    return ValidationFailed.from_errors(
        [{"loc": ["contexts"], "msg": f"Expected {expected}", "type": "topics"}]
    )
