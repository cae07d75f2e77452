"""The error hierarchy, and how each error looks on every wire.

```
TetherError                  code="INTERNAL_ERROR"          status=500  jsonrpc_code=-32603
├── InternalError            code="INTERNAL_ERROR"          status=500  jsonrpc_code=-32603
├── BadRequest               code="BAD_REQUEST"             status=400  jsonrpc_code=-32000
├── ValidationFailed         code="VALIDATION_FAILED"       status=422  jsonrpc_code=-32602
├── Unauthorized             code="UNAUTHORIZED"            status=401  jsonrpc_code=-32001
├── Forbidden                code="FORBIDDEN"               status=403  jsonrpc_code=-32003
├── NotFound                 code="NOT_FOUND"               status=404  jsonrpc_code=-32004
├── MethodNotAllowed         code="METHOD_NOT_ALLOWED"      status=405  jsonrpc_code=-32005
├── Conflict                 code="CONFLICT"                status=409  jsonrpc_code=-32009
├── PayloadTooLarge          code="PAYLOAD_TOO_LARGE"       status=413  jsonrpc_code=-32013
├── RequestTimeout           code="REQUEST_TIMEOUT"         status=408  jsonrpc_code=-32008
├── UnsupportedMediaType     code="UNSUPPORTED_MEDIA_TYPE"  status=415  jsonrpc_code=-32015
├── UpgradeRequired          code="UPGRADE_REQUIRED"        status=426  jsonrpc_code=-32026
├── TooManyRequests          code="TOO_MANY_REQUESTS"       status=429  jsonrpc_code=-32029
└── ServiceUnavailable       code="SERVICE_UNAVAILABLE"     status=503  jsonrpc_code=-32053
ConfigurationError(RuntimeError)   a developer mistake found at registration; never sent on the wire
```

Every error leaves every transport as the same envelope,
`{"error": {"code": ..., "message": ..., "details": ...}}`; JSON-RPC carries the
string code and the details in `error.data`. Users subclass any class above and
override the class attributes to make their own errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic_core import PydanticSerializationError

__all__ = (
    "BUILTIN_ERRORS",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "ErrorBody",
    "ErrorEnvelope",
    "FieldError",
    "Forbidden",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServiceUnavailable",
    "TetherError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpgradeRequired",
    "ValidationFailed",
    "error_for_code",
)


_logger = logging.getLogger("tether")


class ConfigurationError(RuntimeError):
    """A mistake in how operations are declared, raised at registration and never sent to a client."""


class TetherError(Exception):
    """Base of every error an operation or a transport sends to a client."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    """Stable upper-snake-case string that clients match on."""
    status: ClassVar[int] = 500
    """HTTP status the HTTP and WebSocket transports answer with."""
    jsonrpc_code: ClassVar[int] = -32603
    """Integer code of the JSON-RPC 2.0 error object."""
    message: ClassVar[str] = "Internal server error"
    """Default human-readable message, used when none is given."""
    details_model: ClassVar[Any] = None
    """Optional type of `details`; when set, details are validated against it."""

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail_message = message if message is not None else type(self).message
        if details is not None and self.details_model is not None:
            details = _adapter(self.details_model).validate_python(details)
        self.details = details
        self.headers: dict[str, str] = dict(headers) if headers else {}
        """HTTP headers sent with the error over HTTP, such as `WWW-Authenticate` on a 401."""
        super().__init__(self.detail_message)

    def to_dict(self) -> dict[str, Any]:
        """Return the error body `{"code", "message", "details"}` as JSON-ready data."""
        details = self.details
        if details is not None:
            model = self.details_model if self.details_model is not None else Any
            try:
                details = _adapter(model).dump_python(details, mode="json", by_alias=True)
            except PydanticSerializationError:
                # A bug where the error was raised; the client still gets its code and message.
                _logger.error(
                    "the details of %s(%r) cannot be serialized; they are left out",
                    type(self).__name__,
                    self.detail_message,
                    exc_info=True,
                )
                details = None
        return {"code": self.code, "message": self.detail_message, "details": details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail_message!r}, details={self.details!r})"


_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    adapter = _adapters.get(model)
    if adapter is None:
        adapter = _adapters[model] = TypeAdapter(model)
    return adapter


class InternalError(TetherError):
    """An unexpected failure on the server; the client never sees its cause."""


class BadRequest(TetherError):
    """The request could not be read: malformed JSON, or a body of the wrong shape."""

    code = "BAD_REQUEST"
    status = 400
    jsonrpc_code = -32000
    message = "Bad request"


class FieldError(BaseModel):
    """One invalid input field: where it is, what is wrong, and pydantic's error type."""

    model_config = ConfigDict(frozen=True)

    loc: list[str | int]
    msg: str
    type: str


