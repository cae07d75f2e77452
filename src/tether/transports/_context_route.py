"""The context endpoint of the HTTP transport: `GET/POST {prefix}/context/{name}`.

A context is a named group of queries that a client reads together (see docs/cache.md).
The endpoint runs every query of the context concurrently, each with the params it
declares, and answers `200 {"result": {"<slot>": value, ...}}` with `Cache-Control:
no-cache` and, when the context has a revision, `X-Tether-Rev`. GET reads the params from
the query string (repeated keys for list params); POST from a JSON object body. Errors are
answered as calls are: 404 for an unknown context, 422 for a missing or unknown param, and
a failing slot's own error (the first in slot order) otherwise.

Against hostile clients it holds what the call route holds: a POST needs a JSON content
type (415), its body is read under the size and time limits before the request takes its
in-flight slot, and an answer sent before the body was read whole closes the connection.
A bundle of async queries whose client disconnects is cancelled, as a query is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Scope, Send

from ..context import CallContext
from ..errors import MethodNotAllowed, TetherError
from ..outcome import Outcome
from ._body import (
    CLOSE,
    ClientDisconnected,
    has_body,
    read_body,
    require_json_content_type,
)
from ._disconnect import run_unless_disconnected
from ._json_out import encode_error

if TYPE_CHECKING:
    from ..effects import Context
    from ..operation import Operation
    from ..transport import TransportHandle

__all__ = ("ContextRoute",)

_NO_CACHE = (b"cache-control", b"no-cache")
_REV = b"x-tether-rev"

Slots = list[tuple[str, Outcome]]


class _WrongMethod(MethodNotAllowed):
    """A 405 that names the methods the context accepts, for the `Allow` header."""

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class ContextRoute:
    """The ASGI endpoint answering `GET/POST {prefix}/context/{name}` with a context's bundle.

    Args:
        handle: the Tether's transport handle (its contexts, invoker and limits).
        params_object: parses a POST body into a params object (the call route's reading).
        query_items: reads the query string's pairs.
    """

    def __init__(
        self,
        handle: TransportHandle,
        params_object: Callable[[bytes], dict[str, Any]],
        query_items: Callable[[Scope], list[tuple[str, str]]],
    ) -> None:
        self.handle = handle
        self._params_object = params_object
        self._query_items = query_items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request for a context's bundle (the ASGI entry point of the route)."""
        api = self.handle
        body_read = False
        try:
            context = _target(api, scope)
            body = b""
            if scope["method"] == "POST":
                body = await read_body(scope, receive, api.max_body_size, api.body_timeout)
                body_read = True
                params = self._params_object(body)
            else:
                params = context.params_from_query(self._query_items(scope))
            # The body has arrived whole: only now does the request take an in-flight slot.
            api.admission.enter()
            try:
                slots = await self._run(context, params, scope, receive, body)
            finally:
                api.admission.leave()
        except ClientDisconnected:
            return  # nobody to answer
        except TetherError as error:
            await _send_error(send, error, close=not body_read and has_body(scope))
            return
        # Not sent (the client left): no background task runs; the slots' dependencies are
        # closed already, each in its own task.
        await _send_bundle(send, context, slots)
        for _, outcome in slots:
            if outcome.pending:
                await outcome.finish()

    async def _run(
        self, context: Context, params: dict[str, Any], scope: Scope, receive: Receive, body: bytes
    ) -> Slots:
        def make_context(op: Operation) -> CallContext:
            return CallContext("http", scope, receive, body=body)

        run = self.handle.invoker.run_context(make_context, context, params, encode=True)
        if all(op.is_async for op in context.slots):
            # Queries only: a bundle whose client has gone is cancelled (a sync query runs
            # in a thread, which cannot be interrupted).
            return await run_unless_disconnected(receive, run, abandon=_finish_all)
        return await run


async def _finish_all(slots: Slots) -> None:
    for _, outcome in slots:
        if outcome.pending:
            await outcome.finish()


def _target(api: TransportHandle, scope: Scope) -> Context:
    """Return the context the request reads, once its method and content type fit it.

    Raises:
        TetherError: unknown context, a method it does not take, or a POST without a JSON
            content type.
    """
    context = api.contexts.get(scope["path_params"]["name"])
    method = scope["method"]
    if method == "POST":
        require_json_content_type(scope)
    elif method != "GET" or context.query_shape is None:
        allow = "POST" if context.query_shape is None else "GET, POST"
        if method == "GET":
            message = f"context {context.name} takes structured params; read it with POST"
        else:
            message = f"{method} is not allowed for context {context.name}; use {allow}"
        raise _WrongMethod(message, allow=allow)
    return context


async def _send_bundle(send: Send, context: Context, slots: Slots) -> None:
    """Send `{"result": {slot: value}}`, or the first failing slot's error (in slot order)."""
    for _, outcome in slots:
        if outcome.error is not None:
            await _send_error(send, outcome.error, headers=list(outcome.headers))
            return
    parts = [orjson.dumps(slot) + b":" + outcome.result for slot, outcome in slots]
    body = b'{"result":{' + b",".join(parts) + b"}}"
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    for _, outcome in slots:
        # What the slots' `Response` dependencies set (cookies...), except their caching:
        # the bundle says how it may be cached.
        headers.extend(item for item in outcome.headers if item[0] != b"cache-control")
    headers.append(_NO_CACHE)
    if context.rev is not None:
        headers.append((_REV, context.rev.encode("latin-1", "replace")))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send,
    error: TetherError,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> None:
    body = encode_error(error)
    sent = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers if headers is not None else Outcome.failed("", error).headers),
    ]
    if isinstance(error, _WrongMethod):
        sent.append((b"allow", error.allow.encode("latin-1")))
    if close:
        # Answered before the body was read whole: closing stops the server from reading
        # the rest, however long it is.
        sent.append(CLOSE)
    await send({"type": "http.response.start", "status": error.status, "headers": sent})
    await send({"type": "http.response.body", "body": body})
