"""Transports: thin adapters between a wire format and the invoker."""

from __future__ import annotations

from .base import Transport
from .http import HttpTransport
from .jsonrpc import JsonRpcTransport
from .sse import SseTransport
from .websocket import WebSocketTransport

__all__ = ("HttpTransport", "JsonRpcTransport", "Transport", "default_transports")


def default_transports() -> list[Transport]:
    """Return a fresh instance of every built-in transport, in mounting order."""
    return [HttpTransport(), JsonRpcTransport(), SseTransport(), WebSocketTransport()]
