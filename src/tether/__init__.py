"""tether: typed Python functions, callable over HTTP, JSON-RPC, WebSocket and SSE, on FastAPI.

This module is the public API and the composition root: the only module that joins the
core (`Tether`, operations, the invoker) to the transports, by installing the factory of
the transports `Tether.mount` uses when it is given none.
"""

from .context import CallContext as CallContext
from .dependencies import PerBatch as PerBatch, PerConnection as PerConnection
from .effects import CallResult as CallResult
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
    ServiceUnavailable as ServiceUnavailable,
    TetherError as TetherError,
    TooManyRequests as TooManyRequests,
    Unauthorized as Unauthorized,
    UnsupportedMediaType as UnsupportedMediaType,
    UpgradeRequired as UpgradeRequired,
    ValidationFailed as ValidationFailed,
)
from .events import (
    Command as Command,
    Event as Event,
    Events as Events,
    EventSettings as EventSettings,
    Query as Query,
)
from .live import LiveSettings as LiveSettings
from .operation import (
    Operation as Operation,
    command as command,
    query as query,
    stream as stream,
)
from .registry import Tether as Tether
from .services import Service as Service
from .transport import Transport as _Transport, install_default_transports as _install_defaults

__all__ = (
    "BadRequest",
    "CallContext",
    "CallResult",
    "Command",
    "ConfigurationError",
    "Conflict",
    "Event",
    "EventSettings",
    "Events",
    "FieldError",
    "Forbidden",
    "InternalError",
    "LiveSettings",
    "MethodNotAllowed",
    "NotFound",
    "Operation",
    "PayloadTooLarge",
    "PerBatch",
    "PerConnection",
    "Query",
    "RequestTimeout",
    "Service",
    "ServiceUnavailable",
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


def _default_transports() -> list[_Transport]:
    # Imported on the first mount rather than here: `import tether` stays as light as the
    # core, and the core itself never imports a transport.
    from .transports import default_transports

    return default_transports()


_install_defaults(_default_transports)
