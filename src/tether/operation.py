"""Operations: the decorators that mark a function, and the Operation compiled from it once.

`query`, `command` and `stream` only *mark* a function (they return it unchanged with an
`OperationSpec` attached); a `Tether` compiles marked functions into `Operation` objects
when they are registered (see `tether._compile`). An `Operation` is plain data plus the
few per-call steps that read it: binding params to the input model, and reading params
from positional values or a query string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError
from typing_extensions import TypedDict, Unpack

from ._strict import QueryParams
from .auth import validate_policy
from .errors import ConfigurationError, TetherError, ValidationFailed

if TYPE_CHECKING:
    from ._encoding import ResultEncoder
    from .dependencies import DependencyPlan

__all__ = (
    "Kind",
    "Operation",
    "OperationOptions",
    "OperationSpec",
    "TetherOperationOptions",
    "command",
    "get_spec",
    "make_spec",
    "model_name",
    "operation",
    "query",
    "read_query",
    "stream",
    "take_marked_methods",
)

Kind = Literal["query", "command", "stream"]
"""What an operation does: a `query` reads (and may be called with GET), a `command` changes,
a `stream` yields many values (SSE, WebSocket subscriptions, `Tether.stream_call`)."""

F = TypeVar("F", bound=Callable[..., Any])

_SPEC_ATTRIBUTE = "__tether_operation__"
_CONTEXT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_KINDS = ("query", "command", "stream")


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What a decorator recorded about a function, before it is compiled."""

    kind: Kind
    name: str | None = None
    auth: Any = None
    tags: tuple[str, ...] = ()
    summary: str | None = None
    description: str | None = None
    deprecated: bool = False
    errors: tuple[type[TetherError], ...] = ()
    uses: tuple[str, ...] | None = None
    """For a service method: the class dependencies it reads (None: all of them)."""
    strict: bool | None = None
    """Validate inputs strictly (see `Tether(strict=)`); None: as the Tether says."""
    context: str | None = None
    """For a query: the client-cache context it is a slot of (see docs/cache.md)."""
    rev: str | None = None
    """For a query: its revision, which busts client caches when it changes."""
    affects: tuple[Any, ...] = ()
    """For a command: the contexts and queries it invalidates (names, functions, operations)."""
    merge: tuple[tuple[str, str | None], ...] = ()
    """For a command: (context, slot or None) pairs its result replaces in place."""


_marked_methods: dict[str, list[Callable[..., Any]]] = {}
"""Marked functions defined in a class body, by "module:class qualname", until the class exists.

Lets a service detect a marked method that a later definition in the same body shadowed.
"""


def _note_method(func: Callable[..., Any]) -> None:
    qualname = getattr(func, "__qualname__", "")
    owner, _, _ = qualname.rpartition(".")
    if owner and not owner.endswith("<locals>"):
        _marked_methods.setdefault(f"{func.__module__}:{owner}", []).append(func)


def take_marked_methods(cls: type) -> list[Callable[..., Any]]:
    """Return (and forget) the marked functions whose definition was inside `cls`'s body."""
    return _marked_methods.pop(f"{cls.__module__}:{cls.__qualname__}", [])


def get_spec(func: Any) -> OperationSpec | None:
    """Return the spec a `query`/`command` decorator left on `func`, if any."""
    spec = getattr(func, _SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, OperationSpec) else None


def make_spec(
    kind: str,
    *,
    name: str | None = None,
    auth: Any = None,
    tags: Sequence[str] | None = None,
    summary: str | None = None,
    description: str | None = None,
    deprecated: bool = False,
    errors: Sequence[type[TetherError]] | None = None,
    uses: Sequence[str] | None = None,
    strict: bool | None = None,
    context: str | None = None,
    rev: str | int | None = None,
    affects: Sequence[Any] | None = None,
    merge: Sequence[str] | Mapping[str, str] | None = None,
) -> OperationSpec:
    """Check a decorator's options and return the spec they describe."""
    if strict is not None and not isinstance(strict, bool):
        raise ConfigurationError(f"strict= takes True, False or None, not {strict!r}")
    if kind not in _KINDS:
        raise ConfigurationError(f"kind must be one of {_KINDS}, not {kind!r}")
    where = name or "operation"
    if (context is not None or rev is not None) and kind != "query":
        raise ConfigurationError(
            f"{where}: context= and rev= apply to queries (a {kind} is not cached by clients)"
        )
    if context is not None and not (isinstance(context, str) and _CONTEXT_NAME.match(context)):
        raise ConfigurationError(
            f"{where}: context= takes a name such as 'todos' or 'user.profile', not {context!r}"
        )
    if rev is not None and (isinstance(rev, bool) or not isinstance(rev, str | int)):
        raise ConfigurationError(f"{where}: rev= takes a string or an integer, not {rev!r}")
    if (affects or merge) and kind != "command":
        raise ConfigurationError(
            f"{where}: affects= and merge= apply to commands (only a command changes state)"
        )
    for error in errors or ():
        if not (isinstance(error, type) and issubclass(error, TetherError)):
            raise ConfigurationError(f"errors= takes TetherError subclasses, not {error!r}")
    return OperationSpec(
        kind=kind,  # type: ignore[arg-type]
        name=name,
        # False is kept (not normalised to None): on a service method it overrides the
        # service's default policy.
        auth=False if auth is False else validate_policy(auth, where=name or "operation"),
        tags=tuple(tags or ()),
        summary=summary,
        description=description,
        deprecated=deprecated,
        errors=tuple(errors or ()),
        uses=None if uses is None else tuple(uses),
        strict=strict,
        context=context,
        rev=None if rev is None else str(rev),
        affects=_affects(affects, where),
        merge=_merge(merge, where),
    )


