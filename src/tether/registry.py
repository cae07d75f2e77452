"""Tether: registers operations, names and finds them, calls them in-process, mounts transports."""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack, overload

from fastapi import params
from starlette.types import Scope

from ._compile import compile_operation
from ._origins import check_allowed_origins
from .brokers import Broker, broker_from
from .brokers.memory import MemoryBroker
from .context import CallContext, in_process_scope
from .dependencies import BatchScoped, ConnectionScoped, DependencyPlan
from .effects import CallResult, ContextOptions, Contexts, default_user_key
from .errors import ConfigurationError, TetherError
from .events.bus import EventBus, EventSettings
from .events.handlers import compile_event_handler, compile_message_handler
from .events.messages import Command, Event, Message, Query, R
from .invoke import Invoker
from .limits import DEFAULT_MAX_IN_FLIGHT, Admission
from .live import LiveHub, LiveSettings
from .operation import Kind, Operation, OperationSpec, TetherOperationOptions, get_spec, make_spec
from .services import compile_service, service_table
from .transport import Transport, TransportHandle, default_transports, find_operation

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ("Tether",)

F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E", bound=Event)

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 10.0


class Tether:
    """A set of operations, callable in-process and over every transport once mounted on an app.

    `dependencies`, `batch_dependencies` and `connection_dependencies` guard every operation
    on every transport (there are no per-transport guards), and so do the app's own
    dependencies (`FastAPI(dependencies=[...])`), which `mount` reads and solves first.

    Args:
        prefix: URL prefix of every tether endpoint, such as `/api`.
        user: a FastAPI dependency (`Depends(current_user)`) that returns the caller's user,
            or None when unauthenticated; operations with `auth=` use it.
        dependencies: FastAPI dependencies solved for every operation, like a router's.
        batch_dependencies: dependencies of every operation that a JSON-RPC batch solves once
            and shares between its items (solved per call elsewhere).
        connection_dependencies: dependencies of every operation that a WebSocket connection
            solves once and shares between its messages (solved per call elsewhere).
        tags: OpenAPI tags added to every operation.
        max_body_size: largest request body accepted, in bytes (default 1 MiB).
        max_in_flight: HTTP and JSON-RPC requests served at once; past it, requests are
            answered 429 `TOO_MANY_REQUESTS` at once rather than queued (default 1024).
        body_timeout: seconds a request body may take to arrive in full; past it, the
            request is answered 408 `REQUEST_TIMEOUT` and its connection closed (default 10).
        allowed_origins: browser origins (`https://app.example.com`) allowed to open the
            WebSocket besides the request's own host; `"*"` allows any (default: none).
        strict: validate inputs strictly (no coercion: `true` is not an integer, `"1"` is
            not a number) for every operation that does not set its own `strict=`.
        broker: how events travel: a `Broker`, `"memory://"` (one process) or
            `"redis://host:port/db"` (Redis Streams, many processes); None: the
            `TETHER_BROKER` environment variable, else memory.
        outbox: makes events durable: an `Outbox`, or its database URL
            (`"sqlite+aiosqlite:///outbox.sqlite3"`, `"postgresql+asyncpg://..."`).
        events: the event bus's settings (concurrency, retries, limits, grace).
        live: live push's settings (a subscriber's queue, topics per subscription).
        user_key: tells users apart for per-user contexts (default: the user's `id`, else
            `username`, `name` or `email`); see docs/cache.md.
    """

    def __init__(
        self,
        *,
        prefix: str = "/api",
        user: params.Depends | None = None,
        dependencies: Sequence[params.Depends] = (),
        batch_dependencies: Sequence[params.Depends] = (),
        connection_dependencies: Sequence[params.Depends] = (),
        tags: Sequence[str] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        allowed_origins: Sequence[str] = (),
        strict: bool = False,
        broker: Broker | str | None = None,
        outbox: Any = None,
        events: EventSettings | None = None,
        live: LiveSettings | None = None,
        user_key: Callable[[Any], str | None] | None = None,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigurationError(f"prefix must start with '/' and not end with one: {prefix!r}")
        if user is not None and not isinstance(user, params.Depends):
            raise ConfigurationError("user= takes a dependency: Tether(user=Depends(current_user))")
        for dependency in (*dependencies, *batch_dependencies, *connection_dependencies):
            if not isinstance(dependency, params.Depends):
                raise ConfigurationError(
                    f"dependencies= takes Depends(...) objects, not {dependency!r}"
                )
        if max_body_size < 1:
            raise ConfigurationError("max_body_size must be positive")
        if not body_timeout > 0:
            raise ConfigurationError("body_timeout must be a positive number of seconds")
        # Each entry must be an origin (`https://app.example.com`) or "*", named if not.
        allowed_origins = check_allowed_origins(allowed_origins)
        self.prefix = prefix
        """URL prefix of every tether endpoint."""
        self.user = user
        """The dependency that resolves the caller's user, if any."""
        shared = DependencyPlan(
            (), path="", dependencies=(*batch_dependencies, *connection_dependencies)
        )
        if shared.per_call:
            raise ConfigurationError(
                "batch_dependencies and connection_dependencies are shared by many calls: a"
                " per-call dependency such as Events belongs on an operation or a service"
            )
        self.dependencies = (
            *dependencies,
            *(_scoped(BatchScoped, d) for d in batch_dependencies),
            *(_scoped(ConnectionScoped, d) for d in connection_dependencies),
        )
        """Dependencies solved for every operation (batch- and connection-scoped ones last)."""
        self.app_dependencies: tuple[params.Depends, ...] = ()
        """The dependencies of the app tether is mounted on (`FastAPI(dependencies=...)`),
        solved before every operation's others, once per request (set by `mount`)."""
        self.tags = tuple(tags)
        """OpenAPI tags added to every operation."""
        self.max_body_size = max_body_size
        """Largest request body accepted, in bytes."""
        self.admission = Admission(max_in_flight)
        """Sheds load past `max_in_flight` requests in flight (HTTP and JSON-RPC)."""
        self.body_timeout = float(body_timeout)
        """Seconds a request body may take to arrive before a 408."""
        self.allowed_origins: tuple[str, ...] = allowed_origins
        """Browser origins allowed to open the WebSocket besides the request's own host."""
        self.strict = strict
        """Default input strictness of operations that do not set `strict=` themselves."""
        self.invoker = Invoker()
        """The invoker every transport calls."""
        settings = events or EventSettings()
        if not isinstance(settings, EventSettings):
            raise ConfigurationError(f"events= takes EventSettings(...), not {events!r}")
        chosen = broker_from(broker)
        if not isinstance(broker, Broker) and isinstance(chosen, MemoryBroker):
            # A memory broker tether made itself (None, "memory://") holds `queue_size`.
            chosen.maxlen = settings.queue_size
        self.events = EventBus(
            self.invoker,
            chosen,
            outbox=_outbox_from(outbox),
            settings=settings,
            scope_for=self._event_scope,
        )
        """The event bus: `subscribe`, `publish`, `settle`, `stats` (see docs/events.md)."""
        self.invoker.events = self.events
        if live is not None and not isinstance(live, LiveSettings):
            raise ConfigurationError(f"live= takes LiveSettings(...), not {live!r}")
        if user_key is not None and not callable(user_key):
            raise ConfigurationError(f"user_key= takes a function of the user, not {user_key!r}")
        self._operations: dict[str, Operation] = {}
        self.contexts = Contexts(self._operations, user)
        """The client-cache contexts: `api.contexts.get("todos")` (see docs/cache.md)."""
        self.user_key: Callable[[Any], str | None] = user_key or default_user_key
        """Tells users apart for per-user contexts."""
        self.live = LiveHub(
            self.contexts,
            chosen,
            self.invoker,
            gate=self._live_gate,
            user_key=self.user_key,
            settings=live,
        )
        """Live push: publishes calls' effects and serves this process's subscribers."""
        self.invoker.cache = self.contexts
        self.invoker.live = self.live
        self.invoker.user_key = self.user_key
        self._gate_plan: tuple[tuple[Any, ...], DependencyPlan | None] | None = None
        self.app: FastAPI | None = None
        """The FastAPI app tether is mounted on, once `mount` has run."""
        self.batch_scoped = False
        """Some operation declares per-batch dependencies (set as operations register)."""
        self._transports: list[Transport] = []
        self._message_handlers: dict[type[Message], str] = {}

    # -- registration -------------------------------------------------------------------

    def add(self, func: Callable[..., Any], spec: OperationSpec | None = None) -> Operation:
        """Compile and register `func` (marked by `query`/`command`, or with `spec`).

        Raises:
            ConfigurationError: the function is not marked, or its name is taken.
        """
        spec = spec or get_spec(func)
        if spec is None:
            raise ConfigurationError(f"{func!r} is not marked with @query or @command")
        if spec.uses is not None:
            raise ConfigurationError(f"{func!r}: uses=[...] applies to service methods only")
        op = compile_operation(
            func,
            spec,
            dependencies=self.dependencies,
            user=self.user,
            app_dependencies=self.app_dependencies,
            tags=self.tags,
            strict=self.strict if spec.strict is None else spec.strict,
        )
        self._register([op])
        return op

    def _register(self, ops: Sequence[Operation]) -> None:
        names = [op.name for op in ops]
        for name in names:
            if name in self._operations or names.count(name) > 1:
                raise ConfigurationError(f"operation name {name!r} is already registered")
        for op in ops:
            self._operations[op.name] = op
        try:
            # Contexts and effects are resolved again: a merge the new operations make
            # ambiguous, or a name they leave unknown once mounted, refuses them.
            self.contexts.changed(final=self.app is not None)
        except ConfigurationError:
            for op in ops:
                del self._operations[op.name]
            self.contexts.changed(final=False)
            raise
        for op in ops:
            if op.plan is not None and op.plan.batch_scoped:
                self.batch_scoped = True
            for transport in self._transports:
                transport.operation_added(op)

    def include(self, *items: Any) -> None:
        """Register service classes, and functions marked with the standalone `query` / `command`.

        Raises:
            ConfigurationError: an abstract service, an unmarked function, or a name taken.
        """
        for item in items:
            table = service_table(item)
            if table is None:
                self.add(item)
            else:
                self._register(
                    compile_service(
                        item,
                        table,
                        dependencies=self.dependencies,
                        user=self.user,
                        app_dependencies=self.app_dependencies,
                        tags=self.tags,
                        strict=self.strict,
                    )
                )

    def _decorator(self, kind: Kind, func: Any, options: dict[str, Any]) -> Any:
        spec = make_spec(kind, **options)

        def register(f: F) -> F:
            # Not marked: a bound method or a builtin cannot carry the attribute, and the
            # spec is passed along instead.
            self.add(f, spec)
            return f

        return register if func is None else register(func)

    @overload
    def query(self, func: F, /) -> F: ...
    @overload
    def query(self, **options: Unpack[TetherOperationOptions]) -> Callable[[F], F]: ...
    def query(self, func: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Register a query: an operation that reads, callable with POST and GET."""
        return self._decorator("query", func, options)

    @overload
    def command(self, func: F, /) -> F: ...
    @overload
    def command(self, **options: Unpack[TetherOperationOptions]) -> Callable[[F], F]: ...
    def command(self, func: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Register a command: an operation that changes state, callable with POST."""
        return self._decorator("command", func, options)

    @overload
    def stream(self, func: F, /) -> F: ...
    @overload
    def stream(self, **options: Unpack[TetherOperationOptions]) -> Callable[[F], F]: ...
    def stream(self, func: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Register a stream: a generator whose items reach SSE, WebSocket and `stream_call`."""
        return self._decorator("stream", func, options)

    def operation(
        self,
        *,
        kind: Kind,
        name: str | None = None,
        auth: Any = None,
        tags: Sequence[str] | None = None,
        summary: str | None = None,
        description: str | None = None,
        deprecated: bool = False,
        errors: Sequence[type[TetherError]] | None = None,
        strict: bool | None = None,
        context: str | None = None,
        rev: str | int | None = None,
        affects: Sequence[Any] | None = None,
        merge: Sequence[str] | Mapping[str, str] | None = None,
    ) -> Callable[[F], F]:
        """Register an operation of the given kind."""
        return self._decorator(  # type: ignore[no-any-return]
            kind,
            None,
            {
                "name": name,
                "auth": auth,
                "tags": tags,
                "summary": summary,
                "description": description,
                "deprecated": deprecated,
                "errors": errors,
                "strict": strict,
                "context": context,
                "rev": rev,
                "affects": affects,
                "merge": merge,
            },
        )

    def context(
        self,
        name: str,
        *,
        rev: str | int | None = None,
        per_user: bool | None = None,
        description: str | None = None,
    ) -> None:
        """Declare a context's own options; its queries join it with `@api.query(context=name)`.

        `rev` versions the whole context (clients drop what they cached under another rev);
        `per_user` says its data depends on who reads it, so pushes reach only the user
        whose call produced them (None: inferred, true when one of its queries depends on
        the Tether's `user=` resolver). Declaring is optional.

        Raises:
            ConfigurationError: the context is declared twice, or an option is invalid.
        """
        if rev is not None and (isinstance(rev, bool) or not isinstance(rev, str | int)):
            raise ConfigurationError(f"context {name!r}: rev= takes a string or an integer")
        if per_user is not None and not isinstance(per_user, bool):
            raise ConfigurationError(f"context {name!r}: per_user= takes True, False or None")
        self.contexts.declare(
            name,
            ContextOptions(
                rev=None if rev is None else str(rev), per_user=per_user, description=description
            ),
        )

    def _live_gate(self) -> DependencyPlan | None:
        """The plan a live subscriber passes: the app's and Tether's dependencies, and the user."""
        key = (self.app_dependencies, self.dependencies, self.user)
        cached = self._gate_plan
        if cached is None or cached[0] != key:
            plan = None
            if self.app_dependencies or self.dependencies or self.user is not None:
                plan = DependencyPlan(
                    (),
                    path="",
                    dependencies=self.dependencies,
                    user=self.user,
                    app_dependencies=self.app_dependencies,
                    where="live subscriptions",
                )
            cached = self._gate_plan = (key, plan)
        return cached[1]

    # -- messages and events ------------------------------------------------------------

    @overload
    def handler(self, func: F, /) -> F: ...
    @overload
    def handler(self, **options: Unpack[TetherOperationOptions]) -> Callable[[F], F]: ...
    def handler(self, func: Any = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Register the handler of a `Command[R]` or `Query[R]`: `api.send` runs it, and it is an operation.

        The message's fields are the operation's wire params; its kind follows the message
        (a command, or a query callable with GET).

        Raises:
            ConfigurationError: not exactly one message parameter, a result type that
                disagrees with the message's, or a message type already bound.
        """

        def register(f: F) -> F:
            # The kind follows the message: context= and rev= (a query's) are checked once
            # it is known, as affects= and merge= (a command's) are.
            context = options.pop("context", None)
            rev = options.pop("rev", None)
            spec = make_spec("command", **options)
            message_type, op = compile_message_handler(
                f,
                spec,
                dependencies=self.dependencies,
                user=self.user,
                app_dependencies=self.app_dependencies,
                tags=self.tags,
                strict=self.strict if spec.strict is None else spec.strict,
            )
            if op.kind == "query":
                if op.has_effects:
                    raise ConfigurationError(
                        f"operation {op.name!r}: affects= and merge= apply to commands, and"
                        f" {message_type.__name__} is a Query"
                    )
                checked = make_spec("query", name=op.name, context=context, rev=rev)
                op = replace(op, context=checked.context, rev=checked.rev)
            elif context is not None or rev is not None:
                raise ConfigurationError(
                    f"operation {op.name!r}: context= and rev= apply to queries, and"
                    f" {message_type.__name__} is a Command"
                )
            bound = self._message_handlers.get(message_type)
            if bound is not None:
                raise ConfigurationError(
                    f"{message_type.__name__} already has a handler: {bound!r}"
                )
            self._register([op])
            self._message_handlers[message_type] = op.name
            return f

        return register if func is None else register(func)

    def on(
        self,
        *types: type[Event],
        group: str | None = None,
        retries: int | None = None,
        name: str | None = None,
    ) -> Callable[[F], F]:
        """Register an event handler: `@api.on(NoteCreated)`; it runs once per event, per group.

        `group` names the handler group (default `EventSettings.group`): each event reaches
        each group once, in whichever process. `retries` overrides `EventSettings.retries`.

        Raises:
            ConfigurationError: no event type, or a function that cannot take them.
        """

        def register(f: F) -> F:
            self.events.add(
                compile_event_handler(
                    f,
                    types,
                    name=name,
                    group=self.events.settings.group if group is None else group,
                    retries=self.events.settings.retries if retries is None else retries,
                )
            )
            return f

        return register

    async def send(
        self,
        message: Command[R] | Query[R],
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> R:
        """Run the handler of `message` in-process and return its result, typed by the message.

        As `call`: validation, dependencies and auth apply, and what follows the answer on
        a wire (background tasks, teardown, releasing the events) is done before returning.

        Raises:
            ConfigurationError: no handler is bound to the message's type.
            TetherError: as the handler's transports would report it.
        """
        name = self._message_handlers.get(type(message))
        if name is None:
            raise ConfigurationError(
                f"no handler is bound to {type(message).__name__}: decorate one with @api.handler"
            )
        op = self._operations[name]
        if op.plan is None:
            # Nothing to do after the call (no dependency can emit, schedule or close):
            # the result alone, as a JSON-RPC batch item takes it.
            return await self.invoker.run_plain(op, message, False)  # type: ignore[no-any-return]
        ctx = CallContext("inprocess", in_process_scope(self.app, self._path_of(op), headers))
        return await self.invoker.call(ctx, op, message)  # type: ignore[no-any-return]

    def _event_scope(self, name: str) -> Scope:
        return in_process_scope(self.app, f"{self.prefix}/events/{name}")

    # -- lookup ---------------------------------------------------------------------------

    def get(self, name: str) -> Operation:
        """Return the operation called `name`.

        Raises:
            NotFound: no operation has that name.
        """
        return find_operation(self._operations, name)

    def __contains__(self, name: object) -> bool:
        return name in self._operations

    def __iter__(self) -> Iterator[Operation]:
        return iter(list(self._operations.values()))

    def __len__(self) -> int:
        return len(self._operations)

    @property
    def operations(self) -> Mapping[str, Operation]:
        """Every registered operation, by name."""
        return self._operations

    # -- calling ------------------------------------------------------------------------

    @overload
    async def call(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        effects: Literal[False] = False,
    ) -> Any: ...
    @overload
    async def call(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        effects: Literal[True],
    ) -> CallResult: ...
    @overload
    async def call(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        effects: bool,
    ) -> Any: ...
    async def call(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        effects: bool = False,
    ) -> Any:
        """Call an operation in-process, with the same validation, dependencies and auth.

        `headers` are what `Header()` dependencies and the user resolver see. What follows
        the answer on a wire happens before this returns: background tasks (a failure is
        logged), then yield dependencies close, then events are released and cache effects
        pushed to live subscribers; a failed call runs no background task. With
        `effects=True` it returns a `CallResult`: the result, and the `invalidate` and
        `merge` lists a wire client would receive.

        Raises:
            TetherError: as the operation's transports would report it.
        """
        op = self.get(name)
        if op.plan is None and op.kind != "stream":
            # No dependencies: no request scope to build, and nothing after the call.
            result = await self.invoker.run_plain(op, params, False)
            return CallResult(result, [], []) if effects else result
        ctx = CallContext("inprocess", in_process_scope(self.app, self._path_of(op), headers))
        if not effects:
            return await self.invoker.call(ctx, op, params)
        outcome = await self.invoker.run(ctx, op, params)
        if outcome.pending:
            await outcome.finish()
        if outcome.error is not None:
            raise outcome.error
        found = outcome.effects
        if found is None:
            return CallResult(outcome.result, [], [])
        return CallResult(outcome.result, found.invalidate, found.merge)

    async def fetch_context(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Read a context's bundle in-process: `{slot: value}`, its queries run concurrently.

        Raises:
            NotFound: no such context.
            TetherError: a param is missing or unknown, or a slot failed (its error).
        """
        context = self.contexts.get(name)

        def make_context(op: Operation) -> CallContext:
            return CallContext("inprocess", in_process_scope(self.app, self._path_of(op), headers))

        outcomes = await self.invoker.run_context(make_context, context, params or {})
        for _, outcome in outcomes:
            if outcome.pending:
                await outcome.finish()
        for _, outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
        return {slot: outcome.result for slot, outcome in outcomes}

    async def stream_call(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Iterate a stream operation in-process: `async for item in api.stream_call(...)`.

        Dependencies stay open while items are read; when the loop ends, the background
        tasks run, then the dependencies close (break out of it inside
        `contextlib.aclosing(...)` to close them at once, without background tasks).

        Raises:
            TetherError: as the stream's transports would report it.
        """
        op = self.get(name)
        ctx = CallContext("inprocess", in_process_scope(self.app, self._path_of(op), headers))
        async with self.invoker.stream(ctx, op, params) as items:
            async for item in items:
                yield item

    def _path_of(self, op: Operation) -> str:
        """Return the URL path an in-process call's request shows.

        The path is the one the mounted transport that serves `op` over HTTP answers at (so a
        `Request` dependency sees the same path in-process as over the wire): each URL shape
        belongs to its transport, asked through its optional `path_of(op)`. Unmounted, or with
        no such transport, the path is `{prefix}/{name}`.
        """
        for transport in self._transports:
            path_of = getattr(transport, "path_of", None)
            path = path_of(op) if path_of is not None else None
            if path is not None:
                return str(path)
        return f"{self.prefix}/{op.name}"

    @property
    def transports(self) -> tuple[Transport, ...]:
        """The transports mounted on the app (empty before `mount`)."""
        return tuple(self._transports)

    async def shutdown(self) -> None:
        """Let every mounted transport end its open connections (sockets close 1001, streams end).

        Call it when the server starts stopping, before it waits for open connections:
        `tether.server.TetherServer` (and `tether serve`) does. uvicorn runs the app's lifespan
        shutdown only after every connection has closed, which is too late for open streams.
        """
        for transport in self._transports:
            stop = getattr(transport, "shutdown", None)
            if stop is not None:
                await stop()

    # -- mounting -----------------------------------------------------------------------

    def mount(self, app: FastAPI, *, transports: Sequence[Transport] | None = None) -> None:
        """Add every transport's routes to `app` and document the operations in its OpenAPI.

        Without `transports`, the default ones are mounted (HTTP, JSON-RPC, SSE and the
        WebSocket: the factory `import tether` installs, see `tether.transport`).
        Every transport is attached to one `TransportHandle` (never to the Tether itself),
        and the Tether is recorded in `app.state.tether_mounted`, where `tether serve` finds it.

        The app's own dependencies (`FastAPI(dependencies=[...])`) then apply to every
        operation, registered before or after, on every transport, as they apply to the
        app's routes: solved first, once per request (once per JSON-RPC batch, once per
        WebSocket connection at the handshake, once per in-process call), and listed in
        the OpenAPI document.

        Raises:
            ConfigurationError: tether is already mounted, an app dependency reads a
                query, path, body, form or file parameter, or no `transports` are given
                and no default factory is installed.
        """
        if self.app is not None:
            raise ConfigurationError("this Tether is already mounted on an app")
        mounted = list(transports) if transports is not None else default_transports()
        # Every name that affects= and merge= give must be known by now.
        self.contexts.check(final=True)
        self._adopt_app_dependencies(tuple(app.router.dependencies))
        self.app = app
        self.invoker.overrides_provider = app
        self._transports = mounted
        handle = TransportHandle(self)
        for transport in self._transports:
            transport.attach(handle, app)
        # How `tether._mounted` finds this Tether again, without asking any transport.
        app.state.tether_mounted = (*getattr(app.state, "tether_mounted", ()), self)
        app.openapi_schema = None
        self._wrap_lifespan(app)

    def _wrap_lifespan(self, app: FastAPI) -> None:
        """Run the event bus with the app: started at startup, drained at shutdown."""
        inner = app.router.lifespan_context
        bus = self.events
        live = self.live

        @asynccontextmanager
        async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
            async with inner(asgi_app) as state:
                await bus.start()
                try:
                    yield state
                finally:
                    await live.close()
                    await bus.close()

        app.router.lifespan_context = lifespan

    def _adopt_app_dependencies(self, app_dependencies: tuple[params.Depends, ...]) -> None:
        """Put the app's dependencies in front of every operation's gate, recompiling once."""
        if not app_dependencies:
            return
        where = "the app's dependencies (FastAPI(dependencies=[...]))"
        # Checked on their own first, so that the error names the app, not an operation.
        DependencyPlan((), path="", app_dependencies=app_dependencies, where=where)
        recompiled: dict[str, Operation] = {}
        for name, op in self._operations.items():
            where = f"operation {name!r}"
            plan = (
                DependencyPlan((), path="", app_dependencies=app_dependencies, where=where)
                if op.plan is None
                else op.plan.with_app_dependencies(app_dependencies, where=where)
            )
            recompiled[name] = replace(op, plan=plan)
        self.app_dependencies = app_dependencies
        self._operations.update(recompiled)
        self.contexts.changed(final=True)
        self.batch_scoped = True


def _scoped(kind: type[params.Depends], depends: params.Depends) -> params.Depends:
    if isinstance(depends, kind):
        return depends
    return kind(dependency=depends.dependency, use_cache=depends.use_cache)


def _outbox_from(value: Any) -> Any:
    """Return the outbox `Tether(outbox=...)` names: None, an `Outbox`, or its database URL."""
    if value is None:
        return None
    from .events.outbox import Outbox

    if isinstance(value, Outbox):
        return value
    if isinstance(value, str):
        return Outbox(value)
    raise ConfigurationError(f"outbox= takes an Outbox or a database URL, not {value!r}")
