"""OpenAPI documentation of operations, through FastAPI's own generator.

Each operation gets documentation-only `APIRoute`s (POST, and GET for queries) whose
endpoint signature is the operation's dependencies plus its input model as the body, so
FastAPI renders headers, security schemes, the named request and response models and the
declared errors exactly as for a hand-written route. These routes never match a request:
the HTTP transport dispatches every call through one route and a dict lookup.

Client-cache coordination (docs/cache.md) shows in three places: each context gets
documentation routes of its own (`GET/POST {prefix}/context/{name}`, tagged "contexts");
each operation's `x-tether` extension gains `context` and `rev` (a query of a context) or
`affects` and `merge` (a command that declares them, as resolved); and the document gains
a top-level `x-tether-contexts` object. The last two are filled in once the document is
generated (`document_contexts`), so that they follow every registration.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections import defaultdict
from collections.abc import Callable
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, cast, get_args, get_origin

from fastapi import Body, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from starlette.routing import Match
from starlette.types import Scope

from ..auth import describe_policy
from ..errors import (
    BadRequest,
    ConfigurationError,
    ErrorEnvelope,
    Forbidden,
    InternalError,
    TetherError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from ..operation import model_name

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..effects import Context, Contexts
    from ..operation import Operation
    from ..registry import Tether
    from ..transport import TransportHandle

__all__ = (
    "ContextDocumentationRoute",
    "DocumentationRoute",
    "cache_extension",
    "context_documentation_routes",
    "contexts_extension",
    "document_contexts",
    "documentation_routes",
    "operation_errors",
    "tether_extension",
)


class DocumentationRoute(APIRoute):
    """An `APIRoute` that only documents an operation in OpenAPI; it never matches a request."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Never match: calls are dispatched by the transport's single route."""
        return Match.NONE, {}


def operation_errors(op: Operation) -> list[type[TetherError]]:
    """Return every error class an operation can answer with, declared ones included."""
    errors: list[type[TetherError]] = [BadRequest, ValidationFailed]
    if op.auth is not None:
        errors += [Unauthorized, Forbidden]
    errors += [error for error in op.errors if error not in errors]
    errors.append(InternalError)
    return errors


def tether_extension(op: Operation, contexts: Contexts | None = None) -> dict[str, Any]:
    """Return the `x-tether` OpenAPI extension: the operation's kind and policy.

    With `contexts`, the client-cache fields of `cache_extension` are added.
    """
    extension: dict[str, Any] = {
        "name": op.name,
        "kind": op.kind,
        "auth": describe_policy(op.auth),
        "errors": [error.code for error in operation_errors(op)],
    }
    if contexts is not None:
        extension.update(cache_extension(op, contexts))
    return extension


def cache_extension(op: Operation, contexts: Contexts) -> dict[str, Any]:
    """Return an operation's client-cache fields: `context` and `rev`, or `affects` and `merge`.

    Only the fields the operation has: `context` and `rev` for a query of a context (`rev`
    when it declares one), `affects` (`[{"context" | "query": name, "params": [names]}]`)
    and `merge` (`[{"context", "slot"}]`) for a command that declares them, as resolved.
    """
    fields: dict[str, Any] = {}
    if op.context is not None:
        fields["context"] = op.context
    if op.rev is not None:
        fields["rev"] = op.rev
    if not op.has_effects:
        return fields
    try:
        plan = contexts.plan(op)
    except ConfigurationError:
        return fields  # not resolvable yet (a name registered later): `mount` refuses it
    if plan is None:
        return fields
    if op.affects:
        fields["affects"] = [
            {target.kind: target.name, "params": list(target.scope)} for target in plan.invalidate
        ]
    if op.merge:
        fields["merge"] = [{"context": target.name, "slot": target.slot} for target in plan.merge]
    return fields


def contexts_extension(contexts: Contexts) -> dict[str, Any]:
    """Return the top-level `x-tether-contexts` object: each context's slots, params and options.

    `{name: {"slots": [names], "params": {name: required}, "rev", "per_user"}}`.
    """
    return {
        context.name: {
            "slots": [op.name for op in context.slots],
            "params": dict(context.params),
            "rev": context.rev,
            "per_user": context.per_user,
        }
        for context in contexts
    }


