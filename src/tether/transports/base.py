"""The Transport protocol, as transports import it: it lives in the core (`tether.transport`).

The core owns the protocol so that it never has to import this package; a transport
module imports it from here or from `tether.transport`, which is the same class.
"""

from __future__ import annotations

from ..transport import Transport as Transport

__all__ = ("Transport",)
