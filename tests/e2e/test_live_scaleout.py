"""Live push across processes: 3 uvicorn workers behind one port, sharing pushes through Redis.

`uvicorn --workers 3 tests.e2e._live_app:app` runs with `TETHER_BROKER=redis://...` (a Redis
of each test's own, so that one test may restart it). Every post `post(publisher, seq)`
invalidates `{"context": "feed", "params": {"publisher": p, "seq": n}}`, so a subscriber can
tell, per publisher, whether it received every post, once, in order.

Publishers are HTTP clients, each holding one keep-alive connection, on every worker (a
publisher's posts are sequential, so they are published in its order). Subscribers are held
on every worker: WebSocket envelope `LIVE` subscriptions, a WebSocket JSON-RPC `rpc.live`
subscription and SSE `GET /api/live` streams, each knowing the PID of the worker that
serves it (asked on the same connection before subscribing).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
from anyio.abc import TaskGroup
from websockets.asyncio.client import ClientConnection, connect

from tests._redis_server import RedisServer, running_redis
from tests.e2e._workers import Workers, running_workers

pytestmark = pytest.mark.e2e

WORKERS = 3
logger = logging.getLogger(__name__)
TIMEOUT = 20.0
"""Seconds any one wait of these tests may take before it fails."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py, and the Redis broker, are asyncio-only


# -- the servers ------------------------------------------------------------------------------


@pytest.fixture
def redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A Redis of this test's own (never the session's: one test restarts it).

    Parametrized indirectly with True, it is persistent (append-only file, fsync always).
    """
    with running_redis(persistent=getattr(request, "param", False)) as server:
        yield server


@pytest.fixture
def workers(redis: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    options = [
        # SSE streams whose client has left end at their next heartbeat: not waited for.
        "--timeout-graceful-shutdown",
        "1",
        # A publisher's connection stays on its worker however long a test waits.
        "--timeout-keep-alive",
        "60",
    ]
    with running_workers(
        "tests.e2e._live_app:app",
        tmp_path / "uvicorn.log",
        env={"TETHER_BROKER": redis.url},
        options=options,
    ) as server:
        yield server


# -- the clients ------------------------------------------------------------------------------


def order(entry_id: str) -> tuple[int, int]:
    """A stream id (`ms-seq`) as a pair that sorts as ids do."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Subscriber:
    """One live subscription: how it is held, the worker serving it, and every push it got."""

    def __init__(self, kind: str, since: str | None = None) -> None:
        self.kind = kind
        """"ws" (envelope LIVE), "rpc" (JSON-RPC rpc.live) or "sse"."""
        self.since = since
        """The resume token presented (`since`, or Last-Event-ID for SSE)."""
        self.pid = 0
        self.token: str | None = None
        """The resume token of the ready message."""
        self.pushes: list[dict[str, Any]] = []
        """Every push payload, in arrival order (`{"id", "invalidate", "merge"}` or a resync)."""
        self.ready = anyio.Event()
        self.scope = anyio.CancelScope()

    def __repr__(self) -> str:
        return f"<{self.kind} on {self.pid}: {len(self.pushes)} pushes>"

    def posts(self, after: int = 0) -> list[tuple[str, int]]:
        """The (publisher, seq) of every invalidation pushed after the first `after` pushes."""
        return [
            (entry["params"]["publisher"], entry["params"]["seq"])
            for push in self.pushes[after:]
            for entry in push.get("invalidate", ())
        ]

    def resyncs(self) -> list[int]:
        """Where in `pushes` the resyncs are."""
        return [i for i, push in enumerate(self.pushes) if push.get("resync")]

    def last_id(self) -> str:
        return str(self.pushes[-1]["id"])


async def hold_ws(url: str, sub: Subscriber, on_pid: Callable[[int], bool]) -> None:
    """Open a socket, ask its worker's PID; if `on_pid` accepts it, subscribe and read pushes."""
    ws = await connect(url.replace("http", "ws", 1) + "/api/ws")
    try:
        with sub.scope:
            if sub.kind == "ws":
                await ws.send(orjson.dumps({"uuid": "pid", "route": "pid", "payload": {}}).decode())
                sub.pid = orjson.loads(await ws.recv())["payload"]
            else:
                await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "pid"}).decode())
                sub.pid = orjson.loads(await ws.recv())["result"]
            if not on_pid(sub.pid):
                return
            since = {"since": sub.since} if sub.since is not None else {}
            if sub.kind == "ws":
                await ws_envelope_live(ws, sub, since)
            else:
                await ws_jsonrpc_live(ws, sub, since)
    finally:
        # Closed here, not by a cancelled `async with` (whose close would be cancelled too).
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await ws.close()


