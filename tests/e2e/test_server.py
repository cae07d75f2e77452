"""tether.server on real servers: the WebSocket frame limit bounds memory, shutdown is bounded,
WebSocket compression is off unless asked for, and an idle connection runs no task it could share.

The memory and signal tests run the server in a subprocess (`tether serve`, or plain
`uvicorn` for comparison) with tests/e2e/_server_app.py, and read its peak RSS (VmHWM) from
/proc. The others run TetherServer in a thread, as tests/conftest.py's LiveServer does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from starlette.middleware.gzip import GZipMiddleware
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests._docs_examples import load
from tests.conftest import LiveServer, free_port
from tether import Tether
from tether._mounted import mounted_tethers
from tether.errors import ConfigurationError
from tether.server import DEFAULT_GRACE, TetherServer, serve
from tether.transports import default_transports
from tether.transports._scheduler import IDLE_WORKER_SECONDS
from tether.transports.websocket import DEFAULT_MAX_MESSAGE_SIZE, WebSocketTransport

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e._server_app:app"
MiB = 1024 * 1024


# -- a server in a subprocess -------------------------------------------------------------


@contextmanager
def server_process(
    kind: str, log: Path, *options: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run the test app with `tether serve` or plain `uvicorn`, until it answers; stop it after."""
    port = free_port()
    if kind == "tether":
        command = [str(Path(sys.executable).with_name("tether")), "serve", APP]
    else:
        command = [sys.executable, "-m", "uvicorn", APP, "--log-level", "warning"]
    process = subprocess.Popen(
        [*command, "--port", str(port), *options],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": "", "TETHER_TEST_LOG": str(log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise AssertionError(f"the server exited:\n{stderr[-2000:]}") from None
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


async def send_oversized(url: str, payload: bytes) -> int | None:
    """Send one oversized text message; return the close code the server sent."""
    async with async_connect(url, open_timeout=10, close_timeout=2) as ws:
        try:
            await ws.send(payload, text=True)
            await asyncio.wait_for(ws.recv(), timeout=15)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    raise AssertionError("the server answered an oversized message")


OVERSIZED_CLIENTS = 20
OVERSIZED = 15 * MiB
# The bound on the server's peak RSS growth. With tether's 1 MiB frame limit it grows by about
# 23 MiB (each socket buffers what arrives until it is closed); with uvicorn's default
# (16 MiB) it assembles each 15 MiB message, and 20 of them add 300 to 360 MiB.
RSS_BOUND = 64 * MiB


@pytest.mark.parametrize("kind", ["tether", "uvicorn"])
def test_oversized_websocket_messages_do_not_grow_the_server(kind: str, tmp_path: Path) -> None:
    envelope = b'{"uuid":"1","route":"echo","payload":{"text":"%s"}}'
    payload = envelope.replace(b"%s", b"a" * OVERSIZED)
    with server_process(kind, tmp_path / "log") as (process, port):
        url = f"ws://127.0.0.1:{port}/api/ws"
        with connect(url) as ws:  # the server has served a socket: its baseline is set
            ws.send(json.dumps({"uuid": "1", "route": "echo", "payload": {"text": "hi"}}))
            assert json.loads(ws.recv(timeout=5))["payload"] == "hi"
        before = peak_rss(process.pid)

        async def flood() -> list[int | None]:
            clients = (send_oversized(url, payload) for _ in range(OVERSIZED_CLIENTS))
            return await asyncio.gather(*clients)

        codes = asyncio.run(flood())
        growth = peak_rss(process.pid) - before
        # The server keeps serving.
        with connect(url) as ws:
            ws.send(json.dumps({"uuid": "2", "route": "echo", "payload": {"text": "ok"}}))
            assert json.loads(ws.recv(timeout=5))["payload"] == "ok"
    assert codes == [1009] * OVERSIZED_CLIENTS
    if kind == "tether":
        assert growth < RSS_BOUND, f"peak RSS grew by {growth / MiB:.0f} MiB"
    else:
        # The same flood against uvicorn's default ws_max_size: the bound means something.
        assert growth > 2 * RSS_BOUND, f"peak RSS grew by only {growth / MiB:.0f} MiB"


def _raw_request(
    port: int, method: str, target: str, body: dict[str, object] | None
) -> socket.socket:
    """Send one HTTP request on a fresh connection and return the socket, unread."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + data)
    return sock


def _log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _abandoned_calls(port: int) -> dict[str, socket.socket]:
    """Start 10 calls of a minute each (every kind of HTTP and JSON-RPC call); return them."""
    long = 60_000

    def rpc(method: str, tag: str, *, notification: bool = False) -> dict[str, object]:
        message: dict[str, object] = {
            "jsonrpc": "2.0",
            "method": method,
            "params": {"tag": tag, "ms": long},
        }
        if not notification:
            message["id"] = tag
        return message

    requests: dict[str, tuple[str, str, dict[str, object] | None]] = {
        "http-query-1": ("POST", "/api/call/slow_query", {"tag": "http-query-1", "ms": long}),
        "http-query-2": ("POST", "/api/call/slow_query", {"tag": "http-query-2", "ms": long}),
        "http-get-query": ("GET", f"/api/call/slow_query?tag=http-get-query&ms={long}", None),
        "http-command-1": ("POST", "/api/call/slow_command", {"tag": "http-command-1", "ms": long}),
        "http-command-2": ("POST", "/api/call/slow_command", {"tag": "http-command-2", "ms": long}),
        "rpc-query": ("POST", "/api/jsonrpc", rpc("slow_query", "rpc-query")),
        "rpc-command-1": ("POST", "/api/jsonrpc", rpc("slow_command", "rpc-command-1")),
        "rpc-command-2": ("POST", "/api/jsonrpc", rpc("slow_command", "rpc-command-2")),
        "rpc-note-query": (
            "POST",
            "/api/jsonrpc",
            rpc("slow_query", "rpc-note-query", notification=True),
        ),
        "rpc-note-command": (
            "POST",
            "/api/jsonrpc",
            rpc("slow_command", "rpc-note-command", notification=True),
        ),
    }
    return {tag: _raw_request(port, *request) for tag, request in requests.items()}


def test_sigterm_with_abandoned_calls_exits_within_the_grace_and_closes_dependencies(
    tmp_path: Path,
) -> None:
    grace = 2.0
    log = tmp_path / "log"
    with server_process("tether", log, "--grace", str(grace)) as (process, port):
        clients = _abandoned_calls(port)
        deadline = time.monotonic() + 10
        while len([line for line in _log_lines(log) if line.startswith("enter ")]) < len(clients):
            assert time.monotonic() < deadline, f"calls did not start: {_log_lines(log)}"
            time.sleep(0.05)
        for client in clients.values():  # every client goes away, its call still running
            client.close()
        time.sleep(0.2)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=grace + 10)
        elapsed = time.monotonic() - started
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert elapsed < grace + 1, f"exit took {elapsed:.2f} s\n{stderr[-3000:]}"
    lines = _log_lines(log)
    assert sorted(line for line in lines if line.startswith("enter ")) == sorted(
        f"enter {tag}" for tag in clients
    )
    assert sorted(line for line in lines if line.startswith("exit ")) == sorted(
        f"exit {tag}" for tag in clients
    ), stderr[-3000:]


def test_ctrl_c_stops_tether_serve_quietly(tmp_path: Path) -> None:
    with server_process("tether", tmp_path / "log") as (process, _):
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Finished server process" in stderr


# -- TetherServer in a thread --------------------------------------------------------------


def tether_server(app: FastAPI, **options: float) -> LiveServer:
    """A LiveServer (not yet started) whose server is a TetherServer."""
    live = LiveServer(app)
    live.server = TetherServer(live.config, **options)
    live.thread = threading.Thread(target=live.server.run, daemon=True)
    return live


def echo_app(**websocket: int) -> tuple[FastAPI, Tether]:
    api = Tether()

    @api.query
    async def echo(text: str) -> str:
        return text

    @api.query
    async def pause(ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    app = FastAPI()
    transports = default_transports()
    transports[-1] = WebSocketTransport(**websocket)
    api.mount(app, transports=transports)
    return app, api


def test_the_servers_frame_limit_is_the_transports() -> None:
    app, _ = echo_app(max_message_size=4096)
    live = tether_server(app)
    live.start()
    try:
        assert live.config.ws_max_size == 4096
        with connect(f"{live.ws_url}/api/ws", max_size=None) as ws:
            text = "a" * 4000
            ws.send(json.dumps({"uuid": "1", "route": "echo", "payload": {"text": text}}))
            assert json.loads(ws.recv(timeout=5))["payload"] == text
            ws.send(json.dumps({"uuid": "2", "route": "echo", "payload": {"text": "a" * 5000}}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    finally:
        live.stop()


def test_the_default_frame_limit_is_tethers_default() -> None:
    app, _ = echo_app()
    live = tether_server(app)
    live.start()
    try:
        assert live.config.ws_max_size == DEFAULT_MAX_MESSAGE_SIZE
        assert live.server.grace == DEFAULT_GRACE
    finally:
        live.stop()


def test_a_call_shorter_than_the_grace_is_answered_during_shutdown() -> None:
    app, _ = echo_app()
    live = tether_server(app, grace=5.0)
    live.start()
    answer: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answer.append(
            httpx.post(f"{live.url}/api/call/pause", json={"ms": 800}, timeout=10)
        )
    )
    caller.start()
    time.sleep(0.3)  # the call is in flight
    started = time.monotonic()
    live.stop()
    caller.join(timeout=10)
    assert answer[0].json() == {"result": 800}
    # It waited for the call, not for the whole grace period.
    assert 0.3 < time.monotonic() - started < 3


def test_past_the_grace_a_call_is_cancelled_and_the_server_stops(
    capfd: pytest.CaptureFixture[str],
) -> None:
    app, _ = echo_app()
    live = tether_server(app, grace=0.5)
    live.start()
    answer: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answer.append(
            httpx.post(f"{live.url}/api/call/pause", json={"ms": 30_000}, timeout=10)
        )
    )
    caller.start()
    time.sleep(0.3)  # the call is in flight
    started = time.monotonic()
    live.stop()
    elapsed = time.monotonic() - started
    caller.join(timeout=10)
    assert 0.5 <= elapsed < 1.5
    # Cancelled before it answered: uvicorn answers 500 (no traceback) and closes.
    assert answer[0].status_code == 500
    assert answer[0].text == "Internal Server Error"
    log = capfd.readouterr().err
    assert "Cancelling 1 call(s) still running after the 0.5 s grace period" in log


def test_shutdown_closes_sockets_with_1001() -> None:
    app, _ = echo_app()
    live = tether_server(app)
    live.start()
    with connect(f"{live.ws_url}/api/ws") as ws:
        live.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


def test_an_app_without_tether_is_refused_at_startup() -> None:
    config = uvicorn.Config(FastAPI(), host="127.0.0.1", port=free_port())
    config.load()
    with pytest.raises(ConfigurationError, match="no Tether is mounted"):
        asyncio.run(TetherServer(config).startup())


@pytest.mark.parametrize("option", [{"reload": True}, {"workers": 2}])
def test_serve_refuses_what_only_uvicorns_cli_does(option: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="one process"):
        serve(FastAPI(), **option)


def test_a_negative_grace_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="grace"):
        TetherServer(uvicorn.Config(FastAPI()), grace=-1)


def test_the_grace_defaults_to_uvicorns_setting() -> None:
    assert TetherServer(uvicorn.Config(FastAPI(), timeout_graceful_shutdown=3)).grace == 3.0


def test_tethers_are_found_through_middleware_and_mounts() -> None:
    outer, inner = Tether(prefix="/a"), Tether(prefix="/b")
    app, sub = FastAPI(), FastAPI()
    outer.mount(app)
    inner.mount(sub)
    app.mount("/sub", sub)
    assert mounted_tethers(GZipMiddleware(app)) == (outer, inner)
    assert mounted_tethers(FastAPI()) == ()


def test_the_docs_shutdown_example_closes_sockets_with_1001() -> None:
    module = load("websocket_shutdown")
    server: TetherServer = module.server
    server.config.port = free_port()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the example stopped"
        assert time.monotonic() < deadline, "the example did not start"
        time.sleep(0.01)
    with connect(f"ws://127.0.0.1:{server.config.port}/api/ws") as ws:
        server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert server.grace == 10.0


def test_shutdown_ends_open_sse_streams_at_once() -> None:
    api = Tether()
    closed: list[str] = []

    async def resource() -> AsyncIterator[None]:
        try:
            yield
        except Exception as exc:
            closed.append(f"saw {exc}")
            raise

    @api.stream
    async def forever(_: None = Depends(resource)) -> AsyncIterator[int]:
        number = 0
        while True:
            number += 1
            yield number
            await asyncio.sleep(0.05)

    app = FastAPI()
    api.mount(app)
    live = tether_server(app, grace=10.0)
    live.start()
    lines: list[str] = []
    with httpx.stream("GET", f"{live.url}/api/stream/forever", timeout=10) as response:
        assert response.status_code == 200
        stream = response.iter_lines()
        while "event: data" not in lines:
            lines.append(next(stream))
        started = time.monotonic()
        stopper = threading.Thread(target=live.stop)
        stopper.start()
        lines.extend(stream)  # ends when the server ends the stream
        ended = time.monotonic() - started
    stopper.join(timeout=15)
    # Long before the 10 s grace: the stream was ended, not waited for; and without `end`.
    assert ended < 2
    assert "event: end" not in lines
    # Ended by `api.shutdown()`, which TetherServer calls: the dependency was told why.
    assert closed == ["saw the server is shutting down"]


# -- lean server settings: WebSocket compression off (issue 12) ---------------------------


def _extensions(url: str) -> str | None:
    """Open a socket offering permessage-deflate (as browsers do), call `echo`; return the
    extensions the server accepted (None: none)."""
    with connect(url) as ws:  # the websockets client offers permessage-deflate by default
        ws.send(json.dumps({"uuid": "1", "route": "echo", "payload": {"text": "hi"}}))
        assert json.loads(ws.recv(timeout=5))["payload"] == "hi"
        assert ws.response is not None
        return ws.response.headers.get("Sec-WebSocket-Extensions")


def test_tether_server_turns_websocket_compression_off() -> None:
    app, _ = echo_app(max_message_size=4096)
    live = tether_server(app)
    live.start()
    try:
        assert live.config.ws_per_message_deflate is False
        assert _extensions(f"{live.ws_url}/api/ws") is None
        # Under the setting, close codes are what they were: 1009 for an oversized message...
        with connect(f"{live.ws_url}/api/ws", max_size=None) as ws:
            ws.send(json.dumps({"uuid": "2", "route": "echo", "payload": {"text": "a" * 5000}}))
            with pytest.raises(ConnectionClosed) as oversized:
                ws.recv(timeout=5)
        assert oversized.value.rcvd is not None
        assert oversized.value.rcvd.code == 1009
        # ... and 1001 on shutdown.
        with connect(f"{live.ws_url}/api/ws") as ws:
            live.stop()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    finally:
        if live.thread.is_alive():
            live.stop()


def test_settings_left_empty_keep_uvicorns_compression() -> None:
    app, _ = echo_app()
    live = LiveServer(app)
    live.server = TetherServer(live.config, settings={})
    live.thread = threading.Thread(target=live.server.run, daemon=True)
    live.start()
    try:
        assert live.config.ws_per_message_deflate is True
        extensions = _extensions(f"{live.ws_url}/api/ws")
    finally:
        live.stop()
    assert extensions is not None
    assert "permessage-deflate" in extensions


def test_a_setting_the_config_changed_is_kept() -> None:
    config = uvicorn.Config(FastAPI(), ws_ping_interval=5.0)
    TetherServer(config, settings={"ws_ping_interval": None, "ws_per_message_deflate": False})
    assert config.ws_ping_interval == 5.0  # not uvicorn's default: the config's own choice
    assert config.ws_per_message_deflate is False


def test_an_unknown_server_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"'ws_deflate' is not a uvicorn\.Config setting"):
        TetherServer(uvicorn.Config(FastAPI()), settings={"ws_deflate": False})


def test_serve_and_the_commands_apply_the_settings_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tether.cli import main

    servers: list[TetherServer] = []
    monkeypatch.setattr(TetherServer, "run", lambda self, sockets=None: servers.append(self))
    serve(FastAPI())
    serve(FastAPI(), ws_per_message_deflate=True)  # given, even as uvicorn's default: kept
    main(["serve", APP])
    main(["serve", APP, "--ws-per-message-deflate"])
    main(["demo"])
    assert [s.config.ws_per_message_deflate for s in servers] == [False, True, False, True, False]


@pytest.mark.parametrize(
    ("kind", "options", "compressed"),
    [
        ("tether", (), False),
        ("tether", ("--ws-per-message-deflate",), True),
        ("uvicorn", (), True),  # plain uvicorn accepts the offer: the test can tell
    ],
)
def test_tether_serve_accepts_no_compression_unless_asked(
    kind: str, options: tuple[str, ...], compressed: bool, tmp_path: Path
) -> None:
    with server_process(kind, tmp_path / "log", *options) as (_, port):
        extensions = _extensions(f"ws://127.0.0.1:{port}/api/ws")
    assert (extensions is not None and "permessage-deflate" in extensions) is compressed


# -- what an idle connection costs: tasks (issue 12) --------------------------------------


def idle_app() -> FastAPI:
    """A Tether whose `tasks` query counts the server's tasks, and whose `idle` stream waits."""
    api = Tether()

    @api.query
    async def tasks() -> int:
        return len(asyncio.all_tasks())

    @api.stream
    async def idle() -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0

    app = FastAPI()
    api.mount(app)
    return app


IDLE = 50


def test_an_idle_websocket_or_sse_stream_runs_no_task_it_could_share() -> None:
    live = tether_server(idle_app())
    live.start()
    try:

        def tasks() -> int:
            count: int = httpx.post(f"{live.url}/api/call/tasks", json={}).json()["result"]
            return count

        before = tasks()
        with ExitStack() as sockets:
            opened = [sockets.enter_context(connect(f"{live.ws_url}/api/ws")) for _ in range(IDLE)]
            # One task each: uvicorn's, which runs the connection (no sending task, no worker).
            assert tasks() - before == IDLE
            for ws in opened:  # a call starts a worker on each connection...
                ws.send(json.dumps({"uuid": "1", "route": "tasks"}))
                assert json.loads(ws.recv(timeout=5))["status"] == 200
            # ... which ends once the connection has been quiet for IDLE_WORKER_SECONDS.
            deadline = time.monotonic() + 10 * IDLE_WORKER_SECONDS
            while tasks() - before > IDLE:
                assert time.monotonic() < deadline, "the idle connections kept their workers"
                time.sleep(0.1)
        before = tasks()
        with httpx.Client(timeout=10) as client, ExitStack() as streams:
            for _ in range(IDLE):
                response = streams.enter_context(
                    client.stream("GET", f"{live.url}/api/stream/idle")
                )
                assert response.status_code == 200
            # Two each: uvicorn's, which runs the stream, and the one that watches the client
            # leave and sends the heartbeat.
            assert tasks() - before == 2 * IDLE
    finally:
        live.stop()
