"""Brokers: how events and live pushes travel between processes (memory, or Redis Streams).

`broker_from` turns what an app gives `Tether(broker=...)` into a `Broker`: a broker
object, a URL (`memory://`, `redis://host:port/db`), or nothing, when the `TETHER_BROKER`
environment variable chooses, so that one app file runs on one machine or on many.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from .base import Broker as Broker, BrokerError, BrokerFull, BrokerUnavailable, Entry
from .memory import MemoryBroker as MemoryBroker

__all__ = (
    "BROKER_ENV",
    "Broker",
    "BrokerError",
    "BrokerFull",
    "BrokerUnavailable",
    "Entry",
    "MemoryBroker",
    "broker_from",
)

BROKER_ENV = "TETHER_BROKER"
"""The environment variable that chooses the broker when the app names none."""


def broker_from(value: Any = None) -> Broker:
    """Return the broker `value` names: a `Broker`, a URL, or None for `$TETHER_BROKER` (else memory).

    Raises:
        ConfigurationError: an unknown URL scheme, or `redis://` without the redis extra.
    """
    if isinstance(value, Broker):
        return value
    where = "Tether(broker=...)"
    if value is None:
        value = os.environ.get(BROKER_ENV) or "memory://"
        where = f"${BROKER_ENV}"
    if not isinstance(value, str):
        raise ConfigurationError(f"{where} takes a Broker or a URL, not {value!r}")
    scheme = value.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisBroker
        except ImportError as exc:  # pragma: no cover - the dev extras bring redis
            raise ConfigurationError(
                f"{where}={value!r} needs redis-py: pip install 'tether[redis]'"
            ) from exc
        url, options = _broker_options(value, where)
        return RedisBroker(url, **options)
    raise ConfigurationError(
        f"{where}={value!r}: unknown broker; use memory:// or redis://host:port/db"
    )


_OPTIONS = {"maxlen": int, "timeout": float}
"""Options a broker URL's query string may set: `redis://host:6379/0?maxlen=50000&timeout=1`."""


def _broker_options(url: str, where: str) -> tuple[str, dict[str, Any]]:
    """Split tether's own options (`maxlen`, `timeout`) off a broker URL's query string."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    rest = []
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        convert = _OPTIONS.get(key)
        if convert is None:
            rest.append((key, text))
            continue
        try:
            options[key] = convert(text)
        except ValueError:
            raise ConfigurationError(f"{where}: {key}={text!r} is not a number") from None
    return urlunsplit(parts._replace(query=urlencode(rest))), options
