"""JSON-RPC 2.0 message handling, independent of the wire that carries the messages.

`JsonRpcDispatcher.dispatch` takes one parsed message (a request object or a batch
list) and a factory of call contexts, runs the calls through the invoker and returns a
`JsonRpcReply`: the response bytes (None when nothing is answered) and the work left for
after they are sent. The HTTP endpoint (`JsonRpcTransport`) feeds it request bodies; the
WebSocket transport feeds it socket messages.

Results arrive from the invoker already encoded, so responses are assembled as bytes and
never re-encoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import orjson
from fastapi import params as fastapi_params

from ..context import CallContext
from ..errors import ConfigurationError, TetherError, ValidationFailed
from ..schema.openrpc import openrpc_document

if TYPE_CHECKING:
    from ..operation import Operation
    from ..registry import Tether

__all__ = (
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "PARSE_ERROR_RESPONSE",
    "ContextFactory",
    "JsonRpcDispatcher",
    "JsonRpcReply",
    "error_response",
    "tether_error_response",
)

logger = logging.getLogger("tether")

PARSE_ERROR = -32700
"""The message is not valid JSON."""
INVALID_REQUEST = -32600
"""The JSON is not a valid request object (or the batch is empty or too large)."""
METHOD_NOT_FOUND = -32601
"""No operation has that name."""
INVALID_PARAMS = -32602
"""The params did not bind to the operation's inputs (`ValidationFailed`)."""
INTERNAL_ERROR = -32603
"""An unexpected failure on the server (`InternalError`)."""

DEFAULT_MAX_BATCH_SIZE = 100
"""Largest batch accepted by default; a larger one is refused whole."""
DEFAULT_MAX_CONCURRENCY = 16
"""How many items of one batch run at once, by default."""

DISCOVER_METHOD = "rpc.discover"

ContextFactory = Callable[[], "CallContext"]
"""Builds a fresh `CallContext` for one call (each batch item gets its own)."""

_HEAD = b'{"jsonrpc":"2.0","id":'
_NO_DATA: Any = object()
_ABSENT: Any = object()
_SKIPPED_HEADERS = frozenset((b"content-type", b"content-length"))
_NO_CONTEXT = CallContext("jsonrpc", {"type": "http"})


def error_response(id_json: bytes, code: int, message: str, data: Any = _NO_DATA) -> bytes:
    """Return a JSON-RPC error response for the request whose id is `id_json` (JSON bytes)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not _NO_DATA:
        error["data"] = data
    return _HEAD + id_json + b',"error":' + orjson.dumps(error) + b"}"


def tether_error_response(id_json: bytes, error: TetherError) -> bytes:
    """Return the error response for a `TetherError`: its JSON-RPC code, message, and data.

    `data` is `{"code": <string code>, "details": <details>}`.
    """
    body = error.to_dict()
    return error_response(
        id_json,
        error.jsonrpc_code,
        body["message"],
        {"code": body["code"], "details": body["details"]},
    )


PARSE_ERROR_RESPONSE = error_response(b"null", PARSE_ERROR, "Parse error")
"""The response to a message that is not valid JSON (its id cannot be known)."""
_INVALID_REQUEST_NULL_ID = error_response(b"null", INVALID_REQUEST, "Invalid Request")


def _invalid_request(id_json: bytes) -> bytes:
    if id_json == b"null":
        return _INVALID_REQUEST_NULL_ID
    return error_response(id_json, INVALID_REQUEST, "Invalid Request")


class _Call:
    """A well-formed request: its id (as JSON), whether it is a notification, what it calls."""

    __slots__ = ("id_json", "notification", "op", "params")

    def __init__(
        self, id_json: bytes, notification: bool, op: Operation | None, params: Any
    ) -> None:
        self.id_json = id_json
        self.notification = notification
        self.op = op
        """The operation, or None for `rpc.discover`."""
        self.params = params


class JsonRpcReply:
    """What answering one message produced: the response body, and the work left after it."""

    __slots__ = ("_contexts", "body", "headers")

    def __init__(self, body: bytes | None = None) -> None:
        self.body = body
        """Response bytes (one object, or a batch array); None when nothing is answered."""
        self.headers: list[tuple[bytes, bytes]] = []
        """Headers (cookies...) that the calls' `Response` dependencies set."""
        self._contexts: list[CallContext] = []

    def _collect(self, ctx: CallContext) -> None:
        if ctx.background is not None:
            self._contexts.append(ctx)
        response = ctx.response
        if response is not None:
            self.headers.extend(
                (key, value) for key, value in response.raw_headers if key not in _SKIPPED_HEADERS
            )

    async def run_background(self) -> None:
        """Run the background tasks the calls scheduled; call it after sending `body`.

        A failing task is logged and does not stop the tasks of other calls.
        """
        for ctx in self._contexts:
            assert ctx.background is not None
            try:
                await ctx.background()
            except Exception:
                logger.exception("a background task of a JSON-RPC call failed")


