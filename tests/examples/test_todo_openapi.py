"""The demo app's OpenAPI document, diffed against a checked-in snapshot.

A change to how tether documents operations shows up here as a readable diff. When the
change is intended, regenerate the snapshot and review it in the commit:

    TETHER_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/examples/test_todo_openapi.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import httpx

from tether.demo.app import create_app

SNAPSHOT = Path(__file__).parent / "snapshots" / "todo_openapi.json"


def render(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def test_openapi_matches_snapshot(tmp_path: Path) -> None:
    app = create_app(tmp_path / "todo.db")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://testserver"
    ) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    current = render(response.json())
    if os.environ.get("TETHER_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                current.splitlines(keepends=True),
                fromfile=f"{SNAPSHOT.name} (snapshot)",
                tofile="/openapi.json (now)",
            )
        )
        raise AssertionError(
            "the demo app's OpenAPI changed; if intended, regenerate with"
            f" TETHER_UPDATE_SNAPSHOTS=1:\n{diff}"
        )


def test_openapi_documents_no_fastapi_validation_error(tmp_path: Path) -> None:
    """tether never answers FastAPI's 422 `HTTPValidationError` shape, so none is documented."""
    app = create_app(tmp_path / "todo.db")
    document = app.openapi()
    leaks = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "HTTPValidationError" in json.dumps(operation.get("responses", {}))
    ]
    assert leaks == []
    assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})
