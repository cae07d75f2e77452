"""Cancelling a call whose HTTP client has gone away.

Neither uvicorn nor FastAPI cancels a request handler when its client disconnects: the
call runs to its end and its answer is thrown away, holding a slot, a database connection
and the server's shutdown meanwhile. `run_unless_disconnected` watches the request's
`receive()` for `http.disconnect` while a call runs, and cancels the call when it comes.

Which calls are cancelled is the transports' choice: queries are (nothing is lost but a
result nobody will read); commands are not, because the client cannot know how far a
half-done change went (see docs/transports/http.md).

Cost on asyncio: the call's first step runs inline (see `_step`); a call that finishes
without waiting (most of them) costs nothing more, and only one that waits gets a watcher
task. The cancellation is asyncio's own, delivered once: a yield dependency sees
`CancelledError` at its `yield`, and its teardown still awaits normally (an anyio cancel
scope would cancel the teardown's awaits too). On trio, an anyio cancel scope does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.types import Receive

from ._body import ClientDisconnected
from ._step import first_step, resume

__all__ = ("run_unless_disconnected",)

T = TypeVar("T")


Hook = Callable[[T], Awaitable[None]]


async def run_unless_disconnected(
    receive: Receive,
    call: Awaitable[T],
    *,
    settle: Hook[T] | None = None,
    abandon: Hook[T] | None = None,
) -> T:
    """Await `call`; if the client disconnects first, cancel it.

    Call it once the request's body has been read whole: the watcher consumes what
    `receive()` returns. For a call whose result has after-call work (an `Outcome`):
    `abandon(result)` does that work when the call finished but its client had left;
    `settle(result)` runs on trio only, inside the cancel scope that watches the call,
    which the yield dependencies the call entered must not outlive (FastAPI enters a
    cancel scope of its own for them): there they close before the answer is sent.

    Raises:
        ClientDisconnected: the client went away; the call was cancelled (or, if it
            ignored the cancellation, finished with nobody to answer).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio)
        return await _run_with_anyio(receive, call, settle, abandon)
    # A call that finishes without waiting (most do) needs no watch: its first step runs
    # inline, and only one that waits gets a watcher task.
    result, waiting = first_step(call)
    if waiting is None:
        return result  # type: ignore[return-value]
    task = asyncio.current_task()
    assert task is not None
    watch = _Watch(loop, task, receive)
    try:
        result = await resume(waiting)
    except asyncio.CancelledError:
        watch.stop()
        # Ours alone (no shutdown or outer timeout cancelled the task too): the client left.
        if watch.fired and task.uncancel() <= watch.cancelling:
            raise ClientDisconnected() from None
        raise
    except BaseException:
        watch.stop()
        if watch.fired:
            task.uncancel()
        raise
    watch.stop()
    if watch.fired:
        # The call swallowed the cancellation and finished anyway; nobody is there.
        task.uncancel()
        if abandon is not None:
            await abandon(result)
        raise ClientDisconnected()
    return result  # type: ignore[no-any-return]


class _Watch:
    """A watcher task that cancels the call's task when the client disconnects."""

    __slots__ = ("cancelling", "fired", "receive", "stopped", "task", "watcher")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], receive: Receive
    ) -> None:
        self.task = task
        self.receive = receive
        self.cancelling = 0
        self.fired = False
        self.stopped = False
        self.watcher: asyncio.Task[None] | None = loop.create_task(self._watch())

    async def _watch(self) -> None:
        receive = self.receive
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # the server's channel broke: the call goes on, unwatched
            return
        # Invariant: the call's task is suspended inside the call (it is not running, and
        # `stop` has not run), so the cancellation lands in the call.
        if not self.stopped:
            self.fired = True
            self.cancelling = self.task.cancelling()
            self.task.cancel()

    def stop(self) -> None:
        self.stopped = True
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None


async def _run_with_anyio(
    receive: Receive, call: Awaitable[T], settle: Hook[T] | None, abandon: Hook[T] | None
) -> T:
    gone = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        scope.cancel()

    results: list[T] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        try:
            results.append(await call)
            if settle is not None:
                with anyio.CancelScope(shield=True):
                    await settle(results[0])
        except Exception as exc:  # raised after the group: not wrapped in an ExceptionGroup
            failure = exc
        group.cancel_scope.cancel()
    if gone and results and abandon is not None:
        await abandon(results[0])
    if gone or (not results and failure is None):
        raise ClientDisconnected()
    if failure is not None:
        raise failure
    return results[0]
