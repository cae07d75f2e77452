"""The demo's page: served from package data, and its committed bundle is fresh.

`src/tether/demo/static/app.js` must be what `node web/build.mjs` builds today from `web/src/`
and the client `tether generate` writes for the demo app today (`web/src/api/`, not
committed): a commit that changes the app, the generator, the runtime or the page without
rebuilding (`make demo-web`) fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import httpx
import pytest

import tether.demo.app as todo
from tests.conftest import LiveServer

# Most of these tests run Node (tsc, esbuild, the examples) or Chromium.
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
STATIC = ROOT / "src" / "tether" / "demo" / "static"


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by its relative path, with its bytes."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def node() -> str:
    found = shutil.which("node")
    assert found is not None, "node is missing"
    assert (WEB / "node_modules" / "esbuild").exists(), "run `npm install` in web/ (make does)"
    return found


def test_the_page_and_its_script_are_served(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server(todo.create_app(tmp_path / "todo.db"))
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<div id="root">' in page.text
        assert '<script type="module" src="/app.js"></script>' in page.text
        script = client.get("/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "no-cache"
    # The bundle shipped in the package, byte for byte (the wheel carries static/).
    shipped = resources.files("tether.demo").joinpath("static", "app.js").read_bytes()
    assert script.content == shipped
    assert script.content == (STATIC / "app.js").read_bytes()
    # Built from the generated client: its runtime's error class and the page's test ids.
    assert b"TetherError" in script.content
    assert b"clear-done" in script.content


@pytest.fixture(scope="module")
def fresh_web(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """web/ as `make demo-web` leaves it, in a temporary folder: the page's sources, the client
    `tether generate` writes for the demo app today, and web's node_modules (linked)."""
    node()
    work = tmp_path_factory.mktemp("web")
    shutil.copytree(WEB / "src", work / "src", ignore=shutil.ignore_patterns("api"))
    for name in ("build.mjs", "tsconfig.json", "package.json"):
        shutil.copy2(WEB / name, work / name)
    (work / "node_modules").symlink_to(WEB / "node_modules", target_is_directory=True)
    tether = Path(sys.executable).with_name("tether")
    out = work / "src" / "api"
    completed = subprocess.run(
        [str(tether), "generate", "--app", "tether.demo.app:app", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert (out / "react.ts").is_file()
    assert (out / "runtime" / "cache.ts").is_file()
    return work


def test_the_committed_bundle_is_fresh(fresh_web: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [node(), str(fresh_web / "build.mjs"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert sorted(tree(tmp_path)) == ["app.js"]
    fresh = (tmp_path / "app.js").read_bytes()
    committed = (STATIC / "app.js").read_bytes()
    assert fresh == committed, (
        "src/tether/demo/static/app.js is stale (run `make demo-web`):"
        f" a fresh build has {len(fresh)} bytes, the committed one {len(committed)}"
    )
    assert sorted(tree(STATIC)) == ["app.js"]


def test_the_page_type_checks(fresh_web: Path) -> None:
    # esbuild strips types without checking them: tsc --strict checks the page against the
    # client generated today (a renamed operation or field fails here).
    tsc = WEB / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run `npm install` in web/ (make does)"
    completed = subprocess.run(
        [str(tsc), "-p", str(fresh_web / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
