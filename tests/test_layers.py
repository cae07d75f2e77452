"""The import contracts in pyproject.toml hold, and each one catches the import it forbids."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with the project's contracts over the `tether` package in `src`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        env={**os.environ, "PYTHONPATH": str(src)},
        cwd=src,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


BREAKAGES = {
    "core imports a transport for typing": (
        "registry.py",
        "\nif TYPE_CHECKING:\n    from .transports.http import HttpTransport\n",
        "tether.registry is not allowed to import tether.transports",
    ),
    "core imports schema": (
        "invoke.py",
        "\nfrom .schema import openapi\n",
        "tether.invoke is not allowed to import tether.schema",
    ),
    "schema imports a transport": (
        "schema/openrpc.py",
        "\nfrom ..transports import _json_out\n",
        "tether.schema is not allowed to import tether.transports",
    ),
    "a transport imports an entry point": (
        "transports/_body.py",
        "\nfrom ..cli import main\n",
        "tether.transports is not allowed to import tether.cli",
    ),
    "a transport imports another through a private module": (
        "transports/_ws_envelope.py",
        "\nfrom .http import HttpTransport\n",
        "tether.transports.websocket is not allowed to import tether.transports.http",
    ),
    "a module not placed in a layer": (
        "cache.py",
        '"""A new module nobody placed."""\n',
        "tether.cache",
    ),
}


@pytest.mark.parametrize(("module", "added", "reported"), BREAKAGES.values(), ids=BREAKAGES)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, added: str, reported: str
) -> None:
    shutil.copytree(
        ROOT / "src" / "tether",
        tmp_path / "tether",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    target = tmp_path / "tether" / module
    target.write_text((target.read_text() if target.exists() else "") + added)
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert reported in result.stdout
