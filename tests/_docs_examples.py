"""Loading the docs' example files (examples/docs/*.py) in tests, each run afresh."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx

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
