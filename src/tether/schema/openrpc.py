"""The OpenRPC 1.x document: every operation as a JSON-RPC method, with JSON Schemas.

Served at `GET {prefix}/openrpc.json` and as the `rpc.discover` method. Each method lists
its params in signature order (JSON Schema from the operation's input model, with
`required` flags), its result (JSON Schema of the output type, as it is serialized) and the
errors it can answer with, by JSON-RPC code. Shared schemas live in
`components.schemas`, referenced with `$ref`. Client-cache coordination shows as in
OpenAPI: each method's `x-tether` has its `context` and `rev` (a query of a context) or
`affects` and `merge` (a command that declares them), and the document's top-level
`x-tether-contexts` lists the contexts (see docs/cache.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, create_model
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ..operation import model_name
from .openapi import contexts_extension, operation_errors, tether_extension

if TYPE_CHECKING:
    from ..effects import Contexts
    from ..operation import Operation
    from ..registry import Tether
    from ..transport import TransportHandle

__all__ = ("OPENRPC_VERSION", "openrpc_document")

OPENRPC_VERSION = "1.3.2"
"""The version of the OpenRPC specification the document follows."""

_REF_PREFIX = "#/components/schemas/"


def _result_model(op: Operation) -> type[BaseModel]:
    return create_model(
        model_name(op.name, "Result"),
        __module__=op.input_model.__module__,
        result=(op.output_type, ...),
    )


def _method(
    op: Operation,
    params_schema: dict[str, Any],
    result_schema: dict[str, Any],
    contexts: Contexts,
) -> dict[str, Any]:
    properties: dict[str, Any] = params_schema.get("properties", {})
    required = set(params_schema.get("required", ()))
    params = []
    for name in op.input_names:
        schema = properties[name]
        descriptor: dict[str, Any] = {"name": name, "required": name in required}
        if "description" in schema:
            descriptor["description"] = schema["description"]
        descriptor["schema"] = schema
        params.append(descriptor)
    method: dict[str, Any] = {"name": op.name}
    if op.summary:
        method["summary"] = op.summary
    if op.description:
        method["description"] = op.description
    if op.tags:
        method["tags"] = [{"name": tag} for tag in op.tags]
    if op.deprecated:
        method["deprecated"] = True
    method["paramStructure"] = "either"
    method["params"] = params
    method["result"] = {"name": "result", "schema": result_schema["properties"]["result"]}
    method["errors"] = [
        {"code": error.jsonrpc_code, "message": error.message, "data": {"code": error.code}}
        for error in operation_errors(op)
    ]
    method["x-tether"] = tether_extension(op, contexts)
    return method


def openrpc_document(
    api: TransportHandle | Tether,
    *,
    server_url: str | None = None,
    title: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Build the OpenRPC document describing every operation of `api` as a JSON-RPC method.

    `title` and `version` default to the FastAPI app's, once `api` is mounted.
    """
    app = api.app
    operations = list(api)
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for op in operations:
        models.append((op.input_model, "validation"))
        models.append((_result_model(op), "serialization"))
    refs, definitions = models_json_schema(models, ref_template=_REF_PREFIX + "{model}")
    schemas: dict[str, Any] = definitions.get("$defs", {})
    wrappers: set[str] = set()

    def resolve(key: tuple[type[BaseModel], JsonSchemaMode]) -> dict[str, Any]:
        # A model is always answered as a reference to its definition.
        name = str(refs[key]["$ref"]).removeprefix(_REF_PREFIX)
        wrappers.add(name)
        return schemas[name]  # type: ignore[no-any-return]

    contexts = api.contexts
    methods = [
        _method(op, resolve(params_key), resolve(result_key), contexts)
        for op, params_key, result_key in zip(operations, models[::2], models[1::2], strict=True)
    ]
    # The params and result wrappers are spelled out in each method; drop them from the
    # shared schemas unless another schema refers to them.
    kept = {name: schema for name, schema in schemas.items() if name not in wrappers}
    text = orjson.dumps([kept, methods]).decode()
    components = {
        name: schema
        for name, schema in schemas.items()
        if name not in wrappers or f'"{_REF_PREFIX}{name}"' in text
    }
    info: dict[str, Any] = {
        "title": title if title is not None else (app.title if app is not None else "tether"),
        "version": version if version is not None else (app.version if app is not None else "0"),
    }
    if app is not None and app.description:
        info["description"] = app.description
    document: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": info,
        "servers": [
            {
                "name": "JSON-RPC",
                "url": server_url if server_url is not None else f"{api.prefix}/jsonrpc",
            }
        ],
        "methods": methods,
        "components": {"schemas": components},
    }
    listed = contexts_extension(contexts)
    if listed:
        document["x-tether-contexts"] = listed
    return document
