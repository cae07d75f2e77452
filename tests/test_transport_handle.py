"""The narrow handle a transport is attached to: what it exposes, and that it stays live."""

from typing import Any

import pytest
from fastapi import FastAPI

from tether import NotFound, PerBatch, Tether
from tether.operation import Operation
from tether.transport import TransportHandle

DOCUMENTED = {
    "prefix",
    "operations",
    "invoker",
    "admission",
    "max_body_size",
    "body_timeout",
    "allowed_origins",
    "dependencies",
    "user",
    "app",
    "app_dependencies",
    "batch_scoped",
    "contexts",
    "live",
    "get",
}


class Keeper:
    """A transport that keeps the handle it is attached to."""

    handle: TransportHandle

    def attach(self, handle: TransportHandle, app: FastAPI) -> None:
        self.handle = handle

    def operation_added(self, op: Operation) -> None:
        """Nothing to document."""


def mounted() -> tuple[Tether, FastAPI, TransportHandle]:
    api = Tether(prefix="/rpc", max_body_size=123, body_timeout=4.5)

    @api.query
    async def ping() -> str:
        return "pong"

    app = FastAPI()
    keeper = Keeper()
    api.mount(app, transports=[keeper])
    return api, app, keeper.handle


def test_the_handle_exposes_only_the_documented_members() -> None:
    api, app, handle = mounted()
    assert {name for name in dir(handle) if not name.startswith("_")} == DOCUMENTED
    for name in ("mount", "add", "include", "call", "stream_call", "shutdown", "transports"):
        assert not hasattr(handle, name)
    assert not any(value is api for value in _reachable(handle))
    assert handle.prefix == "/rpc"
    assert handle.max_body_size == 123
    assert handle.body_timeout == 4.5
    assert handle.app is app
    assert handle.invoker is api.invoker
    assert handle.admission is api.admission
    assert [op.name for op in handle] == ["ping"]
    assert len(handle) == 1
    assert handle.get("ping") is api.get("ping")
    with pytest.raises(NotFound):
        handle.get("nope")


def _reachable(handle: TransportHandle) -> list[Any]:
    """The values a transport reaches through the handle's public members."""
    return [getattr(handle, name) for name in DOCUMENTED]


def test_batch_scoped_and_operations_stay_live_after_mount() -> None:
    api, _, handle = mounted()
    assert handle.batch_scoped is False

    async def per_batch() -> int:
        return 1

    @api.query
    async def later(n: int = PerBatch(per_batch)) -> int:
        return n

    assert handle.batch_scoped is True
    assert handle.get("later") is api.get("later")
    assert "later" in handle.operations
    assert len(handle) == 2