def _affects(affects: Sequence[Any] | None, where: str) -> tuple[Any, ...]:
    if affects is None:
        return ()
    if isinstance(affects, str) or not isinstance(affects, Sequence):
        raise ConfigurationError(f"{where}: affects= takes a list, such as affects=['todos']")
    for item in affects:
        if not (isinstance(item, str | Operation) or callable(item)):
            raise ConfigurationError(
                f"{where}: affects= takes context names, query names, query functions and"
                f" operations, not {item!r}"
            )
    return tuple(affects)


def _merge(
    merge: Sequence[str] | Mapping[str, str] | None, where: str
) -> tuple[tuple[str, str | None], ...]:
    if merge is None:
        return ()
    if isinstance(merge, Mapping):
        pairs: list[tuple[str, str | None]] = list(merge.items())
    elif isinstance(merge, str) or not isinstance(merge, Sequence):
        raise ConfigurationError(
            f"{where}: merge= takes a list of contexts (merge=['user']) or a mapping of"
            " context to slot (merge={'user': 'current_user'})"
        )
    else:
        pairs = [(item, None) for item in merge]
    for context, slot in pairs:
        if not isinstance(context, str) or not (slot is None or isinstance(slot, str)):
            raise ConfigurationError(
                f"{where}: merge= names contexts and slots with strings, not {context!r}"
            )
    return tuple(pairs)


class TetherOperationOptions(TypedDict, total=False):
    """The options `Tether.query`, `.command` and `.stream` take (see `operation`)."""

    name: str | None
    auth: Any
    tags: Sequence[str] | None
    summary: str | None
    description: str | None
    deprecated: bool
    errors: Sequence[type[TetherError]] | None
    strict: bool | None
    context: str | None
    rev: str | int | None
    affects: Sequence[Any] | None
    merge: Sequence[str] | Mapping[str, str] | None


class OperationOptions(TetherOperationOptions, total=False):
    """The options every operation decorator takes: those above, plus `uses=` for services."""

    uses: Sequence[str] | None


def operation(
    *,
    kind: Kind,
    name: str | None = None,
    auth: Any = None,
    tags: Sequence[str] | None = None,
    summary: str | None = None,
    description: str | None = None,
    deprecated: bool = False,
    errors: Sequence[type[TetherError]] | None = None,
    uses: Sequence[str] | None = None,
    strict: bool | None = None,
    context: str | None = None,
    rev: str | int | None = None,
    affects: Sequence[Any] | None = None,
    merge: Sequence[str] | Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Mark a function as an operation of the given kind, returning the function unchanged.

    `uses` applies to service methods only: the class dependencies the method reads, so
    that the others (which may be expensive) are not solved for it. `strict` validates
    the inputs strictly, without coercion (None: as `Tether(strict=)` says). `context` and
    `rev` (queries) and `affects` and `merge` (commands) coordinate client caches: see
    docs/cache.md.
    """
    spec = make_spec(
        kind,
        name=name,
        auth=auth,
        tags=tags,
        summary=summary,
        description=description,
        deprecated=deprecated,
        errors=errors,
        uses=uses,
        strict=strict,
        context=context,
        rev=rev,
        affects=affects,
        merge=merge,
    )

    def mark(func: F) -> F:
        if isinstance(func, staticmethod | classmethod):
            raise ConfigurationError("operations cannot be static or class methods")
        setattr(func, _SPEC_ATTRIBUTE, spec)
        _note_method(func)
        return func

    return mark


@overload
def query(func: F, /) -> F: ...
@overload
def query(**options: Unpack[OperationOptions]) -> Callable[[F], F]: ...
def query(func: Any = None, /, **options: Any) -> Any:
    """Mark a function as a query: it reads, and may also be called with HTTP GET."""
    mark = operation(kind="query", **options)
    return mark if func is None else mark(func)


@overload
def command(func: F, /) -> F: ...
@overload
def command(**options: Unpack[OperationOptions]) -> Callable[[F], F]: ...
def command(func: Any = None, /, **options: Any) -> Any:
    """Mark a function as a command: it changes state, and is called with POST only."""
    mark = operation(kind="command", **options)
    return mark if func is None else mark(func)


@overload
def stream(func: F, /) -> F: ...
@overload
def stream(**options: Unpack[OperationOptions]) -> Callable[[F], F]: ...
def stream(func: Any = None, /, **options: Any) -> Any:
    """Mark a generator (async, or sync for the thread pool) as a stream of typed items."""
    mark = operation(kind="stream", **options)
    return mark if func is None else mark(func)


def model_name(name: str, suffix: str) -> str:
    """Return the class name of a model generated for an operation: `users.rename` -> `UsersRename` + suffix."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[._]", name) if part) + suffix


