"""The docs cannot drift from the code they show.

- Every ```python block in docs/*.md (and README.md) whose first line is
  `# file: examples/docs/<name>.py` equals that file, byte for byte. Every such file is shown
  by a page and loaded by a test (the core pages' files by tests/examples/test_docs_examples.py).
- The pages owned by the core docs show no Python that is not such a file.
- docs/errors.md holds the exact table of tether.errors.BUILTIN_ERRORS.
"""

from __future__ import annotations

import importlib
import inspect
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
    "docs/cli.md",
    "docs/configuration.md",
    "docs/deployment.md",
    "docs/from-fastapi-jsonrpc.md",
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


def _option_defaults(page: str, heading: str) -> dict[str, str]:
    """The `| `option` | default | ...` rows of the table under `heading` in a docs page."""
    text = (ROOT / page).read_text(encoding="utf-8")
    after = re.sub(r"^```.*?^```$", "", text.split(f"{heading}\n", 1)[1], flags=re.M | re.S)
    section = re.split(r"^#{1,3} ", after, maxsplit=1, flags=re.MULTILINE)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def _shown(value: object) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


# Parameters left out of the tables: each only raises, naming its replacement.
_GONE = {"batch_dependencies": "JsonRpcTransport", "guards": "WebSocketTransport"}


@pytest.mark.parametrize(
    ("heading", "cls"),
    [
        ("## `Tether(...)`", "tether:Tether"),
        ("### `JsonRpcTransport(...)`", "tether.transports.jsonrpc:JsonRpcTransport"),
        ("### `SseTransport(...)`", "tether.transports.sse:SseTransport"),
        ("### `WebSocketTransport(...)`", "tether.transports.websocket:WebSocketTransport"),
    ],
)
def test_configuration_page_shows_every_option_with_its_default(heading: str, cls: str) -> None:
    module_name, _, name = cls.partition(":")
    target = getattr(importlib.import_module(module_name), name)
    table = _option_defaults("docs/configuration.md", heading)
    parameters = {
        p.name: p.default
        for p in inspect.signature(target).parameters.values()
        if _GONE.get(p.name) != name
    }
    assert set(table) == set(parameters), f"{heading}: options missing from, or extra in, the table"
    for option, default in parameters.items():
        assert table[option].startswith(_shown(default)), f"{heading}: {option} is {default!r}"


def test_configuration_page_shows_every_operation_option() -> None:
    from tether.operation import OperationOptions

    table = _option_defaults("docs/configuration.md", "## Operation options")
    assert set(table) == set(OperationOptions.__annotations__)


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    from tether.cli import main

    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_cli_page_shows_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    match = re.search(r"\{([a-z,]+)\}", _help(capsys))
    assert match is not None
    commands = match.group(1).split(",")
    assert len(commands) >= 3
    for command in commands:
        section = page.split(f"## `tether {command}`\n", 1)
        assert len(section) == 2, f"docs/cli.md has no section for `tether {command}`"
        options = set(re.findall(r"--[a-z-]+", _help(capsys, command))) - {"--help"}
        body = section[1].split("\n## ", 1)[0]
        missing = {option for option in options if f"`{option}" not in body}
        assert missing == set(), f"tether {command}: options its section does not show"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_index_lists_every_page() -> None:
    # docs/index.md is the table of contents: it links every page of docs/, once.
    index = DOCS / "index.md"
    targets = [
        (DOCS / target.split("#", 1)[0]).resolve()
        for target in LINK.findall(index.read_text(encoding="utf-8"))
        if target.endswith(".md") or ".md#" in target
    ]
    pages = {page.resolve() for page in DOCS.rglob("*.md")} - {index.resolve()}
    assert pages - set(targets) == set(), "pages that docs/index.md does not list"
    assert len(targets) == len(set(targets)), "pages docs/index.md lists twice"


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
