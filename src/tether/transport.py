"""What the core knows of transports: the `Transport` protocol, and a slot for the defaults.

The core (the registry, the invoker, operations) never imports a transport, not even for
typing: import-linter's contracts in pyproject.toml check it. A transport is anything with
this protocol's two methods. The transports `Tether.mount` uses when it is given none are
made by a factory that the composition root, `tether/__init__.py`, installs here with
`install_default_transports`; the core only calls it. A transport is attached to a
`TransportHandle`, the narrow view of a Tether it needs (lookup, invoker, limits, prefix),
never to the Tether itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigurationError, NotFound

if TYPE_CHECKING:
    from fastapi import FastAPI, params

    from .effects import Contexts
    from .invoke import Invoker
    from .limits import Admission
    from .live import LiveHub
    from .operation import Operation
    from .registry import Tether

__all__ = (
    "find_operation",
    "Transport",
    "TransportFactory",
    "TransportHandle",
    "default_transports",
    "install_default_transports",
)


class TransportHandle:
    """What a transport may reach of the Tether it serves: lookup, the invoker, limits, prefix.

    `Tether.mount` builds one and attaches every transport to it. The settings fixed at mount
    are plain attributes (read as fast as the Tether's own); what changes as operations
    register (the operations, `batch_scoped`) is read live. It holds the Tether privately
    and offers no way to register, mount, call or shut it down.
    """

    __slots__ = (
        "__tether",
        "admission",
        "allowed_origins",
        "body_timeout",
        "contexts",
        "dependencies",
        "invoker",
        "live",
        "max_body_size",
        "operations",
        "prefix",
        "user",
    )

    def __init__(self, tether: Tether) -> None:
        self.__tether = tether
        self.prefix: str = tether.prefix
        """The URL prefix every route of the transport lives under."""
        self.operations: Mapping[str, Operation] = tether.operations
        """Every registered operation, by name (live: later registrations show)."""
        self.invoker: Invoker = tether.invoker
        """The invoker that runs every call."""
        self.admission: Admission = tether.admission
        """The bound on calls in flight (`Tether(max_in_flight=...)`)."""
        self.max_body_size: int = tether.max_body_size
        """The largest request body accepted, in bytes."""
        self.body_timeout: float = tether.body_timeout
        """Seconds a request body may take to arrive whole."""
        self.allowed_origins: tuple[str, ...] = tether.allowed_origins
        """Browser origins trusted to open a WebSocket."""
        self.dependencies: tuple[params.Depends, ...] = tether.dependencies
        """The Tether-level dependencies, solved before every operation's own."""
        self.user: params.Depends | None = tether.user
        """The dependency resolving the current user, for operations with `auth=`."""
        self.contexts: Contexts = tether.contexts
        """The client-cache contexts (bundles, and what live subscriptions name)."""
        self.live: LiveHub = tether.live
        """Live push: subscribe a sink to topics (see `tether.live`)."""

    @property
    def app(self) -> FastAPI | None:
        """The app the Tether is mounted on (None before `mount`)."""
        return self.__tether.app

    @property
    def app_dependencies(self) -> tuple[params.Depends, ...]:
        """The app's own dependencies (`FastAPI(dependencies=[...])`), adopted at mount."""
        return self.__tether.app_dependencies

    @property
    def batch_scoped(self) -> bool:
        """Whether some operation declares per-batch dependencies (live as operations register)."""
        return self.__tether.batch_scoped

    def get(self, name: str) -> Operation:
        """Return the operation called `name`.

        Raises:
            NotFound: no operation has that name.
        """
        return find_operation(self.operations, name)

    def __iter__(self) -> Iterator[Operation]:
        return iter(list(self.operations.values()))

    def __len__(self) -> int:
        return len(self.operations)


class Transport(Protocol):
    """A wire adapter between one wire format and the invoker.

    It decodes a request into (context, operation, params), awaits the invoker and renders
    the outcome; it never validates, solves dependencies or checks auth itself. Each
    transport owns the URLs it serves, under the Tether's prefix; one that serves operations
    at a URL of their own may also define `path_of(op) -> str | None`, which in-process
    calls use as their request's path (so a `Request` dependency sees the wire's path), and
    `wire` (a name) with `serves` (the kinds it calls), which tether's schema document lists.
    """

    def attach(self, handle: TransportHandle, app: FastAPI) -> None:
        """Add this transport's routes (and documentation routes) to `app`, serving `handle`."""

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


def find_operation(operations: Mapping[str, Operation], name: str) -> Operation:
    """Return the operation called `name` in `operations` (for `Tether` and its handle).

    Raises:
        NotFound: no operation has that name.
    """
    op = operations.get(name)
    if op is None:
        raise NotFound(f"Unknown operation {name!r}", details={"operation": name})
    return op
