"""WebSocket envelope round trips: tether's `/api/ws` against fastapi-observable-socket.

Run:  .venv/bin/python bench/ws_bench.py [--duration 5] [--warmup 1] [--rounds 3]
                                          [--tether-src PATH] [--baseline-src PATH]
                                          [--save [--label NAME]]
      (needs `pip install fastapi-observable-socket` in the same environment for the
      comparison; without it only tether is measured and the script says so).

What it measures, in one run, on loopback, for each server:

- envelope round trips per second of `math/sum` with payload `[1, 2, 3, 4]` on ONE
  connection with 64 requests in flight, and on 8 connections with 64 in flight each;
- the server's CPU time per round trip, in µs: the CPU seconds of the server process
  (utime + stime from /proc/<pid>/stat) over the measured window, divided by the round
  trips completed in that window.

Each server is one uvicorn process (uvloop, httptools, the default `websockets-sansio`
protocol), pinned to core 0; the load comes from separate client processes pinned to the
other core(s). The client is a minimal asyncio WebSocket client that writes pre-built
frames and only counts reply frames (one reply per request; a sample of replies is
decoded and checked), so it costs a few µs per round trip. How the bottleneck is
checked: the script prints the server's CPU utilisation (CPU seconds / wall seconds; ~1.0
means the server's core is saturated) and each client process's, and labels each run:
"server-bound" when the server's core is >= 90% busy, "CLIENT-BOUND" when a client process
is, and "neither" otherwise (another process competing for the server's core). A third
server, a bare ASGI app that answers every message with a constant, shows uvicorn's own
floor per round trip: tether's ratio to it is printed beside its ratio to the peer. Each
measurement also records how much of the server's core and of the clients' cores other
processes took ("other"); a round where some server did not saturate its core is left out.
With --baseline-src, a second tether (another source tree) is measured right after tether in
every round, and tether's ratio to it is printed. The run is written to
bench/results/latest-ws.json, and with --save to a dated record.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import record
import tether_source
from load import CONTENDED
from servers import core_busy_seconds

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IN_FLIGHT = 64
PAYLOAD = b"[1,2,3,4]"


# -- servers ------------------------------------------------------------------------------


def tether_app() -> Any:
    """The tether server: a `math` service whose `sum` adds a list of integers."""
    from fastapi import FastAPI

    from tether import Service, Tether, query
    from tether.transports.websocket import WebSocketTransport

    class Math(Service, name="math"):
        @query
        async def sum(self, values: list[int]) -> dict[str, int]:
            return {"sum": sum(values)}

    api = Tether(prefix="/api")
    api.include(Math)
    app = FastAPI()
    api.mount(app, transports=[WebSocketTransport()])
    return app


def observable_socket_app() -> Any:
    """The same sum on fastapi-observable-socket's SocketRouter, at `/ws`."""
    from fastapi import FastAPI
    from fastapi_observable_socket import SocketRouter, Status  # type: ignore[import-untyped]

    router = SocketRouter()

    # In 1.1.1 a route without `hydrate` receives the hooks' local dict, not the payload,
    # so `hydrate` hands the payload to the handler (its documented way to build arguments).
    async def hydrate(ws: Any, message: dict[str, Any]) -> Any:
        return message["payload"]

    @router.route("math/sum", options={"hydrate": hydrate})  # type: ignore[untyped-decorator]
    async def sum_handler(values: list[int]) -> Any:
        return {"status": Status.OK, "payload": {"sum": sum(values)}}

    async def endpoint(websocket: Any) -> None:
        await router(websocket)

    app = FastAPI()
    # FastAPI apps no longer have add_websocket_route; the router's method still exists.
    app.router.add_websocket_route("/ws", endpoint)
    return app


def floor_app() -> Any:
    """The floor: a bare ASGI app that answers every message with a constant reply."""
    reply = '{"uuid":0,"status":200,"headers":{},"payload":{"sum":10}}'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": reply})

    return app


SERVERS = {
    "tether": (tether_app, "/api/ws"),
    # The same app from the --baseline-src tree (its PYTHONPATH), measured only with that option.
    "tether-baseline": (tether_app, "/api/ws"),
    "observable-socket": (observable_socket_app, "/ws"),
    "bare-asgi-floor": (floor_app, "/"),
}


