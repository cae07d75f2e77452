"""OpenAPI description of the SSE transport's streams: their routes, events and errors.

Each stream operation gets documentation-only routes (`schema.openapi`) whose endpoint is
an async generator answered with FastAPI's `EventSourceResponse`, so FastAPI documents
`text/event-stream` with the item type; `document_events` then completes every stream's
200 answer with its three events (`data`, `end`, `error`), which FastAPI cannot express.
The transport (`transports/sse.py`) only calls `documentation_routes` and
`document_events`; the wire itself is described there. `document_live` documents live
push (`GET {prefix}/live`, `transports/_live_sse.py`) the same way: one documentation
route, whose 200 answer lists the `ready`, `effects` and `resync` events.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Header, Query
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel

from ..errors import (
    ErrorEnvelope,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    TetherError,
    Unauthorized,
    ValidationFailed,
)
from .openapi import (
    DocumentationRoute,
    documentation_routes as openapi_documentation_routes,
    operation_errors,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..registry import Tether
    from ..transport import TransportHandle

__all__ = ("document_events", "document_live", "documentation_routes")


def _endpoint(parameters: list[inspect.Parameter], item_type: Any) -> Any:
    # An async generator typed `-> AsyncIterator[T]` with EventSourceResponse: FastAPI
    # documents it as `text/event-stream` whose events carry `T` as JSON data.
    async def documented_stream(**values: Any) -> AsyncIterator[Any]:  # pragma: no cover
        nothing: tuple[Any, ...] = ()
        for never in nothing:
            yield never
        raise RuntimeError("documentation routes are never called")

    documented_stream.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=AsyncIterator[item_type]
    )
    return documented_stream


_ERROR_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"const": "error"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/ErrorEnvelope"},
        },
    },
    "required": ["event", "data"],
}


_EVENT_ID = {"type": "string", "pattern": "^[1-9][0-9]*$"}
"""The `id:` of a `data` event: its number in the stream, from 1. A later event without its
own `id:` keeps the last one (as `EventSource.lastEventId` does)."""

_END_EVENT_SCHEMA = {
    "title": "end event",
    "type": "object",
    "properties": {
        "event": {"const": "end"},
        "data": {
            "const": "null",
            "contentMediaType": "application/json",
            "contentSchema": {"type": "null"},
        },
        "id": _EVENT_ID,
    },
    "required": ["event", "data"],
    "additionalProperties": False,
}


def _data_event_schema(data: Any) -> dict[str, Any]:
    return {
        "title": "data event",
        "type": "object",
        "properties": {"event": {"const": "data"}, "data": data, "id": _EVENT_ID},
        "required": ["event", "data", "id"],
        "additionalProperties": False,
    }


def _stream_event_schema(fastapi_item_schema: dict[str, Any]) -> dict[str, Any]:
    """Return the schema of every event of a 200 stream, from FastAPI's one for `data` events.

    FastAPI documents one event shape whose `data` is an item; a stream also ends with
    `end` (whose data is `null`) or `error` (an envelope), so each event is one of three.
    """
    if "oneOf" in fastapi_item_schema:
        return fastapi_item_schema
    data = fastapi_item_schema.get("properties", {}).get("data", {})
    errored: dict[str, Any] = {
        **_ERROR_EVENT_SCHEMA,
        "title": "error event",
        "properties": {**_ERROR_EVENT_SCHEMA["properties"], "id": _EVENT_ID},
        "additionalProperties": False,
    }
    return {"oneOf": [_data_event_schema(data), _END_EVENT_SCHEMA, errored]}


def document_events(app: FastAPI, api: TransportHandle | Tether, path: str) -> None:
    """Make every stream's 200 answer in `app`'s OpenAPI list its three events exactly.

    FastAPI's generator cannot express them (its SSE schema is one event shape), so the
    generated document is completed once it is built: `app.openapi` is wrapped, as
    FastAPI's docs do to extend OpenAPI.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        paths = document.get("paths", {})
        for op in api:
            if op.kind != "stream":
                continue
            for operation in paths.get(f"{api.prefix}{path}/{op.name}", {}).values():
                for status, response in operation.get("responses", {}).items():
                    stream = response.get("content", {}).get("text/event-stream")
                    if stream is None or "itemSchema" not in stream:
                        continue
                    # `schema` beside `itemSchema` would describe the whole stream (OpenAPI
                    # 3.2), which is no envelope: `itemSchema` alone describes each event.
                    stream.pop("schema", None)
                    if status == "200":
                        stream["itemSchema"] = _stream_event_schema(stream["itemSchema"])
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _responses(op: Operation) -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for error in operation_errors(op):
        by_status.setdefault(error.status, []).append(f"`{error.code}`: {error.message}")
    return {
        200: {
            "description": (
                "Server-sent events, each one of: `data` (id: its number from 1; data: one"
                " item as JSON, this schema), then `end` (data: `null`) once the items are"
                " done, or `error` (data: an error envelope) if the stream fails, which ends"
                " it. `: ping` comments keep an idle stream open; a stream cut by the server"
                " shutting down ends without `end`."
            )
        },
        **{
            status: {
                "model": ErrorEnvelope,
                "description": "Sent as one `event: error`; " + "; ".join(lines),
                "content": {"text/event-stream": {"itemSchema": _ERROR_EVENT_SCHEMA}},
            }
            for status, lines in sorted(by_status.items())
        },
    }


