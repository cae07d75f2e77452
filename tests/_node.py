"""Node, tsc and Debian's Chromium for the tests that run them (the generated client, browsers).

Each helper fails (never skips) when what it needs is missing, and says how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_CLIENT = ROOT / "tests" / "node_client"
"""The runtime's vitest suite, with tsc and the client's npm packages."""
NODE_BROWSER = ROOT / "tests" / "node_browser"
"""playwright-core and the scripts that drive Chromium (chromium.mjs launches it)."""
TSC = NODE_CLIENT / "node_modules" / ".bin" / "tsc"
CHROMIUM = Path("/usr/bin/chromium")


def node() -> str:
    """The path of `node`."""
    found = shutil.which("node")
    assert found is not None, "node is missing"
    return found


def require_browser() -> None:
    """Debian's Chromium and tests/node_browser's playwright-core are installed."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it"
    assert (NODE_BROWSER / "node_modules" / "playwright-core").exists(), (
        "run `npm install` in tests/node_browser (make test does)"
    )


def run_node(
    script: Path,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `node script args...` (with `env` added to the environment); it must exit 0."""
    completed = subprocess.run(
        [node(), str(script), *args],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def tsc(tsconfig: Path) -> None:
    """Run tests/node_client's tsc on the project `tsconfig` (in its folder); it must pass."""
    node()
    assert TSC.exists(), "run `npm install` in tests/node_client (make test does)"
    completed = subprocess.run(
        [str(TSC), "-p", str(tsconfig)],
        cwd=tsconfig.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def files_of(folder: Path) -> dict[str, bytes]:
    """The files below `folder` (a generated client), by relative POSIX path: their bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
