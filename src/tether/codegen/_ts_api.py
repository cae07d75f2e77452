"""api.ts, react.ts, tanstack.ts, types.ts and index.ts: the text of each, from a `Plan`."""

from __future__ import annotations

from typing import Any

from ._ts_names import key, string
from ._ts_plan import OperationPlan, Param, Plan
from ._ts_types import doc_comment


def _imports(names: set[str], source: str, *, type_only: bool = True) -> list[str]:
    if not names:
        return []
    keyword = "import type" if type_only else "import"
    listed = sorted(names)
    line = f"{keyword} {{ {', '.join(listed)} }} from {string(source)};"
    if len(line) <= 100:
        return [line]
    return [f"{keyword} {{", *(f"  {name}," for name in listed), f"}} from {string(source)};"]


def _type_names(text: str, plan: Plan) -> set[str]:
    """The named types (and aliases) a rendered type mentions, for the import lines."""
    known = set(plan.types.names.values()) | set(plan.types.aliases.values())
    found: set[str] = set()
    word = ""
    for char in text + " ":
        if char.isalnum() or char in "_$":
            word += char
            continue
        if word in known:
            found.add(word)
        word = "" if char != "." else "."  # `Todo.Input`: `Input` is not a top-level name
    return found


def _object_type(params: tuple[Param, ...], plan: Plan) -> str:
    if not params:
        return "Record<string, never>"
    fields = []
    for param in params:
        optional = "" if param.required else "?"
        rendered = plan.types.render(param.type, input=True)
        fields.append(f"{key(param.ts)}{optional}: {rendered}")
    return "{ " + "; ".join(fields) + " }"


def _literal(value: Any, indent: str = "") -> str:
    """A JSON-like value as a TypeScript expression (keys bare when they are identifiers)."""
    inner = indent + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{key(k)}: {_literal(v, inner)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, inner) for v in value) + "]"
    if isinstance(value, str):
        return string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _names_map(params: tuple[Param, ...]) -> dict[str, str] | None:
    if all(p.ts == p.wire for p in params):
        return None
    return {p.ts: p.wire for p in params}


def schema_table(plan: Plan) -> dict[str, Any]:
    """The `SchemaMeta` value the client is created with."""
    document = plan.document
    operations: dict[str, Any] = {}
    for op in plan.operations:
        meta: dict[str, Any] = {
            "kind": op.kind,
            "transports": list(op.document.get("transports", [])),
        }
        if "context" in op.document:
            meta["context"] = op.document["context"]
        meta["params"] = [p.wire for p in op.params]
        names = _names_map(op.params)
        if names is not None:
            meta["names"] = names
        operations[op.name] = meta
    contexts: dict[str, Any] = {}
    for context in plan.contexts:
        entry: dict[str, Any] = {
            "slots": list(context.document.get("slots", [])),
            "params": [p.wire for p in context.params],
            "rev": context.document.get("rev"),
            "perUser": bool(context.document.get("per_user", False)),
        }
        names = _names_map(context.params)
        if names is not None:
            entry["names"] = names
        contexts[context.name] = entry
    errors = {code: e["status"] for code, e in sorted(document.get("errors", {}).items())}
    return {
        "prefix": document.get("prefix", ""),
        "operations": operations,
        "contexts": contexts,
        "errors": errors,
    }


def _op_doc(op: OperationPlan) -> str:
    parts = [op.document.get("summary", ""), op.document.get("description", "")]
    text = "\n\n".join(p.strip() for p in parts if p and p.strip())
    return text or f"The {op.kind} `{op.name}`."


