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

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import orjson
from fastapi import params as fastapi_params

from ..context import CallContext
from ..errors import ConfigurationError, TetherError, ValidationFailed
from ..outcome import Outcome, header_object
from ..schema.openrpc import openrpc_document
from ._json_out import dumps as dumps_exact

if TYPE_CHECKING:
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
    "with_headers_member",
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
_RESULT = b',"result":'
_NO_DATA: Any = object()
_ABSENT: Any = object()
_NO_CONTEXT = CallContext("jsonrpc", {"type": "http"})


def error_response(id_json: bytes, code: int, message: str, data: Any = _NO_DATA) -> bytes:
    """Return a JSON-RPC error response for the request whose id is `id_json` (JSON bytes)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not _NO_DATA:
        error["data"] = data
    # The details may echo a client's id: an integer of any size (orjson stops at 64 bits).
    return _HEAD + id_json + b',"error":' + dumps_exact(error) + b"}"


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


def with_headers_member(response: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Add the `headers` extension member to a response object (a socket client opted in).

    Its value has the envelope's shape: `{name: value}`, a list of values for a header
    set more than once (two `Set-Cookie`).
    """
    return response[:-1] + b',"headers":' + dumps_exact(header_object(headers)) + b"}"


def _invalid_request(id_json: bytes) -> bytes:
    if id_json == b"null":
        return _INVALID_REQUEST_NULL_ID
    return error_response(id_json, INVALID_REQUEST, "Invalid Request")


