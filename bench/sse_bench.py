"""SSE throughput: items per second of one 100,000-item stream from a real uvicorn server.

Usage: .venv/bin/python bench/sse_bench.py [--items N] [--rounds R]

The server is a separate uvicorn process (one worker, uvloop + httptools) pinned to one core;
this process is the client, pinned to the other core. The client reads the raw HTTP/1.1
response from a socket and only counts bytes, so that the server, not the client, is the
limit: the client's own CPU time is printed next to the server's. Each round opens
`GET /api/stream/numbers?n=N` and reads until the end of the chunked body; the stream is
then checked (N data events, the last id is N, then `event: end`). Prints the median
items/s over the rounds, and the server's CPU time per item. Target: >= 50,000 items/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

SERVER_CORE = 0
CLIENT_CORE = 1


def create_app() -> object:
    """The benchmarked app: one stream of consecutive integers."""
    from fastapi import FastAPI

    from tether import Tether

    api = Tether(prefix="/api")

    @api.stream
    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    app = FastAPI()
    api.mount(app)
    return app


def serve(port: int) -> None:
    """Run the app on uvicorn (the server process)."""
    import uvicorn

    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        lifespan="off",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_stream(port: int, items: int) -> bytes:
    """GET the stream over a raw socket; return the whole (chunked) response."""
    request = (
        f"GET /api/stream/numbers?n={items} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"0\r\n\r\n"):
                break
    return b"".join(chunks)


def check(response: bytes, items: int) -> None:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert b"text/event-stream" in head
    assert body.count(b"event: data\n") == items, "items missing"
    assert f"id: {items}\nevent: data\ndata: {items - 1}\n\n".encode() in body
    assert b"event: end\ndata: null\n\n" in body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    cores = os.cpu_count() or 1
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
    if cores > 1:
        command = ["taskset", "-c", str(SERVER_CORE), *command]
        os.sched_setaffinity(0, {CLIENT_CORE})
    server = subprocess.Popen(command, cwd=root)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.05)
        check(read_stream(port, 1000), 1000)  # warm-up
        rates: list[float] = []
        server_cpu: list[float] = []
        client_cpu: list[float] = []
        for _ in range(args.rounds):
            cpu_before = cpu_seconds(server.pid)
            own_before = time.process_time()
            started = time.perf_counter()
            response = read_stream(port, args.items)
            elapsed = time.perf_counter() - started
            server_cpu.append(cpu_seconds(server.pid) - cpu_before)
            client_cpu.append(time.process_time() - own_before)
            check(response, args.items)
            rates.append(args.items / elapsed)
    finally:
        server.terminate()
        server.wait(10)
    rate = statistics.median(rates)
    print(f"SSE: {args.items:,} items per stream, {args.rounds} rounds, {cores} cores")
    print(f"  items/s (median): {rate:,.0f}   [rounds: {', '.join(f'{r:,.0f}' for r in rates)}]")
    print(
        f"  server CPU per item: {statistics.median(server_cpu) / args.items * 1e6:.2f} us;"
        f" client CPU per stream: {statistics.median(client_cpu):.3f} s"
        f" (of {args.items / rate:.3f} s wall)"
    )
    print(f"  target >= 50,000 items/s: {'met' if rate >= 50_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
