"""Client-cache coordination: contexts, and what a command invalidates (`affects`) or patches (`merge`).

A *context* is a named group of queries (its *slots*) that a client reads together as one
bundle (`GET {prefix}/context/{name}`) and caches under the context's name, params and
revision. A command says what it changes:

- `affects=["todos"]` invalidates the context (or a query) it names; a command argument
  whose name is one of the context's params narrows the entry to that value
  (`{"context": "todos", "params": {"owner_id": 5}}`), otherwise the whole context goes;
- `merge=["user"]` replaces one slot of the context with the command's result, in place:
  the slot is the context's query whose output type is the command's (or the one named,
  `merge={"user": "current_user"}`).

`Contexts` holds the contexts of one `Tether` and resolves every command's declaration
into an `EffectPlan` (names that are not registered yet wait for `mount`; an ambiguous or
absent merge slot is refused at once). The invoker asks the plan for a successful call's
`Effects`, which its outcome carries: every transport renders them from there, and the
outcome pushes them to live subscribers after the answer (see `tether.live`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from ._strict import QueryParams
from .errors import ConfigurationError, NotFound, ValidationFailed
from .operation import read_query

if TYPE_CHECKING:
    from .operation import Operation

__all__ = (
    "CallResult",
    "Context",
    "ContextOptions",
    "Contexts",
    "EffectPlan",
    "Effects",
    "default_user_key",
)


def default_user_key(user: Any) -> str | None:
    """Return the key that tells users apart for per-user contexts: `id`, else `username`, `name`, `email`.

    Read as an attribute or a mapping key; a user with none of them is keyed by `str(user)`.
    None (nobody signed in) is None: anonymous callers share their per-user contexts.
    """
    if user is None:
        return None
    for name in ("id", "username", "name", "email"):
        value = user.get(name) if isinstance(user, Mapping) else getattr(user, name, None)
        if value is not None and not callable(value):
            return str(value)
    return str(user)


@dataclass(frozen=True, slots=True)
class CallResult:
    """What `api.call(..., effects=True)` returns: the result, and the call's cache effects."""

    result: Any
    """The operation's result."""
    invalidate: list[dict[str, Any]]
    """`{"context" | "query": name, "params"?}` entries the call invalidated."""
    merge: list[dict[str, Any]]
    """`{"context", "slot", "value", "params"?}` entries: slots the result replaces."""


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """What `Tether.context(...)` declared about a context, beyond its slots."""

    rev: str | None = None
    per_user: bool | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Context:
    """A named group of queries read together as one bundle, cached by clients as one entry."""

    name: str
    """The context's name, as `context=` gave it."""
    slots: tuple[Operation, ...]
    """Its queries, in registration order; each is a slot of the bundle, named after it."""
    params: Mapping[str, bool]
    """Every param some slot declares, to whether it is required (declared by every slot)."""
    rev: str | None
    """The context's revision: the declared one, else its slots' (`slot:rev,...`), else None."""
    per_user: bool
    """Its data depends on who reads it: pushes reach only the user whose call produced them."""
    description: str | None = None
    """What the context holds (schema and docs)."""
    query_shape: Mapping[str, bool] | None = None
    """Per param: read repeated from a query string? None when GET cannot carry every param."""
    _adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict)

    def slot(self, name: str) -> Operation | None:
        """Return the slot called `name`, if the context has one."""
        for op in self.slots:
            if op.name == name:
                return op
        return None

    def split(self, params: Mapping[str, Any]) -> list[tuple[Operation, dict[str, Any]]]:
        """Give each slot the params it declares; refuse a missing required or an unknown param.

        Raises:
            ValidationFailed: a required param is missing, or a param no slot declares is given.
        """
        errors: list[dict[str, Any]] = [
            {"loc": [name], "msg": "Field required", "type": "missing"}
            for name, required in self.params.items()
            if required and name not in params
        ]
        errors.extend(
            {
                "loc": [name],
                "msg": f"No query of context {self.name!r} takes this parameter",
                "type": "extra_forbidden",
            }
            for name in params
            if name not in self.params
        )
        if errors:
            raise ValidationFailed.from_errors(errors)
        # A strict context's query-string params stay `QueryParams`: each slot then reads
        # their text as a query string, not as JSON.
        kind = QueryParams if type(params) is QueryParams else dict
        return [
            (op, kind({name: params[name] for name in op.input_names if name in params}))
            for op in self.slots
        ]

    def params_from_query(self, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Collect query-string pairs into params (repeated keys become lists for list params).

        Raises:
            ValidationFailed: a scalar param is given more than once.
        """
        strict = any(op.validate_query is not None for op in self.slots)
        return read_query(items, self.query_shape or {}, strict=strict)

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate subscription params (as the slots that declare them would) into JSON values.

        The values compare equal to the params of the entries a command's call produces.

        Raises:
            ValidationFailed: a param no slot declares, or a value of the wrong type.
        """
        errors: list[dict[str, Any]] = []
        values: dict[str, Any] = {}
        for name, raw in params.items():
            adapter = self._adapter(name)
            if adapter is None:
                errors.append(
                    {
                        "loc": [name],
                        "msg": f"No query of context {self.name!r} takes this parameter",
                        "type": "extra_forbidden",
                    }
                )
                continue
            try:
                # Under the context's own key string: a subscriber's topic keeps it.
                key = next((param for param in self.params if param == name), name)
                values[key] = to_jsonable_python(adapter.validate_python(raw))
            except ValidationError as exc:
                for error in exc.errors(
                    include_url=False, include_context=False, include_input=False
                ):
                    errors.append({**error, "loc": [name, *error["loc"]]})
        if errors:
            raise ValidationFailed.from_errors(errors)
        return values

    def _adapter(self, name: str) -> TypeAdapter[Any] | None:
        adapter = self._adapters.get(name)
        if adapter is None:
            for op in self.slots:
                info = _field_of(op, name)
                if info is not None:
                    adapter = self._adapters[name] = TypeAdapter(info)
                    break
        return adapter


def _required(op: Operation, name: str) -> bool:
    info = _info_of(op, name)
    return info is not None and info.is_required()


def _field_of(op: Operation, name: str) -> Any:
    """Return the annotation (with its constraints) of `op`'s input `name`, or None."""
    info = _info_of(op, name)
    if info is None:
        return None
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


def _info_of(op: Operation, name: str) -> FieldInfo | None:
    """Return the model field of `op`'s input `name` (found by name, renaming or alias)."""
    fields = op.input_model.model_fields
    info = fields.get(name)
    if info is None:
        for field_name, param_name in op.renamed.items():
            if param_name == name:
                info = fields.get(field_name)
        if info is None:
            for candidate in fields.values():
                if candidate.alias == name:
                    info = candidate
    return info


@dataclass(frozen=True, slots=True)
class _Target:
    """One entry a command's call produces: what it names, and which of its arguments scope it."""

    kind: str
    """"context" or "query" (a query of no context: clients cache it alone)."""
    name: str
    scope: tuple[str, ...]
    """Names shared by the command's inputs and the target's params: they narrow the entry."""
    per_user: bool
    slot: str | None = None
    """For a merge: the slot the result replaces."""


class EffectPlan:
    """What one command's successful call invalidates and merges, resolved once."""

    __slots__ = ("invalidate", "merge", "message_param", "per_user")

    def __init__(
        self, invalidate: Sequence[_Target], merge: Sequence[_Target], message_param: str | None
    ) -> None:
        self.invalidate = tuple(invalidate)
        """The entries to invalidate."""
        self.merge = tuple(merge)
        """The slots the result replaces."""
        self.message_param = message_param
        self.per_user = any(t.per_user for t in (*self.invalidate, *self.merge))
        """Some entry is of a per-user context: the caller's user key goes with the push."""

    def effects(
        self,
        kwargs: Mapping[str, Any],
        result: Any,
        result_json: bytes | None,
        encode: Callable[[Any], bytes],
        user: Any,
        user_key: Callable[[Any], str | None],
    ) -> Effects:
        """Return the effects of a call that took `kwargs` and returned `result`."""
        arguments: Mapping[str, Any] = kwargs
        if self.message_param is not None:
            message = kwargs[self.message_param]
            arguments = {
                (info.alias or name): getattr(message, name)
                for name, info in type(message).model_fields.items()
            }
        key = user_key(user) if self.per_user else None
        return Effects(
            [_entry(target, arguments, key) for target in self.invalidate],
            [_entry(target, arguments, key) for target in self.merge],
            result,
            result_json,
            encode,
        )


_USER = "user"


def _entry(target: _Target, arguments: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {target.kind: target.name}
    if target.slot is not None:
        entry["slot"] = target.slot
    if target.scope:
        entry["params"] = {
            name: to_jsonable_python(arguments[name]) for name in target.scope if name in arguments
        }
    if target.per_user:
        # Kept on the server: the push reaches this user only, and no client sees the key.
        entry[_USER] = key
    return entry


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    if _USER in entry:
        entry = dict(entry)
        del entry[_USER]
    return entry


class Effects:
    """The cache effects of one successful call: entries to invalidate, and slots to merge."""

    __slots__ = ("_encode", "_result_json", "invalidate_entries", "merge_entries", "result")

    def __init__(
        self,
        invalidate: list[dict[str, Any]],
        merge: list[dict[str, Any]],
        result: Any,
        result_json: bytes | None,
        encode: Callable[[Any], bytes],
    ) -> None:
        self.invalidate_entries = invalidate
        """`{"context" | "query": name, "params"?}` entries (with the server-side user tag)."""
        self.merge_entries = merge
        """`{"context", "slot", "params"?}` entries; the value is the call's result."""
        self.result = result
        """The call's result (the merged value), as the function returned it."""
        self._result_json = result_json
        self._encode = encode

    def __bool__(self) -> bool:
        return bool(self.invalidate_entries or self.merge_entries)

    @property
    def result_json(self) -> bytes:
        """The result as JSON: every merge entry's `value`."""
        if self._result_json is None:
            self._result_json = self._encode(self.result)
        return self._result_json

    @property
    def invalidate(self) -> list[dict[str, Any]]:
        """The `invalidate` list a client receives."""
        return [_public(entry) for entry in self.invalidate_entries]

    @property
    def merge(self) -> list[dict[str, Any]]:
        """The `merge` list a client receives, each with its `value` (the result, unencoded)."""
        return [{**_public(entry), "value": self.result} for entry in self.merge_entries]

    def _merge_json(self, entries: Sequence[dict[str, Any]]) -> bytes:
        value = self.result_json
        return b",".join(
            orjson.dumps(entry)[:-1] + b',"value":' + value + b"}" for entry in entries
        )

    def members(self) -> bytes:
        """Return `"invalidate":[...],"merge":[...]` (only those not empty), for a JSON object."""
        parts = []
        if self.invalidate_entries:
            parts.append(b'"invalidate":' + orjson.dumps(self.invalidate))
        if self.merge_entries:
            merge = [_public(entry) for entry in self.merge_entries]
            parts.append(b'"merge":[' + self._merge_json(merge) + b"]")
        return b",".join(parts)

    def to_json(self) -> bytes:
        """Return `{"invalidate": [...], "merge": [...]}` (both lists, maybe empty)."""
        merge = [_public(entry) for entry in self.merge_entries]
        return (
            b'{"invalidate":'
            + orjson.dumps(self.invalidate)
            + b',"merge":['
            + self._merge_json(merge)
            + b"]}"
        )

    def header(self) -> str:
        """Return the `invalidate` list as ASCII JSON, for the `X-Tether-Invalidate` header."""
        return json.dumps(self.invalidate, separators=(",", ":"), ensure_ascii=True, default=str)

    def push_json(self) -> bytes:
        """Return the entry pushed to live subscribers (user tags kept, for the hub to filter)."""
        return (
            b'{"invalidate":'
            + orjson.dumps(self.invalidate_entries)
            + b',"merge":['
            + self._merge_json(self.merge_entries)
            + b"]}"
        )


class Contexts:
    """The contexts of one Tether, and the resolved effect plan of each of its commands.

    Args:
        operations: the Tether's operations, by name (read live).
        user: the Tether's user resolver: a context whose queries depend on it is per-user.
    """

    def __init__(self, operations: Mapping[str, Operation], user: Any = None) -> None:
        self._operations = operations
        self._user_call = getattr(user, "dependency", None)
        self._options: dict[str, ContextOptions] = {}
        self._contexts: dict[str, Context] | None = None
        self._plans: dict[str, EffectPlan | None] = {}

    # -- declaring ----------------------------------------------------------------------

    def declare(self, name: str, options: ContextOptions) -> None:
        """Record a context's own options (rev, per-user, description).

        Raises:
            ConfigurationError: the context was declared already.
        """
        if name in self._options:
            raise ConfigurationError(f"context {name!r} is already declared")
        self._options[name] = options
        self.changed(final=False)

    def changed(self, *, final: bool = False) -> None:
        """Forget what was resolved (an operation or a context was added), and check again now.

        Raises:
            ConfigurationError: a merge is ambiguous or mismatched, or a name is not a query
                or context (a name not registered yet waits for `final`, which `mount` sets).
        """
        self._contexts = None
        self._plans = {}
        self.check(final=final)

    def check(self, *, final: bool = True) -> None:
        """Resolve every command's effects; `final` also refuses names still unknown.

        Raises:
            ConfigurationError: as `plan` says.
        """
        contexts = self.contexts()
        for name in self._options:
            if final and name not in contexts:
                raise ConfigurationError(
                    f"context {name!r} is declared, but no query has context={name!r}"
                )
        for op in list(self._operations.values()):
            if op.has_effects:
                self._resolve(op, final=final)

    # -- reading ------------------------------------------------------------------------

    def contexts(self) -> dict[str, Context]:
        """Every context with at least one query, by name."""
        contexts = self._contexts
        if contexts is None:
            contexts = self._contexts = self._build()
        return contexts

    def __iter__(self) -> Iterator[Context]:
        return iter(list(self.contexts().values()))

    def get(self, name: str) -> Context:
        """Return the context called `name`.

        Raises:
            NotFound: no query has that context.
        """
        context = self.contexts().get(name)
        if context is None:
            raise NotFound(f"Unknown context {name!r}", details={"context": name})
        return context

    def plan(self, op: Operation) -> EffectPlan | None:
        """Return the resolved effects of `op` (None when it declares none).

        Raises:
            ConfigurationError: a name it declares is unknown, or its merge is ambiguous.
        """
        plans = self._plans
        if op.name in plans:
            return plans[op.name]
        return self._resolve(op, final=True)

    def target_of(self, name: str) -> tuple[str, Context | Operation] | None:
        """Return what a subscription's name reads: ("context", Context) or ("query", op)."""
        context = self.contexts().get(name)
        if context is not None:
            return "context", context
        op = self._operations.get(name)
        if op is not None and op.kind == "query" and op.context is None:
            return "query", op
        return None

    # -- resolving ----------------------------------------------------------------------

    def _build(self) -> dict[str, Context]:
        grouped: dict[str, list[Operation]] = {}
        for op in self._operations.values():
            if op.context is not None:
                grouped.setdefault(op.context, []).append(op)
        return {name: self._context(name, slots) for name, slots in grouped.items()}

    def _context(self, name: str, slots: list[Operation]) -> Context:
        options = self._options.get(name, ContextOptions())
        declared: dict[str, int] = {}
        needed: set[str] = set()
        for op in slots:
            for param in op.input_names:
                declared[param] = declared.get(param, 0) + 1
                if _required(op, param):
                    needed.add(param)
        # Required: every slot takes it, and some slot has no default for it.
        params = {
            param: count == len(slots) and param in needed for param, count in declared.items()
        }
        rev = options.rev
        if rev is None and any(op.rev is not None for op in slots):
            rev = ",".join(f"{op.name}:{op.rev}" for op in slots if op.rev is not None)
        per_user = options.per_user
        if per_user is None:
            per_user = self._user_call is not None and any(
                op.plan is not None and op.plan.uses(self._user_call) for op in slots
            )
        shape: dict[str, bool] | None = {}
        for op in slots:
            if op.query_shape is None or shape is None:
                shape = None
                continue
            shape.update(op.query_shape)
        return Context(
            name=name,
            slots=tuple(slots),
            params=params,
            rev=rev,
            per_user=per_user,
            description=options.description,
            query_shape=shape,
        )

    def _resolve(self, op: Operation, *, final: bool) -> EffectPlan | None:
        if not op.has_effects:
            self._plans[op.name] = None
            return None
        where = f"operation {op.name!r}"
        inputs = set(op.input_names)
        invalidate: list[_Target] = []
        for item in op.affects:
            target = self._affected(item, inputs, where)
            if target is None:
                if final:
                    raise ConfigurationError(
                        f"{where}: affects= names {_describe(item)}, which is neither a context"
                        " nor a registered query"
                    )
                return None
            if target not in invalidate:  # a context named twice (or by two of its slots)
                invalidate.append(target)
        merge: list[_Target] = []
        for context_name, slot_name in op.merge:
            context = self.contexts().get(context_name)
            if context is None:
                if final:
                    raise ConfigurationError(
                        f"{where}: merge= names context {context_name!r}, which no query has"
                    )
                return None
            slot = self._merge_slot(op, context, slot_name, where)
            merged = _Target(
                "context",
                context.name,
                tuple(p for p in context.params if p in inputs),
                context.per_user,
                slot=slot.name,
            )
            if merged not in merge:
                merge.append(merged)
        plan = EffectPlan(invalidate, merge, op.message_param)
        self._plans[op.name] = plan
        return plan

    def _affected(self, item: Any, inputs: set[str], where: str) -> _Target | None:
        contexts = self.contexts()
        if isinstance(item, str):
            context = contexts.get(item)
            if context is not None:
                return _context_target(context, inputs)
            op = self._operations.get(item)
        else:
            op = self._operation_of(item)
        if op is None:
            return None
        if op.kind != "query":
            raise ConfigurationError(
                f"{where}: affects= names {op.kind} {op.name!r}; only queries and contexts"
                " are cached by clients"
            )
        if op.context is not None:
            return _context_target(contexts[op.context], inputs)
        return _Target("query", op.name, tuple(p for p in op.input_names if p in inputs), False)

    def _operation_of(self, item: Any) -> Operation | None:
        name = getattr(item, "name", None)
        if isinstance(name, str) and self._operations.get(name) is item:
            return item
        for op in self._operations.values():
            if op.func is item or getattr(op.func, "__tether_method__", None) is item:
                return op
        return None

    def _merge_slot(
        self, op: Operation, context: Context, slot_name: str | None, where: str
    ) -> Operation:
        described = ", ".join(f"{s.name} -> {_type_name(s.output_type)}" for s in context.slots)
        if slot_name is not None:
            slot = context.slot(slot_name)
            if slot is None:
                raise ConfigurationError(
                    f"{where}: merge= names slot {slot_name!r}, which context {context.name!r}"
                    f" does not have (its slots: {described})"
                )
            if slot.output_type != op.output_type:
                raise ConfigurationError(
                    f"{where}: returns {_type_name(op.output_type)}, but slot {slot.name!r} of"
                    f" context {context.name!r} holds {_type_name(slot.output_type)}; a merge"
                    " replaces the slot with the result, so the types must be the same"
                )
            return slot
        matches = [s for s in context.slots if s.output_type == op.output_type]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ConfigurationError(
                f"{where}: merge=[{context.name!r}] finds no slot of context"
                f" {context.name!r} that returns {_type_name(op.output_type)} (its slots:"
                f" {described}); return the slot's type, or affects=[{context.name!r}] to"
                " invalidate it instead"
            )
        names = ", ".join(repr(s.name) for s in matches)
        raise ConfigurationError(
            f"{where}: merge=[{context.name!r}] is ambiguous: slots {names} all return"
            f" {_type_name(op.output_type)}; name one: merge={{{context.name!r}:"
            f" {matches[0].name!r}}}"
        )


def _context_target(context: Context, inputs: set[str]) -> _Target:
    return _Target(
        "context", context.name, tuple(p for p in context.params if p in inputs), context.per_user
    )


def _describe(item: Any) -> str:
    if isinstance(item, str):
        return repr(item)
    return repr(getattr(item, "__qualname__", item))


def _type_name(annotation: Any) -> str:
    """Name a type as its code does: `list[Todo]`, not `list[app.models.Todo]`."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", repr(annotation))
