"""Auth parity, generated from the registry: a gate refuses alike on every wire (issue 9 §2).

For every operation of the conformance app and of the demo, on every wire of every mounted
transport, a caller without credentials gets the same outcome: the same refusal for an
operation with an auth policy, and the same answer (success or error) for one without.
Then again with an app-wide API-key dependency (`FastAPI(dependencies=[...])`): without
the key every operation is refused everywhere, with it the key is never the reason.

Nothing here names an operation: params are generated from each operation's input model
(valid, so that the gate, not validation, decides), and the wires come from
`api.transports`. A transport this test has no driver for fails it, so a new operation or
a new transport is covered (or flagged) without editing the test.

An outcome is `(code, message)`: `("OK", "")` for a success, else the error's string code
and message as the wire carries them. A WebSocket refused at its handshake (close 1008)
carries only the message: its code is None, and it must agree on the message.
"""

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
import examples.conformance.app as conformance
import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests._docs_examples import load
from tests.conftest import LiveServer
from tether import Tether, Unauthorized
from tether._mounted import mounted_tethers
from tether.operation import Operation
from tether.transport import TransportHandle
from tether.transports.http import HttpTransport
from tether.transports.jsonrpc import JsonRpcTransport
from tether.transports.sse import SseTransport
from tether.transports.websocket import WebSocketTransport

pytestmark = pytest.mark.e2e

Outcome = tuple[str | None, str]
OK: Outcome = ("OK", "")
KEY_HEADER = "x-parity-key"
KEY = {KEY_HEADER: "open-sesame"}
KEY_REFUSAL = "Send the X-Parity-Key header"
AUTH_REFUSALS = ("UNAUTHORIZED", "FORBIDDEN")
TIMEOUT = 5.0


async def require_key(x_parity_key: Annotated[str | None, Header()] = None) -> None:
    """The app-wide API-key check of the second run."""
    if x_parity_key != KEY[KEY_HEADER]:
        raise Unauthorized(KEY_REFUSAL)


def demo_module() -> ModuleType:
    import tether.demo.app as demo

    return demo


def build_app(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool) -> FastAPI:
    """The app as its module builds it; with `keyed`, its FastAPI carries the key check."""
    module = conformance if name == "conformance" else demo_module()
    with monkeypatch.context() as patch:
        if keyed:
            factory = functools.partial(FastAPI, dependencies=[Depends(require_key)])
            patch.setattr(module, "FastAPI", factory)
        if name == "conformance":
            app: FastAPI = module.create_app()
        else:
            app = module.create_app(tmp_path / "todo.db")
    return app


def tether_of(app: FastAPI) -> Tether:
    """The Tether mounted on `app` (as `tether serve` finds it)."""
    for api in mounted_tethers(app):
        return api
    raise AssertionError("no Tether is mounted on the app")


# -- params from the input model ----------------------------------------------------------


def sample(schema: dict[str, Any], definitions: dict[str, Any]) -> Any:
    """A small value the JSON Schema accepts (required members only, at their lower bounds)."""
    if "$ref" in schema:
        return sample(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return sample(options[0], definitions)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return max(1, low) if schema.get("maximum", 1) >= 1 else low
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "boolean":
        return True
    if kind == "array":
        return [sample(schema.get("items", {}), definitions)] * max(1, schema.get("minItems", 1))
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: sample(properties[key], definitions) for key in schema.get("required", [])}
    if kind == "null":
        return None
    return "x"


# Inputs with defaults that would run for long: the demo's `counter` counts a million
# numbers, one a second, unless told otherwise.
SHORT = {"counter": {"count": 2, "every_ms": 10}}


def params_for(op: Operation) -> dict[str, Any]:
    """Valid params for `op`, generated from its input model (and checked by it)."""
    schema = op.input_model.model_json_schema()
    params = {**sample(schema, schema.get("$defs", {})), **SHORT.get(op.name, {})}
    op.input_model.model_validate(params)
    return params  # type: ignore[no-any-return]


def query_string(params: dict[str, Any]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, json.dumps(item) if isinstance(item, bool) else str(item)))
    return urlencode(pairs)


# -- one driver per wire ---------------------------------------------------------------


def envelope_outcome(body: Any) -> Outcome:
    error = body["error"]
    return (error["code"], error["message"])


def rpc_outcome(reply: dict[str, Any]) -> Outcome:
    if "error" in reply:
        return (reply["error"]["data"]["code"], reply["error"]["message"])
    return OK


def sse_outcome(response: httpx.Response) -> Outcome:
    """`event: error` carries the envelope; otherwise the stream must have ended."""
    events = [block for block in response.text.split("\n\n") if block.strip()]
    for block in events:
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields.get("event") == "error":
            return envelope_outcome(json.loads(fields["data"]))
    assert any("event: end" in block for block in events), response.text
    return OK


