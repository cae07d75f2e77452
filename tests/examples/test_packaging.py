"""What the README's install step gives a user: an importable package and working commands."""

from __future__ import annotations

from importlib.metadata import entry_points


def test_console_scripts_load() -> None:
    # pyproject.toml declares `tether = "tether.cli:main"`; `pip install` creates the command.
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.value.startswith("tether")]
    assert scripts, "no console script of tether is installed"
    for script in scripts:
        assert callable(script.load()), script.value