def api_module(plan: Plan) -> list[str]:
    """The lines of api.ts (after its header)."""
    used: set[str] = set()
    body: list[str] = []
    table = schema_table(plan)
    body += ["", "/** What the runtime needs to know of each operation and context. */"]
    body.append(f"export const schema: SchemaMeta = {_literal(table)};")
    codes = sorted(plan.document.get("errors", {}))
    body += ["", "/** Every error code an operation of this API can answer with. */"]
    body.append(f"export type ErrorCode = {' | '.join(string(c) for c in codes) or 'never'};")
    for op in plan.operations:
        body.append("")
        body += doc_comment(f"The input of `{op.name}`.")
        rendered = _object_type(op.params, plan)
        used |= _type_names(rendered, plan)
        body.append(f"export type {op.input_type} = {rendered};")
        body += doc_comment(f"The error codes `{op.name}` can answer with.")
        op_codes = " | ".join(string(c) for c in op.document.get("errors", [])) or "never"
        body.append(f"export type {op.error_type} = {op_codes};")
    for context in plan.contexts:
        body.append("")
        body += doc_comment(f"The params of context `{context.name}`.")
        rendered = _object_type(context.params, plan)
        used |= _type_names(rendered, plan)
        body.append(f"export type {context.params_type} = {rendered};")
        description = context.document.get("description")
        body += doc_comment(
            description or f"The data of context `{context.name}`: each slot's result."
        )
        slots = []
        for slot in context.document.get("slots", []):
            output = plan.output(plan.operation(slot))
            used |= _type_names(output, plan)
            slots.append(f"  {key(slot)}: {output};")
        body += (
            [f"export interface {context.data_type} {{", *slots, "}"]
            if slots
            else [f"export interface {context.data_type} {{}}"]
        )
    body += ["", "/** The typed client: one method per operation, one fetcher per context. */"]
    body.append("export interface Api {")
    implementation: list[str] = []
    for op in plan.operations:
        output = plan.output(op)
        used |= _type_names(output, plan)
        arg = f"input{'?' if op.optional else ''}: {op.input_type}"
        body += doc_comment(_op_doc(op), "  ", deprecated=bool(op.document.get("deprecated")))
        if op.kind == "stream":
            body.append(f"  {op.method}({arg}, options?: CallOptions): AsyncIterable<{output}>;")
            call = f"client.stream<{output}>({string(op.name)}, input, options)"
        else:
            body.append(f"  {op.method}({arg}, options?: CallOptions): Promise<{output}>;")
            call = f"client.call<{output}>({string(op.name)}, input, options)"
        implementation.append(f"    {op.method}: (input, options) => {call},")
    body += ["  /** Each context's bundle: every slot's result in one request (uncached). */"]
    body.append("  readonly contexts: {")
    fetchers: list[str] = []
    for context in plan.contexts:
        arg = f"params{'?' if context.optional else ''}: {context.params_type}"
        body += doc_comment(context.document.get("description"), "    ")
        body.append(
            f"    {context.prop}({arg}, options?: CallOptions): Promise<{context.data_type}>;"
        )
        fetchers.append(
            f"      {context.prop}: (params, options) =>"
            f" client.fetchContext<{context.data_type}>({string(context.name)}, params, options),"
        )
    body += ["  };", "  /** The client underneath: its cache, `reset()` and `close()`. */"]
    body += ["  readonly client: TetherClient;", "}"]
    body += ["", "/** Create the typed client (`options`: base URL, transports, headers...). */"]
    body.append("export function createApi(options?: ClientOptions): Api {")
    body.append("  const client = createTetherClient(schema, options);")
    body.append("  return {")
    body += implementation
    body += ["    contexts: {", *fetchers, "    },", "    client,", "  };", "}"]
    head = [
        'import { createTetherClient } from "./runtime/index.js";',
        *_imports(
            {"CallOptions", "ClientOptions", "SchemaMeta", "TetherClient"}, "./runtime/index.js"
        ),
        *_imports(used, "./types.js"),
        "",
        'export { TetherError, isTetherError } from "./runtime/index.js";',
        "export type {",
        "  CallOptions,",
        "  ClientOptions,",
        "  LiveStatus,",
        "  Outcome,",
        "  Params,",
        "  SchemaMeta,",
        "  Status,",
        "  TetherClient,",
        '} from "./runtime/index.js";',
    ]
    return head + body