class Wires:
    """Every wire of one running app, sharing one HTTP client and one socket."""

    def __init__(self, api: Tether, server: LiveServer) -> None:
        self.api = api
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=TIMEOUT)
        self.socket: ClientConnection | None = None
        self.socket_stack = ExitStack()
        self.socket_headers: dict[str, str] = {}
        self.next_id = 0

    def close(self) -> None:
        self.http.close()
        self.socket_stack.close()

    def wires_for(
        self, op: Operation
    ) -> dict[str, Callable[[Operation, dict[str, Any], dict[str, str]], Outcome]]:
        """The wires `op` is reachable on, from the transports mounted on the app."""
        wires: dict[str, Callable[[Operation, dict[str, Any], dict[str, str]], Outcome]] = {
            "in-process": self.in_process
        }
        stream = op.kind == "stream"
        for transport in self.api.transports:
            if isinstance(transport, HttpTransport):
                if not stream:
                    wires["http POST"] = self.http_post
                    if op.kind == "query" and op.query_shape is not None:
                        wires["http GET"] = self.http_get
            elif isinstance(transport, JsonRpcTransport):
                if not stream:
                    wires["jsonrpc single"] = self.jsonrpc_single
                    wires["jsonrpc batch"] = self.jsonrpc_batch
            elif isinstance(transport, SseTransport):
                if stream:
                    wires["sse POST"] = self.sse_post
                    if op.query_shape is not None:
                        wires["sse GET"] = self.sse_get
            elif isinstance(transport, WebSocketTransport):
                wires["ws envelope"] = self.ws_envelope
                wires["ws jsonrpc"] = self.ws_jsonrpc
            else:
                pytest.fail(f"no parity driver for the mounted transport {transport!r}")
        return wires

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    # HTTP, JSON-RPC and SSE over one keep-alive client.

    def http_post(self, op: Operation, params: dict[str, Any], headers: dict[str, str]) -> Outcome:
        response = self.http.post(f"{self.api.prefix}/call/{op.name}", json=params, headers=headers)
        return OK if response.status_code < 300 else envelope_outcome(response.json())

    def http_get(self, op: Operation, params: dict[str, Any], headers: dict[str, str]) -> Outcome:
        url = f"{self.api.prefix}/call/{op.name}?{query_string(params)}"
        response = self.http.get(url, headers=headers)
        return OK if response.status_code < 300 else envelope_outcome(response.json())

    def jsonrpc_single(
        self, op: Operation, params: dict[str, Any], headers: dict[str, str]
    ) -> Outcome:
        message = {"jsonrpc": "2.0", "id": self._id(), "method": op.name, "params": params}
        response = self.http.post(f"{self.api.prefix}/jsonrpc", json=message, headers=headers)
        return rpc_outcome(response.json())

    def jsonrpc_batch(
        self, op: Operation, params: dict[str, Any], headers: dict[str, str]
    ) -> Outcome:
        batch = [
            {"jsonrpc": "2.0", "id": self._id(), "method": op.name, "params": params}
            for _ in range(2)
        ]
        response = self.http.post(f"{self.api.prefix}/jsonrpc", json=batch, headers=headers)
        first, second = (rpc_outcome(reply) for reply in response.json())
        assert first == second, (op.name, response.text)
        return first

    def sse_post(self, op: Operation, params: dict[str, Any], headers: dict[str, str]) -> Outcome:
        response = self.http.post(
            f"{self.api.prefix}/stream/{op.name}", json=params, headers=headers
        )
        return sse_outcome(response)

    def sse_get(self, op: Operation, params: dict[str, Any], headers: dict[str, str]) -> Outcome:
        url = f"{self.api.prefix}/stream/{op.name}?{query_string(params)}"
        return sse_outcome(self.http.get(url, headers=headers))

    # The WebSocket: one socket per set of handshake headers, reopened after a refusal.

    def _socket(self, headers: dict[str, str]) -> ClientConnection:
        if self.socket is not None and self.socket_headers != headers:
            self._drop_socket()
        if self.socket is None:
            self.socket = self.socket_stack.enter_context(
                connect(
                    f"{self.server.ws_url}{self.api.prefix}/ws",
                    additional_headers=headers,
                    open_timeout=TIMEOUT,
                )
            )
            self.socket_headers = dict(headers)
        return self.socket

    def _drop_socket(self) -> None:
        self.socket = None
        self.socket_stack.close()

    def _exchange(
        self, headers: dict[str, str], message: Any, done: Callable[[Any], bool]
    ) -> Any | Outcome:
        """Send `message` and return the reply `done` accepts, or the handshake's refusal."""
        ws = self._socket(headers)
        try:
            ws.send(json.dumps(message))
            while True:
                reply = json.loads(ws.recv(timeout=TIMEOUT))
                if done(reply):
                    return reply
        except ConnectionClosed as closed:
            frame = closed.rcvd
        self._drop_socket()
        assert frame is not None
        assert frame.code == 1008, frame
        return (None, frame.reason)

    def ws_envelope(
        self, op: Operation, params: dict[str, Any], headers: dict[str, str]
    ) -> Outcome:
        uuid = f"u{self._id()}"

        def done(reply: Any) -> bool:
            if reply.get("uuid") != uuid:
                return False
            return op.kind != "stream" or reply["headers"].get("stream") != "item"

        reply = self._exchange(headers, {"uuid": uuid, "route": op.name, "payload": params}, done)
        if isinstance(reply, tuple):
            return reply
        return OK if reply["status"] < 300 else envelope_outcome(reply["payload"])

    def ws_jsonrpc(self, op: Operation, params: dict[str, Any], headers: dict[str, str]) -> Outcome:
        id_ = self._id()
        message = {"jsonrpc": "2.0", "id": id_, "method": op.name, "params": params}
        reply = self._exchange(headers, message, lambda reply: reply.get("id") == id_)
        return reply if isinstance(reply, tuple) else rpc_outcome(reply)

    # In-process, with the same headers as the wires.

    def in_process(self, op: Operation, params: dict[str, Any], headers: dict[str, str]) -> Outcome:
        async def run() -> Outcome:
            try:
                if op.kind == "stream":
                    async for _ in self.api.stream_call(op.name, params, headers=headers):
                        pass
                else:
                    await self.api.call(op.name, params, headers=headers)
            except Exception as error:  # a TetherError: its code and message
                return (getattr(error, "code", type(error).__name__), error.args[0])
            return OK

        return anyio.run(run)