async def ws_envelope_live(ws: ClientConnection, sub: Subscriber, since: dict[str, str]) -> None:
    live = {"uuid": "live", "route": "LIVE", "payload": {"contexts": ["feed"], **since}}
    await ws.send(orjson.dumps(live).decode())
    async for raw in ws:
        message = orjson.loads(raw)
        assert message["uuid"] == "live", message
        assert message["status"] == 200, message
        stream = message["headers"]["stream"]
        if stream == "ready":
            sub.token = message["payload"]["id"]
            sub.ready.set()
        elif stream == "item":
            sub.pushes.append(message["payload"])
        else:
            pytest.fail(f"the subscription ended: {message}")


async def ws_jsonrpc_live(ws: ClientConnection, sub: Subscriber, since: dict[str, str]) -> None:
    params = {"contexts": ["feed"], **since}
    live = {"jsonrpc": "2.0", "id": 7, "method": "rpc.live", "params": params}
    await ws.send(orjson.dumps(live).decode())
    async for raw in ws:
        message = orjson.loads(raw)
        if message.get("id") == 7:
            assert message["result"]["subscription"] == 7, message
            sub.token = message["result"]["id"]
            sub.ready.set()
            continue
        assert message["method"] == "subscription", message
        notice = message["params"]
        assert notice["subscription"] == 7, message
        if "end" in notice:
            pytest.fail(f"the subscription ended: {message}")
        sub.pushes.append(notice["result"])


async def hold_sse(url: str, sub: Subscriber, on_pid: Callable[[int], bool]) -> None:
    """Ask a worker's PID on one keep-alive connection, then read `/api/live` on that connection."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    client = httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(5, read=None))
    try:
        with sub.scope:
            await read_sse(client, sub, on_pid)
    finally:
        # Closed here, not by a cancelled `async with` (whose close would be cancelled too).
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await client.aclose()


async def read_sse(
    client: httpx.AsyncClient, sub: Subscriber, on_pid: Callable[[int], bool]
) -> None:
    answer = await client.get("/api/call/pid")
    assert answer.status_code == 200, answer.text
    sub.pid = answer.json()["result"]
    if not on_pid(sub.pid):
        return
    headers = {"Last-Event-ID": sub.since} if sub.since is not None else {}
    params = {"contexts": "feed"}
    async with client.stream("GET", "/api/live", params=params, headers=headers) as stream:
        assert stream.status_code == 200, await stream.aread()
        event, data, event_id = "", b"", None
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data += line.partition(":")[2].strip().encode()
            elif line.startswith("id:"):
                event_id = line.partition(":")[2].strip()
            elif line == "":
                if event == "ready":
                    sub.token = orjson.loads(data)["id"]
                    sub.ready.set()
                elif event in ("effects", "resync"):
                    payload = orjson.loads(data)
                    assert payload["id"] == event_id, (payload, event_id)
                    assert bool(payload.get("resync")) == (event == "resync"), payload
                    sub.pushes.append(payload)
                elif event:
                    pytest.fail(f"unexpected SSE event {event}: {data!r}")
                event, data, event_id = "", b"", None


async def one_on_each_worker(tasks: TaskGroup, url: str) -> list[Subscriber]:
    """An envelope subscriber on each worker."""
    subs: list[Subscriber] = []
    for _ in range(WORKERS):
        taken = frozenset(sub.pid for sub in subs)
        subs.append(
            await subscribe(tasks, url, "ws", wanted=lambda pid, taken=taken: pid not in taken)
        )
    return subs


async def subscribe(
    tasks: TaskGroup,
    url: str,
    kind: str,
    *,
    since: str | None = None,
    wanted: Callable[[int], bool] = lambda pid: True,
) -> Subscriber:
    """A subscriber of `kind` on a worker whose PID `wanted` accepts (new connections until one)."""
    hold = hold_sse if kind == "sse" else hold_ws
    # Until TIMEOUT: a worker still starting takes no connection yet.
    with anyio.move_on_after(TIMEOUT):
        while True:
            sub = Subscriber(kind, since)
            finished = anyio.Event()

            async def run(sub: Subscriber = sub, finished: anyio.Event = finished) -> None:
                try:
                    await hold(url, sub, wanted)
                finally:
                    finished.set()

            tasks.start_soon(run)
            async with anyio.create_task_group() as race:

                async def on(
                    event: anyio.Event, scope: anyio.CancelScope = race.cancel_scope
                ) -> None:
                    await event.wait()
                    scope.cancel()

                race.start_soon(on, sub.ready)
                race.start_soon(on, finished)
            if sub.ready.is_set():
                return sub
            await anyio.sleep(0.02)
    pytest.fail(f"no {kind} connection reached a wanted worker within {TIMEOUT:g} s")


class Publisher:
    """An HTTP client holding one keep-alive connection (so one worker): posts in order."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.client = httpx.AsyncClient(
            base_url=url,
            timeout=10,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self.pid = 0
        self.sent = 0
        """The next seq."""
        self.statuses: list[int] = []

    async def post(self) -> int:
        seq = self.sent
        self.sent += 1
        try:
            answer = await self.client.post(
                "/api/call/post", json={"publisher": self.name, "seq": seq}
            )
        except httpx.TransportError:
            self.statuses.append(0)
            return 0
        self.statuses.append(answer.status_code)
        if answer.status_code == 200:
            assert answer.json()["result"] == self.pid, "the connection moved to another worker"
            assert answer.headers["cache-control"] == "no-store"
        return answer.status_code

    async def posts(self, count: int) -> None:
        for _ in range(count):
            assert await self.post() == 200, self.statuses


