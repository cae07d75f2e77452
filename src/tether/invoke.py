"""The invoker: every call on every transport runs through `Invoker.run`, into an `Outcome`.

validate -> solve dependencies -> check auth -> run -> encode, once, here. Transports
never validate, solve dependencies or check auth themselves: they render the outcome and
await its `finish()` (see outcome.py for the after-call order).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
from anyio import CancelScope, to_thread
from fastapi import params
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from .auth import check_auth
from .context import CALL_SCOPE_KEY
from .dependencies import DependencyPlan, scope_with_stacks
from .effects import default_user_key
from .errors import BadRequest, InternalError, TetherError, ValidationFailed, error_for_status
from .outcome import Outcome, response_headers

if TYPE_CHECKING:
    from .context import CallContext
    from .effects import Context, Contexts, Effects
    from .live import LiveHub
    from .operation import Operation

__all__ = ("Invoker", "OperationStream", "logger")

logger = logging.getLogger("tether")
"""Logger of tether; unexpected exceptions are logged here once, with the operation's name."""

Params = Mapping[str, Any] | BaseModel | None

_NO_RESULT: Any = object()


class Invoker:
    """Runs operations: the one place that holds validation, dependencies, auth and encoding."""

    __slots__ = ("_shared_plans", "cache", "events", "live", "overrides_provider", "user_key")

    def __init__(self, overrides_provider: Any = None) -> None:
        self.overrides_provider = overrides_provider
        """Object whose `dependency_overrides` apply (the FastAPI app tether is mounted on)."""
        self.events: Any = None
        """The event bus emitted events go to (`stage` before the answer, `release` after)."""
        self.cache: Contexts | None = None
        """The contexts that resolve a command's `affects=` and `merge=` into its effects."""
        self.live: LiveHub | None = None
        """Where a call's effects are pushed after the answer (live subscribers)."""
        self.user_key: Callable[[Any], str | None] = default_user_key
        """Tells users apart, for the effects of per-user contexts."""
        self._shared_plans: dict[tuple[params.Depends, ...], DependencyPlan] = {}

    async def run_plain(self, op: Operation, params: Params, encode: bool = True) -> Any:
        """Run an operation without dependencies; return its result (JSON bytes when `encode`).

        Such an operation has nothing for after the answer (no background task, no
        dependency to close, no header), so its outcome is its result alone: the hot path
        of a JSON-RPC batch item takes it without building an `Outcome`. `op.plan` must be
        None and `op.kind` not a stream; anything that gives such operations after-call work
        must send them through `run`.

        Raises:
            TetherError: the call failed, already mapped (unexpected exceptions become
                `InternalError` and are logged once).
        """
        try:
            kwargs = op.bind(params)
            if op.is_async:
                result = await op.func(**kwargs)
            else:
                result = await self._run(op, kwargs)
            return op.encoder.to_json(result) if encode else result
        except Exception as exc:
            mapped = self.map_exception(exc, op.name)
            raise mapped from mapped.__cause__  # the unexpected exception behind an INTERNAL_ERROR

    async def run(
        self,
        ctx: CallContext,
        op: Operation,
        params: Params,
        encode: bool = False,
        *,
        dependency_cache: dict[Any, Any] | None = None,
    ) -> Outcome:
        """Run `op` for `ctx` with `params`; return its `Outcome` (never raising a TetherError).

        The result is JSON bytes when `encode`. `dependency_cache` pre-seeds FastAPI's
        per-call cache; transports use it to share dependencies solved once per batch or
        per connection. On success the yield dependencies are still open: the transport
        sends the answer, then awaits `outcome.finish()` in this same task. On failure
        they are already closed (they saw the operation's exception) and `outcome.error`
        is the mapped error; unexpected exceptions become `InternalError`, logged once.
        """
        if op.kind == "stream":
            error = BadRequest(
                f"{op.name} is a stream: read it with SSE or a WebSocket subscription",
                details={"operation": op.name, "kind": "stream"},
            )
            return Outcome.failed(op.name, error)
        if op.plan is None:
            # No dependencies, no auth: FastAPI's solver is skipped, and the outcome is the
            # result alone.
            try:
                return Outcome(op.name, await self.run_plain(op, params, encode))
            except TetherError as error:
                return Outcome.failed(op.name, error)
        return await self._run_with_dependencies(ctx, op, params, encode, dependency_cache)

    async def call(
        self,
        ctx: CallContext,
        op: Operation,
        params: Params,
        *,
        encode: bool = False,
        dependency_cache: dict[Any, Any] | None = None,
    ) -> Any:
        """Run `op` to its end (background tasks and teardown included); return its result.

        The in-process form of `run`: what a transport does after sending is done before
        returning.

        Raises:
            TetherError: every failure, already mapped; unexpected exceptions become
                `InternalError` and are logged once.
        """
        outcome = await self.run(ctx, op, params, encode=encode, dependency_cache=dependency_cache)
        if outcome.pending:
            await outcome.finish()
        if outcome.error is not None:
            raise outcome.error
        return outcome.result

    def stream(
        self,
        ctx: CallContext,
        op: Operation,
        params: Params,
        *,
        encode: bool = False,
        dependency_cache: dict[Any, Any] | None = None,
    ) -> OperationStream:
        """Open a stream operation: `async with invoker.stream(...) as items: async for ...`.

        Entering solves dependencies, checks auth and validates (raising TetherError before
        any item); the dependencies stay open while items are read and close on exit, in
        the task that entered. Items are JSON bytes when `encode`.
        """
        return OperationStream(self, ctx, op, params, encode, dependency_cache)

    async def _run(self, op: Operation, kwargs: dict[str, Any]) -> Any:
        if op.is_async:
            return await op.func(**kwargs)
        return await to_thread.run_sync(functools.partial(op.func, **kwargs))

    async def prepare(
        self,
        ctx: CallContext,
        op: Operation,
        params: Params,
        inner: AsyncExitStack,
        function_stack: AsyncExitStack,
        dependency_cache: dict[Any, Any] | None,
    ) -> dict[str, Any]:
        """Validate, solve the gate, check auth, solve the rest; return the kwargs.

        The order is deliberate: invalid input costs no dependency work, and an
        unauthenticated call never solves the operation's own dependencies.
        """
        plan = op.plan
        assert plan is not None
        kwargs = op.bind(params)

        async def gatekeeper(user: Any) -> None:
            if plan.has_user:
                ctx.user = user
            if op.auth is not None:
                await check_auth(op.auth, ctx.user, ctx)

        if op.auth is not None:
            ctx.params = dict(kwargs)  # what an auth predicate may read
        scope = scope_with_stacks(ctx.scope, inner, function_stack)
        scope[CALL_SCOPE_KEY] = ctx  # where an `Events` dependency finds its call
        request = ctx.request(scope, websocket=plan.wants_websocket)
        cache = dict(dependency_cache) if dependency_cache else None
        if plan.per_call:
            # Made here, on the loop (an `Events` emitter), not by FastAPI in a thread.
            cache = cache if cache is not None else {}
            for key, factory in plan.per_call:
                cache[key] = factory(ctx)
        solved = await plan.solve(
            request,
            overrides_provider=self.overrides_provider or ctx.scope.get("app"),
            dependency_cache=cache,
            gatekeeper=gatekeeper,
        )
        ctx.response = solved.response
        ctx.background = solved.background
        values = solved.values
        for name in plan.names:
            kwargs[name] = values[name]
        return kwargs

    async def _run_with_dependencies(
        self,
        ctx: CallContext,
        op: Operation,
        params: Params,
        encode: bool,
        dependency_cache: dict[Any, Any] | None,
    ) -> Outcome:
        # Two stacks, as on a FastAPI route: the function stack (`Depends(scope="function")`)
        # closes as soon as the function returns; the request stack (the default scope)
        # stays open in the outcome until the answer is sent and the background tasks ran.
        # The transport closes it in this task.
        inner = AsyncExitStack()
        result = value = _NO_RESULT
        kwargs: dict[str, Any] = {}
        try:
            async with AsyncExitStack() as function_stack:
                kwargs = await self.prepare(
                    ctx, op, params, inner, function_stack, dependency_cache
                )
                result = value = await self._run(op, kwargs)
                if encode:
                    # Encode inside the dependency scope: lazy ORM attributes still load.
                    result = op.encoder.to_json(result)
        except Exception as exc:
            return await self._failed(op, inner, exc)
        except BaseException as exc:  # cancelled: close the dependencies, and go on
            await inner.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if result is _NO_RESULT:
            return await self._failed(op, inner, _swallowed(op))
        effects: Effects | None = None
        if op.affects or op.merge:
            try:
                effects = self._effects(ctx, op, kwargs, value, result if encode else None)
            except Exception as exc:
                return await self._failed(op, inner, exc)
        emitted = ctx.emitted
        if emitted:
            # After the function and its `scope="function"` dependencies, before the answer:
            # durable events reach the outbox (a remote broker) or the call fails.
            try:
                await self._stage(emitted)
            except Exception as exc:
                return await self._failed(op, inner, exc)
        response = ctx.response
        outcome = Outcome(
            op.name,
            result,
            status=response.status_code if response is not None else None,
            headers=response_headers(response),
            background=ctx.background,
            stack=inner,
        )
        if emitted:
            self._hand_over(outcome, emitted)
        if effects:
            outcome.effects = effects
            if self.live is not None:
                outcome.push = self.live.publish
        return outcome

    def _effects(
        self,
        ctx: CallContext,
        op: Operation,
        kwargs: dict[str, Any],
        value: Any,
        encoded: bytes | None,
    ) -> Effects | None:
        """Return what a successful call of a command with `affects=`/`merge=` invalidates and merges."""
        if self.cache is None:
            return None
        plan = self.cache.plan(op)
        if plan is None:
            return None
        return plan.effects(kwargs, value, encoded, op.encoder.to_json, ctx.user, self.user_key)

    async def run_context(
        self,
        make_context: Callable[[Operation], CallContext],
        context: Context,
        params: Mapping[str, Any],
        encode: bool = False,
    ) -> list[tuple[str, Outcome]]:
        """Run every query of a context concurrently, each with the params it declares.

        Returns `(slot, outcome)` pairs in the context's order. Each slot runs in a task of
        its own, whose yield dependencies close there once it has answered; the caller
        awaits each outcome's `finish()` after the bundle's answer (background tasks).

        Raises:
            TetherError: a required param is missing, or a param no slot takes is given.
        """
        split = context.split(params)
        outcomes: list[tuple[str, Outcome]] = [(op.name, Outcome(op.name)) for op, _ in split]

        async def run_slot(index: int, op: Operation, slot_params: dict[str, Any]) -> None:
            outcome = await self.run(make_context(op), op, slot_params, encode)
            if outcome.pending:
                await outcome.close_dependencies()
            outcomes[index] = (op.name, outcome)

        if len(split) == 1:
            op, slot_params = split[0]
            await run_slot(0, op, slot_params)
            return outcomes
        async with anyio.create_task_group() as group:
            for index, (op, slot_params) in enumerate(split):
                group.start_soon(run_slot, index, op, slot_params)
        return outcomes

    async def _stage(self, emitted: Sequence[Any]) -> None:
        """Make emitted events safe before the answer (outbox, remote broker); raises if not."""
        if self.events is None:
            raise RuntimeError("events were emitted, but this invoker has no event bus")
        await self.events.stage(emitted)

    def _hand_over(self, outcome: Outcome, emitted: Sequence[Any]) -> None:
        """Give staged events to the outcome, which releases them after the answer."""
        outcome.events = emitted
        outcome.release = self.events.release

    async def _failed(self, op: Operation, inner: AsyncExitStack, exc: Exception) -> Outcome:
        """Close the dependencies with the operation's exception, then map what is left."""
        try:
            if await inner.__aexit__(type(exc), exc, exc.__traceback__):
                exc = _swallowed(op)
        except Exception as raised:  # a teardown raised its own: that one is answered
            exc = raised
        return Outcome.failed(op.name, self.map_exception(exc, op.name))

    async def solve_shared(
        self,
        ctx: CallContext,
        dependencies: Sequence[params.Depends],
        stack: AsyncExitStack,
        dependency_cache: dict[Any, Any] | None = None,
    ) -> dict[Any, Any]:
        """Solve dependencies shared by many calls (a batch, a connection) once.

        Yield dependencies close when `stack` closes; the caller opens and closes it in one
        task around all the calls. Returns FastAPI's dependency cache, to pass as
        `dependency_cache` to each call so that they reuse the shared values.

        `dependency_cache` seeds the solve with values already shared at a wider scope (a
        batch on a WebSocket reuses the connection's).

        Raises:
            TetherError: a shared dependency failed; every call it covers fails the same way.
        """
        if not dependencies:
            return dict(dependency_cache) if dependency_cache else {}
        plan = self._shared_plans.get(tuple(dependencies))
        if plan is None:
            plan = DependencyPlan((), path="", dependencies=dependencies)
            self._shared_plans[tuple(dependencies)] = plan
        try:
            request = ctx.request(
                scope_with_stacks(ctx.scope, stack, stack), websocket=plan.wants_websocket
            )
            solved = await plan.solve(
                request,
                overrides_provider=self.overrides_provider or ctx.scope.get("app"),
                dependency_cache=dict(dependency_cache) if dependency_cache else None,
            )
        except Exception as exc:
            raise self.map_exception(exc, "shared dependencies") from None
        return solved.cache

    @staticmethod
    def map_exception(exc: Exception, name: str) -> TetherError:
        """Turn any exception raised by a call into the TetherError sent to the client."""
        if isinstance(exc, TetherError):
            return exc
        if isinstance(exc, HTTPException):
            detail = exc.detail
            message = detail if isinstance(detail, str) else None
            mapped = error_for_status(
                exc.status_code,
                message,
                None if isinstance(detail, str) else detail,
                headers=getattr(exc, "headers", None),
            )
            if not isinstance(mapped, InternalError):
                return mapped
        elif isinstance(exc, RequestValidationError):
            return ValidationFailed.from_errors(exc.errors())
        logger.error("operation %r failed with an unexpected exception", name, exc_info=exc)
        error = InternalError()
        # Kept for the server's own eyes (an event handler's parked reason); never rendered.
        error.__cause__ = exc
        return error


