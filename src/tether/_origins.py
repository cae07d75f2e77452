"""Browser origins: which pages may open tether's WebSocket (cross-site WebSocket hijacking).

A browser sends `Origin` with every WebSocket handshake, and sends the user's cookies
whatever the origin: the same-origin policy does not cover WebSockets. So the server
must refuse a page from another origin itself, or any site could act for a signed-in
user. By default a socket may be opened from the request's own host (the `Origin`'s
host and port equal the `Host` header's); `Tether(allowed_origins=[...])` names others,
and `"*"` allows any. A client that sends no `Origin` is not a browser, and is allowed.

Origins compare as (scheme, host, port): case-insensitively, with the scheme's default
port left out, so `HTTPS://App.Example.com:443` is `https://app.example.com`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigurationError

__all__ = ("ANY_ORIGIN", "OriginPolicy", "check_allowed_origins", "parse_origin")

ANY_ORIGIN = "*"
"""The `allowed_origins` entry that allows every origin."""

Origin = tuple[str, str, int | None]
"""A parsed origin: (scheme, host, port); port is None when it is the scheme's default."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")
_NOT_IN_HOST = frozenset("/?#@\\ \t[]")


def _host_port(text: str) -> tuple[str, int | None] | None:
    """Split `host[:port]` (IPv6 in brackets); None when it is not one."""
    if text.startswith("["):
        end = text.find("]")
        if end < 2:
            return None
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
        if not host or any(char in _NOT_IN_HOST for char in host):
            return None
    port: int | None = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            return None
        port = int(port_text)
        if port > 65535:
            return None
    return host.lower(), port


def parse_origin(text: str) -> Origin | None:
    """Parse an origin (`scheme://host[:port]`); None for anything else, such as `null`."""
    scheme, separator, rest = text.partition("://")
    scheme = scheme.lower()
    if not separator or not scheme or not set(scheme) <= _SCHEME_CHARS:
        return None
    parsed = _host_port(rest)
    if parsed is None:
        return None
    host, port = parsed
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, host, port


def check_allowed_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """Return `origins` as a tuple once each is an origin or `"*"`.

    Raises:
        ConfigurationError: one string for the whole list, or an entry that is not an
            origin (a path, a missing scheme, a bad port).
    """
    if isinstance(origins, str | bytes):
        raise ConfigurationError("allowed_origins takes a list of origins, not one string")
    checked = tuple(origins)
    for origin in checked:
        if origin == ANY_ORIGIN:
            continue
        if not isinstance(origin, str) or parse_origin(origin) is None:
            raise ConfigurationError(
                f"allowed_origins: {origin!r} is not an origin; write scheme://host[:port],"
                " such as 'https://app.example.com' (no path, no trailing slash), or '*'"
            )
    return checked


class OriginPolicy:
    """Decides whether a WebSocket handshake's `Origin` may open a socket."""

    __slots__ = ("any", "origins")

    def __init__(self, allowed: Iterable[str]) -> None:
        allowed = check_allowed_origins(allowed)
        self.any = ANY_ORIGIN in allowed
        """Every origin is allowed (`"*"`)."""
        self.origins = frozenset(
            parsed
            for parsed in (parse_origin(origin) for origin in allowed if origin != ANY_ORIGIN)
            if parsed is not None
        )
        """The allowed origins besides the request's own host, parsed."""

    def allows(self, origin: bytes | None, host: bytes | None) -> bool:
        """Say whether a handshake with these `Origin` and `Host` headers may open a socket."""
        if origin is None or self.any:
            # No Origin: not a browser, so no user's cookies are being borrowed.
            return True
        parsed = parse_origin(origin.decode("latin-1"))
        if parsed is None:
            # `null` (sandboxed frames, file: pages) or garbage: no host to trust.
            return False
        if parsed in self.origins:
            return True
        if host is None:
            return False
        own = _host_port(host.decode("latin-1"))
        if own is None:
            return False
        scheme, origin_host, origin_port = parsed
        own_host, own_port = own
        if own_port is not None and own_port == _DEFAULT_PORTS.get(scheme):
            own_port = None
        return origin_host == own_host and origin_port == own_port
