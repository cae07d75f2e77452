"""Which tether the benchmark servers import: this checkout's `src/`, or another source tree.

Every bench script takes `--tether-src PATH` (a tree holding `src/tether/`, or a `src/`
folder holding `tether/`). The servers and the in-process measurement then run with
`PYTHONPATH=<that src>`, which Python puts ahead of the editable install of `.venv`, so the
same `.venv` (same FastAPI, uvicorn, peers) measures another version of tether. Without it the
servers import this checkout's `src/`. The record says which tree and revision were measured:
the revision comes from git when the tree is a git work tree, else from a `REVISION` file at
its top (see docs/bench.md for the export command that writes one). `--baseline-src PATH`
adds a second tether, from another tree, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent


def add_option(parser: argparse.ArgumentParser) -> None:
    """Add `--tether-src PATH` to a bench script's options."""
    parser.add_argument(
        "--tether-src",
        type=Path,
        default=None,
        metavar="PATH",
        help="measure the tether of this source tree (a tree with src/tether/, or a src/ folder); "
        "default: this checkout",
    )


def add_baseline_option(parser: argparse.ArgumentParser) -> None:
    """Add `--baseline-src PATH` and `--baseline-label NAME`: a second tether in the same rounds."""
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="PATH",
        help="also measure the tether of this tree, in the same rounds, right after tether's "
        "(for example the commit before a change); the report gives tether's ratio to it",
    )
    parser.add_argument(
        "--baseline-label", default="before", metavar="NAME", help="the baseline's name"
    )


def src_dir(tree: Path | None) -> Path:
    """The folder that holds the `tether` package of `tree` (this checkout's `src/` by default).

    Raises:
        SystemExit: `tree` holds no tether package.
    """
    root = (tree or REPO_DIR).resolve()
    for candidate in (root / "src", root):
        if (candidate / "tether" / "__init__.py").is_file():
            return candidate
    raise SystemExit(f"--tether-src {tree}: no tether package in {root}/src or {root}")


def environment(src: Path) -> dict[str, str]:
    """The environment of a server process that must import tether from `src`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    return env


def revision(src: Path) -> str:
    """The git revision of the tree `src` belongs to (`+dirty` when its src/ has changes)."""
    tree = src.parent if src.name == "src" else src
    marker = tree / "REVISION"
    if marker.is_file():
        return marker.read_text().strip() or "unknown"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tree, capture_output=True, text=True, check=False
        ).stdout.strip()

    if git("rev-parse", "--show-toplevel") != str(tree):
        return f"unknown (no git work tree and no REVISION file at {tree})"
    found = git("rev-parse", "--short", "HEAD") or "unknown"
    return found + ("+dirty" if git("status", "--porcelain", "--", str(src)) else "")


def describe(src: Path) -> dict[str, Any]:
    """Check which tether a server will import from `src`, and describe it for the record.

    Raises:
        SystemExit: the interpreter would import tether from somewhere else.
    """
    probe = subprocess.run(
        [sys.executable, "-c", "import tether; print(tether.__file__)"],
        env=environment(src),
        capture_output=True,
        text=True,
        check=False,
    )
    imported = Path(probe.stdout.strip() or "?").resolve()
    if probe.returncode != 0 or not imported.is_relative_to(src):
        raise SystemExit(
            f"tether from {src} cannot be imported (got {imported}):\n{probe.stderr[-1000:]}"
        )
    return {"src": str(src), "package": str(imported.parent), "revision": revision(src)}