def documentation_routes(op: Operation, api: TransportHandle | Tether, path: str) -> list[Any]:
    """Build the OpenAPI-only routes of a stream served at `{prefix}{path}/{name}` (POST, and GET)."""
    return openapi_documentation_routes(
        op,
        api,
        path=path,
        operation_id=f"{op.name}__sse",
        get_operation_id=f"{op.name}__sse_get",
        with_get=True,
        endpoint=lambda parameters: _endpoint(parameters, op.output_type),
        response_class=EventSourceResponse,
        responses=_responses(op),
    )


# -- live push ------------------------------------------------------------------------------


class LivePush(BaseModel):
    """The data of a live `effects` event: the entry's id and what it invalidates and merges."""

    id: str
    invalidate: list[dict[str, Any]]
    merge: list[dict[str, Any]]


_LIVE_ID = {"type": "string", "description": "The entry's id: the resume token."}
_LIVE_DESCRIPTION = (
    "Server-sent events: first `ready` (data: `{id, topics}`, `id` being the resume token),"
    " then `effects` (id: the entry's id; data: `{id, invalidate, merge}`, only the entries"
    " the subscriber may read) as other clients' calls change what the named contexts"
    " hold, or `resync` (data: `{id, resync: true}`) when missed entries can no longer be"
    " replayed: refetch, then go on. `: ping` comments keep an idle stream open. The stream"
    " ends without an event when the server shuts down or the client stops reading:"
    " reconnect with `Last-Event-ID`."
)
# The contexts' names, comma-separated: at least one, no empty name.
_CONTEXTS_PATTERN = "^[^,]+(,[^,]+)*$"


def _live_event(name: str, data: dict[str, Any], *, with_id: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "event": {"const": name},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        "id": _LIVE_ID,
    }
    return {
        "title": f"{name} event",
        "type": "object",
        "properties": properties,
        "required": ["event", "data", "id"] if with_id else ["event", "data"],
        "additionalProperties": False,
    }


def _live_events() -> dict[str, Any]:
    topic = {
        "type": "object",
        "properties": {
            "context": {"type": "string"},
            "query": {"type": "string"},
            "params": {"type": "object"},
        },
        "required": ["params"],
    }
    ready = {
        "type": "object",
        "properties": {
            "id": {"type": ["string", "null"]},
            "topics": {"type": "array", "items": topic},
        },
        "required": ["id", "topics"],
    }
    entries = {"type": "array", "items": {"type": "object"}}
    effects = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "invalidate": entries, "merge": entries},
        "required": ["id", "invalidate", "merge"],
    }
    resync = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "resync": {"const": True}},
        "required": ["id", "resync"],
    }
    return {
        "oneOf": [
            _live_event("ready", ready, with_id=False),
            _live_event("effects", effects, with_id=True),
            _live_event("resync", resync, with_id=True),
        ]
    }


async def _live_documented(
    contexts: Annotated[
        str,
        Query(
            pattern=_CONTEXTS_PATTERN,
            description=(
                "The contexts (or queries of no context) to read, comma-separated. Each"
                " context's own params are further query parameters (`owner_id=5`)."
            ),
        ),
    ],
    since: Annotated[
        str | None,
        Query(description="The last entry id seen: what came after it is replayed first."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="As `since` (EventSource sends it when it reconnects); wins over it.",
        ),
    ] = None,
) -> AsyncIterator[LivePush]:  # pragma: no cover - documentation routes are never called
    nothing: tuple[Any, ...] = ()
    for never in nothing:
        yield never
    raise RuntimeError("documentation routes are never called")


def document_live(app: FastAPI, api: TransportHandle, path: str) -> None:
    """Document live push (`GET {prefix}{path}`) in `app`'s OpenAPI, with its events and errors."""
    errors: list[type[TetherError]] = [NotFound, ValidationFailed]
    dependencies = [*api.app_dependencies, *api.dependencies]
    if api.user is not None:
        dependencies.append(api.user)
    if dependencies:
        errors += [Unauthorized, Forbidden]
    errors += [MethodNotAllowed, ServiceUnavailable, InternalError]
    url = f"{api.prefix}{path}"
    app.router.routes.append(
        DocumentationRoute(
            url,
            _live_documented,
            methods=["GET"],
            operation_id="live__sse",
            tags=["live"],
            summary="Live push of cache effects",
            description=_LIVE_DESCRIPTION,
            dependencies=dependencies,
            response_class=EventSourceResponse,
            responses={
                200: {"description": _LIVE_DESCRIPTION},
                **{
                    error.status: {
                        "model": ErrorEnvelope,
                        "description": f"Sent as one `event: error`; `{error.code}`: {error.message}",
                        "content": {"text/event-stream": {"itemSchema": _ERROR_EVENT_SCHEMA}},
                    }
                    for error in errors
                },
            },
        )
    )
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        operation = document.get("paths", {}).get(url, {}).get("get")
        if operation is not None:
            responses = operation.get("responses", {})
            for response in responses.values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None and "itemSchema" in stream:
                    # As for streams: `itemSchema` alone describes each event.
                    stream.pop("schema", None)
            answer = responses.get("200", {})
            answer["content"] = {"text/event-stream": {"itemSchema": _live_events()}}
        return document

    app.openapi = openapi  # type: ignore[method-assign]