def _swallowed(op: Operation) -> RuntimeError:
    return RuntimeError(
        f"a yield dependency of {op.name!r} swallowed the operation's exception;"
        " re-raise it after handling"
    )


_DONE: Any = object()


class OperationStream:
    """An open stream operation: an async context manager that is also an async iterator."""

    __slots__ = (
        "_ctx",
        "_dependency_cache",
        "_encode",
        "_failure",
        "_function_stack",
        "_generator",
        "_invoker",
        "_op",
        "_params",
        "_stack",
    )

    def __init__(
        self,
        invoker: Invoker,
        ctx: CallContext,
        op: Operation,
        params: Params,
        encode: bool,
        dependency_cache: dict[Any, Any] | None,
    ) -> None:
        self._invoker = invoker
        self._ctx = ctx
        self._op = op
        self._params = params
        self._encode = encode
        self._dependency_cache = dependency_cache
        self._stack = AsyncExitStack()  # the request scope (the default)
        self._function_stack = AsyncExitStack()  # `Depends(scope="function")`
        self._generator: Any = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> OperationStream:
        op = self._op
        try:
            if op.kind != "stream":
                raise BadRequest(
                    f"{op.name} is a {op.kind}, not a stream; call it instead",
                    details={"operation": op.name, "kind": op.kind},
                )
            if op.plan is None:
                kwargs = op.bind(self._params)
            else:
                kwargs = await self._invoker.prepare(
                    self._ctx,
                    op,
                    self._params,
                    self._stack,
                    self._function_stack,
                    self._dependency_cache,
                )
            self._generator = op.func(**kwargs)
        except BaseException as exc:
            await self._close(type(exc), exc, exc.__traceback__)
            if isinstance(exc, Exception):
                raise self._invoker.map_exception(exc, op.name) from None
            raise
        return self

    def __aiter__(self) -> OperationStream:
        return self

    async def __anext__(self) -> Any:
        op = self._op
        try:
            if op.is_async:
                item = await self._generator.__anext__()
            else:
                item = await to_thread.run_sync(next, self._generator, _DONE)
                if item is _DONE:
                    raise StopAsyncIteration
            return op.encoder.to_json(item) if self._encode else item
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self._failure = exc
            raise self._invoker.map_exception(exc, op.name) from None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Headers a `Response` dependency set (filtered as for a call), once entered."""
        return response_headers(self._ctx.response)

    @property
    def status(self) -> int | None:
        """The status a `Response` dependency set, once entered (None: the default)."""
        response = self._ctx.response
        return response.status_code if response is not None else None

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool | None:
        """Close the generator, then do the after-call work of the stream's outcome.

        A stream that ended well (the transport has sent its end) runs its background
        tasks, then closes its yield dependencies; a teardown error is logged, not raised.
        A stream that failed closes its dependencies with its own exception (which they
        see) and runs no background task; a teardown error then raises, mapped.
        """
        generator = self._generator
        self._generator = None
        try:
            if generator is not None:
                if self._op.is_async:
                    await generator.aclose()
                else:
                    # Shielded: a cancelled reader must still close the generator now,
                    # not at garbage collection.
                    with CancelScope(shield=True):
                        await to_thread.run_sync(generator.close)
        except BaseException as failure:
            if exc is None:
                exc, exc_type, tb = failure, type(failure), failure.__traceback__
            await self._close(exc_type, exc, tb)
            raise
        if exc is None:
            await self._function_stack.aclose()
            ctx = self._ctx
            outcome = Outcome(self._op.name, background=ctx.background, stack=self._stack)
            if ctx.emitted:
                try:
                    await self._invoker._stage(ctx.emitted)
                except Exception as failure:
                    await self._close(type(failure), failure, failure.__traceback__)
                    raise self._invoker.map_exception(failure, self._op.name) from None
                self._invoker._hand_over(outcome, ctx.emitted)
            await outcome.finish()
            return None
        await self._close(exc_type, exc, tb)
        return None

    async def _close(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._failure is not None and isinstance(exc, TetherError):
            # Yield dependencies see the operation's own exception, not its mapping.
            exc, exc_type, tb = self._failure, type(self._failure), self._failure.__traceback__
        try:
            await self._function_stack.__aexit__(exc_type, exc, tb)
        except BaseException as raised:
            await self._stack.__aexit__(type(raised), raised, raised.__traceback__)
            raise
        await self._stack.__aexit__(exc_type, exc, tb)
