"""Running an awaitable's first step inline, to learn whether it has to wait.

A deadline on a request body, or a watch on a call's client, only matters if the awaited
thing waits. Scheduling the arming on the event loop (`call_soon`) would cost little, but
it keeps the loop from sleeping: one more trip through it, a system call, per request.
Instead, the awaitable's first step runs here, in the caller's task: if it finishes, there
was nothing to guard; if it yields, the guard is set up, and `resume` goes on awaiting it
exactly as `await` would have (the same sends and throws reach it, cancellation included).
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

__all__ = ("Waiting", "first_step", "resume")

T = TypeVar("T")


class Waiting:
    """An awaitable suspended after its first step: what it yielded, and how to go on."""

    __slots__ = ("iterator", "yielded")

    def __init__(self, iterator: Generator[Any, Any, Any], yielded: Any) -> None:
        self.iterator = iterator
        self.yielded = yielded


def first_step(awaitable: Awaitable[T]) -> tuple[T, None] | tuple[None, Waiting]:
    """Run `awaitable` until it finishes or first yields to the event loop.

    Returns `(result, None)` when it finished, `(None, waiting)` when it must wait: then
    `await resume(waiting)` (in the same task) for its result.
    """
    iterator = awaitable.__await__()
    try:
        yielded = iterator.send(None)
    except StopIteration as stop:
        return stop.value, None
    return None, Waiting(iterator, yielded)


@types.coroutine
def resume(waiting: Waiting) -> Generator[Any, Any, Any]:
    """Go on awaiting a suspended awaitable, as `await` would (PEP 380's `yield from`)."""
    iterator = waiting.iterator
    yielded = waiting.yielded
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            iterator.close()
            raise
        except BaseException as exc:
            try:
                yielded = iterator.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = iterator.send(sent)
            except StopIteration as stop:
                return stop.value
