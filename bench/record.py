"""A run's record: `bench/results/latest[-kind].json`, and with `--save` a dated file kept in git."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write(
    report: dict[str, Any], *, kind: str = "", label: str = "", save: bool = False
) -> list[str]:
    """Write `report` as latest; with `save`, also as `<date>[-label][-kind].json`, never overwriting.

    `kind` tells the scripts apart ("" for bench/run.py, "ws", "sse"); `label` names what was
    measured (for example "before" and "after"). A dated record that exists gets a serial
    (`-2`, `-3` ...). Returns the paths written, relative to the repository.
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    report = {"kind": kind or "http", **report}
    text = json.dumps(report, indent=2) + "\n"
    suffix = f"-{kind}" if kind else ""
    latest = RESULTS_DIR / f"latest{suffix}.json"
    latest.write_text(text)
    written = [f"bench/results/{latest.name}"]
    if save:
        base = dt.datetime.now(dt.UTC).date().isoformat() + (f"-{label}" if label else "") + suffix
        name = f"{base}.json"
        serial = 1
        while (RESULTS_DIR / name).exists():  # a record is never overwritten
            serial += 1
            name = f"{base}-{serial}.json"
        (RESULTS_DIR / name).write_text(text)
        written.append(f"bench/results/{name}")
    return written


def newest(kind: str, label: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest dated record of `kind` ("http", "ws", "sse") saved with `label`, if any."""
    found = []
    for path in RESULTS_DIR.glob("*.json"):
        if path.name.startswith("latest"):
            continue
        data = json.loads(path.read_text())
        if data.get("kind", "http") == kind and data.get("label", "") == label:
            found.append((data.get("date", ""), path.name, path, data))
    if not found:
        return None
    _, _, path, data = max(found, key=lambda item: (item[0], item[1]))
    return path, data
