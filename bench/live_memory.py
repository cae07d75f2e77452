"""Server memory per idle subscriber (issue 12): WebSocket and SSE, tether beside bare ASGI.

Run:  .venv/bin/python bench/live_memory.py [--connections 10000] [--apps A,B] [--settings S ...]
                                            [--settle 3] [--tether-src PATH]
                                            [--save [--label NAME]]

For each app and each server setting it starts one uvicorn process (one worker, loopback,
a free port), opens `--warmup` connections from a separate client process, reads the
server's memory, opens `--connections` more idle connections, waits until they are all
established and the server's memory has settled, and reads it again. It prints the total
RSS, the delta, and the delta per connection (RSS, and USS and PSS from
/proc/<pid>/smaps_rollup), and checks that no connection was lost meanwhile.

Apps (bench/apps/live_memory_apps.py): `bare-ws` (accept, then receive until the client
leaves), `bare-sse` (headers and one comment, then wait for `http.disconnect`),
`tether-ws` (`/api/ws` opened, idle), `tether-sse` (`GET /api/stream/idle`, a stream that
waits), `live-ws` (`/api/ws` with one `{"route": "LIVE"}` subscription to its own owner's
`todos`) and `live-sse` (`GET /api/live?contexts=todos&owner_id=N`): the live-push
subscribers. Once measured, the live apps get one command that invalidates every owner's
`todos`, and the row says how many subscribers received the push ("pushed to N").

A setting is a comma-separated list of `key=value`: `ws=` websockets | websockets-sansio |
wsproto, `deflate=` on | off (`ws_per_message_deflate`), `ping=` 20 | none
(`ws_ping_interval`), `http=` h11 | httptools, `loop=` uvloop | asyncio, and
`server=` uvicorn | tether. `default` is uvicorn's own defaults; `server=tether` runs
`tether.server.TetherServer` with nothing set, so it measures the settings tether applies
(bare apps, which TetherServer refuses, get the same settings on plain uvicorn). WebSocket
clients offer permessage-deflate, as browsers do, and answer the server's pings.

The client is lean (asyncio protocols, a hand-written upgrade), in its own process, so the
machine's client side is never the limit. Both processes raise RLIMIT_NOFILE to its hard
limit; the script prints that limit and the ephemeral port range, which bound how many
connections one client address can open. The run is written to
bench/results/latest-memory.json, and with --save to a dated record.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import record
import tether_source

HERE = Path(__file__).resolve().parent

APPS: dict[str, dict[str, str]] = {
    "bare-ws": {"app": "bare_ws", "kind": "ws", "path": "/"},
    "bare-sse": {"app": "bare_sse", "kind": "sse", "path": "/"},
    "tether-ws": {"app": "tether_app", "kind": "ws", "path": "/api/ws"},
    "tether-sse": {"app": "tether_app", "kind": "sse", "path": "/api/stream/idle"},
    "live-ws": {"app": "live_app", "kind": "live-ws", "path": "/api/ws"},
    "live-sse": {"app": "live_app", "kind": "sse", "path": "/api/live?contexts=todos&owner_id={n}"},
}
WS_SETTINGS = [
    "default",
    "ws=websockets",
    "ws=wsproto",
    "deflate=off",
    "ws=websockets,deflate=off",
    "ws=wsproto,deflate=off",
    "ping=none",
    "ws=wsproto,deflate=off,ping=none",
    "http=h11",
    "loop=asyncio",
    "server=tether",
]
SSE_SETTINGS = ["default", "http=h11", "loop=asyncio", "http=h11,loop=asyncio", "server=tether"]
KB = 1024
MB = 1024 * 1024


# -- settings -----------------------------------------------------------------------------


def parse_setting(text: str) -> tuple[dict[str, Any], bool]:
    """Return the `uvicorn.Config` arguments a setting names, and whether TetherServer runs it."""
    config: dict[str, Any] = {}
    tether_server = False
    if text == "default":
        return config, tether_server
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key == "ws":
            config["ws"] = value
        elif key == "deflate":
            config["ws_per_message_deflate"] = value == "on"
        elif key == "ping":
            config["ws_ping_interval"] = None if value == "none" else float(value)
        elif key == "http":
            config["http"] = value
        elif key == "loop":
            config["loop"] = value
        elif key == "server":
            tether_server = value == "tether"
        else:
            raise SystemExit(f"unknown setting {part!r}")
    return config, tether_server


def raise_file_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- the server process -------------------------------------------------------------------


def serve(spec: dict[str, Any]) -> None:
    """Run one uvicorn server for `spec` (the `--serve` mode of this script)."""
    raise_file_limit()
    sys.path.insert(0, str(HERE / "apps"))
    import live_memory_apps
    import uvicorn

    app = getattr(live_memory_apps, spec["app"])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=spec["port"],
        log_level="warning",
        access_log=False,
        **spec["config"],
    )
    if spec["tether_server"]:
        from tether.server import TetherServer

        server: uvicorn.Server = TetherServer(config)
    else:
        server = uvicorn.Server(config)
    server.run()


# -- the client process -------------------------------------------------------------------


class Idle(asyncio.Protocol):
    """One idle connection: it sends its opening request, waits for the answer, then idles.

    A WebSocket answers the server's pings (so the server keeps it); an SSE stream reads
    and drops what comes.
    """

    def __init__(self, request: bytes, kind: str, subscribe: bytes | None) -> None:
        self.request = request
        self.kind = kind
        self.subscribe = subscribe
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.lost = False
        self.deflate = False
        self.pushes = 0
        """Live pushes received after the subscription was ready."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            self.buffer = self.buffer[end + 4 :]
            self.upgraded = True
            self.deflate = b"permessage-deflate" in head
            status = head.split(b"\r\n", 1)[0]
            expected = b" 101 " if self.kind != "sse" else b" 200 "
            if expected not in status + b" ":
                self._done(f"refused: {status!r}")
                return
            if self.subscribe is not None:
                assert self.transport is not None
                self.transport.write(_masked(0x1, self.subscribe))
                self.buffer = b""
                # The subscription's first answer (its acknowledgement) makes it ready.
                self.kind = "live-ws-waiting"
                self._frames()
                return
            self._done("ok")
            if self.kind == "sse":
                self.buffer = b""
                return
        elif self.kind == "sse":
            self.pushes += data.count(b"event: effects")
            return
        else:
            self.buffer += data
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length = int.from_bytes(buffer[2:4], "big")
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length = int.from_bytes(buffer[2:10], "big")
                start = 10
            if len(buffer) < start + length:
                break
            payload = buffer[start : start + length]
            buffer = buffer[start + length :]
            if opcode == 0x9 and self.transport is not None:
                self.transport.write(_masked(0xA, payload))
            elif opcode == 0x8:
                self._done(f"closed: {payload[:2].hex()} {payload[2:]!r}")
            elif opcode in (0x1, 0x2) and self.kind == "live-ws-waiting":
                self.kind = "live-ws"
                self._done("ok")
            elif opcode in (0x1, 0x2) and self.kind == "live-ws":
                self.pushes += 1
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._done("lost")

    def _done(self, outcome: str) -> None:
        if not self.ready.done():
            self.ready.set_result(outcome)


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked with key 0, which leaves the payload as it is)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    else:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def opening_request(kind: str, path: str, port: int, number: int) -> bytes:
    """The HTTP request that opens one connection of `kind` (`{n}` in `path` is `number`)."""
    path = path.replace("{n}", str(number))
    host = f"Host: 127.0.0.1:{port}\r\n"
    if kind == "sse":
        return f"GET {path} HTTP/1.1\r\n{host}Accept: text/event-stream\r\n\r\n".encode()
    key = base64.b64encode(number.to_bytes(16, "big")).decode()
    return (
        f"GET {path} HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        # What browsers offer: the cost of the extension shows if the server accepts it.
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    ).encode()


