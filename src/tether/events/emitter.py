"""`Events`: the emitter of one call, a dependency (`events: Events = Depends()`).

Each call gets its own emitter (FastAPI solves it per call), so two concurrent calls of
one handler never share emitted events. What it collects rides the call's outcome and is
released only when the call succeeds.
"""

# No `from __future__ import annotations` here: FastAPI reads `Events.__init__`'s
# annotations at runtime to solve it as a dependency.

from starlette.requests import HTTPConnection

from ..context import CALL_SCOPE_KEY, CallContext
from ..dependencies import provide_per_call
from ..errors import ConfigurationError
from .messages import Event, EventEnvelope

__all__ = (
    "CHAIN_STATE_KEY",
    "DEFAULT_MAX_DEPTH",
    "LOOP_STATE_KEY",
    "MAX_DEPTH_STATE_KEY",
    "EventLoopError",
    "Events",
)

CHAIN_STATE_KEY = "tether.chain"
"""Key, in an event handler's `CallContext.state`, of the chain of event types that led to it."""

MAX_DEPTH_STATE_KEY = "tether.max_depth"
"""Key, in an event handler's `CallContext.state`, of the deepest chain allowed."""

LOOP_STATE_KEY = "tether.loop"
"""Set in a handler's `CallContext.state` when it emitted an event that would loop."""

DEFAULT_MAX_DEPTH = 8


class EventLoopError(RuntimeError):
    """An event handler emitted an event that would loop (its type is already in its chain) or go too deep."""


class Events:
    """The emitter of one call: `events.emit(event)` queues an event, released if the call succeeds."""

    __slots__ = ("_chain", "_ctx", "_emitted", "_max_depth")

    def __init__(self, connection: HTTPConnection) -> None:
        # Tether makes the emitter itself before solving (`for_call`); FastAPI constructs
        # it only for `Depends(Events, use_cache=False)`.
        ctx = connection.scope.get(CALL_SCOPE_KEY)
        if ctx is None:
            raise ConfigurationError(
                "Events is a per-call dependency: declare it on an operation, a service or an"
                " event handler, not in batch_dependencies or connection_dependencies"
            )
        self._attach(ctx)

    @classmethod
    def for_call(cls, ctx: CallContext) -> "Events":
        """Return the emitter of the call `ctx` describes."""
        events = cls.__new__(cls)
        events._attach(ctx)
        return events

    def _attach(self, ctx: CallContext) -> None:
        self._ctx = ctx
        emitted = ctx.emitted
        if emitted is None:
            emitted = ctx.emitted = []
        self._emitted: list[EventEnvelope] = emitted
        self._chain: tuple[str, ...] = ctx.state.get(CHAIN_STATE_KEY, ())
        self._max_depth: int = ctx.state.get(MAX_DEPTH_STATE_KEY, DEFAULT_MAX_DEPTH)

    def emit(self, *events: Event) -> None:
        """Queue events, released when the call succeeds (dropped if it fails).

        Raises:
            TypeError: something that is not an `Event`.
            EventLoopError: in an event handler, an event whose type is already in the chain
                of events that led to it, or a chain deeper than the bus allows.
        """
        for event in events:
            if not isinstance(event, Event):
                raise TypeError(f"emit() takes Event instances, not {event!r}")
            name = type(event).event_type
            if name in self._chain or len(self._chain) >= self._max_depth:
                # Retrying cannot help: the bus gives up on this handler at once.
                self._ctx.state[LOOP_STATE_KEY] = True
            if name in self._chain:
                raise EventLoopError(
                    f"event {name!r} would loop: it is already in its causal chain"
                    f" {' -> '.join(self._chain)}"
                )
            if len(self._chain) >= self._max_depth:
                raise EventLoopError(
                    f"event {name!r} is {len(self._chain) + 1} handlers deep, past the"
                    f" limit of {self._max_depth}: {' -> '.join(self._chain)}"
                )
            self._emitted.append(EventEnvelope(event, self._chain))

    def __len__(self) -> int:
        return len(self._emitted)


provide_per_call(Events, Events.for_call)
