"""WebSocket envelope round trips: tether's `/api/ws` against fastapi-observable-socket.

Run:  .venv/bin/python bench/ws_bench.py [--duration 5] [--warmup 1] [--rounds 3]
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
floor per round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    "observable-socket": (observable_socket_app, "/ws"),
    "bare-asgi-floor": (floor_app, "/"),
}


def serve(name: str, port: int) -> None:
    """Run one server (the `--serve` mode of this script)."""
    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
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
    name: str, connections: int, processes: int, warmup: float, duration: float
) -> dict[str, Any]:
    """Start the server, load it, return round trips/s, server µs/rt and utilisations."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", name, "--port", str(port)],
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
        time.sleep(max(0.0, marks[0] - time.time()))
        server_start = cpu_seconds(server.pid)
        time.sleep(max(0.0, marks[1] - time.time()))
        server_end = cpu_seconds(server.pid)
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
        return {
            "round_trips_per_s": replies / duration,
            "server_us_per_rt": server_cpu / replies * 1e6 if replies else float("inf"),
            "server_utilisation": server_cpu / duration,
            "client_utilisation": client_cpu,
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


def main() -> None:
    """Measure every scenario in interleaved rounds and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    names = [name for name in SERVERS if available(name) is None]
    for name in SERVERS:
        reason = available(name)
        if reason:
            print(f"skipping {name}: {reason}")
    scenarios = [("1 connection x 64 in flight", 1, 1), ("8 connections x 64 in flight", 8, 4)]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_index in range(args.rounds):
        for label, connections, processes in scenarios:
            for name in names:
                result = measure(name, connections, processes, args.warmup, args.duration)
                results.setdefault((name, label), []).append(result)
                bound = bottleneck(result)
                print(
                    f"round {round_index + 1} {name:18} {label:30}"
                    f" {result['round_trips_per_s']:9.0f} rt/s"
                    f" {result['server_us_per_rt']:6.1f} µs/rt"
                    f"  server cpu {result['server_utilisation']:.2f}"
                    f"  clients cpu {', '.join(f'{c:.2f}' for c in result['client_utilisation'])}"
                    f"  {bound}",
                    flush=True,
                )
    print("\nmedians (rounds in which every server's core was saturated):")
    for label, _, _ in scenarios:
        # A round where some server did not saturate its core was disturbed by other load
        # on that core: its figures (and its ratios) are left out, and counted.
        clean = [
            index
            for index in range(args.rounds)
            if all(results[(name, label)][index]["server_utilisation"] >= 0.9 for name in names)
        ]
        print(f"  {label}: {len(clean)} of {args.rounds} rounds clean")
        if not clean:
            continue
        for name in names:
            results[(name, label)] = [results[(name, label)][index] for index in clean]
        medians = {}
        for name in names:
            runs = results[(name, label)]
            medians[name] = (
                statistics.median(r["round_trips_per_s"] for r in runs),
                statistics.median(r["server_us_per_rt"] for r in runs),
            )
            print(
                f"  {name:18} {label:30} {medians[name][0]:9.0f} rt/s"
                f" {medians[name][1]:6.1f} µs/rt (server CPU)"
            )
        if "observable-socket" in medians:
            ours, theirs = medians["tether"], medians["observable-socket"]
            print(
                f"  ratio {label}: round trips {ours[0] / theirs[0]:.2f}x (target >= 1.5x),"
                f" server CPU per rt {ours[1] / theirs[1]:.2f} (target <= 0.67)"
            )
            # Each round measures both servers back to back: the median of the per-round
            # ratios is less sensitive to drift in the machine's load than a ratio of medians.
            pairs = list(
                zip(results[("tether", label)], results[("observable-socket", label)], strict=True)
            )
            rt_ratio = statistics.median(
                a["round_trips_per_s"] / b["round_trips_per_s"] for a, b in pairs
            )
            cpu_ratio = statistics.median(
                a["server_us_per_rt"] / b["server_us_per_rt"] for a, b in pairs
            )
            print(
                f"  per-round ratios, median: round trips {rt_ratio:.2f}x,"
                f" server CPU per rt {cpu_ratio:.2f}"
            )


if __name__ == "__main__":
    main()
