"""Loading the docs' example files (examples/docs/*.py) in tests, each run afresh."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "docs"
"""The folder of the example files that the docs pages quote."""


def load(name: str) -> ModuleType:
    """Execute examples/docs/<name>.py afresh and register it as `examples.docs.<name>`.

    Module-level state (lists of events, in-memory stores) starts empty on every load.
    """
    module_name = f"examples.docs.{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def client_for(module: ModuleType) -> httpx.AsyncClient:
    """An in-memory HTTP client for the example module's `app`."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(module.app), base_url="http://test")


def serve_example_script(app: FastAPI, script: str) -> FastAPI:
    """`app` with a blank page at `/page` and examples/docs/<script> at `/<script>` (same origin)."""

    @app.get("/page", response_class=HTMLResponse)
    async def page() -> str:
        return f'<!doctype html><meta charset="utf-8"><title>{script}</title>'

    @app.get(f"/{script}")
    async def source() -> Response:
        text = (EXAMPLES / script).read_text(encoding="utf-8")
        return Response(text, media_type="text/javascript")

    return app


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of the Markdown `page` (fenced blocks left out)."""
    text = re.sub(r"^```.*?^```$", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    headings = re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def relative_links(
    pages: Iterable[Path], keep: Callable[[Path, str], bool]
) -> list[tuple[Path, str]]:
    """The relative links of `pages` (not http(s)), as (page, target), that `keep` holds for."""
    return [
        (page, target)
        for page in pages
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8"))
        if not target.startswith(("http://", "https://")) and keep(page, target)
    ]


def assert_links_resolve(links: Iterable[tuple[Path, str]]) -> None:
    """Each (page, target) link reaches a file and, where it names one, a heading there."""
    for page, target in links:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_file(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(resolved), f"{page.name}: {target}"
