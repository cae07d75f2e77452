"""Scale-out: 3 uvicorn worker processes behind one port, sharing events through a real Redis.

`uvicorn --workers 3 tests.e2e._events_app:app` runs with `TETHER_BROKER=redis://...`. Commands
sent on fresh connections land on every worker; each emits one event. The test proves that
every event, whichever worker emitted it, reaches the handler group exactly once (one record
per event id, across the 3 processes), and reaches the stream subscribers of every worker
(an SSE connection held open on each worker sees every event).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from tests.e2e._workers import Workers, running_workers

pytestmark = pytest.mark.e2e

WORKERS = 3
PER_WORKER = 10
"""Events each worker must have emitted (commands go on until each has)."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py, and the Redis broker, are asyncio-only


@pytest.fixture
def handled_key() -> str:
    return f"test.scaleout.handled.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def workers(redis_url: str, handled_key: str, tmp_path: Path) -> Iterator[Workers]:
    env = {
        "TETHER_BROKER": redis_url,
        "TETHER_TEST_HANDLED_KEY": handled_key,
        "TETHER_TEST_GROUP": f"recorders.{handled_key.rsplit('.', 1)[1]}",
    }
    with running_workers(
        "tests.e2e._events_app:app",
        tmp_path / "uvicorn.log",
        env=env,
        options=["--timeout-graceful-shutdown", "3"],
    ) as server:
        yield server


class Feed:
    """One SSE connection to `feed`: the worker PID serving it, and every item it received."""

    def __init__(self) -> None:
        self.pid = 0
        self.items: list[dict[str, Any]] = []
        self.hello = anyio.Event()

    def event_ids(self) -> set[str]:
        return {item["event_id"] for item in self.items}


async def read_feed(url: str, feed: Feed) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client,
        client.stream("GET", f"{url}/api/stream/feed") as response,
    ):
        assert response.status_code == 200
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.partition(":")[2].strip()
            elif line.startswith("data:") and kind == "data":
                item = orjson.loads(line.partition(":")[2])
                if "hello" in item:
                    feed.pid = item["hello"]
                    feed.hello.set()
                else:
                    feed.items.append(item)


async def note(url: str, n: int) -> dict[str, Any]:
    # A fresh connection per command, so that the kernel hands them to every worker.
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{url}/api/call/note", json={"n": n})
    assert response.status_code == 200, response.text
    return response.json()["result"]  # type: ignore[no-any-return]


async def wait_until(condition: Any, what: str, timeout: float = 30) -> None:  # noqa: ASYNC109
    deadline = anyio.current_time() + timeout
    while not condition():
        if anyio.current_time() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await anyio.sleep(0.05)


@pytest.fixture
async def handled(redis_url: str, handled_key: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.delete(handled_key)
    await client.aclose()


async def test_each_event_reaches_its_group_once_and_the_subscribers_of_every_worker(
    workers: Workers, handled: Redis, handled_key: str
) -> None:
    async with anyio.create_task_group() as tasks:
        # SSE connections until one is held open on each worker.
        feeds: list[Feed] = []
        with anyio.fail_after(30):
            while len({feed.pid for feed in feeds}) < WORKERS:
                assert len(feeds) < 60, f"no feed reached every worker: {feeds}"
                feed = Feed()
                feeds.append(feed)
                tasks.start_soon(read_feed, workers.url, feed)
                await feed.hello.wait()
        workers.pids |= {feed.pid for feed in feeds}

        # Each feed subscribes after saying hello: probe until every one is live.
        probes: set[str] = set()
        while not all(feed.event_ids() & probes for feed in feeds):
            probes.add((await note(workers.url, -1))["event_id"])
            await anyio.sleep(0.05)
            assert len(probes) < 200, "the feeds never saw an event"

        # Commands on fresh connections until every worker has emitted PER_WORKER events.
        emitted: dict[str, int] = {}
        n = 0
        while (
            min(sum(pid == worker for pid in emitted.values()) for worker in workers.pids)
            < PER_WORKER
        ):
            answer = await note(workers.url, n)
            emitted[answer["event_id"]] = answer["pid"]
            workers.pids.add(answer["pid"])
            n += 1
            assert n < 600, f"commands did not reach every worker: {set(emitted.values())}"
        assert set(emitted.values()) == {feed.pid for feed in feeds}  # exactly the 3 workers

        # The handler group: every event once, whichever worker emitted or handled it.
        expected = set(emitted) | probes

        async def records() -> list[tuple[str, int]]:
            raw = await handled.lrange(handled_key, 0, -1)
            return [(r.decode().split(":")[0], int(r.decode().split(":")[1])) for r in raw]

        with anyio.fail_after(30):
            while len(await records()) < len(expected):  # noqa: ASYNC110 (Redis signals nothing)
                await anyio.sleep(0.05)
        await anyio.sleep(1.0)  # a duplicate would show up meanwhile
        recorded = await records()
        assert sorted(event_id for event_id, _ in recorded) == sorted(expected)
        assert {pid for _, pid in recorded} <= workers.pids

        # The subscribers: every worker's feed saw every event, from every worker.
        await wait_until(
            lambda: all(set(emitted) <= feed.event_ids() for feed in feeds),
            "every feed saw every event",
        )
        for feed in feeds:
            items = [item for item in feed.items if item["event_id"] in emitted]
            assert len(items) == len(emitted)  # no duplicate either
            assert {item["from"] for item in items} == workers.pids
        tasks.cancel_scope.cancel()
