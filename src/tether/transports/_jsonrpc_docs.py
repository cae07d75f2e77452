"""OpenAPI documentation of the JSON-RPC endpoint: the envelope models and doc-only routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body
from pydantic import BaseModel, Field

from ..schema.openapi import DocumentationRoute

__all__ = (
    "JsonRpcError",
    "JsonRpcErrorResponse",
    "JsonRpcRequest",
    "JsonRpcResultResponse",
    "documentation_routes",
)

JsonRpcId = Annotated[
    str | int | None,
    Field(description="Correlates the response with the request; absent for a notification."),
]


class JsonRpcRequest(BaseModel):
    """A JSON-RPC 2.0 request object; without `id` it is a notification, answered by nothing."""

    jsonrpc: Literal["2.0"]
    method: str = Field(description="The operation's name; see the OpenRPC document.")
    params: list[Any] | dict[str, Any] | None = Field(
        default=None, description="By position (array) or by name (object)."
    )
    id: JsonRpcId = None


class JsonRpcError(BaseModel):
    """The error object: a JSON-RPC integer code, a message, and tether's code and details."""

    code: int
    message: str
    data: Any = Field(default=None, description='`{"code": <string code>, "details": ...}`.')


class JsonRpcResultResponse(BaseModel):
    """A successful response."""

    jsonrpc: Literal["2.0"]
    id: JsonRpcId
    result: Any


class JsonRpcErrorResponse(BaseModel):
    """An error response."""

    jsonrpc: Literal["2.0"]
    id: JsonRpcId
    error: JsonRpcError


JsonRpcResponse = JsonRpcResultResponse | JsonRpcErrorResponse

_DESCRIPTION = """\
Call any operation with JSON-RPC 2.0: one request object, a notification (no `id`,
answered with 204) or a batch (an array, answered with an array in request order).
Errors are answered with HTTP 200 and a JSON-RPC error object, except for a body that
is too large (413) or not JSON (415). The methods and their params are listed in the
OpenRPC document at `{openrpc}`."""


def documentation_routes(path: str, openrpc_path: str) -> list[DocumentationRoute]:
    """Build the OpenAPI-only routes documenting the JSON-RPC endpoint and the OpenRPC document."""

    def jsonrpc(
        message: Annotated[JsonRpcRequest | list[JsonRpcRequest], Body()],
    ) -> None:  # pragma: no cover - documentation routes are never called
        raise RuntimeError("documentation routes are never called")

    def openrpc() -> None:  # pragma: no cover - documentation routes are never called
        raise RuntimeError("documentation routes are never called")

    return [
        DocumentationRoute(
            path,
            jsonrpc,
            methods=["POST"],
            operation_id="jsonrpc",
            summary="JSON-RPC 2.0",
            description=_DESCRIPTION.format(openrpc=openrpc_path),
            tags=["JSON-RPC"],
            response_model=JsonRpcResponse | list[JsonRpcResponse],
            # One "4XX" entry: it also keeps FastAPI from documenting a 422 that JSON-RPC
            # never answers (invalid params are a -32602 error with HTTP 200).
            responses={
                204: {"description": "Only notifications: nothing to answer."},
                "4XX": {
                    "model": JsonRpcErrorResponse,
                    "description": "An HTTP-level problem, with a JSON-RPC error body: 413 the"
                    " body is too large, 415 it is not declared as JSON, 405 not a POST, 400 an"
                    " invalid Content-Length.",
                },
            },
        ),
        DocumentationRoute(
            openrpc_path,
            openrpc,
            methods=["GET"],
            operation_id="openrpc",
            summary="OpenRPC document",
            description="Every operation as a JSON-RPC method (also the `rpc.discover` method).",
            tags=["JSON-RPC"],
            response_model=dict[str, Any],
        ),
    ]
