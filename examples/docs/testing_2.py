# file: examples/docs/testing_2.py
import pytest

from examples.docs.testing_1 import create_api
from tether import BadRequest, ValidationFailed


async def test_divide() -> None:
    api = create_api()
    assert await api.call("divide", {"a": 1, "b": 4}) == 0.25


async def test_errors_are_raised() -> None:
    api = create_api()
    with pytest.raises(BadRequest) as caught:
        await api.call("divide", {"a": 1, "b": 0})
    assert caught.value.details == {"b": 0.0}
    with pytest.raises(ValidationFailed) as invalid:
        await api.call("divide", {"a": "one", "b": 2})
    assert [field.loc for field in invalid.value.details] == [["a"]]