async def publishers(url: str, count: int, pids: set[int]) -> list[Publisher]:
    """`count` publishers, at least one on every worker of `pids`."""
    found: list[Publisher] = []
    spare: list[Publisher] = []
    names = (f"p{i}" for i in itertools.count())
    with anyio.fail_after(TIMEOUT):
        while len(found) < count:
            publisher = Publisher(url, next(names))
            answer = await publisher.client.get("/api/call/pid")
            assert answer.status_code == 200, answer.text
            publisher.pid = answer.json()["result"]
            covered = {p.pid for p in found}
            if publisher.pid not in covered or covered >= pids:
                found.append(publisher)
            else:
                spare.append(publisher)
                await anyio.sleep(0.02)
    for publisher in spare:
        await publisher.client.aclose()
    assert {p.pid for p in found} >= pids
    return found


async def post_all(senders: list[Publisher], each: int) -> None:
    """Every publisher posts `each` times, concurrently with the others (its own posts in order)."""
    async with anyio.create_task_group() as tasks:
        for publisher in senders:
            tasks.start_soon(publisher.posts, each)


async def wait_until(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    with anyio.move_on_after(TIMEOUT):
        while not condition():  # noqa: ASYNC110 (the readers signal nothing per push)
            await anyio.sleep(0.05)
        return
    pytest.fail(f"timed out waiting until {what()}")


def check_in_order(
    sub: Subscriber,
    expected: Mapping[str, Sequence[int]],
    after: int = 0,
    *,
    or_earlier: bool = False,
) -> None:
    """Pushes after the first `after`: exactly the `expected` seqs per publisher, in order, ids rising.

    With `or_earlier`, each publisher's seqs may also start earlier than expected (posts made
    before those expected, that the subscriber was still given), but with no gap either.
    """
    pushes = sub.pushes[after:]
    ids = [order(push["id"]) for push in pushes]
    assert ids == sorted(set(ids)), f"{sub}: ids not strictly increasing"
    for push in pushes:
        assert push["merge"] == [], push
        assert [entry["context"] for entry in push["invalidate"]] == ["feed"], push
    got: dict[str, list[int]] = {}
    for publisher, seq in sub.posts(after):
        got.setdefault(publisher, []).append(seq)
    if or_earlier:
        expected = {
            name: range(min(seqs[0], got.get(name, [seqs[0]])[0]), seqs[-1] + 1)
            for name, seqs in expected.items()
        }
    wanted = {name: list(seqs) for name, seqs in expected.items()}
    assert got == wanted, f"{sub}: {difference(got, wanted)}"


def difference(got: dict[str, list[int]], wanted: dict[str, list[int]]) -> str:
    """What differs, per publisher: seqs missing, extra or repeated, and the first out of order."""
    said = []
    for name in sorted(set(got) | set(wanted)):
        have, want = got.get(name, []), wanted.get(name, [])
        if have == want:
            continue
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        repeated = len(have) - len(set(have))
        swapped = [(a, b) for a, b in itertools.pairwise(have) if b < a]
        said.append(
            f"{name}: {len(have)} seqs, missing {missing[:10]} ({len(missing)}), extra"
            f" {extra[:10]}, repeated {repeated}, out of order {swapped[:5]} ({len(swapped)})"
        )
    return "; ".join(said)


async def closed(subs: list[Subscriber]) -> None:
    for sub in subs:
        sub.scope.cancel()
    await anyio.lowlevel.checkpoint()


# -- the tests --------------------------------------------------------------------------------

POSTS = 1000
PUBLISHERS = 4


async def test_a_thousand_posts_reach_subscribers_on_every_worker_in_order(
    workers: Workers,
) -> None:
    async with anyio.create_task_group() as tasks:
        # An envelope subscriber on each worker, then a JSON-RPC and an SSE one anywhere.
        subs = await one_on_each_worker(tasks, workers.url)
        subs.append(await subscribe(tasks, workers.url, "rpc"))
        subs.append(await subscribe(tasks, workers.url, "sse"))
        pids = {sub.pid for sub in subs}
        workers.pids |= pids
        assert len(pids) == WORKERS

        senders = await publishers(workers.url, PUBLISHERS, pids)
        await post_all(senders, POSTS // PUBLISHERS)
        workers.pids |= {p.pid for p in senders}
        for publisher in senders:
            await publisher.client.aclose()

        await wait_until(
            lambda: all(len(sub.posts()) >= POSTS for sub in subs), lambda: f"all of {subs}"
        )
        await anyio.sleep(0.2)  # a duplicate would show up meanwhile
        expected = {p.name: range(POSTS // PUBLISHERS) for p in senders}
        for sub in subs:
            check_in_order(sub, expected)
            assert all(len(push["invalidate"]) == 1 for push in sub.pushes)
        # One stream: every subscriber, on whichever worker, saw the same ids.
        assert len({tuple(push["id"] for push in sub.pushes) for sub in subs}) == 1
        await closed(subs)
        tasks.cancel_scope.cancel()


@pytest.mark.parametrize("redis", [False, True], ids=["empty", "persistent"], indirect=True)
async def test_every_subscriber_converges_when_redis_restarts(
    workers: Workers, redis: RedisServer
) -> None:
    """Without persistence the restarted Redis has lost the stream: every subscriber resyncs.

    With it, the stream survives: a subscriber may be replayed instead. Either way it must
    end up with every post (or a resync, then every later post), in order.
    """
    each = 30
    async with anyio.create_task_group() as tasks:
        subs = await one_on_each_worker(tasks, workers.url)
        subs.append(await subscribe(tasks, workers.url, "sse"))
        pids = {sub.pid for sub in subs}
        workers.pids |= pids
        senders = await publishers(workers.url, WORKERS, pids)

        # Before: every post reaches every subscriber.
        await post_all(senders, each)
        await wait_until(
            lambda: all(len(sub.posts()) == each * WORKERS for sub in subs), lambda: f"{subs}"
        )

        # During: posts go on while Redis is stopped and started again on the same port.
        restarted = anyio.Event()

        async def keep_posting() -> None:
            while not restarted.is_set():
                for publisher in senders:
                    await publisher.post()
                await anyio.sleep(0.01)

        async def restart() -> None:
            await anyio.sleep(0.2)
            await anyio.to_thread.run_sync(redis.stop)
            await anyio.sleep(0.5)  # the outage
            await anyio.to_thread.run_sync(redis.start)
            restarted.set()

        async with anyio.create_task_group() as outage:
            outage.start_soon(keep_posting)
            outage.start_soon(restart)
        during = Counter(status for p in senders for status in p.statuses[each:])
        logger.warning("posts during the outage: %s", sorted(during.items()))
        # Posts do not touch Redis before they answer: they answer throughout.
        assert set(during) <= {200, 503}, during

        # Every worker's feed reads the restarted Redis again (a probe post reaches every
        # subscriber); a resync, if any, came before it.
        probe = (await publishers(workers.url, 1, set()))[0]
        probe.name = "probe"
        senders.append(probe)
        with anyio.fail_after(TIMEOUT):
            while not all(("probe", probe.sent - 1) in sub.posts() for sub in subs):
                assert await probe.post() == 200
                await anyio.sleep(0.1)

        # After: the workers serve calls, and every later post reaches every subscriber.
        start = {p.name: p.sent for p in senders}
        start["probe"] -= 1  # the last probe: it reached every subscriber
        await post_all(senders[:-1], each)
        last = {(p.name, p.sent - 1) for p in senders}
        await wait_until(
            lambda: all(last <= set(sub.posts(sub_mark(sub))) for sub in subs),
            lambda: f"the posts after the restart reached {subs}",
        )
        await anyio.sleep(0.2)
        for sub in subs:
            resyncs = sub.resyncs()
            logger.warning("%s: %s", sub, "resync" if resyncs else "replayed, no resync")
            assert len(resyncs) <= 1, sub.pushes  # one resync at most
            if resyncs:
                # Then every post made after it, in order (posts before it: some, or none).
                mark = resyncs[0] + 1
                expected = {p.name: range(start[p.name], p.sent) for p in senders}
                check_in_order(sub, expected, after=mark, or_earlier=True)
                resync = order(sub.pushes[mark - 1]["id"])
                assert all(order(push["id"]) > resync for push in sub.pushes[mark:])
                before = [order(push["id"]) for push in sub.pushes[: mark - 1]]
                assert before == sorted(set(before)), sub
            else:
                # Replayed: every post that answered 200, in order (a failed call pushes nothing).
                answered = {
                    p.name: [seq for seq, status in enumerate(p.statuses) if status == 200]
                    for p in senders
                }
                check_in_order(sub, answered)
        if not redis.persistent:
            assert all(sub.resyncs() for sub in subs)  # the stream was lost with the server
        for publisher in senders:
            await publisher.client.aclose()
        await closed(subs)
        tasks.cancel_scope.cancel()


def sub_mark(sub: Subscriber) -> int:
    """Where the pushes after a subscriber's last resync start (0 without one)."""
    resyncs = sub.resyncs()
    return resyncs[-1] + 1 if resyncs else 0


async def test_a_subscriber_resumes_on_another_worker_with_exactly_what_it_missed(
    workers: Workers,
) -> None:
    each = 20
    async with anyio.create_task_group() as tasks:
        reference = await subscribe(tasks, workers.url, "ws")
        first = await subscribe(tasks, workers.url, "ws")
        pinned = first.pid
        first_sse = await subscribe(tasks, workers.url, "sse", wanted=lambda p: p == pinned)
        workers.pids |= {reference.pid, pinned}
        senders = await publishers(workers.url, WORKERS, set())

        # Both read every post, then leave worker `pinned`.
        await post_all(senders, each)
        total = each * len(senders)
        await wait_until(
            lambda: all(len(s.posts()) == total for s in (reference, first, first_sse)),
            lambda: f"{reference}, {first}, {first_sse}",
        )
        await closed([first, first_sse])
        ws_since, sse_since = first.last_id(), first_sse.last_id()
        assert ws_since == sse_since == reference.last_id()

        # What they miss while away.
        await post_all(senders, each)
        await wait_until(lambda: len(reference.posts()) == 2 * total, lambda: f"{reference}")

        # Back, on another worker, with their last id.
        again = await subscribe(
            tasks, workers.url, "ws", since=ws_since, wanted=lambda p: p != pinned
        )
        again_sse = await subscribe(
            tasks, workers.url, "sse", since=sse_since, wanted=lambda p: p != pinned
        )
        workers.pids |= {again.pid, again_sse.pid}
        assert pinned not in {again.pid, again_sse.pid}

        # And what follows, live.
        await post_all(senders, each)
        await wait_until(
            lambda: (
                all(len(s.posts()) == 3 * total for s in (reference,))
                and all(len(s.posts()) >= 2 * total for s in (again, again_sse))
            ),
            lambda: f"{reference}, {again}, {again_sse}",
        )
        await anyio.sleep(0.2)
        missed_and_later = reference.pushes[total:]
        assert len(missed_and_later) == 2 * total
        for sub in (again, again_sse):
            assert sub.pushes == missed_and_later, sub  # exactly, in order, no duplicate
        await closed([reference, again, again_sse])
        for publisher in senders:
            await publisher.client.aclose()
        tasks.cancel_scope.cancel()