def _responses(op: Operation) -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[type[TetherError]]] = defaultdict(list)
    for error in operation_errors(op):
        by_status[error.status].append(error)
    return {
        status: {
            "model": ErrorEnvelope,
            "description": "; ".join(f"`{e.code}`: {e.message}" for e in errors),
        }
        for status, errors in sorted(by_status.items())
    }


def _result_model(op: Operation) -> type[BaseModel]:
    return create_model(
        model_name(op.name, "Result"),
        __module__=op.input_model.__module__,
        result=(op.output_type, ...),
    )


def _endpoint(parameters: list[inspect.Parameter]) -> Any:
    def documented_operation(**values: Any) -> None:  # pragma: no cover - never called
        raise RuntimeError("documentation routes are never called")

    documented_operation.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return documented_operation


def _query_parameter(field: FieldInfo, name: str) -> Any:
    """The `Query()` documenting one input read from the query string, as the model reads it."""
    options: dict[str, Any] = {"description": field.description}
    if field.alias and field.alias != name:
        options["alias"] = field.alias
    if field.is_required():
        query = Query(..., **options)
    elif field.default_factory is not None:
        # Documentation never calls the factory, so one that takes data is fine here too.
        query = Query(default_factory=cast("Callable[[], Any]", field.default_factory), **options)
    else:
        query = Query(field.default, **options)
    # Constraints (ge, max_length...) live in the metadata; FastAPI reads them from here.
    query.metadata = [*query.metadata, *field.metadata]
    return query


def documentation_routes(
    op: Operation,
    api: TransportHandle | Tether,
    *,
    path: str = "/call",
    operation_id: str | None = None,
    get_operation_id: str | None = None,
    with_get: bool | None = None,
    endpoint: Callable[[list[inspect.Parameter]], Any] | None = None,
    **route_options: Any,
) -> list[DocumentationRoute]:
    """Build the OpenAPI-only routes (POST, plus GET when allowed) of one operation.

    The defaults document a call under `{prefix}/call/{name}`: the `{"result": ...}` model,
    the error envelopes, and GET for queries whose input fits a query string. Another
    transport (SSE) passes its own path, operation id, endpoint and route options.
    """
    if endpoint is None:
        endpoint = _endpoint
        route_options = {"response_model": _result_model(op), "responses": _responses(op)}
    if with_get is None:
        with_get = op.kind == "query"
    operation_id = operation_id or op.name
    dependency_params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in (op.plan.parameters if op.plan is not None else ())
    ]
    # The app's own dependencies first, as FastAPI lists them for the app's routes.
    dependencies = [*api.app_dependencies, *api.dependencies]
    if op.auth is not None and api.user is not None:
        dependencies.append(api.user)
    url = f"{api.prefix}{path}/{op.name}"
    common: dict[str, Any] = {
        "tags": list(op.tags) or None,
        "summary": op.summary or op.name,
        "description": op.description,
        "deprecated": op.deprecated or None,
        "dependencies": dependencies,
        "openapi_extra": {"x-tether": tether_extension(op)},
        **route_options,
    }
    routes = [_post_route(op, url, endpoint, dependency_params, operation_id, common)]
    if with_get and op.query_shape is not None:
        get_params = list(dependency_params)
        for field_name, field in op.input_model.model_fields.items():
            name = op.renamed.get(field_name, field_name)
            get_params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=field.annotation,
                    default=_query_parameter(field, name),
                )
            )
        routes.append(
            DocumentationRoute(
                url,
                endpoint(get_params),
                methods=["GET"],
                operation_id=get_operation_id or f"{operation_id}__get",
                **common,
            )
        )
    return routes


