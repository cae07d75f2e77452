from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import tether
from tests._core_helpers import TRANSPORTS, call_over, mounted
from tether import Tether
from tether.errors import (
    BUILTIN_ERRORS,
    BadRequest,
    ConfigurationError,
    Conflict,
    ErrorEnvelope,
    FieldError,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TetherError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    error_for_code,
    error_for_status,
)


@pytest.mark.parametrize(
    ("cls", "code", "status", "jsonrpc_code"),
    [
        (TetherError, "INTERNAL_ERROR", 500, -32603),
        (InternalError, "INTERNAL_ERROR", 500, -32603),
        (BadRequest, "BAD_REQUEST", 400, -32000),
        (ValidationFailed, "VALIDATION_FAILED", 422, -32602),
        (Unauthorized, "UNAUTHORIZED", 401, -32001),
        (Forbidden, "FORBIDDEN", 403, -32003),
        (NotFound, "NOT_FOUND", 404, -32004),
        (MethodNotAllowed, "METHOD_NOT_ALLOWED", 405, -32005),
        (Conflict, "CONFLICT", 409, -32009),
        (PayloadTooLarge, "PAYLOAD_TOO_LARGE", 413, -32013),
        (UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", 415, -32015),
        (TooManyRequests, "TOO_MANY_REQUESTS", 429, -32029),
    ],
)
def test_builtin_wire_codes(
    cls: type[TetherError], code: str, status: int, jsonrpc_code: int
) -> None:
    assert cls.code == code
    assert cls.status == status
    assert cls.jsonrpc_code == jsonrpc_code
    assert issubclass(cls, TetherError)
    error = cls()
    assert error.to_dict() == {"code": code, "message": cls.message, "details": None}
    assert str(error) == cls.message


def test_builtin_errors_are_unique_and_complete() -> None:
    assert len({cls.code for cls in BUILTIN_ERRORS}) == len(BUILTIN_ERRORS)
    assert len({cls.status for cls in BUILTIN_ERRORS}) == len(BUILTIN_ERRORS)
    exported = {
        getattr(tether, name)
        for name in tether.__all__
        if isinstance(getattr(tether, name), type)
        and issubclass(getattr(tether, name), TetherError)
    }
    assert set(BUILTIN_ERRORS) == exported - {TetherError}


def test_code_names_are_upper_snake_case() -> None:
    for cls in BUILTIN_ERRORS:
        assert cls.code.replace("_", "").isalpha()
        assert cls.code == cls.code.upper()


def test_message_and_details_reach_the_envelope() -> None:
    error = NotFound("no such todo", details={"id": 7})
    assert error.detail_message == "no such todo"
    assert str(error) == "no such todo"
    envelope = {"error": error.to_dict()}
    assert envelope == {
        "error": {"code": "NOT_FOUND", "message": "no such todo", "details": {"id": 7}}
    }
    # The envelope validates against the documented model.
    assert ErrorEnvelope.model_validate(envelope).error.details == {"id": 7}
    assert repr(error) == "NotFound('no such todo', details={'id': 7})"


def test_details_are_dumped_as_json_data() -> None:
    class Point(BaseModel):
        x: int

    error = Conflict(details={"point": Point(x=1), "tags": ("a", "b")})
    assert error.to_dict()["details"] == {"point": {"x": 1}, "tags": ["a", "b"]}


def test_validation_failed_details_list_loc_msg_type() -> None:
    error = ValidationFailed.from_errors(
        [
            {
                "loc": ("body", "a", 0),
                "msg": "Input should be a valid integer",
                "type": "int_parsing",
            },
            {"loc": ("b",), "msg": "Field required", "type": "missing", "input": {}, "ctx": {}},
        ]
    )
    assert error.details == [
        FieldError(loc=["body", "a", 0], msg="Input should be a valid integer", type="int_parsing"),
        FieldError(loc=["b"], msg="Field required", type="missing"),
    ]
    assert error.to_dict() == {
        "code": "VALIDATION_FAILED",
        "message": "Invalid parameters",
        "details": [
            {
                "loc": ["body", "a", 0],
                "msg": "Input should be a valid integer",
                "type": "int_parsing",
            },
            {"loc": ["b"], "msg": "Field required", "type": "missing"},
        ],
    }


def test_validation_failed_fills_missing_keys_and_custom_message() -> None:
    error = ValidationFailed.from_errors([{}], message="bad")
    assert error.detail_message == "bad"
    assert error.to_dict()["details"] == [{"loc": [], "msg": "", "type": "value_error"}]


def test_validation_failed_details_are_validated() -> None:
    with pytest.raises(ValidationError):
        ValidationFailed(details=[{"loc": "not a list"}])
    error = ValidationFailed(details=[{"loc": ["a"], "msg": "m", "type": "t"}])
    assert error.details == [FieldError(loc=["a"], msg="m", type="t")]


class OutOfStockDetails(BaseModel):
    sku: str
    left: int


class OutOfStock(Conflict):
    code = "OUT_OF_STOCK"
    status = 409
    jsonrpc_code = -32050
    message = "Out of stock"
    details_model = OutOfStockDetails


def test_user_subclass_with_custom_code_status_and_details_model() -> None:
    error = OutOfStock(details={"sku": "A1", "left": "0"})
    assert isinstance(error, Conflict)
    assert isinstance(error, TetherError)
    assert error.details == OutOfStockDetails(sku="A1", left=0)
    assert error.to_dict() == {
        "code": "OUT_OF_STOCK",
        "message": "Out of stock",
        "details": {"sku": "A1", "left": 0},
    }
    with pytest.raises(ValidationError):
        OutOfStock(details={"sku": "A1"})


def test_user_subclass_of_base_with_own_status() -> None:
    class Teapot(TetherError):
        code = "TEAPOT"
        status = 418
        message = "I'm a teapot"

    error = Teapot()
    assert (error.code, error.status, error.jsonrpc_code) == ("TEAPOT", 418, -32603)
    assert error.to_dict() == {"code": "TEAPOT", "message": "I'm a teapot", "details": None}


def test_configuration_error_is_a_runtime_error_not_a_wire_error() -> None:
    assert issubclass(ConfigurationError, RuntimeError)
    assert not issubclass(ConfigurationError, TetherError)


@pytest.mark.parametrize("cls", BUILTIN_ERRORS)
def test_error_for_code(cls: type[TetherError]) -> None:
    assert error_for_code(cls.code) is cls


def test_error_for_code_unknown() -> None:
    assert error_for_code("NO_SUCH_CODE") is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (405, MethodNotAllowed),
        (409, Conflict),
        (413, PayloadTooLarge),
        (415, UnsupportedMediaType),
        (422, ValidationFailed),
        (429, TooManyRequests),
    ],
)
def test_error_for_status_maps_builtins(status: int, cls: type[TetherError]) -> None:
    error = error_for_status(status, "why")
    assert type(error) is cls
    assert error.detail_message == "why"


