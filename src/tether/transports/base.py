"""The Transport protocol: a thin adapter from one wire format to the invoker and back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..registry import Tether

__all__ = ("Transport",)


class Transport(Protocol):
    """A wire adapter between one wire format and the invoker.

    It decodes a request into (context, operation, params), awaits the invoker and encodes
    the outcome; it never validates, solves dependencies or checks auth itself.
    """

    def attach(self, api: Tether, app: FastAPI) -> None:
        """Add this transport's routes (and documentation routes) to `app`."""

    def operation_added(self, op: Operation) -> None:
        """Learn of an operation registered after `attach` (for its documentation)."""
