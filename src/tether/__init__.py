"""tether: typed Python functions, callable over HTTP, JSON-RPC, WebSocket and SSE, on FastAPI."""

from .context import CallContext as CallContext
from .dependencies import PerBatch as PerBatch, PerConnection as PerConnection
from .errors import (
    BadRequest as BadRequest,
    ConfigurationError as ConfigurationError,
    Conflict as Conflict,
    FieldError as FieldError,
    Forbidden as Forbidden,
    InternalError as InternalError,
    MethodNotAllowed as MethodNotAllowed,
    NotFound as NotFound,
    PayloadTooLarge as PayloadTooLarge,
    RequestTimeout as RequestTimeout,
    TetherError as TetherError,
    TooManyRequests as TooManyRequests,
    Unauthorized as Unauthorized,
    UnsupportedMediaType as UnsupportedMediaType,
    UpgradeRequired as UpgradeRequired,
    ValidationFailed as ValidationFailed,
)
from .operation import (
    Operation as Operation,
    command as command,
    query as query,
    stream as stream,
)
from .registry import Tether as Tether
from .services import Service as Service

__all__ = (
    "BadRequest",
    "CallContext",
    "ConfigurationError",
    "Conflict",
    "FieldError",
    "Forbidden",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "Operation",
    "PayloadTooLarge",
    "PerBatch",
    "PerConnection",
    "RequestTimeout",
    "Service",
    "Tether",
    "TetherError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpgradeRequired",
    "ValidationFailed",
    "command",
    "query",
    "stream",
)