def serve(name: str, port: int) -> None:
    """Run one server (the `--serve` mode of this script)."""
    import uvicorn

    # tether comes from PYTHONPATH, which measure() sets (see tether_source.py).
    factory, _ = SERVERS[name]
    uvicorn.run(
        factory(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the client ---------------------------------------------------------------------------


def request_frames(count: int) -> list[bytes]:
    """Masked text frames `{"uuid": i, "route": "math/sum", "headers": {}, "payload": [1,2,3,4]}`.

    fastapi-observable-socket 1.1.1 refuses requests without "headers" (its model has no
    default), so every request carries an empty one.

    The mask key is zero (valid, and the payload then goes out as is).
    """
    frames = []
    for uuid in range(count):
        body = b'{"uuid":%d,"route":"math/sum","headers":{},"payload":%s}' % (uuid, PAYLOAD)
        assert len(body) < 126
        frames.append(bytes([0x81, 0x80 | len(body)]) + b"\0\0\0\0" + body)
    return frames


class LoadProtocol(asyncio.Protocol):
    """One connection that keeps `IN_FLIGHT` requests outstanding and counts the replies."""

    def __init__(self, path: str, port: int, frames: list[bytes]) -> None:
        self.path = path
        self.port = port
        self.frames = frames
        self.next = 0
        self.replies = 0
        self.buffer = b""
        self.open = False
        self.sample: bytes | None = None
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send(self, count: int) -> None:
        frames = self.frames
        start = self.next
        end = start + count
        size = len(frames)
        self.next = end % size
        if end <= size:
            chunk = frames[start:end]
        else:
            chunk = frames[start:] + frames[: end - size]
        assert self.transport is not None
        self.transport.write(b"".join(chunk))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.open:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = buffer
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"handshake refused: {head[:80]!r}")
            self.open = True
            self.ready.set_result(None)
            buffer = rest
            self.send(IN_FLIGHT)
        position = 0
        available = len(buffer)
        count = 0
        while available - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if available - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if available - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > available:
                break
            if self.sample is None:
                self.sample = buffer[position + header : end]
            count += 1
            position = end
        self.buffer = buffer[position:]
        if count:
            self.replies += count
            self.send(count)


def client_process(
    path: str, port: int, connections: int, marks: list[float], pipe: Any, core: int | None
) -> None:
    """Open `connections` sockets; report (replies, own CPU seconds) at each time in `marks`."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the bench still runs, only slower
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        protocols = []
        for _ in range(connections):
            frames = request_frames(4096)

            def make(frames: list[bytes] = frames) -> LoadProtocol:
                return LoadProtocol(path, port, frames)

            _, protocol = await loop.create_connection(make, "127.0.0.1", port)
            await protocol.ready
            protocols.append(protocol)
        readings = []
        for mark in marks:
            await asyncio.sleep(max(0.0, mark - time.time()))
            readings.append((sum(p.replies for p in protocols), time.process_time()))
        samples = [p.sample for p in protocols]
        pipe.send((readings, samples))

    asyncio.run(main())


# -- one measurement ----------------------------------------------------------------------


def measure(
    name: str,
    connections: int,
    processes: int,
    warmup: float,
    duration: float,
    env: dict[str, str],
) -> dict[str, Any]:
    """Start the server, load it, return round trips/s, server µs/rt and utilisations."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", name, "--port", str(port)],
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{name} server did not start") from None
                time.sleep(0.05)
        path = SERVERS[name][1]
        cores: list[int | None] = [*sorted(os.sched_getaffinity(0) - {0})] or [None]
        start = time.time() + 1.0 + 0.2 * connections
        marks = [start + warmup, start + warmup + duration]
        per_process = [connections // processes] * processes
        for index in range(connections % processes):
            per_process[index] += 1
        pipes = []
        clients = []
        for index, count in enumerate(per_process):
            receiver, sender = multiprocessing.Pipe(duplex=False)
            process = multiprocessing.Process(
                target=client_process,
                args=(path, port, count, marks, sender, cores[index % len(cores)]),
            )
            process.start()
            pipes.append(receiver)
            clients.append(process)
        client_cores = sorted({c for c in cores if c is not None})
        time.sleep(max(0.0, marks[0] - time.time()))
        server_start = cpu_seconds(server.pid)
        busy_start = [core_busy_seconds(0), sum(map(core_busy_seconds, client_cores))]
        time.sleep(max(0.0, marks[1] - time.time()))
        server_end = cpu_seconds(server.pid)
        busy_end = [core_busy_seconds(0), sum(map(core_busy_seconds, client_cores))]
        replies = 0
        client_cpu = []
        for receiver, process in zip(pipes, clients, strict=True):
            readings, samples = receiver.recv()
            process.join()
            (first, cpu_first), (last, cpu_last) = readings
            replies += last - first
            client_cpu.append((cpu_last - cpu_first) / duration)
            for sample in samples:
                if b'"payload":{"sum":10}' not in sample or b'"status":200' not in sample:
                    raise RuntimeError(f"unexpected reply from {name}: {sample!r}")
        server_cpu = server_end - server_start
        server_core_busy = busy_end[0] - busy_start[0]
        client_cores_busy = busy_end[1] - busy_start[1]
        return {
            "round_trips_per_s": replies / duration,
            "server_us_per_rt": server_cpu / replies * 1e6 if replies else float("inf"),
            "server_utilisation": server_cpu / duration,
            "client_utilisation": client_cpu,
            # Shares of a core taken by processes outside the benchmark (0 when unpinned).
            "other_load_on_server_core": max(0.0, server_core_busy - server_cpu) / duration,
            "other_load_on_client_cores": (
                max(0.0, client_cores_busy - sum(client_cpu) * duration) / duration
                if client_cores
                else 0.0
            ),
        }
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            # fastapi-observable-socket's handler does not end on shutdown; stop it hard.
            server.kill()
            server.wait(5)


def bottleneck(result: dict[str, Any]) -> str:
    """Say what limited a run: the server's core, a client process, or neither."""
    if result["server_utilisation"] >= 0.9:
        return "server-bound (its core saturated)"
    if max(result["client_utilisation"]) >= 0.9:
        return "CLIENT-BOUND: discard"
    return "neither saturated: other load on the server's core?"


def available(name: str) -> str | None:
    """Return why the server cannot run here, or None."""
    if name == "observable-socket":
        try:
            import fastapi_observable_socket  # noqa: F401
        except ImportError as exc:
            return f"fastapi-observable-socket is not installed ({exc})"
    return None


def ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, float]:
    """tether over another server: ratios of the medians, and medians of per-round ratios.

    Each round measures every server back to back, so the median of the per-round ratios is
    less sensitive to drift in the machine's load than the ratio of the medians.
    """
    pairs = list(zip(ours, theirs, strict=True))
    return {
        "round_trips": statistics.median(r["round_trips_per_s"] for r in ours)
        / statistics.median(r["round_trips_per_s"] for r in theirs),
        "server_cpu_per_rt": statistics.median(r["server_us_per_rt"] for r in ours)
        / statistics.median(r["server_us_per_rt"] for r in theirs),
        "per_round_round_trips": statistics.median(
            a["round_trips_per_s"] / b["round_trips_per_s"] for a, b in pairs
        ),
        "per_round_server_cpu_per_rt": statistics.median(
            a["server_us_per_rt"] / b["server_us_per_rt"] for a, b in pairs
        ),
    }


