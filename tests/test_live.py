"""The live hub (tether.live): who receives a call's effects, resuming, resync, overflow, closing.

Driven in-process: commands run with `api.call`, subscribers are list-backed sinks given to
`api.live.subscribe`, and the hub runs on a MemoryBroker (asyncio and trio) and on a real
Redis (asyncio). Each test's hub has a stream of its own, so tests sharing the Redis of the
session never see each other's entries.

Nothing here waits for a duration: a sink is awaited until it holds what is expected (under
a generous `fail_after`), and that something did *not* arrive is shown by a later entry
that did (the feed hands entries out in order).
"""

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import orjson
import pytest
from fastapi import Depends, Header, HTTPException
from pydantic import BaseModel

from tests._cache_users import Todo, User, current_user
from tests._processes import free_port
from tether import (
    CallContext,
    ConfigurationError,
    Forbidden,
    LiveSettings,
    NotFound,
    ServiceUnavailable,
    Tether,
    Unauthorized,
    ValidationFailed,
)
from tether.brokers.base import Broker, BrokerUnavailable
from tether.brokers.memory import MemoryBroker
from tether.brokers.redis import RedisBroker
from tether.context import in_process_scope
from tether.live import LIVE_STREAM, LiveSubscription, Topic, resync_payload

BACKENDS = [("asyncio", "memory"), ("trio", "memory"), ("asyncio", "redis")]
MEMORY_ONLY = [("asyncio", "memory"), ("trio", "memory")]