def react_module(plan: Plan) -> list[str]:
    """The lines of react.ts (after its header): one hook per context, query, command, stream."""
    runtime: set[str] = set()
    api: set[str] = set()
    used: set[str] = set()
    body: list[str] = []
    for context in plan.contexts:
        runtime |= {"useTetherContext", "ContextResult"}
        api |= {context.params_type, context.data_type}
        arg = f"params{'?' if context.optional else ''}: {context.params_type}"
        body.append("")
        body += doc_comment(
            f"The data of context `{context.name}`, cached, refetched as the server says."
        )
        body.append(f"export function {context.hook}({arg}): ContextResult<{context.data_type}> {{")
        body.append(
            f"  return useTetherContext<{context.data_type}>({string(context.name)}, params);"
        )
        body.append("}")
    for op in plan.operations:
        if op.hook is None:
            continue
        output = plan.output(op)
        used |= _type_names(output, plan)
        api.add(op.input_type)
        body.append("")
        body += doc_comment(_op_doc(op), deprecated=bool(op.document.get("deprecated")))
        arg = f"input{'?' if op.optional else ''}: {op.input_type}"
        if op.kind == "query":
            runtime |= {"useTetherQuery", "ContextResult"}
            body.append(f"export function {op.hook}({arg}): ContextResult<{output}> {{")
            body.append(f"  return useTetherQuery<{output}>({string(op.name)}, input);")
        elif op.kind == "command":
            runtime |= {"useTetherMutation", "MutationResult"}
            # `void`: a command whose params are all optional is called as `mutate()`.
            input_type = f"{op.input_type} | void" if op.optional else op.input_type
            result = f"MutationResult<{input_type}, {output}>"
            body.append(f"export function {op.hook}(): {result} {{")
            body.append(f"  return useTetherMutation<{input_type}, {output}>({string(op.name)});")
        else:
            runtime |= {"useTetherStream", "StreamResult"}
            body.append(f"export function {op.hook}({arg}): StreamResult<{output}> {{")
            body.append(f"  return useTetherStream<{output}>({string(op.name)}, input);")
        body.append("}")
    values = sorted(n for n in runtime if n.startswith("use"))
    types_ = sorted(n for n in runtime if not n.startswith("use"))
    head: list[str] = []
    if runtime:
        listed = [*values, *(f"type {n}" for n in types_)]
        head.append("import {")
        head += [f"  {name}," for name in listed]
        head.append('} from "./runtime/react.js";')
    head += _imports(api, "./api.js")
    head += _imports(used, "./types.js")
    head += [
        "",
        'export { TetherProvider, useTetherClient } from "./runtime/react.js";',
        'export type { ContextResult, MutationResult, StreamResult } from "./runtime/react.js";',
    ]
    return head + body


def tanstack_module(plan: Plan) -> list[str]:
    """The lines of tanstack.ts: TanStack Query v5 options per context, query and command."""
    runtime: set[str] = set()
    api: set[str] = set()
    used: set[str] = set()
    body: list[str] = []
    for context in plan.contexts:
        runtime.add("contextQueryOptions")
        api |= {context.params_type, context.data_type}
        arg = f"params{'?' if context.optional else ''}: {context.params_type}"
        body.append("")
        body += doc_comment(f"`queryOptions` of context `{context.name}`.")
        body.append(f"export function {context.query_options}(client: TetherClient, {arg}) {{")
        body.append(
            f"  return contextQueryOptions<{context.data_type}>(client, {string(context.name)}, params);"
        )
        body.append("}")
    for op in plan.operations:
        output = plan.output(op)
        if op.query_options is not None:
            runtime.add("queryQueryOptions")
            api.add(op.input_type)
            used |= _type_names(output, plan)
            arg = f"input{'?' if op.optional else ''}: {op.input_type}"
            body.append("")
            body += doc_comment(f"`queryOptions` of query `{op.name}`.")
            body.append(f"export function {op.query_options}(client: TetherClient, {arg}) {{")
            body.append(f"  return queryQueryOptions<{output}>(client, {string(op.name)}, input);")
            body.append("}")
        if op.mutation_options is not None:
            runtime.add("commandMutationOptions")
            api.add(op.input_type)
            used |= _type_names(output, plan)
            input_type = f"{op.input_type} | void" if op.optional else op.input_type
            body.append("")
            body += doc_comment(
                f"`mutationOptions` of command `{op.name}`: its effects go to `queryClient`."
            )
            body.append(
                f"export function {op.mutation_options}(client: TetherClient, queryClient: QueryClient) {{"
            )
            body.append(
                f"  return commandMutationOptions<{input_type}, {output}>"
                f"(client, queryClient, {string(op.name)});"
            )
            body.append("}")
    head = ['import type { QueryClient } from "@tanstack/react-query";']
    head += _imports(runtime, "./runtime/tanstack.js", type_only=False)
    head += _imports({"TetherClient"}, "./runtime/index.js")
    head += _imports(api, "./api.js")
    head += _imports(used, "./types.js")
    head += ["", 'export { followLive, tetherQueryKey } from "./runtime/tanstack.js";']
    return head + body


def types_module(plan: Plan) -> list[str]:
    """The lines of types.ts (after its header)."""
    definitions = plan.types.definitions()  # renders first: it records the aliases used
    lines = plan.types.alias_declarations() + definitions
    return lines if lines else ["", "export {};"]


def index_module(*, react: bool) -> list[str]:
    """The lines of index.ts: everything but tanstack.ts (which needs its own npm package)."""
    lines = ['export * from "./types.js";', 'export * from "./api.js";']
    if react:
        lines.append('export * from "./react.js";')
    return lines


__all__ = (
    "api_module",
    "index_module",
    "react_module",
    "schema_table",
    "tanstack_module",
    "types_module",
)
