"""Encoding JSON for replies: orjson's speed, with exact integers of any size.

orjson encodes integers only up to 64 bits, but JSON has no such limit and tether reads
bigger ones exactly (`parse_json`). Anything a client sent and the server echoes back (an
id, a uuid, a subscription key) may be such an integer, so it is encoded here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..errors import TetherError

__all__ = ("dumps", "encode_error")


def dumps(value: Any) -> bytes:
    """Encode `value` as compact JSON bytes; integers beyond 64 bits are written exactly.

    Raises:
        TypeError: `value` holds something that is not JSON data.
        ValueError: `value` holds a NaN or an infinity (parsed requests never do).
    """
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a big integer, or nesting past 254 levels
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()


def encode_error(error: TetherError) -> bytes:
    """Return the JSON error envelope `{"error": {...}}` for `error` (HTTP bodies, SSE events)."""
    return orjson.dumps({"error": error.to_dict()})
