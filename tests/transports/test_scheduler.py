"""The bounded scheduler's connection side (`WorkerPool`); `fan_out` is tested through batches."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from tether.transports import _scheduler
from tether.transports._scheduler import WorkerPool


async def test_quick_jobs_run_in_one_worker_and_workers_are_kept() -> None:
    # A burst, then jobs arriving one by one: no task per job, workers are reused.
    tasks: list[int] = []

    async def job() -> None:
        tasks.append(anyio.get_current_task().id)

    async def drained(pool: WorkerPool) -> None:
        with anyio.fail_after(5):
            while pool.in_flight:
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        before = len(anyio.get_running_tasks())
        pool = WorkerPool(4)
        pool.group = group
        for _ in range(10):
            pool.start(job)
        await drained(pool)
        for _ in range(5):
            pool.start(job)
            await drained(pool)
        # The worker, and at most one summoned while jobs waited: never one per job.
        assert len(anyio.get_running_tasks()) <= before + 2
        group.cancel_scope.cancel()
    assert len(tasks) == 15
    assert len(set(tasks[:10])) == 1  # the burst: in the first worker, no task switch
    assert len(set(tasks)) <= 2


async def test_a_slow_job_does_not_delay_a_quick_one() -> None:
    release = anyio.Event()
    done: list[str] = []

    async def slow() -> None:
        await release.wait()
        done.append("slow")

    async def quick() -> None:
        done.append("quick")

    async with anyio.create_task_group() as group:
        pool = WorkerPool(2)
        pool.group = group
        pool.start(slow)
        pool.start(quick)
        with anyio.fail_after(5):
            while not done:
                await anyio.lowlevel.checkpoint()
        assert done == ["quick"]
        assert pool.in_flight == 1
        release.set()
        with anyio.fail_after(5):
            while pool.in_flight:
                await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    assert done == ["quick", "slow"]


async def test_at_the_limit_no_more_run_and_the_reader_waits_for_room() -> None:
    release = anyio.Event()
    running = 0
    most = 0
    room = False

    async def job() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    async def reader(pool: WorkerPool) -> None:
        nonlocal room
        await pool.wait_for_room()
        room = True

    async with anyio.create_task_group() as group:
        pool = WorkerPool(2)
        pool.group = group
        pool.start(job)
        pool.start(job)
        group.start_soon(reader, pool)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert (most, pool.in_flight, room) == (2, 2, False)
        release.set()
        with anyio.fail_after(5):
            while not room:
                await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    assert most == 2


async def test_a_third_job_waits_for_one_of_the_two_workers() -> None:
    gates = [anyio.Event(), anyio.Event()]
    started: list[int] = []

    async def job(index: int) -> None:
        started.append(index)
        if index < 2:
            await gates[index].wait()

    async with anyio.create_task_group() as group:
        pool = WorkerPool(2)
        pool.group = group
        for index in range(3):
            pool.start(job, index)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert started == [0, 1]  # bounded: no third worker
        gates[1].set()
        with anyio.fail_after(5):
            while len(started) < 3:
                await anyio.lowlevel.checkpoint()
        assert pool.in_flight == 1
        gates[0].set()
        with anyio.fail_after(5):
            while pool.in_flight:
                await anyio.lowlevel.checkpoint()
        group.cancel_scope.cancel()
    assert started == [0, 1, 2]


async def test_an_idle_worker_ends_and_the_next_job_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A quiet connection (an idle subscriber) keeps no worker task.
    monkeypatch.setattr(_scheduler, "IDLE_WORKER_SECONDS", 0.05)
    ran = 0

    async def job() -> None:
        nonlocal ran
        ran += 1

    async def drained(pool: WorkerPool) -> None:
        with anyio.fail_after(5):
            while pool.in_flight:
                await anyio.lowlevel.checkpoint()

    async def quiet(count: int) -> None:
        with anyio.fail_after(5):
            while len(anyio.get_running_tasks()) > count:  # noqa: ASYNC110 - nothing to wait on
                await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        before = len(anyio.get_running_tasks())
        pool = WorkerPool(4)
        pool.group = group
        pool.start(job)
        await drained(pool)
        assert len(anyio.get_running_tasks()) == before + 1  # the worker waits for a while
        await quiet(before)  # then ends
        pool.start(job)  # the next job starts a worker again
        await drained(pool)
        assert len(anyio.get_running_tasks()) == before + 1
        await quiet(before)
        group.cancel_scope.cancel()
    assert ran == 2