def summarize(
    label: str,
    rounds: int,
    names: list[str],
    results: dict[tuple[str, str], list[dict[str, Any]]],
    baseline_label: str = "before",
) -> dict[str, Any]:
    """Print one scenario's medians and tether's ratios to the peer and the floor; return them."""
    # A round where some server did not saturate its core was disturbed by other load on that
    # core: its figures (and its ratios) are left out, and counted.
    clean = [
        index
        for index in range(rounds)
        if all(results[(name, label)][index]["server_utilisation"] >= 0.9 for name in names)
    ]
    contended = sum(
        max(r["other_load_on_server_core"], r["other_load_on_client_cores"]) > CONTENDED
        for name in names
        for r in results[(name, label)]
    )
    print(
        f"  {label}: {len(clean)} of {rounds} rounds clean; {contended} of "
        f"{rounds * len(names)} measurements had other processes take over {CONTENDED:.0%} "
        "of a core"
    )
    summary: dict[str, Any] = {"clean_rounds": clean, "contended_measurements": contended}
    if not clean:
        # As bench/run.py does: the figures then rest on every round, and say so.
        print(f"  WARNING {label}: no clean round; medians over all {rounds}: treat with care")
    used = {
        name: [results[(name, label)][index] for index in clean or range(rounds)] for name in names
    }
    summary["medians"] = {}
    for name in names:
        rt = statistics.median(r["round_trips_per_s"] for r in used[name])
        cpu = statistics.median(r["server_us_per_rt"] for r in used[name])
        summary["medians"][name] = {"round_trips_per_s": rt, "server_us_per_rt": cpu}
        print(f"  {name:18} {label:30} {rt:9.0f} rt/s {cpu:6.1f} µs/rt (server CPU)")
    if "observable-socket" in used:
        peer = summary["peer_ratios"] = ratios(used["tether"], used["observable-socket"])
        print(
            f"  ratio {label}: round trips {peer['round_trips']:.2f}x (target >= 1.5x),"
            f" server CPU per rt {peer['server_cpu_per_rt']:.2f} (target <= 0.67)"
        )
        print(
            f"  per-round ratios, median: round trips {peer['per_round_round_trips']:.2f}x,"
            f" server CPU per rt {peer['per_round_server_cpu_per_rt']:.2f}"
        )
    if "tether-baseline" in used:
        base = summary["baseline_ratios"] = ratios(used["tether"], used["tether-baseline"])
        print(
            f"  {baseline_label} {label}: tether / {baseline_label}: round trips "
            f"{base['round_trips']:.2f}x, server CPU per rt {base['server_cpu_per_rt']:.2f}x"
            f" (per-round medians {base['per_round_round_trips']:.2f}x,"
            f" {base['per_round_server_cpu_per_rt']:.2f}x)"
        )
    floor = summary["floor_ratios"] = ratios(used["tether"], used["bare-asgi-floor"])
    print(
        f"  floor {label}: tether / bare ASGI echo: round trips {floor['round_trips']:.2f}x,"
        f" server CPU per rt {floor['server_cpu_per_rt']:.2f}x"
        f" (per-round medians {floor['per_round_round_trips']:.2f}x,"
        f" {floor['per_round_server_cpu_per_rt']:.2f}x)"
    )
    return summary


