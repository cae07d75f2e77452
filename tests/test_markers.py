"""`pytest -m "not e2e"` needs no real server's extras: no Node, no browser.

Every test module under tests/e2e/ carries the `e2e` marker, and so does every other test
module that starts Node or a browser.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MARKED = re.compile(r"^pytestmark = pytest\.mark\.e2e$", re.MULTILINE)
# How a test starts them: `subprocess.run(["node", script, ...])`, Chromium's binary or
# playwright (which tests/node_browser/ drives through node).
NEEDS_NODE_OR_BROWSER = re.compile(r'\[\s*"node"\s*,|which\("node"\)|chromium|playwright')


def test_every_end_to_end_module_is_marked() -> None:
    modules = sorted((TESTS / "e2e").glob("test_*.py"))
    assert len(modules) >= 10
    unmarked = [p.name for p in modules if not MARKED.search(p.read_text(encoding="utf-8"))]
    assert unmarked == []


def test_every_module_that_runs_node_or_a_browser_is_marked() -> None:
    unmarked = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if "node_modules" not in path.parts
        and path != Path(__file__).resolve()
        and NEEDS_NODE_OR_BROWSER.search(text := path.read_text(encoding="utf-8"))
        and not MARKED.search(text)
    ]
    assert unmarked == []
