"""The docs cannot drift from the code they show.

- Every ```python block in docs/*.md (and README.md) whose first line is
  `# file: examples/docs/<name>.py` equals that file, byte for byte. Every such file is shown
  by a page and loaded by a test (the core pages' files by tests/examples/test_docs_examples.py).
- The pages owned by the core docs show no Python that is not such a file.
- docs/errors.md holds the exact table of tether.errors.BUILTIN_ERRORS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether.errors import BUILTIN_ERRORS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples" / "docs"
PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
CORE_PAGES = [
    "README.md",
    "docs/index.md",
    "docs/quickstart.md",
    "docs/operations.md",
    "docs/transports/http.md",
    "docs/dependencies.md",
    "docs/auth.md",
    "docs/errors.md",
    "docs/testing.md",
]
MARKER = re.compile(r"# file: (examples/docs/[A-Za-z0-9_]+\.py)")
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def included_file(block: str) -> str | None:
    match = MARKER.fullmatch(block.split("\n", 1)[0])
    return match.group(1) if match else None


def error_table_rows() -> list[str]:
    """The rows of the built-in error table, as docs/errors.md must show them."""
    rows = []
    for cls in BUILTIN_ERRORS:
        meaning = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append(
            f"| `{cls.__name__}` | `{cls.code}` | {cls.status} | {cls.jsonrpc_code} | {meaning} |"
        )
    return rows


def error_table() -> str:
    header = [
        "| class | code | HTTP status | JSON-RPC code | meaning |",
        "|---|---|---|---|---|",
    ]
    return "\n".join([*header, *error_table_rows()]) + "\n"


def test_pages_exist() -> None:
    for page in CORE_PAGES:
        assert (ROOT / page).is_file(), page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_included_examples_match_their_files(page: Path) -> None:
    for block in python_blocks(page):
        path = included_file(block)
        if path is None:
            continue
        expected = (ROOT / path).read_text(encoding="utf-8")
        assert block == expected, f"{page.relative_to(ROOT)}: the block for {path} differs from it"


@pytest.mark.parametrize("page", CORE_PAGES)
def test_core_pages_show_only_tested_python(page: str) -> None:
    blocks = python_blocks(ROOT / page)
    untested = [block.split("\n", 1)[0] for block in blocks if included_file(block) is None]
    assert untested == [], f"{page}: python blocks without a `# file: examples/docs/...` line"


def example_files() -> set[str]:
    return {f"examples/docs/{p.name}" for p in EXAMPLES.glob("*.py") if p.name != "__init__.py"}


def test_every_example_is_shown() -> None:
    shown = {
        path
        for page in PAGES
        for block in python_blocks(page)
        if (path := included_file(block)) is not None
    }
    assert example_files() - shown == set(), "example files that no page shows"


def test_every_example_is_tested() -> None:
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))
    untested = {
        f
        for f in example_files()
        if f'"{Path(f).stem}"' not in tests and f"examples.docs.{Path(f).stem}" not in tests
    }
    assert untested == set(), "example files that no test under tests/ loads or imports"


def test_every_example_names_its_own_file() -> None:
    for path in EXAMPLES.glob("*.py"):
        if path.name == "__init__.py":
            continue
        first_line = path.read_text(encoding="utf-8").split("\n", 1)[0]
        assert first_line == f"# file: examples/docs/{path.name}"


def test_errors_page_has_the_builtin_error_table() -> None:
    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    assert error_table() in page, (
        "docs/errors.md is out of date with tether.errors.BUILTIN_ERRORS; the table must read:\n"
        + error_table()
    )
    assert len(error_table_rows()) == len(BUILTIN_ERRORS) >= 8


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", CORE_PAGES)
def test_relative_links_resolve(page: str) -> None:
    path = ROOT / page
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "#")):
            continue
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert broken == [], f"{page}: links to missing files"