class JsonRpcDispatcher:
    """Answers JSON-RPC 2.0 messages (single requests, notifications, batches) with the invoker.

    Args:
        api: the operations to call.
        max_batch_size: largest batch accepted; a larger one is refused whole with -32600
            before any item runs.
        max_concurrency: how many items of one batch run at once.
        batch_dependencies: dependencies solved once per message (per batch, or per single
            request) and shared with every call in it; an operation depending on the same
            callable reuses the value.
        server_url: the endpoint's URL, as the OpenRPC document names it
            (default `{prefix}/jsonrpc`).
    """

    def __init__(
        self,
        api: Tether,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        batch_dependencies: Sequence[fastapi_params.Depends] = (),
        server_url: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ConfigurationError("max_batch_size must be at least 1")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        for dependency in batch_dependencies:
            if not isinstance(dependency, fastapi_params.Depends):
                raise ConfigurationError(
                    f"batch_dependencies= takes Depends(...) objects, not {dependency!r}"
                )
        self.api = api
        # The registry's own dict, by reference: operations added later are found too.
        self._operations = api.operations
        self.max_batch_size = max_batch_size
        self.max_concurrency = max_concurrency
        self.batch_dependencies = tuple(batch_dependencies)
        self.server_url = server_url if server_url is not None else f"{api.prefix}/jsonrpc"
        self._openrpc: tuple[int, bytes] | None = None

    async def dispatch(
        self,
        message: Any,
        make_context: ContextFactory,
        *,
        dependency_cache: dict[Any, Any] | None = None,
    ) -> JsonRpcReply:
        """Answer one parsed JSON-RPC message: a request object or a batch list.

        `dependency_cache` seeds every call's dependency cache (a WebSocket connection's
        shared dependencies, for instance). Never raises for anything the client sent.
        """
        if type(message) is list:
            return await self._dispatch_batch(message, make_context, dependency_cache)
        reply = JsonRpcReply()
        call = self._decode(message)
        if not isinstance(call, _Call):
            reply.body = call
            return reply
        if not self.batch_dependencies:
            reply.body = await self._run(call, make_context, dependency_cache, reply)
            return reply
        async with AsyncExitStack() as stack:
            try:
                seed = await self._solve_shared(
                    make_context(), self.batch_dependencies, stack, dependency_cache
                )
            except TetherError as error:
                if not call.notification:
                    reply.body = tether_error_response(call.id_json, error)
                return reply
            reply.body = await self._run(call, make_context, seed, reply)
        return reply

    async def _dispatch_batch(
        self,
        batch: list[Any],
        make_context: ContextFactory,
        dependency_cache: dict[Any, Any] | None,
    ) -> JsonRpcReply:
        if not batch:
            return JsonRpcReply(_INVALID_REQUEST_NULL_ID)
        if len(batch) > self.max_batch_size:
            # Refused whole, before any item is even decoded.
            return JsonRpcReply(
                error_response(
                    b"null",
                    INVALID_REQUEST,
                    f"Batch of {len(batch)} requests exceeds the limit of {self.max_batch_size}",
                    {
                        "code": "BATCH_TOO_LARGE",
                        "details": {"limit": self.max_batch_size, "received": len(batch)},
                    },
                )
            )
        reply = JsonRpcReply()
        results: list[bytes | None] = []
        calls: list[tuple[int, _Call]] = []
        shared: dict[fastapi_params.Depends, None] = dict.fromkeys(self.batch_dependencies)
        for index, item in enumerate(batch):
            decoded = self._decode(item)
            if isinstance(decoded, _Call):
                calls.append((index, decoded))
                results.append(None)
                op = decoded.op
                if op is not None and op.plan is not None:
                    shared.update(dict.fromkeys(op.plan.batch_scoped))
            else:
                results.append(decoded)
        # The parsed batch is consumed: dropping the request objects now keeps them from
        # surviving garbage collections while the items run (the cyclic collector then
        # promotes less, and full collections, which scan the whole heap, come less often).
        batch.clear()
        if calls:
            # The batch-scoped stack is entered and closed in this task, around every item.
            async with AsyncExitStack() as stack:
                seed = dependency_cache
                failure: TetherError | None = None
                if shared:
                    try:
                        seed = await self._solve_shared(
                            make_context(), tuple(shared), stack, dependency_cache
                        )
                    except TetherError as error:
                        failure = error
                if failure is not None:
                    # A batch-level failure (auth...) answers every request with it.
                    for index, call in calls:
                        if not call.notification:
                            results[index] = tether_error_response(call.id_json, failure)
                else:
                    await self._run_concurrently(calls, results, make_context, seed, reply)
        parts = [part for part in results if part is not None]
        if parts:
            reply.body = b"[" + b",".join(parts) + b"]"
        return reply

    async def _run_concurrently(
        self,
        calls: list[tuple[int, _Call]],
        results: list[bytes | None],
        make_context: ContextFactory,
        seed: dict[Any, Any] | None,
        reply: JsonRpcReply,
    ) -> None:
        if len(calls) == 1:
            index, call = calls[0]
            results[index] = await self._run(call, make_context, seed, reply)
            return
        count = len(calls)
        taken = 0
        pending: list[tuple[int, _Call] | None] = list(calls)
        calls.clear()

        async def worker() -> None:
            # Workers take items in order; each item runs start to end in its worker's task,
            # so its exit stacks are entered and closed in one task.
            nonlocal taken
            while taken < count:
                item = pending[taken]
                pending[taken] = None  # released as soon as it is taken (see batch.clear())
                taken += 1
                assert item is not None
                index, call = item
                results[index] = await self._run(call, make_context, seed, reply)

        limit = min(self.max_concurrency, count)
        async with anyio.create_task_group() as group:
            group.start_soon(worker)
            workers = 1
            # Fan out only while items wait. After a scheduling round, items not yet taken
            # mean every worker is suspended inside one (I/O, a thread, a sleep): start
            # another, up to the bound. Items that never suspend all run in the first
            # worker, without a task each.
            while workers < limit:
                await anyio.lowlevel.checkpoint()
                if taken >= count:
                    break
                group.start_soon(worker)
                workers += 1

    async def _solve_shared(
        self,
        ctx: CallContext,
        dependencies: Sequence[fastapi_params.Depends],
        stack: AsyncExitStack,
        dependency_cache: dict[Any, Any] | None,
    ) -> dict[Any, Any]:
        solved = await self.api.invoker.solve_shared(ctx, dependencies, stack)
        if dependency_cache:
            # Values seeded by a wider scope (a connection) win over the batch's own.
            return {**solved, **dependency_cache}
        return solved

    def _decode(self, message: Any) -> _Call | bytes | None:
        """Check one request object; return the error response, or None if nothing answers."""
        if type(message) is not dict:
            return _INVALID_REQUEST_NULL_ID
        get = message.get
        id_value = get("id", _ABSENT)
        if id_value is _ABSENT:
            notification = True
            id_json = b"null"
        else:
            notification = False
            kind = type(id_value)
            if kind is int or kind is str:
                id_json = orjson.dumps(id_value)
            elif id_value is None:
                id_json = b"null"
            else:
                # An object, array, boolean or fraction: the id itself is invalid.
                return _INVALID_REQUEST_NULL_ID
        method = get("method")
        if get("jsonrpc") != "2.0" or type(method) is not str:
            return _invalid_request(id_json)
        params = get("params", _ABSENT)
        if params is _ABSENT:
            params = None
        elif type(params) is not dict and type(params) is not list:
            return _invalid_request(id_json)
        op = self._operations.get(method)
        if op is None and method != DISCOVER_METHOD:
            if notification:
                return None
            return error_response(id_json, METHOD_NOT_FOUND, "Method not found")
        return _Call(id_json, notification, op, params)

    async def _run(
        self,
        call: _Call,
        make_context: ContextFactory,
        dependency_cache: dict[Any, Any] | None,
        reply: JsonRpcReply,
    ) -> bytes | None:
        """Run one well-formed call; return its response (None for a notification)."""
        op = call.op
        params = call.params
        try:
            if op is None:
                result = self._discovery(params)
            else:
                if type(params) is list:
                    params = op.params_from_positional(params)
                if op.plan is None:
                    # No dependencies: the invoker never reads the context, so none is built.
                    result = await self.api.invoker.call(_NO_CONTEXT, op, params, encode=True)
                else:
                    ctx = make_context()
                    try:
                        result = await self.api.invoker.call(
                            ctx, op, params, encode=True, dependency_cache=dependency_cache
                        )
                    finally:
                        # Only dependencies leave background tasks or response headers.
                        reply._collect(ctx)
        except TetherError as error:
            if call.notification:
                return None
            return tether_error_response(call.id_json, error)
        if call.notification:
            return None
        return _HEAD + call.id_json + b',"result":' + result + b"}"

    def _discovery(self, params: Any) -> bytes:
        if params:
            raise ValidationFailed.from_errors(
                [
                    {
                        "loc": [],
                        "msg": f"{DISCOVER_METHOD} takes no params",
                        "type": "extra_forbidden",
                    }
                ]
            )
        return self.openrpc_json()

    def openrpc_json(self) -> bytes:
        """Return the OpenRPC document of every operation, as JSON bytes (built once, cached).

        Raises:
            TetherError: an operation's types have no JSON Schema (`InternalError`, logged).
        """
        # Operations are only ever added, so their count says whether the cache is current.
        cached = self._openrpc
        if cached is not None and cached[0] == len(self.api):
            return cached[1]
        try:
            document = orjson.dumps(openrpc_document(self.api, server_url=self.server_url))
        except Exception as exc:
            raise self.api.invoker.map_exception(exc, DISCOVER_METHOD) from None
        self._openrpc = (len(self.api), document)
        return document
