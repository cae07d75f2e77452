"""What the core knows of transports: the `Transport` protocol, and a slot for the defaults.

The core (the registry, the invoker, operations) never imports a transport, not even for
typing: import-linter's contracts in pyproject.toml check it. A transport is anything with
this protocol's two methods. The transports `Tether.mount` uses when it is given none are
made by a factory that the composition root, `tether/__init__.py`, installs here with
`install_default_transports`; the core only calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .operation import Operation
    from .registry import Tether

__all__ = ("Transport", "TransportFactory", "default_transports", "install_default_transports")


class Transport(Protocol):
    """A wire adapter between one wire format and the invoker.

    It decodes a request into (context, operation, params), awaits the invoker and renders
    the outcome; it never validates, solves dependencies or checks auth itself. Each
    transport owns the URLs it serves, under the Tether's prefix; one that serves operations
    at a URL of their own may also define `path_of(op) -> str | None`, which in-process
    calls use as their request's path (so a `Request` dependency sees the wire's path).
    """

    def attach(self, api: Tether, app: FastAPI) -> None:
        """Add this transport's routes (and documentation routes) to `app`."""

    def operation_added(self, op: Operation) -> None:
        """Learn of an operation registered after `attach` (for its documentation)."""


TransportFactory = Callable[[], Sequence[Transport]]
"""Makes a fresh set of transports, in mounting order."""

_default_factory: TransportFactory | None = None


def install_default_transports(factory: TransportFactory) -> None:
    """Set the factory of the transports `Tether.mount` uses when given no `transports=`."""
    global _default_factory
    _default_factory = factory


def default_transports() -> list[Transport]:
    """Return fresh default transports, made by the installed factory.

    Raises:
        ConfigurationError: no factory is installed (`import tether` installs one).
    """
    if _default_factory is None:
        raise ConfigurationError(
            "no default transports are installed; import tether, or pass transports=[...]"
        )
    return list(_default_factory())