class ValidationFailed(TetherError):
    """The input did not validate; `details` lists each offending field."""

    code = "VALIDATION_FAILED"
    status = 422
    jsonrpc_code = -32602
    message = "Invalid parameters"
    details_model = list[FieldError]

    @classmethod
    def from_errors(
        cls, errors: Sequence[Mapping[str, Any]], *, message: str | None = None
    ) -> ValidationFailed:
        """Build the error from pydantic or FastAPI error dicts, keeping loc, msg and type."""
        fields = [
            FieldError(
                loc=[part for part in err.get("loc", ()) if isinstance(part, str | int)],
                msg=str(err.get("msg", "")),
                type=str(err.get("type", "value_error")),
            )
            for err in errors
        ]
        return cls(message, details=fields)


class Unauthorized(TetherError):
    """The operation needs an authenticated user and there is none."""

    code = "UNAUTHORIZED"
    status = 401
    jsonrpc_code = -32001
    message = "Authentication required"


class Forbidden(TetherError):
    """The user is authenticated but may not call this operation."""

    code = "FORBIDDEN"
    status = 403
    jsonrpc_code = -32003
    message = "Not allowed"


class NotFound(TetherError):
    """A resource (or, over HTTP, an operation) does not exist."""

    code = "NOT_FOUND"
    status = 404
    jsonrpc_code = -32004
    message = "Not found"


class MethodNotAllowed(TetherError):
    """The HTTP method cannot call this operation, for example `GET` on a command."""

    code = "METHOD_NOT_ALLOWED"
    status = 405
    jsonrpc_code = -32005
    message = "Method not allowed"


class Conflict(TetherError):
    """The call conflicts with the current state of a resource."""

    code = "CONFLICT"
    status = 409
    jsonrpc_code = -32009
    message = "Conflict"


class PayloadTooLarge(TetherError):
    """The request body is larger than the configured limit."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413
    jsonrpc_code = -32013
    message = "Payload too large"


class UnsupportedMediaType(TetherError):
    """The request is a POST without a JSON `Content-Type` (even with an empty body)."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    jsonrpc_code = -32015
    message = "Content-Type must be application/json"


class RequestTimeout(TetherError):
    """The request body did not arrive within `Tether(body_timeout=...)`."""

    code = "REQUEST_TIMEOUT"
    status = 408
    jsonrpc_code = -32008
    message = "The request body did not arrive in time"


class UpgradeRequired(TetherError):
    """A plain HTTP request reached the WebSocket endpoint."""

    code = "UPGRADE_REQUIRED"
    status = 426
    jsonrpc_code = -32026
    message = "This endpoint speaks WebSocket: send an Upgrade: websocket handshake"


class TooManyRequests(TetherError):
    """The client sent more than a configured limit allows."""

    code = "TOO_MANY_REQUESTS"
    status = 429
    jsonrpc_code = -32029
    message = "Too many requests"


class ServiceUnavailable(TetherError):
    """A service the call needs (the event outbox, the broker) cannot be reached; try again later."""

    code = "SERVICE_UNAVAILABLE"
    status = 503
    jsonrpc_code = -32053
    message = "Service unavailable"


BUILTIN_ERRORS: tuple[type[TetherError], ...] = (
    BadRequest,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    UpgradeRequired,
    TooManyRequests,
    ServiceUnavailable,
    InternalError,
)
"""Every built-in error class, in the order `docs/errors.md` renders them."""

_BY_CODE = {cls.code: cls for cls in BUILTIN_ERRORS}
# A server error raised as an `HTTPException` is answered as INTERNAL_ERROR, its detail kept
# back: only tether itself raises SERVICE_UNAVAILABLE.
_BY_STATUS = {cls.status: cls for cls in BUILTIN_ERRORS if cls.status < 500}


def error_for_code(code: str) -> type[TetherError] | None:
    """Return the built-in error class whose string code is `code`, or None."""
    return _BY_CODE.get(code)


_status_classes: dict[int, type[TetherError]] = {}


def error_for_status(
    status: int,
    message: str | None = None,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> TetherError:
    """Map an HTTP status (from a FastAPI `HTTPException`) to the matching tether error.

    `headers` (the exception's, such as `WWW-Authenticate`) travel with the error; a 5xx
    keeps none of it.
    """
    cls = _BY_STATUS.get(status)
    if cls is None and status < 500:
        cls = _status_classes.get(status)
        if cls is None:
            # Statuses without a built-in class keep their status and get code "HTTP_<status>".
            cls = _status_classes[status] = type(
                f"HTTPStatus{status}Error",
                (TetherError,),
                {
                    "status": status,
                    "code": f"HTTP_{status}",
                    "jsonrpc_code": -32000,
                    "message": f"HTTP {status}",
                },
            )
    if cls is None or cls is InternalError:
        return InternalError()
    return cls(message, details=details, headers=headers)


class ErrorBody(BaseModel):
    """The body of an error: a stable code, a human message and optional details."""

    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """What every transport sends for an error: `{"error": {...}}`."""

    error: ErrorBody