def outcomes(wires: Wires, headers: dict[str, str]) -> dict[str, dict[str, Outcome]]:
    """Every operation's outcome on every wire: {operation: {wire: outcome}}."""
    seen: dict[str, dict[str, Outcome]] = {}
    for op in wires.api:
        params = params_for(op)
        seen[op.name] = {
            wire: call(op, params, headers) for wire, call in wires.wires_for(op).items()
        }
        assert len(seen[op.name]) >= 3, (op.name, seen[op.name])
    return seen


def agreed(by_wire: dict[str, Outcome]) -> Outcome:
    """The one outcome every wire gave (a handshake refusal agrees by its message)."""
    codes = {code for code, _ in by_wire.values() if code is not None}
    messages = {message for _, message in by_wire.values()}
    assert len(codes) == 1, by_wire
    assert len(messages) == 1, by_wire
    return (codes.pop(), messages.pop())


@pytest.fixture(params=["conformance", "demo"])
def running(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[bool], Wires]]:
    started: list[Wires] = []

    def start(keyed: bool) -> Wires:
        app = build_app(request.param, tmp_path, monkeypatch, keyed)
        server = LiveServer(app)
        server.start()
        wires = Wires(tether_of(app), server)
        started.append(wires)
        return wires

    yield start
    for wires in started:
        wires.close()
        wires.server.stop()


def test_without_credentials_every_wire_answers_alike(running: Callable[[bool], Wires]) -> None:
    wires = running(False)
    seen = outcomes(wires, {})
    assert set(seen) == {op.name for op in wires.api}
    for op in wires.api:
        outcome = agreed(seen[op.name])
        if op.auth is not None:
            # A policy with no caller: refused, the same way everywhere.
            assert outcome[0] in AUTH_REFUSALS, (op.name, seen[op.name])


def test_an_app_wide_key_refuses_every_operation_on_every_wire(
    running: Callable[[bool], Wires],
) -> None:
    wires = running(True)
    assert wires.api.app_dependencies
    refused = outcomes(wires, {})
    assert set(refused) == {op.name for op in wires.api}
    for name, by_wire in refused.items():
        assert agreed(by_wire) == ("UNAUTHORIZED", KEY_REFUSAL), (name, by_wire)
    # With the key, each operation answers as it does on the same app without the check.
    allowed = outcomes(wires, dict(KEY))
    unkeyed = outcomes(running(False), {})
    assert set(allowed) == set(unkeyed)
    for name, by_wire in allowed.items():
        assert agreed(by_wire) == agreed(unkeyed[name]), (name, by_wire, unkeyed[name])


def test_the_jsonrpc_2_example_key_guards_every_wire() -> None:
    # Its API-key check was JsonRpcTransport(batch_dependencies=...): `POST /api/call/transfer`
    # and the socket answered without the key. Now it is Tether-level.
    example = load("jsonrpc_2")
    server = LiveServer(example.app)
    server.start()
    wires = Wires(example.api, server)
    try:
        refused = outcomes(wires, {})
        allowed = outcomes(wires, {"x-api-key": "s3cret"})
    finally:
        wires.close()
        server.stop()
    assert set(refused["transfer"]) >= {"http POST", "jsonrpc batch", "ws envelope", "ws jsonrpc"}
    assert set(refused["transfer"].values()) == {("UNAUTHORIZED", "Send X-API-Key")}
    assert set(allowed["transfer"].values()) == {OK}


def test_a_transport_without_a_driver_fails_the_test() -> None:
    class CarrierPigeonTransport:
        def attach(self, handle: TransportHandle, app: FastAPI) -> None:
            """Adds nothing."""

        def operation_added(self, op: Operation) -> None:
            """Nothing to do."""

    api = Tether()

    @api.query
    async def ping() -> str:
        return "pong"

    api.mount(FastAPI(), transports=[HttpTransport(), CarrierPigeonTransport()])
    wires = Wires(api, LiveServer(FastAPI()))  # never started: no wire is called
    try:
        with pytest.raises(pytest.fail.Exception, match="no parity driver"):
            wires.wires_for(api.get("ping"))
    finally:
        wires.close()