def subscription(number: int) -> bytes:
    """The envelope that subscribes a WebSocket to owner `number`'s `todos`."""
    return (
        b'{"uuid":"live","route":"LIVE","payload":{"contexts":'
        b'[{"context":"todos","params":{"owner_id":%d}}]}}' % number
    )


async def open_many(
    kind: str, path: str, port: int, count: int, first: int, opened: list[Idle]
) -> dict[str, int]:
    """Open `count` idle connections (256 handshakes at a time); return outcomes counted."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(256)
    outcomes: dict[str, int] = {}

    async def one(number: int) -> None:
        async with gate:
            request = opening_request(kind, path, port, number)
            protocol = Idle(request, kind, subscription(number) if kind == "live-ws" else None)
            try:
                await loop.create_connection(lambda: protocol, "127.0.0.1", port)
                outcome = await asyncio.wait_for(protocol.ready, 60)
            except (OSError, TimeoutError) as exc:
                outcome = f"error: {type(exc).__name__}: {exc}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            opened.append(protocol)

    await asyncio.gather(*(one(first + n) for n in range(count)))
    return outcomes


async def client_main(spec: dict[str, Any]) -> None:
    """Open connections on the orders read from stdin; report each batch on stdout."""
    raise_file_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    opened: list[Idle] = []
    first = 0
    while True:
        line = await reader.readline()
        if not line or line.strip() == b"quit":
            break
        order = json.loads(line)
        if order["op"] == "open":
            outcomes = await open_many(
                spec["kind"], spec["path"], spec["port"], order["count"], first, opened
            )
            first += order["count"]
            deflate = sum(1 for p in opened if p.deflate)
            report = {"outcomes": outcomes, "deflate": deflate}
        else:  # "check"
            report = {
                "lost": sum(1 for p in opened if p.lost),
                "open": len(opened),
                "pushed": sum(1 for p in opened if p.pushes),
            }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    for protocol in opened:
        if protocol.transport is not None:
            protocol.transport.abort()


# -- measuring ----------------------------------------------------------------------------


def memory(pid: int) -> dict[str, int]:
    """The process's RSS, PSS and USS in bytes (VmRSS, and /proc/<pid>/smaps_rollup)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) * KB
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def tether_settings(env: dict[str, str]) -> dict[str, Any]:
    """The uvicorn settings TetherServer applies (`tether.server.SERVER_SETTINGS`), in `env`."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from tether.server import SERVER_SETTINGS as s; print(json.dumps(dict(s)))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    settings: dict[str, Any] = json.loads(probe.stdout)
    return settings


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    """Return once the server accepts connections (or fail with its log)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                err = process.stderr.read().decode() if process.stderr else ""
                raise SystemExit(f"the server did not start:\n{err[-3000:]}") from None
            time.sleep(0.05)