async def _fan_out(
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
    more = _Workers(loop, worker, limit, waiting)
    try:
        await worker()
    except BaseException:
        for task in more.helpers:
            task.cancel()
        raise
    finally:
        more.stop()
        await _join(more.helpers)


class _Workers:
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


class JsonRpcReply:
    """What answering one message produced: the response body, and the work left after it.

    The transport sends `body` (with `headers`, where its wire has headers), then awaits
    `finish()` in the task that dispatched the message.
    """

    __slots__ = ("_outcomes", "_shared", "body", "headers")

    def __init__(self, body: bytes | None = None) -> None:
        self.body = body
        """Response bytes (one object, or a batch array); None when nothing is answered."""
        self.headers: list[tuple[bytes, bytes]] = []
        """Response headers of the calls (their outcomes'): the cookies and headers that a
        successful call's `Response` dependencies set, and a failed call's own error headers."""
        self._outcomes: list[Outcome] = []
        self._shared: AsyncExitStack | None = None

    def _collect(self, outcome: Outcome) -> None:
        if outcome.headers:
            self.headers.extend(outcome.headers)
        if outcome.pending:
            self._outcomes.append(outcome)

    async def close_dependencies(self) -> None:
        """Close every call's yield dependencies, then the shared ones, now (before sending)."""
        for outcome in self._outcomes:
            await outcome.close_dependencies()
        shared = self._shared
        if shared is not None:
            self._shared = None
            await _close_shared(shared)

    async def finish(self) -> None:
        """Do the calls' after-call work, once `body` is sent: background tasks, teardown.

        Each call's outcome finishes in turn (a failure is logged with its operation's name
        and does not stop the other calls'); the dependencies shared by the message (its
        per-batch ones) close last.
        """
        outcomes = self._outcomes
        self._outcomes = []
        shared = self._shared
        self._shared = None
        try:
            for outcome in outcomes:
                await outcome.finish()
        finally:
            if shared is not None:
                await _close_shared(shared)


async def _close_shared(stack: AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except Exception:
        logger.exception("a per-batch yield dependency failed while closing; the answer stands")


class JsonRpcDispatcher:
    """Answers JSON-RPC 2.0 messages (single requests, notifications, batches) with the invoker.

    Args:
        api: the operations to call.
        max_batch_size: largest batch accepted; a larger one is refused whole with -32600
            before any item runs.
        max_concurrency: how many items of one batch run at once.
        server_url: the endpoint's URL, as the OpenRPC document names it
            (default `{prefix}/jsonrpc`).
    """

    def __init__(
        self,
        api: Tether,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        server_url: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ConfigurationError("max_batch_size must be at least 1")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        self.api = api
        # The registry's own dict, by reference: operations added later are found too.
        self._operations = api.operations
        self.max_batch_size = max_batch_size
        self.max_concurrency = max_concurrency
        self.server_url = server_url if server_url is not None else f"{api.prefix}/jsonrpc"
        self._openrpc: tuple[int, bytes] | None = None

    async def dispatch(
        self,
        message: Any,
        make_context: ContextFactory,
        *,
        dependency_cache: dict[Any, Any] | None = None,
        headers_member: bool = False,
    ) -> JsonRpcReply:
        """Answer one parsed JSON-RPC message: a request object or a batch list.

        `dependency_cache` seeds every call's dependency cache (a WebSocket connection's
        shared dependencies, for instance). `headers_member` adds the documented `headers`
        extension member to each response whose call has headers (a socket whose client
        opted in); otherwise responses are exactly the specification's. Never raises for
        anything the client sent. The caller sends the reply, then awaits its `finish()`.
        """
        if type(message) is list:
            return await self._dispatch_batch(
                message, make_context, dependency_cache, headers_member
            )
        reply = JsonRpcReply()
        results: list[bytes | None] = [None]
        await self._run([message], results, make_context, dependency_cache, reply, headers_member)
        reply.body = results[0]
        return reply

    async def _dispatch_batch(
        self,
        batch: list[Any],
        make_context: ContextFactory,
        dependency_cache: dict[Any, Any] | None,
        headers_member: bool,
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
        results: list[bytes | None] = [None] * len(batch)
        await self._run(batch, results, make_context, dependency_cache, reply, headers_member)
        parts = [part for part in results if part is not None]
        if parts:
            reply.body = b"[" + b",".join(parts) + b"]"
        return reply

    async def _run(
        self,
        items: list[Any],
        results: list[bytes | None],
        make_context: ContextFactory,
        dependency_cache: dict[Any, Any] | None,
        reply: JsonRpcReply,
        headers_member: bool,
    ) -> None:
        """Answer the request objects of one message into `results`, index for index.

        Dependencies shared by the message's calls (the per-batch dependencies of the
        operations it names, the app's own dependencies among them) are solved first, once,
        and close after every call has finished (in `reply.finish()`), all in this task.
        """
        shared = self._shared_dependencies(items)
        if not shared:
            await self._run_items(
                items, results, make_context, dependency_cache, reply, None, headers_member
            )
            return
        stack = AsyncExitStack()
        try:
            try:
                seed = await self._solve_shared(make_context(), shared, stack, dependency_cache)
            except TetherError as error:
                # A batch-level failure (auth...) answers every well-formed request with it.
                reply.headers.extend(Outcome.failed("", error).headers)
                await stack.aclose()
                await self._run_items(
                    items, results, make_context, None, reply, error, headers_member
                )
                return
            await self._run_items(items, results, make_context, seed, reply, None, headers_member)
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        # The shared dependencies close after every call's: in `reply.finish()`.
        reply._shared = stack

    def _shared_dependencies(self, items: list[Any]) -> tuple[fastapi_params.Depends, ...]:
        """The dependencies solved once for `items`: the per-batch ones of their operations."""
        if not self.api.batch_scoped:
            return ()
        shared: dict[fastapi_params.Depends, None] = {}
        operations = self._operations
        for item in items:
            method = item.get("method") if type(item) is dict else None
            op = operations.get(method) if type(method) is str else None
            if op is not None and op.plan is not None:
                shared.update(dict.fromkeys(op.plan.batch_scoped))
        return tuple(shared)

    async def _run_items(
        self,
        items: list[Any],
        results: list[bytes | None],
        make_context: ContextFactory,
        seed: dict[Any, Any] | None,
        reply: JsonRpcReply,
        failure: TetherError | None,
        headers_member: bool,
    ) -> None:
        """Answer each request object into `results` (same index), up to max_concurrency at once.

        With `failure`, every well-formed request is answered with it and nothing runs.
        Each item is released from `items` as soon as a worker takes it: the parsed batch
        then does not survive garbage collections while the items run (the cyclic collector
        promotes less, and full collections, which scan the whole heap, come less often).
        """
        count = len(items)
        taken = 0
        operations = self._operations
        run_operation = self.api.invoker.run
        dumps = orjson.dumps
        # A batch item may run in a worker task of its own, and its dependencies must close
        # in the task that entered them: they close once its answer is ready. A single
        # request runs in the dispatching task, and closes after the answer is sent.
        in_batch = count > 1

        async def worker() -> None:
            # Workers take items in order; each item runs start to end in its worker's task,
            # so its exit stacks are entered and closed in one task. The envelope checks are
            # inline: in a batch of a hundred, every call and allocation per item counts.
            nonlocal taken
            while taken < count:
                index = taken
                taken = index + 1
                message = items[index]
                items[index] = None
                if type(message) is not dict:
                    results[index] = _INVALID_REQUEST_NULL_ID
                    continue
                get = message.get
                id_value = get("id", _ABSENT)
                notification = id_value is _ABSENT
                if notification or id_value is None:
                    id_json = b"null"
                elif type(id_value) is str or type(id_value) is int:
                    try:
                        id_json = dumps(id_value)
                    except TypeError:  # an integer beyond 64 bits: JSON has no such limit
                        id_json = str(id_value).encode()
                else:
                    # An object, array, boolean or fraction: the id itself is invalid.
                    results[index] = _INVALID_REQUEST_NULL_ID
                    continue
                method = get("method")
                params = get("params")
                if (
                    get("jsonrpc") != "2.0"
                    or type(method) is not str
                    or (
                        type(params) is not dict
                        and type(params) is not list
                        and (params is not None or "params" in message)
                    )
                ):
                    results[index] = _invalid_request(id_json)
                    continue
                op = operations.get(method)
                if op is None and method != DISCOVER_METHOD:
                    if not notification:
                        results[index] = error_response(
                            id_json, METHOD_NOT_FOUND, "Method not found"
                        )
                    continue
                if failure is not None:
                    if not notification:
                        results[index] = tether_error_response(id_json, failure)
                    continue
                if op is None:
                    try:
                        result = self._discovery(params)
                    except TetherError as error:
                        if not notification:
                            results[index] = tether_error_response(id_json, error)
                        continue
                    if not notification:
                        results[index] = b"".join((_HEAD, id_json, _RESULT, result, b"}"))
                    continue
                if isinstance(params, list):
                    try:
                        params = op.params_from_positional(params)
                    except TetherError as error:
                        if not notification:
                            results[index] = tether_error_response(id_json, error)
                        continue
                if op.plan is None:
                    # No dependencies: the invoker never reads the context, and the outcome
                    # has nothing left for after the answer (an error may have headers).
                    outcome = await run_operation(_NO_CONTEXT, op, params, True)
                    if outcome.headers:
                        reply._collect(outcome)
                else:
                    outcome = await run_operation(
                        make_context(), op, params, encode=True, dependency_cache=seed
                    )
                    if in_batch and outcome.pending:
                        await outcome.close_dependencies()
                    reply._collect(outcome)
                if notification:
                    continue
                if outcome.error is None:
                    answer = b"".join((_HEAD, id_json, _RESULT, outcome.result, b"}"))
                else:
                    answer = tether_error_response(id_json, outcome.error)
                if headers_member and outcome.headers:
                    answer = with_headers_member(answer, outcome.headers)
                results[index] = answer

        if count == 1:
            await worker()
        else:
            await _fan_out(worker, min(self.max_concurrency, count), lambda: taken < count)

    async def _solve_shared(
        self,
        ctx: CallContext,
        dependencies: Sequence[fastapi_params.Depends],
        stack: AsyncExitStack,
        dependency_cache: dict[Any, Any] | None,
    ) -> dict[Any, Any]:
        # Seeded: a value the connection already holds (the app's dependencies, solved at
        # the handshake) is reused, not solved again for the batch.
        solved = await self.api.invoker.solve_shared(ctx, dependencies, stack, dependency_cache)
        if dependency_cache:
            # Values seeded by a wider scope (a connection) win over the batch's own.
            return {**solved, **dependency_cache}
        return solved

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
