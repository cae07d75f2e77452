from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi import FastAPI

from tether import Tether
from tether.cli import find_tether, load_app, main


def test_schema_openapi_lists_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "openapi", "--app", "examples.conformance.app:app"]) == 0
    document = json.loads(capsys.readouterr().out)
    operation_ids = {
        operation["operationId"]
        for path in document["paths"].values()
        for operation in path.values()
    }
    assert {"add", "whoami", "admin_stats", "fail"} <= operation_ids


def test_schema_openrpc_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "openrpc", "--app", "examples.conformance.app:app"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["openrpc"].startswith("1.")
    assert {"add", "subtract", "echo"} <= {method["name"] for method in document["methods"]}


def test_the_installed_command_runs() -> None:
    # The console script pyproject.toml declares, run as a user would.
    completed = subprocess.run(
        [sys.executable, "-m", "tether.cli", "schema", "openrpc", "--app", "examples.todo.app:app"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(completed.stdout)["methods"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("examples.todo.app", "module:attribute"),
        ("no_such_module_here:app", "cannot import"),
        ("examples.todo.app:nothing", "is not a FastAPI app"),
    ],
)
def test_bad_app_targets_explain_themselves(target: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        load_app(target)


def test_an_app_without_tether_is_refused() -> None:
    with pytest.raises(SystemExit, match="no Tether is mounted"):
        find_tether(FastAPI())


def test_find_tether_returns_the_mounted_api() -> None:
    api = Tether()
    app = FastAPI()
    api.mount(app)
    assert find_tether(app) is api