def _post_route(
    op: Operation,
    url: str,
    endpoint: Callable[[list[inspect.Parameter]], Any],
    dependency_params: list[inspect.Parameter],
    operation_id: str,
    common: dict[str, Any],
) -> DocumentationRoute:
    """The POST route: the dependencies, then the input model as a required JSON body."""
    post_params = list(dependency_params)
    # Every POST carries a JSON body, `{}` when there is no input: without a JSON
    # Content-Type the transports answer 415, so the body is documented as required.
    # The body's name never shows in the document; it only has to differ from every
    # dependency parameter (an operation may have a `Header()` called `params`).
    body_name = "params"
    while any(p.name == body_name for p in dependency_params):
        body_name = f"_{body_name}"
    post_params.append(
        inspect.Parameter(
            body_name, inspect.Parameter.KEYWORD_ONLY, annotation=op.input_model, default=Body(...)
        )
    )
    post_options = dict(common)
    responses = dict(post_options.get("responses") or {})
    if 400 in responses and 415 not in responses:
        # Shaped as the transport's other errors (JSON, or an SSE `error` event).
        responses[415] = {
            **responses[400],
            "description": f"`{UnsupportedMediaType.code}`: the request's Content-Type is"
            " not application/json",
        }
        post_options["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))
    return DocumentationRoute(
        url, endpoint(post_params), methods=["POST"], operation_id=operation_id, **post_options
    )


# -- contexts -------------------------------------------------------------------------------


class ContextDocumentationRoute(DocumentationRoute):
    """A documentation-only route of a context's bundle; `owner` is the handle it documents."""

    owner: Any = None


def _context_errors(context: Context) -> list[type[TetherError]]:
    errors: list[type[TetherError]] = []
    for op in context.slots:
        errors += [error for error in operation_errors(op) if error not in errors]
    # InternalError last, as for an operation.
    errors.remove(InternalError)
    errors.append(InternalError)
    return errors


def _context_fields(context: Context) -> dict[str, tuple[FieldInfo, bool, Operation]]:
    """Each param of the context: its field (as its first slot has it), and whether it is needed.

    A bundle needs it when the context requires it (every slot declares it), or when a slot
    that declares it has no default for it (that slot refuses the bundle without it).
    """
    fields: dict[str, tuple[FieldInfo, bool, Operation]] = {}
    for op in context.slots:
        for field_name, field in op.input_model.model_fields.items():
            name = op.renamed.get(field_name, field_name)
            if name not in context.params:
                continue
            required = context.params[name] or field.is_required()
            if name in fields:
                first, needed, owner = fields[name]
                fields[name] = (first, needed or required, owner)
            else:
                fields[name] = (field, required, op)
    return fields


def _without_none(annotation: Any) -> Any:
    """Return `annotation` without its `None` member (`bool | None` -> `bool`)."""
    if get_origin(annotation) not in (Union, UnionType):
        return annotation
    members = [member for member in get_args(annotation) if member is not type(None)]
    if len(members) == len(get_args(annotation)):
        return annotation
    return functools.reduce(operator.or_, members)


def _context_result_model(context: Context) -> type[BaseModel]:
    module = context.slots[0].input_model.__module__
    # A slot's name may be dotted (`users.get`): the field is named by position, aliased.
    slots: dict[str, Any] = {
        f"slot_{index}": (op.output_type, Field(alias=op.name))
        for index, op in enumerate(context.slots)
    }
    bundle = create_model(model_name(context.name, "ContextSlots"), __module__=module, **slots)
    return create_model(
        model_name(context.name, "Context"), __module__=module, result=(bundle, ...)
    )


def _context_params_model(
    context: Context, fields: dict[str, tuple[FieldInfo, bool, Operation]]
) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for name, (field, required, _) in fields.items():
        annotation: Any = (
            Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        )
        options: dict[str, Any] = {"description": field.description}
        if field.alias and field.alias != name:
            options["alias"] = field.alias
        if required:
            definitions[name] = (annotation, Field(**options))
        elif field.default_factory is not None:
            factory = cast("Callable[[], Any]", field.default_factory)
            definitions[name] = (annotation, Field(default_factory=factory, **options))
        else:
            definitions[name] = (annotation, Field(default=field.default, **options))
    return create_model(
        model_name(context.name, "ContextParams"),
        __module__=context.slots[0].input_model.__module__,
        # A param no slot takes is refused (422), as an operation's unknown input is.
        __config__=ConfigDict(extra="forbid"),
        **definitions,
    )


def context_documentation_routes(
    context: Context, api: TransportHandle | Tether, *, path: str = "/context"
) -> list[ContextDocumentationRoute]:
    """Build the OpenAPI-only routes of a context's bundle (GET when possible, and POST).

    GET is documented when a query string can carry every param; both answer
    `{"result": {slot: value}}`, tagged "contexts".
    """
    url = f"{api.prefix}{path}/{context.name}"
    dependency_params: dict[str, inspect.Parameter] = {}
    for op in context.slots:
        for parameter in op.plan.parameters if op.plan is not None else ():
            dependency_params.setdefault(
                parameter.name, parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            )
    dependencies = [*api.app_dependencies, *api.dependencies]
    if api.user is not None and any(op.auth is not None for op in context.slots):
        dependencies.append(api.user)
    responses: dict[int | str, dict[str, Any]] = {}
    by_status: dict[int, list[type[TetherError]]] = defaultdict(list)
    for error in _context_errors(context):
        by_status[error.status].append(error)
    for status, errors in sorted(by_status.items()):
        responses[status] = {
            "model": ErrorEnvelope,
            "description": "; ".join(f"`{e.code}`: {e.message}" for e in errors),
        }
    slots = ", ".join(op.name for op in context.slots)
    common: dict[str, Any] = {
        "tags": ["contexts"],
        "summary": f"context {context.name}",
        "description": context.description
        or f"The bundle of context {context.name!r}: its queries ({slots}), run"
        " concurrently, each with the params it declares.",
        "dependencies": dependencies,
        "response_model": _context_result_model(context),
        "openapi_extra": {"x-tether-context": context.name},
    }
    fields = _context_fields(context)
    routes: list[ContextDocumentationRoute] = []
    if context.query_shape is not None:
        get_params = list(dependency_params.values())
        for name, (field, required, owner) in fields.items():
            query = _query_parameter(field, name)
            annotation = field.annotation
            if required and not field.is_required():
                # Every slot takes it: the bundle needs it, whatever a slot's default.
                query = Query(..., alias=query.alias, description=field.description)
                query.metadata = [*query.metadata, *field.metadata]
                if owner.validate_query is None:
                    # A lax query string has no null (strict reads `null` as None): a
                    # value is what it needs.
                    annotation = _without_none(annotation)
            get_params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=query
                )
            )
        routes.append(
            ContextDocumentationRoute(
                url,
                _endpoint(get_params),
                methods=["GET"],
                operation_id=f"{context.name}__context",
                responses=responses,
                **common,
            )
        )
    post_params = list(dependency_params.values())
    body_name = "params"
    while body_name in dependency_params:
        body_name = f"_{body_name}"
    post_params.append(
        inspect.Parameter(
            body_name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=_context_params_model(context, fields),
            default=Body(...),
        )
    )
    post_responses = dict(responses)
    if 400 in post_responses:
        post_responses[415] = {
            **post_responses[400],
            "description": f"`{UnsupportedMediaType.code}`: the request's Content-Type is"
            " not application/json",
        }
    routes.append(
        ContextDocumentationRoute(
            url,
            _endpoint(post_params),
            methods=["POST"],
            operation_id=f"{context.name}__context_post",
            responses=dict(sorted(post_responses.items(), key=lambda item: str(item[0]))),
            **common,
        )
    )
    for route in routes:
        route.owner = api
    return routes