def main() -> None:
    """Measure every scenario in interleaved rounds and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save", action="store_true", help="also write results/<date>-ws.json")
    parser.add_argument("--label", default="", help="with --save: results/<date>-LABEL-ws.json")
    tether_source.add_option(parser)
    tether_source.add_baseline_option(parser)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    started = time.monotonic()
    src = tether_source.src_dir(args.tether_src)
    tether = tether_source.describe(src)
    env = tether_source.environment(src)
    print(f"tether from {tether['package']} at {tether['revision']}")
    envs = dict.fromkeys(SERVERS, env)
    baseline = None
    if args.baseline_src is not None:
        baseline_dir = tether_source.src_dir(args.baseline_src)
        baseline = tether_source.describe(baseline_dir)
        envs["tether-baseline"] = tether_source.environment(baseline_dir)
        print(
            f"baseline ({args.baseline_label}): tether from {baseline['package']} at "
            f"{baseline['revision']}, measured right after tether"
        )
    names = [
        name
        for name in SERVERS
        if available(name) is None and (baseline is not None or name != "tether-baseline")
    ]
    for name in SERVERS:
        reason = available(name)
        if reason:
            print(f"skipping {name}: {reason}")
    scenarios = [("1 connection x 64 in flight", 1, 1), ("8 connections x 64 in flight", 8, 4)]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_index in range(args.rounds):
        for label, connections, processes in scenarios:
            for name in names:
                result = measure(
                    name, connections, processes, args.warmup, args.duration, envs[name]
                )
                results.setdefault((name, label), []).append(result)
                print(
                    f"round {round_index + 1} {name:18} {label:30}"
                    f" {result['round_trips_per_s']:9.0f} rt/s"
                    f" {result['server_us_per_rt']:6.1f} µs/rt"
                    f"  server cpu {result['server_utilisation']:.2f}"
                    f"  clients cpu {', '.join(f'{c:.2f}' for c in result['client_utilisation'])}"
                    f"  other {result['other_load_on_server_core']:.0%}"
                    f"/{result['other_load_on_client_cores']:.0%}"
                    f"  {bottleneck(result)}",
                    flush=True,
                )
    print("\nmedians (rounds in which every server's core was saturated):")
    summaries = {
        label: summarize(label, args.rounds, names, results, args.baseline_label)
        for label, _, _ in scenarios
    }
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tether_revision": tether["revision"],
        "tether_source": tether,
        "label": args.label,
        "baseline_source": baseline,
        "baseline_label": args.baseline_label if baseline else None,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "in_flight": IN_FLIGHT,
        },
        "servers": names,
        "scenarios": {
            label: {
                **summaries[label],
                "rounds": {name: results[(name, label)] for name in names},
            }
            for label, _, _ in scenarios
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    written = record.write(report, kind="ws", label=args.label, save=args.save)
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")


if __name__ == "__main__":
    main()
