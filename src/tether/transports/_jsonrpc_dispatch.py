"""JSON-RPC 2.0 message handling, independent of the wire that carries the messages.

`JsonRpcDispatcher.dispatch` takes one parsed message (a request object or a batch
list) and a factory of call contexts, runs the calls through the invoker and returns a
`JsonRpcReply`: the response bytes (None when nothing is answered) and the work left for
after they are sent. The HTTP endpoint (`JsonRpcTransport`) feeds it request bodies; the
WebSocket transport feeds it socket messages.

Results arrive from the invoker already encoded, so responses are assembled as bytes and
never re-encoded (`_jsonrpc_responses`). A batch's items run on the bounded scheduler
(`_scheduler.fan_out`), at most `max_concurrency` at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from operator import length_hint
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import params as fastapi_params

from ..context import CallContext
from ..errors import ConfigurationError, TetherError, ValidationFailed
from ..outcome import Outcome
from ..schema.openrpc import openrpc_document
from ._jsonrpc_responses import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    INVALID_REQUEST_NULL_ID,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PARSE_ERROR_RESPONSE,
    RESPONSE_HEAD,
    RESULT_MEMBER,
    JsonRpcReply,
    error_response,
    invalid_request,
    tether_error_response,
    with_effects_member,
    with_headers_member,
)
from ._scheduler import fan_out as _fan_out

if TYPE_CHECKING:
    from ..transport import TransportHandle

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
    "with_effects_member",
    "with_headers_member",
)

DEFAULT_MAX_BATCH_SIZE = 100
"""Largest batch accepted by default; a larger one is refused whole."""
DEFAULT_MAX_CONCURRENCY = 16
"""How many items of one batch run at once, by default."""

DISCOVER_METHOD = "rpc.discover"

ContextFactory = Callable[[], "CallContext"]
"""Builds a fresh `CallContext` for one call (each batch item gets its own)."""

_ABSENT: Any = object()


class JsonRpcDispatcher:
    """Answers JSON-RPC 2.0 messages (single requests, notifications, batches) with the invoker.

    Args:
        handle: the Tether's transport handle: the operations to call, and the invoker.
        max_batch_size: largest batch accepted; a larger one is refused whole with -32600
            before any item runs.
        max_concurrency: how many items of one batch run at once.
        server_url: the endpoint's URL, as the OpenRPC document names it
            (default `{prefix}/jsonrpc`).
    """

    def __init__(
        self,
        handle: TransportHandle,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        server_url: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ConfigurationError("max_batch_size must be at least 1")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        self.handle = handle
        # The registry's own dict, by reference: operations added later are found too.
        self._operations = handle.operations
        self.max_batch_size = max_batch_size
        self.max_concurrency = max_concurrency
        self.server_url = server_url if server_url is not None else f"{handle.prefix}/jsonrpc"
        self._openrpc: tuple[int, bytes] | None = None

    async def dispatch(
        self,
        message: Any,
        make_context: ContextFactory,
        *,
        dependency_cache: dict[Any, Any] | None = None,
        headers_member: bool = False,
        effects_member: bool = False,
    ) -> JsonRpcReply:
        """Answer one parsed JSON-RPC message: a request object or a batch list.

        `dependency_cache` seeds every call's dependency cache (a WebSocket connection's
        shared dependencies, for instance). `headers_member` adds the documented `headers`
        extension member to each response whose call has headers (a socket whose client
        opted in), `effects_member` the `effects` member to each response whose call has
        cache effects (a client that opted in); otherwise responses are exactly the
        specification's. Every call's effects are noted in the reply, for its
        `invalidate_header()`. Never raises for anything the client sent. The caller sends
        the reply, then awaits its `finish()`.
        """
        members = (headers_member, effects_member)
        if type(message) is list:
            return await self._dispatch_batch(message, make_context, dependency_cache, members)
        reply = JsonRpcReply()
        results: list[bytes | None] = [None]
        await self._run([message], results, make_context, dependency_cache, reply, members)
        reply.body = results[0]
        return reply

    async def _dispatch_batch(
        self,
        batch: list[Any],
        make_context: ContextFactory,
        dependency_cache: dict[Any, Any] | None,
        members: tuple[bool, bool],
    ) -> JsonRpcReply:
        if not batch:
            return JsonRpcReply(INVALID_REQUEST_NULL_ID)
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
        await self._run(batch, results, make_context, dependency_cache, reply, members)
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
        members: tuple[bool, bool],
    ) -> None:
        """Answer the request objects of one message into `results`, index for index.

        Dependencies shared by the message's calls (the per-batch dependencies of the
        operations it names, the app's own dependencies among them) are solved first, once,
        and close after every call has finished (in `reply.finish()`), all in this task.
        """
        shared = self._shared_dependencies(items)
        if not shared:
            await self._run_items(
                items, results, make_context, dependency_cache, reply, None, members
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
                await self._run_items(items, results, make_context, None, reply, error, members)
                return
            await self._run_items(items, results, make_context, seed, reply, None, members)
        except BaseException as exc:
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        # The shared dependencies close after every call's: in `reply.finish()`.
        reply.close_shared_last(stack)

    def _shared_dependencies(self, items: list[Any]) -> tuple[fastapi_params.Depends, ...]:
        """The dependencies solved once for `items`: the per-batch ones of their operations."""
        if not self.handle.batch_scoped:
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
        members: tuple[bool, bool],
    ) -> None:
        """Answer each request object into `results` (same index), up to max_concurrency at once.

        With `failure`, every well-formed request is answered with it and nothing runs.
        Each item is released from `items` as soon as a worker takes it: the parsed batch
        then does not survive garbage collections while the items run (the cyclic collector
        promotes less, and full collections, which scan the whole heap, come less often).
        """
        count = len(items)
        # Shared by the workers: each takes the next index, in order, until none is left.
        indices = iter(range(count))
        operations = self._operations
        run_operation = self.handle.invoker.run
        run_plain = self.handle.invoker.run_plain
        dumps = orjson.dumps
        headers_member, effects_member = members
        # A batch item may run in a worker task of its own, and its dependencies must close
        # in the task that entered them: they close once its answer is ready. A single
        # request runs in the dispatching task, and closes after the answer is sent.
        in_batch = count > 1

        async def worker() -> None:
            # Workers take items in order; each item runs start to end in its worker's task,
            # so its exit stacks are entered and closed in one task. The envelope checks are
            # inline: in a batch of a hundred, every call and allocation per item counts.
            for index in indices:
                message = items[index]
                items[index] = None
                if type(message) is not dict:
                    results[index] = INVALID_REQUEST_NULL_ID
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
                    results[index] = INVALID_REQUEST_NULL_ID
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
                    results[index] = invalid_request(id_json)
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
                        results[index] = b"".join(
                            (RESPONSE_HEAD, id_json, RESULT_MEMBER, result, b"}")
                        )
                    continue
                if isinstance(params, list):
                    try:
                        params = op.params_from_positional(params)
                    except TetherError as error:
                        if not notification:
                            results[index] = tether_error_response(id_json, error)
                        continue
                if op.plan is None and op.kind != "stream":
                    # No dependencies: nothing happens after the answer, and the result is
                    # the whole outcome (`Invoker.run_plain`); a failure's own headers (a
                    # 401's WWW-Authenticate, say) still reach the reply through its outcome.
                    try:
                        result = await run_plain(op, params)
                    except TetherError as error:
                        outcome = Outcome.failed(op.name, error)
                        if outcome.headers:
                            reply.collect(outcome)
                    else:
                        if not notification:
                            results[index] = b"".join(
                                (RESPONSE_HEAD, id_json, RESULT_MEMBER, result, b"}")
                            )
                        continue
                else:
                    outcome = await run_operation(
                        make_context(), op, params, encode=True, dependency_cache=seed
                    )
                    if in_batch and outcome.pending:
                        await outcome.close_dependencies()
                    reply.collect(outcome)
                    # Only an operation with a plan has effects: the plain path above has none.
                    if outcome.effects:
                        reply.note_effects(index, outcome.effects)
                if notification:
                    continue
                if outcome.error is None:
                    answer = b"".join((RESPONSE_HEAD, id_json, RESULT_MEMBER, outcome.result, b"}"))
                else:
                    answer = tether_error_response(id_json, outcome.error)
                if headers_member and outcome.headers:
                    answer = with_headers_member(answer, outcome.headers)
                if effects_member and outcome.effects:
                    answer = with_effects_member(answer, outcome.effects)
                results[index] = answer

        if count == 1:
            await worker()
        else:
            # Items wait while the shared iterator has indices left (its exact length hint).
            await _fan_out(
                worker, min(self.max_concurrency, count), lambda: length_hint(indices) > 0
            )

    async def _solve_shared(
        self,
        ctx: CallContext,
        dependencies: Sequence[fastapi_params.Depends],
        stack: AsyncExitStack,
        dependency_cache: dict[Any, Any] | None,
    ) -> dict[Any, Any]:
        # Seeded: a value the connection already holds (the app's dependencies, solved at
        # the handshake) is reused, not solved again for the batch.
        solved = await self.handle.invoker.solve_shared(ctx, dependencies, stack, dependency_cache)
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
        if cached is not None and cached[0] == len(self.handle):
            return cached[1]
        try:
            document = orjson.dumps(openrpc_document(self.handle, server_url=self.server_url))
        except Exception as exc:
            raise self.handle.invoker.map_exception(exc, DISCOVER_METHOD) from None
        self._openrpc = (len(self.handle), document)
        return document
