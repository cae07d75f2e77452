"""SSE throughput: items per second of one 100,000-item stream from a real uvicorn server.

Usage: .venv/bin/python bench/sse_bench.py [--items N] [--rounds R] [--tether-src PATH]
                                           [--baseline-src PATH] [--save [--label NAME]]

The server is a separate uvicorn process (one worker, uvloop + httptools) pinned to one core;
this process is the client, pinned to the other core. The client reads the raw HTTP/1.1
response from a socket and only counts bytes, so that the server, not the client, is the
limit: the client's own CPU time is printed next to the server's. Each round opens
`GET /api/stream/numbers?n=N` and reads until the end of the chunked body; the stream is
then checked (N data events, the last id is N, then `event: end`). Prints the median
items/s over the rounds, and the server's CPU time per item. Target: >= 50,000 items/s.
Each round also records how much of either core other processes took; a round where that
is over 15% is CONTENDED and left out of the medians when some rounds are not. The run is
written to bench/results/latest-sse.json, and with --save to a dated record. With
--baseline-src, a second server runs the tether of another tree, and each round reads one
stream from each, back to back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import record
import tether_source
from load import CONTENDED
from servers import core_busy_seconds

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


def measure_round(port: int, pid: int, items: int, pinned: bool) -> dict[str, Any]:
    """Read one stream of `items` items; return its rate and the CPU accounting of the window."""
    cores = (SERVER_CORE, CLIENT_CORE) if pinned else ()
    busy_before = [core_busy_seconds(core) for core in cores]
    cpu_before = cpu_seconds(pid)
    own_before = time.process_time()
    started = time.perf_counter()
    response = read_stream(port, items)
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(pid) - cpu_before
    client_cpu = time.process_time() - own_before
    busy = [core_busy_seconds(core) - b for core, b in zip(cores, busy_before, strict=True)]
    check(response, items)
    result = {
        "items_per_s": items / elapsed,
        "seconds": elapsed,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        "other_load_on_server_core": 0.0,
        "other_load_on_client_core": 0.0,
    }
    if pinned:
        result["other_load_on_server_core"] = max(0.0, busy[0] - server_cpu) / elapsed
        result["other_load_on_client_core"] = max(0.0, busy[1] - client_cpu) / elapsed
    return result


def start_server(env: dict[str, str], pinned: bool) -> tuple[subprocess.Popen[bytes], int]:
    """Start one server process (tether from `env`'s PYTHONPATH); wait until it accepts."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
    if pinned:
        command = ["taskset", "-c", str(SERVER_CORE), *command]
    server = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], env=env)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("the server did not start") from None
            time.sleep(0.05)
    check(read_stream(port, 1000), 1000)  # warm-up
    return server, port


def summarize(name: str, rounds: list[dict[str, Any]], items: int) -> dict[str, Any]:
    """Print one server's median over its uncontended rounds (all, if none is); return it."""
    contended = [
        max(r["other_load_on_server_core"], r["other_load_on_client_core"]) > CONTENDED
        for r in rounds
    ]
    used = [r for r, c in zip(rounds, contended, strict=True) if not c] or rounds
    rate = statistics.median(r["items_per_s"] for r in used)
    cpu_per_item = statistics.median(r["server_cpu_s"] for r in used) / items * 1e6
    print(
        f"  {name}: items/s (median): {rate:,.0f}   [rounds: "
        + ", ".join(
            f"{r['items_per_s']:,.0f}{' CONTENDED' if c else ''}"
            for r, c in zip(rounds, contended, strict=True)
        )
        + "]"
    )
    print(
        f"  {name}: {sum(contended)} of {len(rounds)} rounds CONTENDED (other processes took over "
        f"{CONTENDED:.0%} of a core)"
        + (": left out of the medians" if any(contended) and len(used) < len(rounds) else "")
    )
    print(
        f"  {name}: server CPU per item: {cpu_per_item:.2f} us;"
        f" client CPU per stream: {statistics.median(r['client_cpu_s'] for r in used):.3f} s"
        f" (of {items / rate:.3f} s wall)"
    )
    return {
        "items_per_s": rate,
        "server_cpu_us_per_item": cpu_per_item,
        "rounds_used": len(used),
        "contended_rounds": sum(contended),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", action="store_true", help="also write results/<date>-sse.json")
    parser.add_argument("--label", default="", help="with --save: results/<date>-LABEL-sse.json")
    tether_source.add_option(parser)
    tether_source.add_baseline_option(parser)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    started = time.monotonic()
    src = tether_source.src_dir(args.tether_src)
    tether = tether_source.describe(src)
    print(f"tether from {tether['package']} at {tether['revision']}")
    envs = {"tether": tether_source.environment(src)}
    baseline = None
    if args.baseline_src is not None:
        baseline_dir = tether_source.src_dir(args.baseline_src)
        baseline = tether_source.describe(baseline_dir)
        envs[args.baseline_label] = tether_source.environment(baseline_dir)
        print(
            f"baseline ({args.baseline_label}): tether from {baseline['package']} at "
            f"{baseline['revision']}, each round measured right after tether's"
        )
    cores = os.cpu_count() or 1
    pinned = cores > 1
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CORE})
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in envs}
    try:
        for name, env in envs.items():
            servers[name] = start_server(env, pinned)
        for _ in range(args.rounds):
            for name, (server, port) in servers.items():
                rounds[name].append(measure_round(port, server.pid, args.items, pinned))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(10)
    print(f"SSE: {args.items:,} items per stream, {args.rounds} rounds, {cores} cores")
    summaries = {name: summarize(name, found, args.items) for name, found in rounds.items()}
    rate = summaries["tether"]["items_per_s"]
    print(f"  target >= 50,000 items/s: {'met' if rate >= 50_000 else 'NOT met'}")
    if baseline is not None:
        ours, theirs = summaries["tether"], summaries[args.baseline_label]
        print(
            f"  tether / {args.baseline_label}: items/s "
            f"{ours['items_per_s'] / theirs['items_per_s']:.2f}x, server CPU per item "
            f"{ours['server_cpu_us_per_item'] / theirs['server_cpu_us_per_item']:.2f}x"
        )
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tether_revision": tether["revision"],
        "tether_source": tether,
        "label": args.label,
        "baseline_source": baseline,
        "baseline_label": args.baseline_label if baseline else None,
        "settings": {"items": args.items, "rounds": args.rounds, "cores": cores},
        **summaries["tether"],
        "baseline": summaries.get(args.baseline_label) if baseline else None,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    written = record.write(report, kind="sse", label=args.label, save=args.save)
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")


if __name__ == "__main__":
    main()
