"""The bounded scheduler that runs a JSON-RPC batch's items and a WebSocket connection's messages.

Contract (both entry points):

- **Bounded per unit, never global.** A bound belongs to one batch (`fan_out`, at most
  `limit` workers) or to one connection (`WorkerPool`, at most `limit` jobs in flight);
  nothing is shared between requests or connections, so one client's slow calls never
  delay another client's.
- **A worker runs one job at a time, start to end, in its own task.** Every exit stack a
  job enters (its yield dependencies) is closed in the task that entered it.
- **Workers are added only while work waits.** A burst of quick jobs that never suspend
  runs in one worker, without a task switch per job; a job that suspends (I/O, a thread,
  a sleep) lets another worker take the next one, so slow jobs never delay quick ones.
- **Workers are reused.** Creating a task per job costs more than a quick call. A
  connection's worker left without a job for `IDLE_WORKER_SECONDS` ends, so that a quiet
  connection (an idle subscriber) holds no task for it.
- **Cancellation reaches every worker, and is waited for.** `fan_out` cancels and awaits
  the workers it added before it re-raises; a `WorkerPool`'s workers live in the
  connection's task group and end with it.

`fan_out` serves a batch whose items are all known: its first worker runs inline, in the
request's task. `WorkerPool` serves a connection whose messages arrive over time: its
workers are tasks of the connection's group, and the reader waits for room
(`wait_for_room`) while `limit` jobs are in flight (backpressure).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ._ws_outbox import Signal

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ("IDLE_WORKER_SECONDS", "WorkerPool", "fan_out")

IDLE_WORKER_SECONDS = 1.0
"""Seconds a connection's worker waits for a job before it ends (a task less when quiet)."""


async def fan_out(
    worker: Callable[[], Coroutine[Any, Any, None]], limit: int, waiting: Callable[[], bool]
) -> None:
    """Run `worker`, and start another (up to `limit` in all) while items are `waiting`.

    Items still waiting once the event loop has had a round mean that every worker is
    suspended inside one (I/O, a thread, a sleep): another worker starts. Items that never
    suspend all run in the first worker.

    On asyncio the first worker runs inline, in this task, and others are only created if
    it suspends: a batch of quick calls then runs start to end without a task, a task
    group or a trip through the event loop (a task group cost about 25 us per batch, and
    yielding to the loop let other requests interleave with the batch). Workers started
    later are joined before this returns.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): anyio's task group
        async with anyio.create_task_group() as group:
            group.start_soon(worker)
            workers = 1
            while workers < limit:
                await anyio.lowlevel.checkpoint()
                if not waiting():
                    break
                group.start_soon(worker)
                workers += 1
        return
    more = _Growth(loop, worker, limit, waiting)
    try:
        await worker()
    except BaseException:
        for task in more.helpers:
            task.cancel()
        raise
    finally:
        more.stop()
        await _join(more.helpers)


class _Growth:
    """The workers a batch adds on asyncio while the ones it has are all suspended.

    `grow` is scheduled on the loop, so it runs only once the running workers have
    suspended; `stop` cancels it. It is a method, not a closure: a closure that schedules
    itself refers to itself, a cycle per batch that only the garbage collector frees, with
    all it holds (the batch's items and results); under load the collector then ran ten
    times as often.
    """

    __slots__ = ("handle", "helpers", "limit", "loop", "waiting", "worker")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        worker: Callable[[], Coroutine[Any, Any, None]],
        limit: int,
        waiting: Callable[[], bool],
    ) -> None:
        self.loop = loop
        self.worker = worker
        self.limit = limit
        self.waiting = waiting
        self.helpers: list[asyncio.Task[None]] = []
        self.handle: asyncio.Handle | None = loop.call_soon(self.grow)

    def grow(self) -> None:
        """Start one more worker if items wait and the bound allows; check again next round."""
        self.handle = None
        if len(self.helpers) + 1 < self.limit and self.waiting():
            self.helpers.append(self.loop.create_task(self.worker()))
            self.handle = self.loop.call_soon(self.grow)

    def stop(self) -> None:
        """Start no more workers."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def _join(tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every task is done; cancelled meanwhile, cancel them too, wait, re-raise.

    A task's own exception (a bug, never a call's error) is raised once all are done.
    """
    cancelled: asyncio.CancelledError | None = None
    pending = [task for task in tasks if not task.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            cancelled = exc
            for task in pending:
                task.cancel()
        pending = [task for task in pending if not task.done()]
    if cancelled is not None:
        raise cancelled
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


class WorkerPool:
    """The workers of one connection: at most `limit` jobs in flight, run in `group`'s tasks.

    `start` queues a job (a coroutine function and its arguments); it is in flight until it
    returns. The reader awaits `wait_for_room` before taking another message.

    Invariant: `_summoned` counts workers woken (or spawned) that have not taken a job yet;
    at most one is summoned while jobs wait, so a burst of quick jobs runs in one worker
    without a task switch per job, and a job that suspends lets the summoned worker take
    the next one. A worker left idle for `IDLE_WORKER_SECONDS` ends (the most recently idle
    one is summoned first, so the others are the ones that end). Create it inside a running
    event loop; set `group` before the first job.
    """

    __slots__ = (
        "_idle",
        "_room",
        "_summoned",
        "_waiting_for_room",
        "_work",
        "_workers",
        "group",
        "in_flight",
        "limit",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.group: TaskGroup | None = None
        """The task group the workers run in (the connection's)."""
        self.in_flight = 0
        """Jobs started and not yet returned."""
        # An idle connection holds no queue and no signal: each is made when first needed.
        self._room: Signal | None = None
        self._waiting_for_room = False
        self._work: deque[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
        self._idle: list[Signal] = []
        self._workers = 0
        self._summoned = 0

    async def wait_for_room(self) -> None:
        """Return once fewer than `limit` jobs are in flight."""
        while self.in_flight >= self.limit:
            room = self._room
            if room is None:
                room = self._room = Signal()
            self._waiting_for_room = True
            await room.wait()

    def start(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Queue `func(*args)` for a worker; it counts as in flight until it returns."""
        self.in_flight += 1
        work = self._work
        if work is None:
            work = self._work = deque()
        work.append((func, args))
        if not self._summoned:
            # Otherwise a summoned worker is about to take the queue's head.
            self._summon()

    def _summon(self) -> None:
        idle = self._idle
        if idle:
            self._summoned += 1
            idle.pop().set()
        elif self._workers < self.limit:
            self._workers += 1
            self._summoned += 1
            assert self.group is not None
            self.group.start_soon(self._worker)

    async def _worker(self) -> None:
        work = self._work
        assert work is not None  # a worker is summoned by `start`, which made the queue
        idle = self._idle
        wake = Signal()
        self._summoned -= 1
        while True:
            while work:
                func, args = work.popleft()
                if work and not self._summoned:
                    self._summon()
                try:
                    await func(*args)
                finally:
                    self._release()
            idle.append(wake)
            if not await wake.wait(IDLE_WORKER_SECONDS):
                # Not summoned in all that time: it ends, so that a quiet connection (an
                # idle subscriber) holds no worker; the next job starts a new one.
                idle.remove(wake)
                self._workers -= 1
                if not self._workers and not work:
                    self._work = None
                return
            self._summoned -= 1

    def _release(self) -> None:
        self.in_flight -= 1
        if self._waiting_for_room:
            self._waiting_for_room = False
            assert self._room is not None
            self._room.set()
