import inspect

import tether


def test_all_is_sorted_and_unique() -> None:
    assert list(tether.__all__) == sorted(tether.__all__)
    assert len(set(tether.__all__)) == len(tether.__all__)


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(tether).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(tether.__all__) == public


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in tether.__all__:
        value = getattr(tether, name)
        doc = inspect.getdoc(value)
        assert doc, f"{name} has no docstring"
        assert doc.strip().splitlines()[0].endswith("."), name


def test_core_names_are_exported() -> None:
    for name in (
        "Tether",
        "query",
        "command",
        "TetherError",
        "BadRequest",
        "ValidationFailed",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Conflict",
        "PayloadTooLarge",
        "InternalError",
        "ConfigurationError",
        "CallContext",
    ):
        assert name in tether.__all__


def test_public_names_come_from_tether_modules() -> None:
    for name in tether.__all__:
        module = getattr(getattr(tether, name), "__module__", "")
        assert module.startswith("tether."), (name, module)