@dataclass(frozen=True, slots=True, eq=False)
class Operation:
    """One callable, compiled once: its name, kind, input model, output type and policy."""

    name: str
    kind: Kind
    func: Callable[..., Any]
    is_async: bool
    """For a stream: the function makes an async generator (else a sync one, run in threads)."""
    input_model: type[BaseModel]
    output_type: Any
    encoder: ResultEncoder
    plan: DependencyPlan | None
    auth: Any
    tags: tuple[str, ...]
    summary: str | None
    description: str | None
    deprecated: bool
    errors: tuple[type[TetherError], ...]
    input_names: tuple[str, ...]
    """The input parameter names, in signature order (for positional binding)."""
    query_shape: Mapping[str, bool] | None
    """Per input: read repeated from a query string? None when GET cannot carry the input."""
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Input model field name -> parameter name, for parameters that shadow BaseModel names."""
    validate_params: Callable[[Any], dict[str, Any]] = field(default=lambda data: dict(data))
    """Validates params as the input model would, into a fresh dict of field values."""
    strict: bool = False
    """Inputs validate strictly: a JSON value must already have the declared type."""
    validate_query: Callable[[Any], dict[str, Any]] | None = None
    """Validates params read from a query string, when that differs from `validate_params`."""
    message_param: str | None = None
    """For a message handler (`@api.handler`): the parameter that receives the whole message,
    whose model is `input_model` (its fields are the wire params)."""
    context: str | None = None
    """For a query: the client-cache context it is a slot of."""
    rev: str | None = None
    """For a query: its revision (clients bust their caches when it changes)."""
    affects: tuple[Any, ...] = ()
    """For a command: what it invalidates, as declared (resolved by `tether.effects`)."""
    merge: tuple[tuple[str, str | None], ...] = ()
    """For a command: (context, slot or None) its result replaces, as declared."""

    @property
    def has_effects(self) -> bool:
        """Whether a successful call produces cache effects (`affects=` or `merge=`)."""
        return bool(self.affects or self.merge)

    def bind(self, params: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
        """Validate `params` against the input model and return the keyword arguments.

        Raises:
            ValidationFailed: with one entry per offending field.
        """
        if type(params) is not dict:
            if params is None:
                params = {}
            elif isinstance(params, self.input_model):
                if self.message_param is not None:
                    return {self.message_param: params}
                values = dict(params.__dict__)
                for field_name, param_name in self.renamed.items():
                    values[param_name] = values.pop(field_name)
                return values
            elif type(params) is QueryParams and self.validate_query is not None:
                return self._bind_query(params)
        try:
            values = self.validate_params(params)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(
                exc.errors(include_url=False, include_context=False, include_input=False)
            ) from None
        if self.renamed:
            for field_name, param_name in self.renamed.items():
                values[param_name] = values.pop(field_name)
        return values

    def _bind_query(self, params: QueryParams) -> dict[str, Any]:
        """Validate params read from a query string by a strict operation (see `_strict`)."""
        assert self.validate_query is not None
        try:
            values = self.validate_query(params)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(
                exc.errors(include_url=False, include_context=False, include_input=False)
            ) from None
        for field_name, param_name in self.renamed.items():
            values[param_name] = values.pop(field_name)
        return values

    def params_from_positional(self, values: Sequence[Any]) -> dict[str, Any]:
        """Bind positional values to input parameters in signature order.

        Raises:
            ValidationFailed: more values than the operation has parameters.
        """
        if len(values) > len(self.input_names):
            raise ValidationFailed.from_errors(
                [
                    {
                        "loc": [index],
                        "msg": f"Unexpected positional parameter; {self.name} takes"
                        f" {len(self.input_names)}",
                        "type": "extra_forbidden",
                    }
                    for index in range(len(self.input_names), len(values))
                ]
            )
        return dict(zip(self.input_names, values, strict=False))

    def params_from_query(self, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Collect query-string pairs into params: repeated keys become lists for list inputs."""
        # Only a strict operation reads query text differently; a plain dict validates faster.
        return read_query(items, self.query_shape or {}, strict=self.validate_query is not None)


def read_query(
    items: Sequence[tuple[str, str]], shape: Mapping[str, bool], *, strict: bool
) -> dict[str, Any]:
    """Collect query-string pairs into params: a key that `shape` marks repeated gives a list.

    `strict` returns `QueryParams`, which strict validation reads as query text.

    Raises:
        ValidationFailed: a key `shape` does not mark repeated is given more than once.
    """
    result: dict[str, Any] = QueryParams() if strict else {}
    for key, value in items:
        if shape.get(key, False):
            result.setdefault(key, []).append(value)
        elif key in result:
            raise ValidationFailed.from_errors(
                [{"loc": [key], "msg": "Parameter given more than once", "type": "duplicate"}]
            )
        else:
            result[key] = value
    return result
