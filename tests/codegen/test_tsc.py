"""tsc type-checks the generated client: the demo's and a fidelity app's, every variant.

One temporary project holds every generated variant plus `ts/usage.ts` (correct uses: must
pass) and `ts/mistakes.ts` (each line marked `// @expect TSxxxx` must fail with exactly that
code, and nothing else may fail), checked twice: `moduleResolution` bundler and nodenext,
with `strict`, `noUncheckedIndexedAccess` and `exactOptionalPropertyTypes`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tether.cli import find_tether, load_app
from tether.codegen import generate
from tether.schema.document import schema_document

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "tests" / "node_client"
TSC = NODE_CLIENT / "node_modules" / ".bin" / "tsc"
FIXTURES = Path(__file__).parent / "ts"
ERROR = re.compile(r"^(?P<file>[^(\n]+)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): ")
EXPECT = re.compile(r"// @expect ((?:TS\d+ ?)+)")

VARIANTS: dict[str, tuple[str, dict[str, bool]]] = {
    "demo": ("tether.demo.app:app", {"tanstack": True}),
    "plain": ("tether.demo.app:app", {"react": False, "tanstack": True}),
    "fidelity": ("tests.codegen.fidelity_app:app", {"tanstack": True}),
    "camel": ("tests.codegen.fidelity_app:app", {"camel_case": True, "tanstack": True}),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tsc")
    (root / "package.json").write_text('{"type": "module"}\n')
    # The project's own node_modules: react, @tanstack/react-query and their types.
    (root / "node_modules").symlink_to(NODE_CLIENT / "node_modules", target_is_directory=True)
    for fixture in FIXTURES.iterdir():
        shutil.copy(fixture, root / fixture.name)
    documents = {}
    for name, (target, options) in VARIANTS.items():
        if target not in documents:
            app = load_app(target)
            documents[target] = schema_document(find_tether(app), app)
        generate(documents[target], root / "gen" / name, **options)
    return root


def expected_errors() -> Counter[tuple[int, str]]:
    expected: Counter[tuple[int, str]] = Counter()
    lines = (FIXTURES / "mistakes.ts").read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        found = EXPECT.search(line)
        if found:
            expected.update((number, code) for code in found.group(1).split())
    return expected


@pytest.mark.parametrize("resolution", ["bundler", "nodenext"])
def test_generated_clients_type_check_and_mistakes_fail_as_expected(
    project: Path, resolution: str
) -> None:
    completed = subprocess.run(
        [str(TSC), "-p", f"tsconfig.{resolution}.json", "--pretty", "false"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [ERROR.match(line) for line in completed.stdout.splitlines()]
    unparsed = [
        line
        for line, m in zip(completed.stdout.splitlines(), errors, strict=True)
        if not m and not line.startswith(" ")
    ]
    assert not unparsed, completed.stdout
    found: Counter[tuple[int, str]] = Counter()
    elsewhere = []
    for match in errors:
        if match is None:
            continue
        if match["file"] == "mistakes.ts":
            found[(int(match["line"]), match["code"])] += 1
        else:
            elsewhere.append(match.string)
    # The generated files, the runtime and usage.ts: no error at all.
    assert elsewhere == [], "\n".join(elsewhere)
    expected = expected_errors()
    assert len(expected) >= 15
    assert found == expected, (
        f"missing: {sorted(expected - found)}\nunexpected: {sorted(found - expected)}\n"
        + completed.stdout
    )
    assert completed.returncode != 0  # the mistakes fail the run


def test_the_project_holds_every_variant(project: Path) -> None:
    assert (project / "gen" / "demo" / "tanstack.ts").is_file()
    assert not (project / "gen" / "plain" / "react.ts").exists()
    assert not (project / "gen" / "plain" / "runtime" / "react.ts").exists()
    assert (project / "gen" / "camel" / "runtime" / "tanstack.ts").is_file()
    usage = (FIXTURES / "usage.ts").read_text()
    for name in VARIANTS:
        assert f'"./gen/{name}/' in usage, name
