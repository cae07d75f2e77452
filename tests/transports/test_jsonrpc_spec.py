"""Every example of the JSON-RPC 2.0 specification's "Examples" section, verbatim.

The request bytes are sent exactly as the specification writes them (spaces, newlines and
all) to the conformance app on a real uvicorn server; each response must equal the
specification's expected response exactly. Batch responses come back in request order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from examples.conformance.app import create_app

from tests.conftest import serve

# (name, request as the specification writes it, expected response; None = no response)
SPEC_EXAMPLES: list[tuple[str, str, object]] = [
    (
        "positional params 1",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
    (
        "positional params 2",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
    ),
    (
        "named params 1",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    (
        "named params 2",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    (
        "notification 1",
        '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}',
        None,
    ),
    (
        "notification 2",
        '{"jsonrpc": "2.0", "method": "foobar"}',
        None,
    ),
    (
        "non-existent method",
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"},
    ),
    (
        "invalid JSON",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        "invalid Request object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        "batch, invalid JSON",
        """[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]""",
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        "empty Array",
        "[]",
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        "invalid Batch (but not empty)",
        "[1]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}],
    ),
    (
        "invalid Batch",
        "[1,2,3]",
        [
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
        ],
    ),
    (
        "Batch",
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    (
        "Batch (all notifications)",
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
        None,
    ),
]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One real server for the module: the conformance app keeps no state between calls."""
    with serve(create_app()) as server, httpx.Client(base_url=server.url) as http:
        yield http


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in SPEC_EXAMPLES],
)
def test_specification_example(client: httpx.Client, request_text: str, expected: object) -> None:
    response = client.post(
        "/api/jsonrpc",
        content=request_text.encode(),
        headers={"content-type": "application/json"},
    )
    if expected is None:
        # "Nothing is returned": no body at all, HTTP 204.
        assert response.status_code == 204
        assert response.content == b""
    else:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.content) == expected


def test_the_examples_cover_every_case_the_issue_lists() -> None:
    names = {name for name, _, _ in SPEC_EXAMPLES}
    assert len(SPEC_EXAMPLES) == 15
    assert {
        "positional params 1",
        "named params 1",
        "notification 1",
        "non-existent method",
        "invalid JSON",
        "invalid Request object",
        "batch, invalid JSON",
        "empty Array",
        "invalid Batch (but not empty)",
        "invalid Batch",
        "Batch",
        "Batch (all notifications)",
    } <= names