def test_error_for_status_without_builtin_keeps_status() -> None:
    error = error_for_status(418, "teapot", {"k": 1})
    assert error.status == 418
    assert error.code == "HTTP_418"
    assert error.jsonrpc_code == -32000
    assert error.to_dict() == {"code": "HTTP_418", "message": "teapot", "details": {"k": 1}}
    # The class is made once per status.
    assert type(error_for_status(418)) is type(error)
    assert error_for_status(418).detail_message == "HTTP 418"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_for_status_5xx_is_internal(status: int) -> None:
    error = error_for_status(status, "database password is hunter2")
    assert type(error) is InternalError
    # A 5xx detail never reaches the client.
    assert error.to_dict() == {
        "code": "INTERNAL_ERROR",
        "message": "Internal server error",
        "details": None,
    }


def test_errors_are_raisable_and_catchable_as_exceptions() -> None:
    def fail() -> Any:
        raise Forbidden("nope")

    with pytest.raises(TetherError, match="nope") as info:
        fail()
    assert info.value.status == 403


def test_unserializable_details_are_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    error = Conflict("taken", details={"obj": object()})
    with caplog.at_level("ERROR", logger="tether"):
        assert error.to_dict() == {"code": "CONFLICT", "message": "taken", "details": None}
    assert len(caplog.records) == 1
    assert "Conflict('taken')" in caplog.records[0].getMessage()


def test_headers_travel_with_the_error() -> None:
    assert NotFound().headers == {}
    error = Unauthorized(headers={"WWW-Authenticate": "Bearer"})
    assert error.headers == {"WWW-Authenticate": "Bearer"}
    # Headers are not part of the envelope.
    assert error.to_dict() == {
        "code": "UNAUTHORIZED",
        "message": "Authentication required",
        "details": None,
    }
    mapped = error_for_status(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    assert type(mapped) is Unauthorized
    assert mapped.headers == {"WWW-Authenticate": "Bearer"}
    assert error_for_status(503, headers={"Retry-After": "1"}).headers == {}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cls", [*BUILTIN_ERRORS, OutOfStock])
async def test_each_error_leaves_every_path_as_the_same_envelope(
    transport: str, cls: type[TetherError]
) -> None:
    details: Any = {"sku": "A", "left": 0} if cls is OutOfStock else {"k": 1}
    if cls is ValidationFailed:
        details = [{"loc": ["x"], "msg": "bad", "type": "value_error"}]
    api = Tether()

    @api.command
    async def fail() -> None:
        raise cls("custom message", details=details)

    mounted(api)
    status, body = await call_over(transport, api, "fail")
    assert status == cls.status
    assert body == {"error": {"code": cls.code, "message": "custom message", "details": details}}
