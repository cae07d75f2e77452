"""Strict input validation (tether._strict), operation by operation, without a server."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from tether import Tether, ValidationFailed
from tether.operation import Operation


class Color(enum.Enum):
    RED = "r"
    ONE = 1


class Point(BaseModel):
    x: int
    y: int


def operation(strict: bool) -> Operation:
    api = Tether(strict=strict)

    @api.query
    async def kinds(
        n: int | None = None,
        f: float | None = None,
        flag: bool | None = None,
        text: str | None = None,
        day: datetime.date | None = None,
        at: datetime.time | None = None,
        span: datetime.timedelta | None = None,
        id: uuid.UUID | None = None,
        amount: decimal.Decimal | None = None,
        color: Color | None = None,
        many: list[int] | None = None,
    ) -> None:
        return None

    return api.get("kinds")


def refused(op: Operation, params: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationFailed) as caught:
        op.bind(params)
    return [entry.loc for entry in caught.value.details]


UUID = "12345678-1234-5678-1234-567812345678"


def test_json_native_types_must_arrive_as_themselves() -> None:
    op = operation(strict=True)
    assert refused(op, {"n": True}) == [["n"]]
    assert refused(op, {"n": "1"}) == [["n"]]
    assert refused(op, {"n": 1.5}) == [["n"]]
    assert refused(op, {"flag": 1}) == [["flag"]]
    assert refused(op, {"text": 1}) == [["text"]]
    assert refused(op, {"f": "1.5"}) == [["f"]]
    assert refused(op, {"many": [1, True]}) == [["many", 1]]
    # A number without a fraction is an integer, as JSON Schema says; an integer a number.
    assert op.bind({"n": 2.0, "f": 1})["n"] == 2
    assert op.bind({"f": 1})["f"] == 1.0


def test_types_json_cannot_carry_parse_from_their_json_form() -> None:
    op = operation(strict=True)
    values = op.bind(
        {
            "day": "2024-05-01",
            "at": "12:30:00",
            "span": "PT1S",
            "id": UUID,
            "amount": "1.50",
            "color": "r",
        }
    )
    assert values["day"] == datetime.date(2024, 5, 1)
    assert values["at"] == datetime.time(12, 30)
    assert values["span"] == datetime.timedelta(seconds=1)
    assert values["id"] == uuid.UUID(UUID)
    assert values["amount"] == decimal.Decimal("1.50")
    assert values["color"] is Color.RED
    assert op.bind({"color": 1, "amount": 2.5})["color"] is Color.ONE
    # No number is a date, a time or a duration in strict mode (lax mode reads them).
    for name in ("day", "at", "span"):
        assert refused(op, {name: 0}) == [[name]]
        assert operation(strict=False).bind({name: 0})[name] is not None


def test_nested_models_are_strict_too() -> None:
    api = Tether(strict=True)

    @api.command
    async def move(to: Point) -> None:
        return None

    op = api.get("move")
    assert op.bind({"to": {"x": 1, "y": 2}})["to"] == Point(x=1, y=2)
    assert refused(op, {"to": {"x": "1", "y": 2}}) == [["to", "x"]]
    # The model's own validation stays lax: only the operation's input is strict.
    assert Point.model_validate({"x": "1", "y": 2}) == Point(x=1, y=2)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([("n", "1")], {"n": 1}),
        ([("n", "-20")], {"n": -20}),
        ([("n", "null")], {"n": None}),
        ([("f", "2.5e3")], {"f": 2500.0}),
        ([("flag", "false")], {"flag": False}),
        ([("text", "123")], {"text": "123"}),
        ([("text", "true")], {"text": "true"}),
        ([("day", "2024-05-01")], {"day": datetime.date(2024, 5, 1)}),
        ([("color", "1")], {"color": Color.ONE}),
        ([("color", "r")], {"color": Color.RED}),
        ([("many", "1"), ("many", "2")], {"many": [1, 2]}),
    ],
)
def test_strict_get_reads_text_then_the_json_it_spells(
    query: list[tuple[str, str]], expected: dict[str, Any]
) -> None:
    op = operation(strict=True)
    values = op.bind(op.params_from_query(query))
    assert {key: values[key] for key in expected} == expected


@pytest.mark.parametrize(
    "query",
    [
        [("n", "true")],
        [("n", "True")],
        [("n", "1.5")],
        [("flag", "1")],
        [("flag", "True")],
        [("f", "1e999")],
        [("f", "nan")],
        [("many", "1"), ("many", "x")],
        [("nothing", "1")],
    ],
)
def test_strict_get_refuses_what_post_refuses(query: list[tuple[str, str]]) -> None:
    op = operation(strict=True)
    with pytest.raises(ValidationFailed):
        op.bind(op.params_from_query(query))


def test_lax_get_is_plain_pydantic_coercion() -> None:
    op = operation(strict=False)
    values = op.bind(op.params_from_query([("n", "1"), ("flag", "True"), ("f", "2")]))
    assert (values["n"], values["flag"], values["f"]) == (1, True, 2.0)
    assert type(op.params_from_query([("n", "1")])) is dict


def test_strict_option_is_checked() -> None:
    api = Tether()
    with pytest.raises(Exception, match="strict= takes True, False or None"):
        api.query(strict="yes")  # type: ignore[arg-type]


def test_in_process_values_of_the_declared_type_pass() -> None:
    op = operation(strict=True)
    values = op.bind(
        {"day": datetime.date(2024, 5, 1), "id": uuid.UUID(UUID), "color": Color.RED, "n": 2**70}
    )
    assert values["day"] == datetime.date(2024, 5, 1)
    assert values["id"] == uuid.UUID(UUID)
    assert values["color"] is Color.RED
    assert values["n"] == 2**70
    # A value JSON cannot carry is refused, not a server error.
    with pytest.raises(ValidationFailed) as caught:
        op.bind({"text": object()})
    assert caught.value.details[0].type == "json_invalid"


class Event(BaseModel):
    at: datetime.datetime
    count: int


def test_nested_models_read_json_forms_strictly() -> None:
    api = Tether(strict=True)

    @api.command
    async def record(event: Event) -> None:
        return None

    op = api.get("record")
    event = op.bind({"event": {"at": "2024-05-01T00:00:00", "count": 1}})["event"]
    assert event == Event(at=datetime.datetime(2024, 5, 1), count=1)
    assert refused(op, {"event": {"at": 0, "count": 1}}) == [["event", "at"]]
    assert refused(op, {"event": {"at": "2024-05-01T00:00:00", "count": True}}) == [
        ["event", "count"]
    ]
