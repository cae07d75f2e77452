"""What one call produced, and the after-call work done from it, once, for every transport.

The invoker turns every call into an `Outcome`: the result or the error, the status and
response headers that dependencies set (filtered here, once), the background tasks, the
events the call emitted, and room for the cache effects a later issue adds. A transport
renders the outcome to its wire, sends it, then awaits `outcome.finish()` in the same task.

The order is FastAPI's for yield dependencies of the default scope:

- **success**: the answer is sent, then the background tasks run, then the yield
  dependencies close, then the events the call emitted are released to the event bus (so a
  handler sees what a dependency committed while closing). A background task can therefore
  still use a dependency's resource, and an error raised by either cannot change an answer
  already sent: it is logged once, with the operation's name, and never sent. If a yield
  dependency fails while closing, the events are not released (logged).
- **failure**: the yield dependencies close first, seeing the operation's own exception
  (FastAPI too unwinds them before its exception handler answers), and then the error is
  sent. A failed call releases nothing: no event, no background task runs, and no header or cookie
  that a `Response` dependency set is sent; only the error's own headers (the
  `WWW-Authenticate` of a 401, say) go with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.background import BackgroundTasks
    from starlette.responses import Response

    from .effects import Effects
    from .errors import TetherError

__all__ = ("Outcome", "header_object", "response_headers")

logger = logging.getLogger("tether")

_BODY_HEADERS = frozenset((b"content-type", b"content-length"))
_NO_HEADERS: list[tuple[bytes, bytes]] = []


def response_headers(response: Response | None) -> list[tuple[bytes, bytes]]:
    """Return the headers a `Response` dependency set, without those that describe the body.

    The body is the transport's: its `Content-Type` and `Content-Length` are never taken
    from the dependency. Repeated headers stay repeated (two cookies are two `Set-Cookie`).
    """
    if response is None:
        return _NO_HEADERS
    return [item for item in response.raw_headers if item[0] not in _BODY_HEADERS]


def _error_headers(error: TetherError) -> list[tuple[bytes, bytes]]:
    # getattr: a subclass may override __init__ without calling TetherError's.
    headers = getattr(error, "headers", None)
    if not headers:
        return _NO_HEADERS
    items = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return [item for item in items if item[0] not in _BODY_HEADERS]


def header_object(headers: list[tuple[bytes, bytes]]) -> dict[str, str | list[str]]:
    """Return headers as a JSON object: name to value, or to a list of values when repeated.

    This is the shape the WebSocket dialects send (the envelope's `headers` field, and the
    JSON-RPC `headers` extension member): a header set once is a string, as it always
    was; one set twice (two `Set-Cookie`) is a list in the order they were set.
    """
    result: dict[str, str | list[str]] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        present = result.get(name)
        if present is None:
            result[name] = value
        elif isinstance(present, list):
            present.append(value)
        else:
            result[name] = [present, value]
    return result


class Outcome:
    """Everything one call produced: result or error, status, headers, background tasks.

    `finish()` must be awaited once the answer has been sent, in the task that ran the
    call (the yield dependencies' exit stack closes there).
    """

    __slots__ = (
        "_stack",
        "background",
        "effects",
        "error",
        "events",
        "headers",
        "operation",
        "push",
        "release",
        "result",
        "status",
    )

    def __init__(
        self,
        operation: str,
        result: Any = None,
        error: TetherError | None = None,
        status: int | None = None,
        headers: list[tuple[bytes, bytes]] = _NO_HEADERS,
        background: BackgroundTasks | None = None,
        stack: AsyncExitStack | None = None,
    ) -> None:
        # Positional, and no list allocated: an outcome is made for every call, a hundred
        # per batch.
        self.operation = operation
        """Name of the operation that ran (for the logs of the after-call work)."""
        self.result = result
        """The operation's result (JSON bytes when the call asked for encoding); None on error."""
        self.error = error
        """The error to answer with, already mapped; None on success."""
        self.status = status
        """The status a `Response` dependency set on success (None: the transport's default)."""
        self.headers = headers
        """Response headers to send, filtered: on success those a `Response` dependency set
        (repeats kept), on failure only the error's own."""
        self.background = background
        """Background tasks to run after the answer is sent (never set on failure)."""
        self.events: Sequence[Any] = ()
        """Events the call emitted (`EventEnvelope`s), released after a successful call."""
        self.release: Callable[[Sequence[Any]], Awaitable[None]] | None = None
        """Releases `events` to the event bus, once the answer is sent and teardown is done."""
        self.effects: Effects | None = None
        """Cache effects the call produced (`invalidate`, `merge`), sent with the answer."""
        self.push: Callable[[Effects], Awaitable[None]] | None = None
        """Pushes `effects` to live subscribers, once the answer is sent and teardown is done."""
        self._stack = stack

    @classmethod
    def failed(cls, operation: str, error: TetherError) -> Outcome:
        """Return the outcome of a call that failed with `error` (its own headers kept)."""
        return cls(operation, error=error, headers=_error_headers(error))

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.error is None

    @property
    def pending(self) -> bool:
        """Whether `finish()` has work to do (background tasks, or dependencies to close)."""
        return (
            self._stack is not None
            or self.background is not None
            or bool(self.events)
            or self.push is not None
        )

    async def close_dependencies(self) -> None:
        """Close the yield dependencies now, before the answer is sent, where a wire must.

        A JSON-RPC batch item's stack closes in the worker task that entered it. A teardown error is logged, and the answer stays as it is. The background tasks
        still wait for `finish()`.
        """
        stack = self._stack
        if stack is not None:
            self._stack = None
            if not await self._close(stack, None):
                self._hold_events()

    async def finish(self) -> None:
        """Do the after-call work, once the answer is sent: background tasks, then teardown.

        Never raises for the call's own failures: a failing background task or teardown is
        logged once with the operation's name. A failing background task stops the others
        of the same call (as on FastAPI) and is what the yield dependencies see.
        """
        stack = self._stack
        background = self.background
        self._stack = None
        self.background = None
        failure: BaseException | None = None
        try:
            if background is not None and self.error is None:
                try:
                    await background()
                except Exception as exc:
                    logger.error(
                        "a background task of operation %r failed", self.operation, exc_info=exc
                    )
                    failure = exc
        except BaseException as exc:  # cancelled: the dependencies still close
            failure = exc
            raise
        finally:
            if stack is not None and not await self._close(stack, failure):
                self._hold_events()
        await self._release_events()
        await self._push_effects()

    async def _push_effects(self) -> None:
        push = self.push
        effects = self.effects
        self.push = None
        if push is None or effects is None or self.error is not None:
            return
        try:
            await push(effects)
        except Exception as exc:
            logger.error(
                "the cache effects of operation %r could not be pushed to live subscribers",
                self.operation,
                exc_info=exc,
            )

    async def _release_events(self) -> None:
        events = self.events
        release = self.release
        if not events or release is None or self.error is not None:
            return
        self.events = ()
        try:
            await release(events)
        except Exception as exc:
            logger.error(
                "the events of operation %r could not be released", self.operation, exc_info=exc
            )

    def _hold_events(self) -> None:
        if self.push is not None:
            # What a failed teardown meant to commit may not be there: no client refetches.
            logger.error(
                "operation %r: cache effects not pushed, since a yield dependency failed"
                " while closing",
                self.operation,
            )
            self.push = None
        if self.events:
            logger.error(
                "operation %r: %d event(s) not released, since a yield dependency failed"
                " while closing",
                self.operation,
                len(self.events),
            )
            self.events = ()

    async def _close(self, stack: AsyncExitStack, failure: BaseException | None) -> bool:
        """Close the dependencies; return whether they closed without an error of their own."""
        try:
            if failure is None:
                await stack.aclose()
            else:
                await stack.__aexit__(type(failure), failure, failure.__traceback__)
        except Exception as exc:
            if exc is not failure:
                logger.error(
                    "a yield dependency of operation %r failed while closing; the answer stands",
                    self.operation,
                    exc_info=exc,
                )
                return False
        return True
