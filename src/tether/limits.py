"""Load shedding: how many HTTP requests a Tether serves at once before it answers 429.

A flood of calls must not pile up without bound: past `Tether(max_in_flight=...)` requests
in flight, the HTTP and JSON-RPC endpoints answer `429 TOO_MANY_REQUESTS` at once, with
`Retry-After`, instead of queueing. Nothing waits in a shared queue, so one client's slow
batch never delays another's call; it only takes places that free up as soon as it ends.
(WebSocket connections bound their own messages; see the WebSocket transport.)
"""

from __future__ import annotations

from .errors import ConfigurationError, TooManyRequests

__all__ = ("DEFAULT_MAX_IN_FLIGHT", "Admission")

DEFAULT_MAX_IN_FLIGHT = 1024
"""Requests served at once by default, per Tether and process."""


class Admission:
    """Counts requests in flight and refuses new ones past the limit."""

    __slots__ = ("in_flight", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigurationError("max_in_flight must be at least 1")
        self.limit = limit
        """Most requests in flight at once."""
        self.in_flight = 0
        """Requests currently in flight."""

    def enter(self) -> None:
        """Take a place, or raise.

        Raises:
            TooManyRequests: every place is taken (the caller answers 429 with Retry-After).
        """
        # No await between the check and the increment: the event loop cannot interleave.
        if self.in_flight >= self.limit:
            raise TooManyRequests(
                f"The server is handling {self.limit} requests; retry shortly",
                details={"limit": self.limit},
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1

    def leave(self) -> None:
        """Give a place back."""
        self.in_flight -= 1
