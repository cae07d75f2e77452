"""The plan of a generated client: every name (operations, contexts, hooks, types), claimed once.

Names are claimed in a fixed order (operations by name, then contexts, then the named types,
then the string-format aliases), each from one namespace seeded with TypeScript's reserved
words, the globals the files use and the runtime's exports; a taken name gets `_` appended.
So the files agree on names, and the names do not depend on which files are written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._ts_names import Namespace, camel, pascal
from ._ts_types import TypeScriptTypes, walk


@dataclasses.dataclass(frozen=True)
class Param:
    """One param of an operation or a context: its wire name, TS name, type and required flag."""

    wire: str
    ts: str
    type: Mapping[str, Any]
    required: bool


@dataclasses.dataclass(frozen=True)
class OperationPlan:
    """The generated names of one operation."""

    name: str
    document: Mapping[str, Any]
    method: str
    input_type: str
    error_type: str
    hook: str | None
    query_options: str | None
    mutation_options: str | None
    params: tuple[Param, ...]

    @property
    def kind(self) -> str:
        """`query`, `command` or `stream`."""
        return str(self.document["kind"])

    @property
    def optional(self) -> bool:
        """Whether the input may be left out (no param is required)."""
        return not any(p.required for p in self.params)


@dataclasses.dataclass(frozen=True)
class ContextPlan:
    """The generated names of one context."""

    name: str
    document: Mapping[str, Any]
    prop: str
    params_type: str
    data_type: str
    hook: str
    query_options: str
    params: tuple[Param, ...]

    @property
    def optional(self) -> bool:
        """Whether the params may be left out (none is required)."""
        return not any(p.required for p in self.params)


def _params(items: Mapping[str, Any], camel_case: bool) -> tuple[Param, ...]:
    wires = list(items)
    names = [camel(w) if camel_case else w for w in wires]
    if len(set(names)) != len(names):
        names = wires  # camelCase would merge two params: keep the wire names
    return tuple(
        Param(wire, ts, items[wire]["type"], bool(items[wire]["required"]))
        for wire, ts in zip(wires, names, strict=True)
    )


class Plan:
    """Every generated name for one schema document, claimed in a fixed order."""

    def __init__(self, document: Mapping[str, Any], *, camel_case: bool) -> None:
        self.document = document
        self.camel_case = camel_case
        names = Namespace()
        bases = Namespace(frozenset())
        methods = Namespace(frozenset({"client", "contexts"}))
        operations: dict[str, Any] = document.get("operations", {})
        contexts: dict[str, Any] = document.get("contexts", {})
        self.operations: list[OperationPlan] = []
        op_hooks: set[str] = set()
        op_options: set[str] = set()
        for name in sorted(operations):
            op = operations[name]
            base = bases.claim(pascal(name))
            has_hook = op["kind"] != "query" or "context" not in op
            hook = f"use{base}" if has_hook else None
            query_options = mutation_options = None
            if op["kind"] == "query" and "context" not in op:
                query_options = camel(base) + "QueryOptions"
            if op["kind"] == "command":
                mutation_options = camel(base) + "MutationOptions"
            if hook is not None:
                op_hooks.add(hook)
            op_options |= {o for o in (query_options, mutation_options) if o is not None}
            self.operations.append(
                OperationPlan(
                    name=name,
                    document=op,
                    method=methods.claim(camel(name)),
                    input_type=names.claim(f"{base}Input"),
                    error_type=names.claim(f"{base}ErrorCode"),
                    hook=names.claim(hook) if hook else None,
                    query_options=names.claim(query_options) if query_options else None,
                    mutation_options=names.claim(mutation_options) if mutation_options else None,
                    params=_params(op.get("input", {}), camel_case),
                )
            )
        props = Namespace(frozenset())
        context_bases = Namespace(frozenset())  # `<Base>Params`, `<Base>Data`: apart from ops'
        self.contexts: list[ContextPlan] = []
        for name in sorted(contexts):
            context = contexts[name]
            base = context_bases.claim(pascal(name))
            hook = f"use{base}"
            query_options = camel(base) + "QueryOptions"
            # A context's hook yields to an operation's of the same name: `useStatsContext`.
            if hook in op_hooks:
                hook = f"use{base}Context"
            if query_options in op_options:
                query_options = camel(base) + "ContextQueryOptions"
            self.contexts.append(
                ContextPlan(
                    name=name,
                    document=context,
                    prop=props.claim(camel(name)),
                    params_type=names.claim(f"{base}Params"),
                    data_type=names.claim(f"{base}Data"),
                    hook=names.claim(hook),
                    query_options=names.claim(query_options),
                    params=_params(context.get("params", {}), camel_case),
                )
            )
        self.types = TypeScriptTypes(document.get("types", {}), names)
        self.types.claim_aliases(names)
        # Every format anywhere (an operation's input too) gets its alias declared.
        formats = {t.get("format") for t in walk(dict(document)) if t["kind"] == "string"}
        self.types.used_formats = {f for f in formats if f in self.types.aliases}
        positions: list[Any] = [p.type for op in self.operations for p in op.params]
        positions += [p.type for c in self.contexts for p in c.params]
        self.types.find_inputs(positions)

    def operation(self, name: str) -> OperationPlan:
        """The plan of operation `name`."""
        return next(op for op in self.operations if op.name == name)

    def output(self, op: OperationPlan) -> str:
        """The TypeScript type of an operation's result (of each item, for a stream)."""
        return self.types.render(op.document["output"], input=False)