def settle(pid: int, seconds: float) -> dict[str, int]:
    """Wait `seconds`, then until RSS changes by under 0.5% in half a second; return memory."""
    time.sleep(seconds)
    previous = memory(pid)
    for _ in range(40):
        time.sleep(0.5)
        now = memory(pid)
        if abs(now["rss"] - previous["rss"]) < previous["rss"] * 0.005:
            return now
        previous = now
    return previous


def measure(app_name: str, setting: str, args: argparse.Namespace) -> dict[str, Any]:
    """Serve `app_name` under `setting`, open the idle connections, and read the memory."""
    app = APPS[app_name]
    config, tether_server = parse_setting(setting)
    env = tether_source.environment(args.src)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(HERE)])
    if tether_server and not app["app"].startswith(("tether", "live")):
        # A bare app under tether's settings, on plain uvicorn: TetherServer refuses an app
        # without a Tether (and the bare app's server then imports no tether at all).
        tether_server = False
        config = {**tether_settings(env), **config}
    port = free_port()
    spec = {"app": app["app"], "port": port, "config": config, "tether_server": tether_server}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", json.dumps(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port(server, port)
        client_spec = {"kind": app["kind"], "path": app["path"], "port": port}
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", json.dumps(client_spec)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

        def order(message: dict[str, Any]) -> dict[str, Any]:
            assert client is not None
            assert client.stdin is not None
            assert client.stdout is not None
            client.stdin.write((json.dumps(message) + "\n").encode())
            client.stdin.flush()
            line = client.stdout.readline()
            if not line:
                raise SystemExit("the client process ended")
            answer: dict[str, Any] = json.loads(line)
            return answer

        warm = order({"op": "open", "count": args.warmup})
        before = settle(server.pid, 1.0)
        started = time.monotonic()
        opened = order({"op": "open", "count": args.connections})
        open_seconds = time.monotonic() - started
        after = settle(server.pid, args.settle)
        check = order({"op": "check"})
        established = opened["outcomes"].get("ok", 0)
        pushed = None
        if app["app"] == "live_app":
            # Once measured idle, one mutation that invalidates every owner's `todos`: each
            # subscriber must receive it (they are live, not merely connected).
            call = "POST /api/call/reset_all HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            call += (
                "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            )
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(call.encode())
                answer = sock.recv(4096)
            if b" 200 " not in answer.split(b"\r\n", 1)[0]:
                raise SystemExit(f"reset_all failed: {answer[:300]!r}")
            deadline = time.monotonic() + 60
            while True:
                pushed = order({"op": "check"})["pushed"]
                if pushed >= established + args.warmup or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        delta = {key: after[key] - before[key] for key in after}
        return {
            "app": app_name,
            "setting": setting,
            "connections": args.connections,
            "established": established,
            "outcomes": {
                **opened["outcomes"],
                **{f"warmup {k}": v for k, v in warm["outcomes"].items()},
            },
            "deflate_negotiated": opened["deflate"] > 0,
            "lost": check["lost"],
            "pushed": pushed,
            "open_seconds": round(open_seconds, 2),
            "before": before,
            "after": after,
            "delta": delta,
            "per_connection": {
                key: round(value / max(established, 1)) for key, value in delta.items()
            },
        }
    finally:
        if client is not None:
            try:
                assert client.stdin is not None
                client.stdin.write(b"quit\n")
                client.stdin.close()
            except OSError:
                pass
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def print_row(result: dict[str, Any]) -> None:
    """Print one measurement as a table row."""
    per = result["per_connection"]
    flags = []
    if result["deflate_negotiated"]:
        flags.append("deflate")
    if result["lost"]:
        flags.append(f"LOST {result['lost']}")
    if result["pushed"] is not None:
        flags.append(f"pushed to {result['pushed']}")
    bad = {k: v for k, v in result["outcomes"].items() if not k.endswith("ok")}
    if bad:
        flags.append(f"FAILED {bad}")
    print(
        f"{result['app']:<11} {result['setting']:<34} {result['established']:>6}"
        f" {result['after']['rss'] / MB:>9.1f} {result['delta']['rss'] / MB:>9.1f}"
        f" {per['rss'] / KB:>8.1f} {per['uss'] / KB:>8.1f} {per['pss'] / KB:>8.1f}"
        f"  {' '.join(flags)}",
        flush=True,
    )


