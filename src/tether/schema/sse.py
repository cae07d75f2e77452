"""OpenAPI description of the SSE transport's streams: their routes, events and errors.

Each stream operation gets documentation-only routes (`schema.openapi`) whose endpoint is
an async generator answered with FastAPI's `EventSourceResponse`, so FastAPI documents
`text/event-stream` with the item type; `document_events` then completes every stream's
200 answer with its three events (`data`, `end`, `error`), which FastAPI cannot express.
The transport (`transports/sse.py`) only calls `documentation_routes` and
`document_events`; the wire itself is described there.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi.sse import EventSourceResponse

from ..errors import ErrorEnvelope
from .openapi import documentation_routes as openapi_documentation_routes, operation_errors

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..registry import Tether
    from ..transport import TransportHandle

__all__ = ("document_events", "documentation_routes")


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
