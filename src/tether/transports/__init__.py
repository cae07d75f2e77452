"""Transports: thin adapters between a wire format and the invoker.

Each public module serves one wire and imports no other (shared code lives in the private
`_*.py` modules); `default_transports` is what `Tether.mount` mounts when given none.
"""

from __future__ import annotations

from .base import Transport as Transport
from .http import HttpTransport as HttpTransport
from .jsonrpc import JsonRpcTransport as JsonRpcTransport
from .sse import SseTransport as SseTransport
from .websocket import WebSocketTransport as WebSocketTransport

__all__ = (
    "HttpTransport",
    "JsonRpcTransport",
    "SseTransport",
    "Transport",
    "WebSocketTransport",
    "default_transports",
)


def default_transports() -> list[Transport]:
    """Return a fresh instance of every built-in transport, in mounting order."""
    return [HttpTransport(), JsonRpcTransport(), SseTransport(), WebSocketTransport()]