def main() -> None:
    """Measure every app under every setting asked for, print the table, write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--apps", default=",".join(APPS))
    parser.add_argument(
        "--settings",
        nargs="*",
        help="settings to run (default: the WebSocket matrix for WebSocket apps, http/loop for SSE)",
    )
    tether_source.add_option(parser)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    if args.serve:
        serve(json.loads(args.serve))
        return
    if args.client:
        spec = json.loads(args.client)
        try:
            import uvloop

            uvloop.run(client_main(spec))
        except ImportError:
            asyncio.run(client_main(spec))
        return
    args.src = tether_source.src_dir(args.tether_src)
    tether = tether_source.describe(args.src)
    print(f"tether: {tether['package']} ({tether['revision']})")
    soft, hard = raise_file_limit()
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    print(
        f"RLIMIT_NOFILE {soft}/{hard} (server and client each raise it to the hard limit);"
        f" ephemeral ports {low}-{high} ({high - low + 1} per server address)"
    )
    needed = args.connections + args.warmup + 64
    if hard < needed or high - low + 1 < needed:
        raise SystemExit(f"{needed} connections need RLIMIT_NOFILE and ephemeral ports to match")
    print(
        f"{args.connections} idle connections (+{args.warmup} warm-up) per row;"
        " memory per connection = (after - before) / established"
    )
    print(
        f"{'app':<11} {'setting':<34} {'estab.':>6} {'RSS MB':>9} {'+RSS MB':>9}"
        f" {'RSS KB/c':>8} {'USS KB/c':>8} {'PSS KB/c':>8}"
    )
    results = []
    for app_name in args.apps.split(","):
        kind = APPS[app_name]["kind"]
        settings = args.settings or (SSE_SETTINGS if kind == "sse" else WS_SETTINGS)
        for setting in settings:
            result = measure(app_name, setting, args)
            print_row(result)
            results.append(result)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "connections": args.connections,
        "tether": tether,
        "results": results,
    }
    for path in record.write(report, kind="memory", label=args.label, save=args.save):
        print(f"written: {path}")


if __name__ == "__main__":
    main()
