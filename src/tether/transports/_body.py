"""Reading and parsing JSON request bodies safely: content types, size and time limits, strict JSON.

FastAPI's defaults are not limits: it buffers any body, waits for it forever, and
`json.loads` accepts `NaN` and recurses without bound. Every limit tether promises is
enforced here.

Content type: a POST must declare a JSON `Content-Type`, even with an empty body. A page
on another site can send a "simple" request (`fetch(..., {mode: "no-cors", credentials:
"include"})` with a body of no type, or `text/plain`) without a CORS preflight, carrying
the user's cookies; `application/json` is not among the types such a request may carry,
so the browser asks the server first, and a cross-site page gets nothing through.

Time: a body that has not arrived whole `Tether(body_timeout=...)` seconds after its
reading started is refused with 408. The deadline is armed only once the request has to
wait for bytes: most bodies arrive with their headers and cost no timer at all.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import orjson
from starlette.types import Message, Receive, Scope

from ..errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from ._step import first_step, resume

__all__ = (
    "CLOSE",
    "MAX_DEPTH",
    "ClientDisconnected",
    "has_body",
    "header",
    "parse_json",
    "read_body",
    "require_json_content_type",
)

CLOSE = (b"connection", b"close")
"""The header an answer sent before its request's body was read whole carries.

Without it, uvicorn keeps the connection and reads (and throws away) the rest of the body,
however long it is; with it, the server closes the connection after the answer.
"""


class ClientDisconnected(BadRequest):
    """The client went away while its request was read or served: there is nobody to answer."""

    message = "Client disconnected"


def header(scope: Scope, name: bytes) -> bytes | None:
    """Return the first value of header `name` (lower-case bytes) in an ASGI scope."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def has_body(scope: Scope) -> bool:
    """Say whether the request announces a body (a non-zero Content-Length, or chunks)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            return value.strip() != b"0"  # type: ignore[no-any-return]
        if key == b"transfer-encoding":
            return True
    return False


def require_json_content_type(scope: Scope) -> None:
    """Accept `application/json` and `application/*+json` (any parameters), else raise.

    A missing Content-Type is refused too, even for an empty body: see the module's
    docstring for why.

    Raises:
        UnsupportedMediaType: no content type, or another one.
    """
    value = header(scope, b"content-type")
    if value is None:
        raise UnsupportedMediaType("Content-Type must be application/json; the request has none")
    media = value.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return
    raise UnsupportedMediaType(
        f"Content-Type must be application/json, not {media.decode('latin-1')!r}"
    )


async def read_body(
    scope: Scope, receive: Receive, limit: int, time_limit: float | None = None
) -> bytes:
    """Read the whole body; refuse it once it exceeds `limit` bytes or `time_limit` seconds.

    A declared `Content-Length` over the limit is refused before reading anything. The
    `time_limit` counts from the call, for the whole body (a sender trickling a byte at a
    time does not reset it); None waits forever.

    Raises:
        PayloadTooLarge: the body is larger than `limit`.
        RequestTimeout: the body had not arrived whole after `time_limit` seconds.
        BadRequest: the Content-Length header is not a number.
        ClientDisconnected: the client went away before its body had arrived.
    """
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest("Invalid Content-Length header") from None
        if length > limit:
            raise PayloadTooLarge(
                f"Request body is {length} bytes; the limit is {limit}",
                details={"limit": limit},
            )
    if time_limit is None:
        return await _read(receive, limit, [], 0)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): anyio's deadline
        try:
            with anyio.fail_after(time_limit):
                return await _read(receive, limit, [], 0)
        except TimeoutError:
            raise _timed_out(time_limit) from None
    # The fast path: the whole body came with the headers, and `receive()` does not wait.
    # Its first step runs inline: only a request that must wait for bytes gets a timer.
    message, waiting = first_step(receive())
    deadline: _Deadline | None = None
    try:
        if waiting is not None:
            deadline = _Deadline(loop, time_limit)
            message = await resume(waiting)
        assert message is not None
        if message["type"] != "http.request":
            raise ClientDisconnected()
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return body
        # More is to come: the rest is read under the deadline.
        if deadline is None:
            deadline = _Deadline(loop, time_limit)
        return await _read(receive, limit, [body] if body else [], len(body), message)
    except asyncio.CancelledError:
        if deadline is not None and deadline.expired():
            raise _timed_out(time_limit) from None
        raise
    finally:
        if deadline is not None:
            deadline.disarm()


class _Deadline:
    """Cancels the task reading a body once `time_limit` seconds have passed.

    Cheaper than `asyncio.timeout()`: one timer, no context manager; and only created for
    a body that has to be waited for.
    """

    __slots__ = ("cancelling", "fired", "task", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, time_limit: float) -> None:
        self.task = asyncio.current_task()
        self.fired = False
        self.cancelling = 0
        self.timer = loop.call_later(time_limit, self._fire)

    def _fire(self) -> None:
        task = self.task
        if task is not None:
            self.fired = True
            self.cancelling = task.cancelling()
            task.cancel()

    def disarm(self) -> None:
        """Stop the clock."""
        self.timer.cancel()

    def expired(self) -> bool:
        """Say whether the deadline, and nothing else, cancelled the task (undoing its cancel)."""
        task = self.task
        return self.fired and task is not None and task.uncancel() <= self.cancelling


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body exceeds the limit of {limit} bytes", details={"limit": limit}
    )


def _timed_out(time_limit: float) -> RequestTimeout:
    return RequestTimeout(
        f"The request body did not arrive within {time_limit:g} seconds",
        details={"timeout": time_limit},
    )


async def _read(
    receive: Receive, limit: int, chunks: list[bytes], size: int, message: Message | None = None
) -> bytes:
    """Read the rest of a body (after `message`, if given) into `chunks`; return it joined."""
    while message is None or message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            # The client went away; nothing to answer.
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


MAX_DEPTH = 254
"""Deepest JSON nesting accepted.

pydantic serializes at most 255 levels, so a deeper value would be accepted, then fail as
a 500 when an operation returns it. orjson parses up to 1024 levels and serializes up to
254, which is the check used here.
"""


def parse_json(body: bytes) -> Any:
    """Parse strict JSON: no NaN or Infinity, numbers that fit a double, depth at most 254.

    Raises:
        BadRequest: the body is not valid JSON (including non-UTF-8 bytes and deep nesting).
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc.msg}") from None
    # One pass maps each byte to its class: digits to "9", opening brackets to "[", every
    # other byte to a space. Then one count and one substring search: a few microseconds
    # for a batch body, where a regular expression took a hundred.
    classes = body.translate(_CLASSES)
    if len(body) > 2 * MAX_DEPTH and classes.count(b"[") > MAX_DEPTH:
        # Nesting is bounded by the number of brackets, so only bodies with many are
        # checked: re-encoding runs in C and fails past MAX_DEPTH levels (parsed values
        # always encode otherwise).
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            raise BadRequest(f"Malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    if _NINETEEN_DIGITS in classes:
        # 19 digits in a row: an integer that may not fit 64 bits (or a long digit string).
        # orjson reads integers beyond 64 bits as floats, silently losing digits; such a
        # body (already known to be valid, shallow JSON) is read again with exact integers.
        return json.loads(body)
    return value


_CLASSES = bytes(
    0x39 if 0x30 <= byte <= 0x39 else 0x5B if byte in b"[{" else 0x20 for byte in range(256)
)
_NINETEEN_DIGITS = b"9" * 19
