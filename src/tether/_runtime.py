"""Which event loop is running, and background tasks that outlive the call that starts them.

The event bus starts its consumers lazily, from whichever call first needs them, on asyncio
or on trio; their tasks must outlive that call. On asyncio they are tasks of the loop; on
trio, system tasks. Either way each runs inside an anyio `CancelScope` that `cancel()` uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ("BackgroundTask", "runner_token", "spawn")

logger = logging.getLogger("tether")


def runner_token() -> object:
    """Return an object that identifies the running event loop (asyncio's loop, or trio's token)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.lowlevel.current_trio_token()


class BackgroundTask:
    """A task started by `spawn`: cancellable, and awaitable until it has ended."""

    __slots__ = ("_cancelled", "_done", "_scope", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        """What the task does, for the logs."""
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False
        self._done = anyio.Event()

    def cancel(self) -> None:
        """Ask the task to stop (it ends at its next checkpoint)."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    @property
    def done(self) -> bool:
        """Whether the task has ended."""
        return self._done.is_set()

    async def wait(self) -> None:
        """Wait until the task has ended."""
        await self._done.wait()

    async def _run(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancelled:
                    scope.cancel()
                await fn()
        except Exception as exc:  # a background task must never take the loop down
            logger.error("tether's background task %r failed", self.name, exc_info=exc)
        finally:
            self._done.set()


def spawn(name: str, fn: Callable[[], Awaitable[None]]) -> BackgroundTask:
    """Start `fn()` in the background of the running loop; it outlives the caller's task."""
    task = BackgroundTask(name)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        trio.lowlevel.spawn_system_task(task._run, fn, name=name)
    else:
        handle: Any = loop.create_task(task._run(fn), name=name)
        _keep.add(handle)
        handle.add_done_callback(_keep.discard)
    return task


_keep: set[Any] = set()
"""Strong references to asyncio tasks, which the loop holds only weakly."""
