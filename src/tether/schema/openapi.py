"""OpenAPI documentation of operations, through FastAPI's own generator.

Each operation gets documentation-only `APIRoute`s (POST, and GET for queries) whose
endpoint signature is the operation's dependencies plus its input model as the body, so
FastAPI renders headers, security schemes, the named request and response models and the
declared errors exactly as for a hand-written route. These routes never match a request:
the HTTP transport dispatches every call through one route and a dict lookup.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from fastapi import Body, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo
from starlette.routing import Match
from starlette.types import Scope

from ..auth import describe_policy
from ..errors import (
    BadRequest,
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
    from ..operation import Operation
    from ..registry import Tether
    from ..transport import TransportHandle

__all__ = ("DocumentationRoute", "documentation_routes", "operation_errors", "tether_extension")


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


def tether_extension(op: Operation) -> dict[str, Any]:
    """Return the `x-tether` OpenAPI extension: the operation's kind and policy."""
    return {
        "name": op.name,
        "kind": op.kind,
        "auth": describe_policy(op.auth),
        "errors": [error.code for error in operation_errors(op)],
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
