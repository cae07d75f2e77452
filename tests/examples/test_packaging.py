"""What the README's install step gives a user: an importable package and working commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_console_scripts_load() -> None:
    # pyproject.toml declares `tether = "tether.cli:main"`; `pip install` creates the command.
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.value.startswith("tether")]
    assert scripts, "no console script of tether is installed"
    for script in scripts:
        assert callable(script.load()), script.value


def test_tether_schema_command_loads_an_app_from_the_current_directory(tmp_path: Path) -> None:
    # The usage src/tether/cli.py documents, run as a user would: the installed command, from
    # the project's root, naming an app in the project (as `uvicorn examples.conformance.app:app`
    # can).
    command = Path(sys.executable).with_name("tether")
    completed = subprocess.run(
        [str(command), "schema", "openapi", "--app", "examples.conformance.app:app"],
        cwd=ROOT,
        env={**os.environ, "TODO_DB": str(tmp_path / "todo.db"), "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "/api/call/add" in json.loads(completed.stdout)["paths"]


def test_tether_demo_command_serves_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    # Run from an empty directory with no PYTHONPATH: the demo ships inside the package.
    port = free_port()
    command = Path(sys.executable).with_name("tether")
    process = subprocess.Popen(
        [str(command), "demo", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "TODO_DB": str(tmp_path / "todo.db"), "PYTHONPATH": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        response: httpx.Response | None = None
        while response is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/call/list_todos")
            except httpx.ConnectError:
                if process.poll() is not None:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise AssertionError(f"tether demo exited:\n{stderr[-2000:]}") from None
                assert time.monotonic() < deadline, "tether demo did not start"
                time.sleep(0.1)
        assert response.json() == {"result": []}
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def test_the_core_never_imports_the_server() -> None:
    # uvicorn comes with the `server` extra only: importing tether and mounting it must not
    # need it (tether.server, the one module that imports it, is imported on demand).
    code = (
        "import sys; from fastapi import FastAPI; import tether, tether.cli;"
        " tether.Tether().mount(FastAPI());"
        " print(sorted(m for m in sys.modules if m == 'tether.server' or m.startswith('uvicorn')))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]"