def document_contexts(app: FastAPI, api: TransportHandle, *, path: str = "/context") -> None:
    """Document `api`'s contexts and cache policy in `app`'s OpenAPI, whenever it is generated.

    Before the document is generated, the context routes are rebuilt (contexts change as
    queries register); after, each operation's `x-tether` gains its cache fields and the
    document its `x-tether-contexts`. `app.openapi` is wrapped, as FastAPI's docs do to
    extend OpenAPI.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return generate()
        contexts = api.contexts
        routes = app.router.routes
        routes[:] = [
            route
            for route in routes
            if not (isinstance(route, ContextDocumentationRoute) and route.owner is api)
        ]
        for context in contexts:
            routes.extend(context_documentation_routes(context, api, path=path))
        document = generate()
        operations = api.operations
        for item in document.get("paths", {}).values():
            for operation in item.values():
                extension = operation.get("x-tether") if isinstance(operation, dict) else None
                if not isinstance(extension, dict):
                    continue
                op = operations.get(str(extension.get("name")))
                if op is not None:
                    # A new dict: FastAPI may hand out the route's own `openapi_extra`.
                    operation["x-tether"] = {**extension, **cache_extension(op, contexts)}
        found = contexts_extension(contexts)
        if found:
            document["x-tether-contexts"] = {**document.get("x-tether-contexts", {}), **found}
        return document

    app.openapi = openapi  # type: ignore[method-assign]
