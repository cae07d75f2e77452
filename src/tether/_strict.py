"""Strict input validation: a value must already have the type JSON gives it.

`Tether(strict=True)` or `@api.query(strict=True)` validates an operation's inputs in
pydantic's strict JSON mode, whatever carried them (a transport has parsed the body, a
JSON-RPC call carries a params object, an in-process call passes a dict): the params are
written as JSON once more and validated with `validate_json(..., strict=True)`, so that
fields of nested models are as strict as the operation's own:

- the types JSON carries must arrive as that type: no `true` for an integer, no `"1"` for
  a number, no `1` for a boolean or a string. An input declared as an integer may be
  written `2.0`: JSON Schema, and so the OpenAPI document, counts a number without a
  fraction as an integer (inside a nested model, pydantic's own rule holds: it is not);
- the types JSON cannot carry (datetime, date, time, timedelta, UUID, Decimal, enums by
  value, paths, bytes...) still parse from their JSON form, a string (or a number for
  Decimal and enums whose values are numbers), as strict JSON mode reads them; a number
  is not a timestamp or a duration there.

A query string carries only text, so a strict GET reads each value as a string when the
input takes that string (a `str`, a datetime, a UUID...), and otherwise as the JSON scalar
the text spells: `?id=1` is the integer 1, `?done=true` the boolean true, while `?id=true`
and `?done=True` are refused, as `{"id": true}` and `{"done": "True"}` are over POST.

Everything here is built once per strict operation, at registration; lax operations (the
default) never reach this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import (
    PydanticCustomError,
    PydanticSerializationError,
    SchemaValidator,
    to_json,
)

__all__ = ("QueryParams", "query_reader", "strict_schema", "strict_validator")

_SKIPPED_KEYS = frozenset({"metadata", "serialization"})
"""Parts of a core schema that never validate input."""

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


class QueryParams(dict[str, Any]):
    """Params read from a query string: each value is text (a string, or a list of strings)."""


def strict_validator(schema: Any, config: Any) -> Callable[[Any], dict[str, Any]]:
    """Return a validator of params in pydantic's strict JSON mode, for a params core schema.

    Integers without a fraction written as floats (`2.0`) are read as integers first, as
    JSON Schema counts them (`strict_schema`).
    """
    validate_json = SchemaValidator(strict_schema(schema), config).validate_json
    title = "Params"

    def validate_strictly(data: Any) -> dict[str, Any]:
        try:
            text = to_json(data)
        except PydanticSerializationError as exc:
            # Only an in-process caller can pass a value JSON cannot carry.
            raise ValidationError.from_exception_data(
                title,
                [
                    {
                        "type": PydanticCustomError("json_invalid", "Input is not JSON: {error}"),
                        "loc": (),
                        "input": data,
                        "ctx": {"error": str(exc)},
                    }
                ],
            ) from None
        validated: dict[str, Any] = validate_json(text, strict=True)
        return validated

    return validate_strictly


def strict_schema(schema: Any) -> Any:
    """Return a copy of a core schema whose integers also take floats without a fraction.

    The original schema (shared with the model it came from) is not changed. Nested
    models keep their own validators (pydantic reuses a complete model's), so the rule
    reaches the operation's inputs and the containers around them, not inside models.
    """
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {
        key: value if key in _SKIPPED_KEYS else strict_schema(value)
        for key, value in schema.items()
    }
    if copy.get("type") == "int":
        copy = {
            "type": "function-before",
            "function": {"type": "no-info", "function": _whole_number},
            "schema": copy,
        }
    return copy


def _whole_number(value: Any) -> Any:
    """Read a float without a fraction (`2.0`) as the integer it is, as JSON Schema does."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def query_reader(
    validate: Callable[[Any], dict[str, Any]],
) -> Callable[[Any], dict[str, Any]]:
    """Return a validator of query-string params for a strict operation's `validate`.

    Each value is tried as the text it is first; a field that refuses its text is tried
    again with the JSON scalar the text spells (`1`, `-2.5e3`, `true`, `false`, `null`),
    if it spells one. The errors reported are those of the last attempt.
    """

    def read_query(params: Any) -> dict[str, Any]:
        try:
            return validate(params)
        except ValidationError as exc:
            refused = {error["loc"][0] for error in exc.errors() if error["loc"]}
            retyped = dict(params)
            changed = False
            for key in refused:
                text = retyped.get(key)
                if isinstance(text, list):
                    items = [_json_scalar(item) for item in text]
                    if any(a is not b for a, b in zip(items, text, strict=True)):
                        retyped[key] = items
                        changed = True
                elif text is not None and _json_scalar(text) is not text:
                    retyped[key] = _json_scalar(text)
                    changed = True
            if not changed:
                raise
        return validate(retyped)

    return read_query


def _json_scalar(text: Any) -> Any:
    """Return the JSON scalar `text` spells, or `text` itself when it spells none."""
    if not isinstance(text, str):
        return text
    if text in _JSON_LITERALS:
        return _JSON_LITERALS[text]
    if _JSON_NUMBER.fullmatch(text):
        if "." in text or "e" in text or "E" in text:
            number = float(text)
            # 1e999 is no finite number: left as text, it is refused as JSON refuses it.
            return number if number not in (float("inf"), float("-inf")) else text
        return int(text)
    return text
