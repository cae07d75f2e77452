from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_schema_tether_prints_schema_json(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from tether.schema.document import schema_json

    assert main(["schema", "tether", "--app", "examples.conformance.app:app"]) == 0
    printed = capsysbinary.readouterr().out
    app = load_app("examples.conformance.app:app")
    assert printed == schema_json(find_tether(app), app)
    assert {"add", "subtract", "echo"} <= set(json.loads(printed)["operations"])


def test_the_installed_command_runs() -> None:
    # The console script pyproject.toml declares, run as a user would.
    completed = subprocess.run(
        [sys.executable, "-m", "tether.cli", "schema", "openrpc", "--app", "tether.demo.app:app"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(completed.stdout)["methods"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tether.demo.app", "module:attribute"),
        ("no_such_module_here:app", "cannot import"),
        ("tether.demo.app:nothing", "is not a FastAPI app"),
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


def test_find_tether_looks_inside_mounted_apps() -> None:
    api = Tether()
    inner = FastAPI()
    api.mount(inner)
    outer = FastAPI()
    outer.mount("/v1", inner)
    assert find_tether(outer) is api


plain_app = FastAPI()
"""An app without tether, for `tether serve`."""


def test_serve_refuses_an_app_without_tether() -> None:
    with pytest.raises(SystemExit, match="no Tether is mounted"):
        main(["serve", "tests.test_cli:plain_app"])


@pytest.mark.parametrize("grace", ["-1", "soon", "nan"])
def test_serve_refuses_a_grace_that_is_not_seconds(
    grace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "examples.conformance.app:app", "--grace", grace])
    assert exited.value.code == 2
    assert f"a number of seconds (0 or more), not {grace!r}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["serve", "examples.conformance.app:app"], ["demo"]])
def test_without_uvicorn_the_hint_names_the_checkouts_extra(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As if the server extra were not installed: importing tether.server fails.
    monkeypatch.setitem(sys.modules, "tether.server", None)
    assert main(command) == 1
    hint = capsys.readouterr().err
    assert "pip install -e '.[server]'" in hint
    # tether is not published on a package index: no hint may send users to one.
    assert "tether[server]" not in hint


# -- tether generate (the generator itself: tests/codegen/) ---------------------------------
# -- the CLI -----------------------------------------------------------------------------


def test_cli_generate_writes_the_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "api"

    def generate(*options: str) -> int:
        return main(["generate", "--app", "tether.demo.app:app", "--out", str(out), *options])

    assert generate("--camel-case") == 0
    assert f"wrote {out / 'api.ts'}" in capsys.readouterr().out
    assert (out / "react.ts").exists()
    assert not (out / "tanstack.ts").exists()
    assert generate("--no-react", "--tanstack") == 0
    assert (out / "tanstack.ts").exists()
    assert not (out / "react.ts").exists()
    assert generate("--no-react", "--tanstack") == 0
    assert "up to date" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tether.demo.app", "module:attribute"),
        ("no_such_module_here:app", "cannot import"),
        ("tether.demo.app:nothing", "is not a FastAPI app"),
        ("tests.test_cli:plain_app", "no Tether is mounted"),
    ],
)
def test_cli_generate_explains_a_bad_app(target: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["generate", "--app", target, "--out", str(tmp_path / "api")])
    assert not (tmp_path / "api").exists()


def test_cli_generate_refuses_a_file_as_out_and_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "api.ts"
    out.write_text("")
    with pytest.raises(SystemExit, match="is a file"):
        main(["generate", "--app", "tether.demo.app:app", "--out", str(out)])
    folder = tmp_path / "api"
    folder.mkdir()
    (folder / "index.ts").write_text("export {};\n")
    with pytest.raises(SystemExit, match="tether did not write it"):
        main(["generate", "--app", "tether.demo.app:app", "--out", str(folder)])


def test_cli_generate_needs_app_and_out(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["generate", "--app", "tether.demo.app:app"])
    assert exited.value.code == 2
    assert "--out" in capsys.readouterr().err