@pytest.fixture(params=BACKENDS, ids=["asyncio-memory", "trio-memory", "asyncio-redis"])
def setup(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(setup: tuple[str, str]) -> str:
    return setup[0]


@pytest.fixture
def kind(setup: tuple[str, str]) -> str:
    return setup[1]


class Profile(BaseModel):
    name: str


class ListSink:
    """A live sink that keeps every payload (decoded); `room` pushes, then it is full."""

    def __init__(self, room: int | None = None) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.ended: list[str] = []
        self.after_end: list[str] = []
        self.room = room
        self._wake: anyio.Event | None = None

    def push(self, entry_id: str, payload: bytes) -> bool:
        if self.ended:
            self.after_end.append(entry_id)
        if self.room is not None and len(self.items) >= self.room:
            return False
        decoded = orjson.loads(payload)
        assert decoded["id"] == entry_id
        self.items.append((entry_id, decoded))
        self._notify()
        return True

    def end(self, reason: str) -> None:
        self.ended.append(reason)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Wait until the sink holds `count` payloads; return them all."""
        with anyio.fail_after(15):
            while len(self.items) < count:
                self._wake = anyio.Event()
                await self._wake.wait()
        return self.payloads

    async def wait_ended(self) -> None:
        with anyio.fail_after(15):
            while not self.ended:
                self._wake = anyio.Event()
                await self._wake.wait()

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [payload for _, payload in self.items]

    @property
    def ids(self) -> list[str]:
        return [entry_id for entry_id, _ in self.items]


def build(broker: Broker, **options: Any) -> Tether:
    """An app with a context `todos`, a query of no context `stats`, and a per-user context `me`."""
    api = Tether(broker=broker, user=Depends(current_user), **options)
    api.live.stream = f"{LIVE_STREAM}.test.{uuid.uuid4().hex[:12]}"

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[Todo]:
        return []

    @api.query(context="todos")
    async def todo_count(owner_id: int, done: bool | None = None) -> int:
        return 0

    @api.query
    async def stats(owner_id: int) -> int:
        return 0

    @api.query(context="me")
    async def me(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(name="nobody" if user is None else user.name)

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> Todo:
        return Todo(id=1, owner_id=owner_id, title=title)

    @api.command(affects=["todos"])
    async def purge() -> int:
        return 0

    @api.command(affects=["stats"])
    async def bump_stats(owner_id: int) -> None: ...

    @api.command(affects=["todos", "stats"])
    async def touch_all(owner_id: int) -> None: ...

    @api.command(affects=["todos", "stats"])
    async def everything() -> None: ...

    @api.command(merge=["me"])
    async def rename(name: str) -> Profile:
        return Profile(name=name)

    return api


@pytest.fixture
def make_broker(kind: str, request: pytest.FixtureRequest) -> Callable[..., Broker]:
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""

    def make(maxlen: int = 10_000) -> Broker:
        if kind == "redis":
            return RedisBroker(url, maxlen=maxlen)
        return MemoryBroker(maxlen=maxlen)

    return make


@pytest.fixture
async def apps(make_broker: Callable[..., Broker]) -> AsyncIterator[Callable[..., Tether]]:
    """`apps(maxlen=..., **tether_options)`: an app on a new broker, closed after the test."""
    made: list[Tether] = []

    def make(maxlen: int = 10_000, **options: Any) -> Tether:
        api = build(make_broker(maxlen), **options)
        made.append(api)
        return api

    yield make
    for api in made:
        # The app's lifespan order: the hub, then the broker (the feed's reader closes
        # shielded, so no Redis socket is left for a later test to warn about).
        await api.live.close()
        await api.live.broker.close()


@pytest.fixture
def api(apps: Callable[..., Tether]) -> Tether:
    return apps()


def ctx_for(api: Tether, user: str | None = None, **headers: str) -> CallContext:
    if user is not None:
        headers["X-User"] = user
    return CallContext("inprocess", in_process_scope(api.app, f"{api.prefix}/live", headers))


async def subscribe(
    api: Tether,
    topics: Any,
    sink: ListSink | None = None,
    *,
    user: str | None = None,
    since: str | None = None,
) -> tuple[ListSink, LiveSubscription]:
    sink = sink or ListSink()
    subscription = await api.live.subscribe(
        ctx_for(api, user), api.live.topics(topics), sink, since=since
    )
    return sink, subscription


async def add(api: Tether, owner_id: int, **headers: str) -> None:
    await api.call("add_todo", {"owner_id": owner_id, "title": f"t{owner_id}"}, headers=headers)


def todos_entry(owner_id: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"context": "todos"}
    if owner_id is not None:
        entry["params"] = {"owner_id": owner_id}
    return entry


def stats_entry(owner_id: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"query": "stats"}
    if owner_id is not None:
        entry["params"] = {"owner_id": owner_id}
    return entry


def shape(payloads: list[dict[str, Any]]) -> list[tuple[list[Any], list[Any]]]:
    return [(p["invalidate"], p["merge"]) for p in payloads]


# -- matching ---------------------------------------------------------------------------


async def test_entries_reach_the_topics_they_match_and_only_the_matching_items(
    api: Tether,
) -> None:
    owner_5, _ = await subscribe(api, [{"context": "todos", "params": {"owner_id": 5}}])
    all_todos, _ = await subscribe(api, ["todos"])
    stats, _ = await subscribe(api, ["stats"])
    stats_6, _ = await subscribe(api, [{"query": "stats", "params": {"owner_id": "6"}}])
    both, _ = await subscribe(
        api, [{"context": "todos", "params": {"owner_id": 6}}, {"query": "stats"}]
    )

    await add(api, 5)
    await add(api, 6)
    await api.call("purge")  # the whole context: every topic of it
    await api.call("touch_all", {"owner_id": 6})
    await api.call("bump_stats", {"owner_id": 5})
    await api.call("everything")  # reaches everyone: when it has, so has all before it

    assert shape(await owner_5.wait_for(3)) == [
        ([todos_entry(5)], []),
        ([todos_entry()], []),
        ([todos_entry()], []),
    ]
    assert shape(await all_todos.wait_for(5)) == [
        ([todos_entry(5)], []),
        ([todos_entry(6)], []),
        ([todos_entry()], []),
        ([todos_entry(6)], []),
        ([todos_entry()], []),
    ]
    assert shape(await stats.wait_for(3)) == [
        ([stats_entry(6)], []),
        ([stats_entry(5)], []),
        ([stats_entry()], []),
    ]
    assert shape(await stats_6.wait_for(2)) == [([stats_entry(6)], []), ([stats_entry()], [])]
    assert shape(await both.wait_for(5)) == [
        ([todos_entry(6)], []),
        ([todos_entry()], []),
        ([todos_entry(6), stats_entry(6)], []),
        ([stats_entry(5)], []),
        ([todos_entry(), stats_entry()], []),
    ]
    # One id per entry, increasing, the same for every subscriber that got it.
    everything_id = all_todos.ids[-1]
    assert {sink.ids[-1] for sink in (owner_5, stats, stats_6, both)} == {everything_id}
    for sink in (owner_5, all_todos, stats, stats_6, both):
        assert sorted(sink.ids, key=order) == sink.ids
        assert len(set(sink.ids)) == len(sink.ids)
    assert api.live.subscribers == 5


async def test_topics_narrowed_by_several_params_match_entries_that_do_not_contradict_them(
    api: Tether,
) -> None:
    @api.command(affects=["todos"])
    async def finish(owner_id: int, done: bool) -> None: ...

    @api.command(affects=["todos"])
    async def toggle_all(done: bool) -> None: ...

    narrow, _ = await subscribe(
        api, [{"context": "todos", "params": {"owner_id": 5, "done": True}}]
    )
    twin, twin_subscription = await subscribe(
        api, [{"context": "todos", "params": {"done": "true", "owner_id": "5"}}]
    )
    other, _ = await subscribe(api, [{"context": "todos", "params": {"owner_id": 6, "done": True}}])

    await api.call("finish", {"owner_id": 5, "done": False})  # contradicts done: nobody
    await api.call("finish", {"owner_id": 5, "done": True})  # narrow and twin
    await add(api, 5)  # says nothing of done: narrow and twin
    await api.call("toggle_all", {"done": True})  # says nothing of owner_id: all three
    await twin.wait_for(3)
    twin_subscription.close()
    await api.call("toggle_all", {"done": False})  # contradicts done: nobody
    await api.call("purge")  # the whole context: narrow and other

    assert shape(await narrow.wait_for(4)) == [
        ([{"context": "todos", "params": {"owner_id": 5, "done": True}}], []),
        ([todos_entry(5)], []),
        ([{"context": "todos", "params": {"done": True}}], []),
        ([todos_entry()], []),
    ]
    assert shape(await other.wait_for(2)) == [
        ([{"context": "todos", "params": {"done": True}}], []),
        ([todos_entry()], []),
    ]
    assert shape(twin.payloads) == shape(narrow.payloads)[:3]
    assert api.live.subscribers == 2


def order(entry_id: str) -> tuple[int, int]:
    head, _, tail = entry_id.partition("-")
    return int(head), int(tail or 0)


async def test_a_merge_reaches_subscribers_with_the_value(api: Tether) -> None:
    sink, subscription = await subscribe(api, ["me"], user="1")
    await api.call("rename", {"name": "Zoë"}, headers={"X-User": "1"})
    (payload,) = await sink.wait_for(1)
    assert payload == {
        "id": sink.ids[0],
        "invalidate": [],
        "merge": [{"context": "me", "slot": "me", "value": {"name": "Zoë"}}],
    }
    assert subscription.last_id == sink.ids[0]


async def test_a_per_user_context_reaches_only_the_users_own_subscribers(api: Tether) -> None:
    assert api.contexts.get("me").per_user
    ada_1, _ = await subscribe(api, ["me"], user="1")
    ada_2, _ = await subscribe(api, ["me", "todos"], user="1")
    bob, _ = await subscribe(api, ["me"], user="2")
    nobody, _ = await subscribe(api, ["me"])

    await api.call("rename", {"name": "ada!"}, headers={"X-User": "1"})
    await api.call("rename", {"name": "bob!"}, headers={"X-User": "2"})
    await api.call("rename", {"name": "anon!"})
    await api.call("rename", {"name": "ada again"}, headers={"X-User": "1"})

    def values(sink: ListSink) -> list[str]:
        return [item["value"]["name"] for p in sink.payloads for item in p["merge"]]

    await ada_1.wait_for(2)
    await ada_2.wait_for(2)
    await bob.wait_for(1)
    await nobody.wait_for(1)
    # Bob's and the anonymous rename came between Ada's two: had they reached Ada, they
    # would be there already.
    assert values(ada_1) == values(ada_2) == ["ada!", "ada again"]
    assert values(bob) == ["bob!"]
    assert values(nobody) == ["anon!"]
    # The user key never leaves the server.
    assert all("user" not in item for p in ada_1.payloads for item in p["merge"])

    # A per-user context's invalidation goes the same way; other topics are not per-user.
    await add(api, 3, **{"X-User": "2"})
    await api.call("rename", {"name": "last"}, headers={"X-User": "1"})
    assert shape(await ada_2.wait_for(4))[2] == ([todos_entry(3)], [])
    assert values(ada_1) == ["ada!", "ada again", "last"]


# -- the gate ---------------------------------------------------------------------------


async def test_the_tethers_dependencies_gate_subscriptions(apps: Callable[..., Tether]) -> None:
    def api_key(x_key: Annotated[str | None, Header()] = None) -> None:
        if x_key is None:
            raise Unauthorized("an API key is needed")
        if x_key != "good":
            raise HTTPException(403, "bad key")

    api = apps(dependencies=[Depends(api_key)])
    topics = api.live.topics(["todos"])
    with pytest.raises(Unauthorized, match="an API key is needed"):
        await api.live.subscribe(ctx_for(api), topics, ListSink())
    with pytest.raises(Forbidden, match="bad key"):
        await api.live.subscribe(ctx_for(api, **{"X-Key": "bad"}), topics, ListSink())
    assert api.live.subscribers == 0
    sink = ListSink()
    await api.live.subscribe(ctx_for(api, **{"X-Key": "good"}), topics, sink)
    assert api.live.subscribers == 1
    await add(api, 1, **{"X-Key": "good"})
    assert shape(await sink.wait_for(1)) == [([todos_entry(1)], [])]


async def test_each_slots_auth_gates_subscriptions_to_its_context(
    apps: Callable[..., Tether],
) -> None:
    api = apps()
    seen: list[Any] = []

    def own_inbox(user: Any, ctx: CallContext) -> bool:
        seen.append(ctx.params)
        return user is not None and ctx.params is not None and ctx.params.get("owner_id") == user.id

    @api.query(context="inbox", auth=own_inbox)
    async def inbox(owner_id: int) -> list[str]:
        return []

    @api.query(context="admin", auth="staff")
    async def audit() -> list[str]:
        return []

    @api.query(context="members", auth=True)
    async def roster() -> list[str]:
        return []

    async def refused(topics: Any, user: str | None) -> None:
        await api.live.subscribe(ctx_for(api, user), api.live.topics(topics), ListSink())

    with pytest.raises(Unauthorized):
        await refused(["members"], None)
    with pytest.raises(Forbidden):
        await refused(["admin"], "1")
    with pytest.raises(Unauthorized):
        await refused(["admin"], None)
    with pytest.raises(Forbidden):
        await refused([{"context": "inbox", "params": {"owner_id": 2}}], "1")
    with pytest.raises(Forbidden):  # one refused topic refuses the subscription
        await refused(["members", {"context": "inbox", "params": {"owner_id": 2}}], "1")
    assert api.live.subscribers == 0
    assert seen == [{"owner_id": 2}, {"owner_id": 2}]

    await refused(["members"], "1")
    await refused(["admin"], "9")
    await refused([{"context": "inbox", "params": {"owner_id": "1"}}], "1")
    assert seen[-1] == {"owner_id": 1}  # the topic's params, validated as the query takes them
    assert api.live.subscribers == 3


# -- resuming ---------------------------------------------------------------------------


async def test_since_replays_exactly_what_was_missed_while_new_entries_arrive(
    api: Tether, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness, _ = await subscribe(api, ["todos"])  # stays: shows when the feed has handed out
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 1)
    await first.wait_for(1)
    since = subscription.last_id
    assert since == first.ids[0]
    subscription.close()
    for n in (2, 3, 4):  # missed
        await add(api, n)
    await witness.wait_for(4)

    replaying, during = anyio.Event(), anyio.Event()
    read_once, after_read = anyio.Event(), anyio.Event()
    original = api.live.broker.read_after
    reads: list[str] = []

    async def read_after(stream: str, after: str, count: int) -> Any:
        reads.append(after)
        if len(reads) == 1:
            replaying.set()
            with anyio.fail_after(15):
                await during.wait()  # entries 5 and 6: in the page read now, and live
        found = await original(stream, after, count)
        if len(reads) == 1:
            read_once.set()
            with anyio.fail_after(15):
                await after_read.wait()  # entries 7 and 8: live only, held until the replay ends
        return found

    monkeypatch.setattr(api.live.broker, "read_after", read_after)

    async def publisher() -> None:
        with anyio.fail_after(15):
            await replaying.wait()
        await add(api, 5)
        await add(api, 6)
        await witness.wait_for(6)
        during.set()
        await read_once.wait()
        await add(api, 7)
        await add(api, 8)
        await witness.wait_for(8)
        after_read.set()
        for n in range(9, 21):  # while the replay ends, and after
            await add(api, n)

    resumed = ListSink()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(publisher)
        _, again = await subscribe(api, ["todos"], resumed, since=since)
    await witness.wait_for(20)
    await resumed.wait_for(19)
    assert resumed.ids == witness.ids[1:]
    owners = [p["invalidate"][0]["params"]["owner_id"] for p in resumed.payloads]
    assert owners == list(range(2, 21))
    assert again.last_id == witness.ids[-1]
    # Nothing more arrives (a later entry shows it), and there is no duplicate at all.
    await add(api, 21)
    await resumed.wait_for(20)
    assert len(set(resumed.ids)) == len(resumed.ids) == 20


async def test_since_of_entries_the_ring_no_longer_holds_gives_one_resync_then_live_entries(
    apps: Callable[..., Tether], kind: str
) -> None:
    # MemoryBroker(maxlen=5) holds 5 entries; Redis trims its approximate MAXLEN by
    # whole nodes (100 entries), so it gets more.
    api = apps(maxlen=5)
    witness, _ = await subscribe(api, ["todos"])  # the feed keeps up: only `since` is gone
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 1)
    await first.wait_for(1)
    since = subscription.last_id
    assert since is not None
    subscription.close()
    for n in range(2, 12 if kind == "memory" else 302):
        await add(api, n)
        await witness.wait_for(n)
    latest = await api.live.broker.position(api.live.stream)
    assert latest == witness.ids[-1]

    resumed, again = await subscribe(api, ["todos"], since=since)
    assert resumed.items == [(latest, {"id": latest, "resync": True})]
    assert again.last_id == latest
    await add(api, 500)
    assert shape((await resumed.wait_for(2))[1:]) == [([todos_entry(500)], [])]
    assert len(resumed.items) == 2


async def test_a_since_that_is_no_id_of_the_stream_gives_a_resync(api: Tether) -> None:
    await add(api, 1)
    await api.live.settle()
    latest = await api.live.broker.position(api.live.stream)
    for since in ("not-an-id", "999999999999999-0"):
        resumed, subscription = await subscribe(api, ["todos"], since=since)
        assert resumed.payloads == [{"id": latest, "resync": True}]
        subscription.close()


async def test_since_the_newest_entry_replays_nothing_and_goes_on_live(api: Tether) -> None:
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 1)
    await first.wait_for(1)
    resumed, _ = await subscribe(api, ["todos"], since=subscription.last_id)
    assert resumed.items == []
    await add(api, 2)
    assert shape(await resumed.wait_for(1)) == [([todos_entry(2)], [])]


async def test_a_replay_passes_over_entries_for_other_topics_and_malformed_ones(
    api: Tether,
) -> None:
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 1)
    await first.wait_for(1)
    subscription.close()
    await api.call("bump_stats", {"owner_id": 1})
    await api.live.settle()
    await api.live.broker.publish(api.live.stream, b"not json")
    await add(api, 2)
    await api.live.settle()
    resumed, again = await subscribe(api, ["todos"], since=first.ids[0])
    assert shape(resumed.payloads) == [([todos_entry(2)], [])]
    assert again.last_id == resumed.ids[0]


async def test_a_resumed_subscriber_without_room_during_the_replay_is_dropped(
    api: Tether,
) -> None:
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 1)
    await first.wait_for(1)
    subscription.close()
    for n in (2, 3, 4):
        await add(api, n)
    await api.live.settle()
    small = ListSink(room=2)
    _, dropped = await subscribe(api, ["todos"], small, since=first.ids[0])
    assert small.ended == ["overflow"]
    assert dropped.closed
    assert api.live.dropped == 1
    assert [p["invalidate"][0]["params"]["owner_id"] for p in small.payloads] == [2, 3]
    assert small.after_end == []


async def test_a_resync_without_room_drops_the_subscriber(apps: Callable[..., Tether]) -> None:
    api = apps()
    full = ListSink(room=0)
    _, dropped = await subscribe(api, ["todos"], full, since="not-an-id")
    assert full.ended == ["overflow"]
    assert dropped.closed
    assert api.live.subscribers == 0


@pytest.mark.parametrize("setup", MEMORY_ONLY, ids=["asyncio-memory", "trio-memory"])
async def test_live_entries_held_during_a_replay_are_bounded(
    apps: Callable[..., Tether], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = apps(live=LiveSettings(subscriber_queue=2))
    witness, _ = await subscribe(api, ["todos"])
    await add(api, 1)
    await witness.wait_for(1)
    original = api.live.broker.read_after

    async def read_after(stream: str, after: str, count: int) -> Any:
        found = await original(stream, after, count)
        for n in (2, 3, 4):  # three live entries while the replay holds them: one too many
            await add(api, n)
        await witness.wait_for(4)
        return found

    monkeypatch.setattr(api.live.broker, "read_after", read_after)
    held = ListSink()
    _, subscription = await subscribe(api, ["todos"], held, since=witness.ids[0])
    assert held.ended == ["overflow"]
    assert subscription.closed
    assert api.live.dropped == 1
    # Ended means ended: the sink hears nothing after `end` (no replayed or held entry).
    assert held.after_end == []
    await add(api, 5)
    await witness.wait_for(5)
    assert held.after_end == []


@pytest.mark.parametrize("setup", MEMORY_ONLY, ids=["asyncio-memory", "trio-memory"])
async def test_a_sink_that_fills_while_held_entries_are_given_is_dropped(
    apps: Callable[..., Tether], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = apps()
    witness, _ = await subscribe(api, ["todos"])
    await add(api, 1)
    await witness.wait_for(1)
    original = api.live.broker.read_after

    async def read_after(stream: str, after: str, count: int) -> Any:
        found = await original(stream, after, count)
        for n in (2, 3):  # live while the replay runs: held, then given
            await add(api, n)
        await witness.wait_for(3)
        return found

    monkeypatch.setattr(api.live.broker, "read_after", read_after)
    small = ListSink(room=1)
    _, subscription = await subscribe(api, ["todos"], small, since=witness.ids[0])
    assert [p["invalidate"][0]["params"]["owner_id"] for p in small.payloads] == [2]
    assert small.ended == ["overflow"]
    assert subscription.closed
    assert small.after_end == []


async def test_a_replay_longer_than_the_subscriber_queue_is_one_resync(
    apps: Callable[..., Tether],
) -> None:
    api = apps(live=LiveSettings(subscriber_queue=3))
    first, _ = await subscribe(api, ["todos"])
    await add(api, 0)
    await first.wait_for(1)
    since = first.ids[0]
    for n in (1, 2, 3):
        await add(api, n)
        await api.call("bump_stats", {"owner_id": n})  # not the subscriber's: not counted
    await first.wait_for(4)
    replayed, _ = await subscribe(api, ["todos"], since=since)
    owners = [p["invalidate"][0]["params"]["owner_id"] for p in replayed.payloads]
    assert owners == [1, 2, 3]
    await add(api, 4)
    await first.wait_for(5)
    await api.live.settle()
    latest = await api.live.broker.position(api.live.stream)
    too_far, again = await subscribe(api, ["todos"], since=since)
    assert too_far.payloads == [{"id": latest, "resync": True}]
    assert again.last_id == latest


async def test_subscribing_while_the_broker_cannot_be_read_is_service_unavailable(
    api: Tether, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await subscribe(api, ["todos"])
    await add(api, 1)
    await first.wait_for(1)

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise BrokerUnavailable("Redis did not answer")

    monkeypatch.setattr(api.live.broker, "read_after", down)
    with pytest.raises(ServiceUnavailable) as excinfo:
        await subscribe(api, ["todos"], since=first.ids[0])
    assert excinfo.value.to_dict()["details"] == {"reason": "Redis did not answer"}
    assert api.live.subscribers == 1
    monkeypatch.setattr(api.live.broker, "position", down)
    with pytest.raises(ServiceUnavailable):
        await subscribe(api, ["todos"])
    assert api.live.subscribers == 1
    monkeypatch.undo()
    await add(api, 2)  # the one left is served as before
    assert shape((await first.wait_for(2))[1:]) == [([todos_entry(2)], [])]


async def test_a_replay_longer_than_a_page_of_the_stream_is_read_in_pages(
    apps: Callable[..., Tether],
) -> None:
    api = apps(live=LiveSettings(subscriber_queue=2000))
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 0)
    await first.wait_for(1)
    subscription.close()
    pushes = [orjson.dumps({"invalidate": [todos_entry(n)], "merge": []}) for n in range(1, 1201)]
    ids = await api.live.broker.publish_many(api.live.stream, pushes)
    resumed, again = await subscribe(api, ["todos"], since=first.ids[0])
    assert resumed.ids == ids
    owners = [p["invalidate"][0]["params"]["owner_id"] for p in resumed.payloads]
    assert owners == list(range(1, 1201))
    assert again.last_id == ids[-1]


async def test_without_a_user_resolver_or_dependencies_anyone_subscribes(
    make_broker: Callable[..., Broker],
) -> None:
    api = Tether(broker=make_broker())
    api.live.stream = f"{LIVE_STREAM}.test.{uuid.uuid4().hex[:12]}"

    @api.query(context="board")
    async def board(user: Annotated[User | None, Depends(current_user)]) -> list[str]:
        return []

    @api.command(affects=["board"])
    async def post() -> None: ...

    try:
        ctx = ctx_for(api, "1")
        sink = ListSink()
        await api.live.subscribe(ctx, api.live.topics(["board"]), sink)
        assert ctx.user is None  # no resolver: nobody is asked who it is
        await api.call("post")
        assert shape(await sink.wait_for(1)) == [([{"context": "board"}], [])]
    finally:
        await api.live.close()
        await api.live.broker.close()


@pytest.mark.parametrize("setup", [("asyncio", "redis")], ids=["asyncio-redis"])
async def test_a_redis_that_is_down_refuses_subscribers_and_holds_pushes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = build(RedisBroker(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    try:
        with pytest.raises(ServiceUnavailable, match="Live push cannot reach its broker"):
            await subscribe(api, ["todos"])
        assert api.live.subscribers == 0
        with caplog.at_level(logging.ERROR, logger="tether"):
            found = await api.call("add_todo", {"owner_id": 1, "title": "x"}, effects=True)
            assert found.invalidate == [todos_entry(1)]  # answered: the push waits
            await api.live.close(grace=0.2)
        assert api.live.published == 0
        assert "live: 1 pushes were not published before shutdown" in caplog.text
    finally:
        await api.live.broker.close()


class Outage:
    """Makes a broker refuse appends until `end()`; `failed` is set at the first refusal."""

    def __init__(self, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = True
        self.failed = anyio.Event()
        publish, publish_many = broker.publish, broker.publish_many

        async def refuse() -> None:
            self.failed.set()
            raise BrokerUnavailable("Redis did not answer XADD")

        async def one(stream: str, data: bytes) -> str:
            if self.down:
                await refuse()
            return await publish(stream, data)

        async def many(stream: str, items: Any) -> list[str]:
            if self.down:
                await refuse()
            return await publish_many(stream, items)

        monkeypatch.setattr(broker, "publish", one)
        monkeypatch.setattr(broker, "publish_many", many)

    async def refused(self) -> None:
        with anyio.fail_after(15):
            await self.failed.wait()

    def end(self) -> None:
        self.down = False


@pytest.mark.parametrize("setup", MEMORY_ONLY, ids=["asyncio-memory", "trio-memory"])
async def test_pushes_wait_while_the_broker_refuses_them_and_then_go_in_order(
    apps: Callable[..., Tether], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = apps()
    sink, _ = await subscribe(api, ["todos"])
    outage = Outage(api.live.broker, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="tether"):
        for n in (1, 2, 3):
            await add(api, n)  # answered at once: the pushes wait in the process
        await outage.refused()
        assert api.live.published == 0
        assert sink.items == []
        outage.end()
        payloads = await sink.wait_for(3)
        await api.live.settle()
    assert [p["invalidate"][0]["params"]["owner_id"] for p in payloads] == [1, 2, 3]
    assert api.live.published == 3
    assert "live: the broker cannot take pushes (Redis did not answer XADD); they wait" in (
        caplog.text
    )
    assert "live: the broker takes pushes again" in caplog.text


@pytest.mark.parametrize("setup", MEMORY_ONLY, ids=["asyncio-memory", "trio-memory"])
async def test_pushes_past_the_publish_queue_are_dropped_and_everyone_resyncs(
    apps: Callable[..., Tether], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = apps(live=LiveSettings(publish_queue=2))
    first, subscription = await subscribe(api, ["todos"])
    await add(api, 0)
    await first.wait_for(1)
    since = first.ids[0]
    subscription.close()
    live, _ = await subscribe(api, ["todos"])
    outage = Outage(api.live.broker, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="tether"):
        for n in (1, 2, 3, 4):
            await add(api, n)  # 1 and 2 are dropped: the queue holds 2
        await outage.refused()
        outage.end()
        payloads = await live.wait_for(3)
        await api.live.settle()
    assert "pushes wait for the broker; the oldest are dropped" in caplog.text
    resync_id = live.ids[0]
    assert payloads[0] == {"id": resync_id, "resync": True}
    assert [p["invalidate"][0]["params"]["owner_id"] for p in payloads[1:]] == [3, 4]
    assert order(resync_id) < order(live.ids[1])
    # A subscriber whose gap holds the resync entry resyncs too, rather than replaying.
    latest = await api.live.broker.position(api.live.stream)
    resumed, _ = await subscribe(api, ["todos"], since=since)
    assert resumed.payloads == [{"id": latest, "resync": True}]


# -- resync of the feed -----------------------------------------------------------------


@pytest.mark.parametrize("setup", MEMORY_ONLY, ids=["asyncio-memory", "trio-memory"])
async def test_a_feed_left_behind_resyncs_every_subscriber(
    apps: Callable[..., Tether], caplog: pytest.LogCaptureFixture
) -> None:
    api = apps(maxlen=5)
    one, _ = await subscribe(api, ["todos"])
    two, _ = await subscribe(api, ["stats"])
    several, _ = await subscribe(api, ["stats", {"context": "todos", "params": {"owner_id": 1}}])
    full, _ = await subscribe(api, ["todos"], ListSink(room=0))
    broker = api.live.broker
    data = orjson.dumps({"invalidate": [todos_entry(1)], "merge": []})
    with caplog.at_level(logging.WARNING, logger="tether"):
        # Memory publishes without yielding: the feed finds 10 entries, of which 5 are gone.
        for _ in range(10):
            await broker.publish(api.live.stream, data)
        latest = await broker.position(api.live.stream)
        await one.wait_for(1)
        await two.wait_for(1)
    resync = {"id": latest, "resync": True}
    await several.wait_for(1)
    assert one.payloads == two.payloads == several.payloads == [resync]  # once each
    assert full.ended == ["overflow"]
    assert "the feed lost entries" in caplog.text
    await api.call("everything")
    assert shape((await one.wait_for(2))[1:]) == [([todos_entry()], [])]
    assert shape((await two.wait_for(2))[1:]) == [([stats_entry()], [])]


def test_resync_payload_is_the_id_and_the_flag() -> None:
    assert orjson.loads(resync_payload("1700000000000-3")) == {
        "id": "1700000000000-3",
        "resync": True,
    }


# -- overflow, closing, malformed entries -----------------------------------------------


async def test_a_subscriber_without_room_is_dropped_and_the_others_go_on(api: Tether) -> None:
    slow, slow_subscription = await subscribe(api, ["todos"], ListSink(room=1))
    fast, _ = await subscribe(api, ["todos"])
    await add(api, 1)
    await add(api, 2)
    await fast.wait_for(2)
    await slow.wait_ended()
    assert slow.ended == ["overflow"]
    assert slow_subscription.closed
    assert api.live.dropped == 1
    assert api.live.subscribers == 1
    await add(api, 3)
    assert len(await fast.wait_for(3)) == 3
    assert len(slow.items) == 1
    assert slow.after_end == []


async def test_close_ends_every_sink_and_a_later_subscription_starts_again(api: Tether) -> None:
    one, first = await subscribe(api, ["todos"])
    two, second = await subscribe(api, ["me"], user="1")
    await api.live.close()
    assert one.ended == two.ended == ["closed"]
    assert first.closed
    assert second.closed
    assert api.live.subscribers == 0
    first.close()  # idempotent
    again, _ = await subscribe(api, ["todos"])
    await add(api, 7)
    assert shape(await again.wait_for(1)) == [([todos_entry(7)], [])]
    assert one.items == []


async def test_a_cancelled_subscription_hears_nothing_more(api: Tether) -> None:
    gone, subscription = await subscribe(api, ["todos"])
    stays, _ = await subscribe(api, ["todos"])
    subscription.close()
    assert api.live.subscribers == 1
    await add(api, 1)
    await stays.wait_for(1)
    assert gone.items == []
    assert gone.ended == []


async def test_a_malformed_entry_is_skipped_and_the_next_delivered(
    api: Tether, caplog: pytest.LogCaptureFixture
) -> None:
    sink, _ = await subscribe(api, ["todos"])
    stream = api.live.stream
    with caplog.at_level(logging.WARNING, logger="tether"):
        for junk in (
            b"not json",
            b"[1, 2]",
            b'{"invalidate": 1, "merge": []}',
            b'{"invalidate": [{"context": "todos"}]}',
        ):
            await api.live.broker.publish(stream, junk)
        await add(api, 4)
        assert shape(await sink.wait_for(1)) == [([todos_entry(4)], [])]
    assert caplog.text.count("is not a push; skipped") == 4


async def test_a_sink_whose_end_fails_does_not_stop_the_feed(
    api: Tether, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(ListSink):
        def end(self, reason: str) -> None:
            super().end(reason)
            raise RuntimeError("socket gone")

    failing, _ = await subscribe(api, ["todos"], Failing(room=0))
    other, _ = await subscribe(api, ["todos"])
    with caplog.at_level(logging.ERROR, logger="tether"):
        await add(api, 1)
        await add(api, 2)
        await other.wait_for(2)
    assert failing.ended == ["overflow"]
    assert "a subscriber's sink failed to end" in caplog.text


async def test_the_first_resume_token_is_the_streams_position(api: Tether) -> None:
    await add(api, 1)
    await api.live.settle()
    position = await api.live.broker.position(api.live.stream)
    sink, subscription = await subscribe(api, ["todos"])
    assert subscription.last_id == position
    await add(api, 2)
    await sink.wait_for(1)
    assert subscription.last_id == sink.ids[0]
    assert order(sink.ids[0]) > order(position)


async def test_published_counts_this_processs_entries(api: Tether) -> None:
    await add(api, 1)
    await api.call("rename", {"name": "x"})
    await api.call("stats", {"owner_id": 1})
    await api.live.settle()
    assert api.live.published == 2


# -- topics -----------------------------------------------------------------------------


def topic_api() -> Tether:
    return build(MemoryBroker(), live=LiveSettings(max_topics=3))


def test_topics_are_names_or_objects_with_validated_params() -> None:
    api = topic_api()
    live = api.live
    (todos,) = live.topics("todos")
    assert isinstance(todos, Topic)
    assert (todos.kind, todos.name, dict(todos.params), todos.per_user) == (
        "context",
        "todos",
        {},
        False,
    )
    assert [op.name for op in todos.slots] == ["todos", "todo_count"]
    (narrow,) = live.topics({"context": "todos", "params": {"owner_id": "5", "done": "true"}})
    assert narrow.to_dict() == {"context": "todos", "params": {"owner_id": 5, "done": True}}
    (stats,) = live.topics([{"query": "stats", "params": {"owner_id": 2}}])
    assert stats.to_dict() == {"query": "stats", "params": {"owner_id": 2}}
    assert [op.name for op in stats.slots] == ["stats"]
    (me,) = live.topics(["me"])
    assert me.per_user


@pytest.mark.parametrize(
    "request_",
    [
        [],
        5,
        None,
        [3],
        [["todos"]],
        [{"context": "todos", "extra": 1}],
        [{"context": 5}],
        [{"params": {}}],
        [{"context": "todos", "params": [1]}],
        ["todos", "stats", "me", "todos"],
    ],
    ids=[
        "empty",
        "number",
        "none",
        "number-item",
        "list-item",
        "extra-key",
        "name-not-text",
        "no-name",
        "params-not-object",
        "too-many",
    ],
)
def test_malformed_topic_requests_are_refused(request_: Any) -> None:
    with pytest.raises(ValidationFailed) as excinfo:
        topic_api().live.topics(request_)
    (error,) = excinfo.value.to_dict()["details"]
    assert error["loc"] == ["contexts"]
    assert error["msg"].startswith("Expected ")


def test_topic_params_are_validated_as_the_queries_take_them() -> None:
    live = topic_api().live
    with pytest.raises(ValidationFailed) as excinfo:
        live.topics([{"context": "todos", "params": {"owner_id": "five", "colour": "red"}}])
    errors = excinfo.value.to_dict()["details"]
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["owner_id"], "int_parsing"),
        (["colour"], "extra_forbidden"),
    ]
    with pytest.raises(ValidationFailed):
        live.topics([{"query": "stats", "params": {"day": 1}}])


def test_unknown_names_and_operations_that_are_not_read_are_not_found() -> None:
    live = topic_api().live
    for name in ("nothing", "add_todo", "todo_count"):  # unknown, a command, a slot
        with pytest.raises(NotFound) as excinfo:
            live.topics([name])
        assert excinfo.value.to_dict()["details"] == {"context": name}


def test_topics_from_a_query_string_give_params_to_the_targets_that_take_them() -> None:
    live = topic_api().live
    todos, stats, me = live.topics_from_query(["todos", "stats", "me"], {"owner_id": "5"})
    assert todos.to_dict() == {"context": "todos", "params": {"owner_id": 5}}
    assert stats.to_dict() == {"query": "stats", "params": {"owner_id": 5}}
    assert me.to_dict() == {"context": "me", "params": {}}
    with pytest.raises(ValidationFailed) as excinfo:
        live.topics_from_query(["me"], {"owner_id": "5", "colour": "x"})
    assert [e["loc"] for e in excinfo.value.to_dict()["details"]] == [["owner_id"], ["colour"]]
    with pytest.raises(ValidationFailed):
        live.topics_from_query([], {})
    with pytest.raises(ValidationFailed):
        live.topics_from_query(["todos", "stats", "me", "todos"], {})
    with pytest.raises(NotFound):
        live.topics_from_query(["todos", "nothing"], {})


@pytest.mark.parametrize(
    "options",
    [{"subscriber_queue": 0}, {"max_topics": -1}, {"max_topics": True}, {"subscriber_queue": 1.5}],
)
def test_live_settings_take_positive_integers(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="must be a positive integer"):
        LiveSettings(**options)


def test_the_hub_is_the_tethers() -> None:
    api = topic_api()
    assert api.live.broker is api.events.broker
    assert api.live.contexts is api.contexts
    assert api.live.settings == LiveSettings(max_topics=3)
    assert api.live.subscribers == 0


async def test_a_push_published_twice_is_given_once_live_and_in_a_replay(api: Tether) -> None:
    # A batch the publisher retries after a broker failure may already be on the stream:
    # the same push (same publisher, same number) then appears under two ids.
    sink, subscription = await subscribe(api, ["todos"])
    since = subscription.last_id
    await add(api, 1)
    await api.live.settle()
    [entry] = (await api.live.broker.read_after(api.live.stream, since, 10))[0]
    assert orjson.loads(entry.data)["n"] >= 1
    await api.live.broker.publish(api.live.stream, entry.data)  # the retried copy
    await add(api, 2)
    assert shape(await sink.wait_for(2)) == [([todos_entry(1)], []), ([todos_entry(2)], [])]
    assert len(sink.payloads) == 2

    resumed, _ = await subscribe(api, ["todos"], since=since)
    assert shape(await resumed.wait_for(2)) == [([todos_entry(1)], []), ([todos_entry(2)], [])]
    await add(api, 3)
    await resumed.wait_for(3)
    assert shape(resumed.payloads)[2] == ([todos_entry(3)], [])
    assert len(resumed.payloads) == 3
