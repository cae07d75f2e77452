import importlib
import inspect
import pkgutil

import pytest

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


def public_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(tether.__path__, "tether.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]


def test_public_modules_are_found() -> None:
    modules = public_modules()
    for name in ("tether.errors", "tether.operation", "tether.transports.http"):
        assert name in modules


@pytest.mark.parametrize("name", public_modules())
def test_every_public_module_declares_its_names(name: str) -> None:
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert isinstance(names, tuple), f"{name} has no __all__ tuple"
    assert len(set(names)) == len(names)
    for attribute in names:
        assert hasattr(module, attribute), f"{name}.__all__ names missing {attribute!r}"


def test_transports_package_exports_what_it_imports() -> None:
    import tether.transport
    import tether.transports

    public = {
        name
        for name, value in vars(tether.transports).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(tether.transports.__all__) == public
    for name in ("HttpTransport", "JsonRpcTransport", "SseTransport", "WebSocketTransport"):
        assert name in tether.transports.__all__
    # One protocol, owned by the core; the transports package re-exports it.
    assert tether.transports.Transport is tether.transport.Transport
