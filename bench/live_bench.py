"""Live push (issue 12): push latency, in one worker and across workers, and idle subscribers per worker.

Usage: .venv/bin/python bench/live_bench.py [--posts N] [--rate R] [--sample-ws K] [--sample-sse K]
           [--levels 1000,2000,5000,10000] [--level-posts N] [--modes feed,inbox,fanout]
           [--fanout-rate R] [--fanout-posts N] [--only latency|ramp]
           [--tether-src PATH] [--save [--label NAME]]

The server is tests/e2e/_live_app.py under uvicorn (its defaults, from the command line as
`uvicorn --workers` needs). A publisher posts `post(publisher="bench", seq=i)` over HTTP (one
keep-alive connection, paced at `--rate` posts per second); sample subscribers read the
context `feed` with `publisher=bench`, over the WebSocket envelope (`LIVE`) and over SSE
(`GET /api/live`). The latency of a push is the time from just before the post is written to
the socket to the moment a subscriber has read the push that names its seq; the publisher
and the subscribers share this process's clock. Measured:

1. **latency**, three ways: one worker with the memory broker; one worker with Redis (what
   Redis adds); three workers with Redis, the publisher's connection on one worker and every
   sample subscriber on another (what crossing processes adds). p50, p99 and max per way and
   per transport, and the ratio of each to the one-worker memory figure.
2. **ramp**: one worker, memory broker: SSE subscribers are added up to each level (1k, 2k,
   5k, 10k), and at each level the sample subscribers' latency is measured again. Three
   modes say what the added subscribers read:
   - `feed`: the context of the pushes with a publisher of their own (`feed`,
     `publisher=idle-N`), as per-user subscribers of one context do: no push is theirs, and
     the hub must tell them apart by param value;
   - `inbox`: a context no post touches: idle for the hub too;
   - `fanout`: the sample's own topic: every push goes to every subscriber (at
     `--fanout-rate`, 10 posts per second by default; the others use `--rate`).
   The figure per mode is the largest level whose p99 stays under 100 ms with no push lost;
   the worker's RSS is shown beside each level (docs/bench.md's "Idle subscribers (issue 12)"
   measures memory properly).

One worker runs pinned to core 0, and this client (and Redis) to core 1; three workers are
not pinned. The client raises RLIMIT_NOFILE to its hard limit (the servers inherit it). The
run is written to bench/results/latest-live.json, and with --save to a dated record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import record
import tether_source
from events_bench import redis_server

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.e2e._live_app:app"
SERVER_CORE, CLIENT_CORE = 0, 1
TARGET_P99_MS = 100.0
WAIT_S = 10.0
"""Seconds to wait for the last pushes (or a connection) before counting them lost."""


# -- the server ----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`uvicorn tests.e2e._live_app:app` with `workers` processes; stopped by PID."""

    def __init__(self, src: Path, workers: int, broker: str | None, pinned: bool) -> None:
        self.port = free_port()
        self.workers = workers
        self.pids: set[int] = set()
        env = tether_source.environment(src)
        env["PYTHONPATH"] = os.pathsep.join((env["PYTHONPATH"], str(ROOT)))
        env.pop("TETHER_BROKER", None)
        if broker is not None:
            env["TETHER_BROKER"] = broker
        command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        command += ["--backlog", "4096", "--timeout-graceful-shutdown", "1"]
        if workers > 1:
            command += ["--workers", str(workers)]
        if pinned:
            command = ["taskset", "-c", str(SERVER_CORE), *command]
        self.log = tempfile.NamedTemporaryFile(prefix="live-bench-", suffix=".log")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        """The end of the server's log (its errors, if it failed)."""
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"uvicorn exited:\n{self.output()}")
            try:
                conn = await Http.open(self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("uvicorn did not answer within 30 s") from None
                await asyncio.sleep(0.1)
                continue
            self.pids.add(await conn.pid())
            conn.close()
            return

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the clients ---------------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection, as lean as a client gets (no parsing beyond need)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Http:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        if body:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)

    async def head(self) -> tuple[int, dict[bytes, bytes]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split(b" ", 2)[1]), headers

    async def answer(self) -> tuple[int, bytes]:
        status, headers = await self.head()
        return status, await self.reader.readexactly(int(headers.get(b"content-length", b"0")))

    async def pid(self) -> int:
        self.send("GET", "/api/call/pid")
        status, body = await self.answer()
        if status != 200:
            raise SystemExit(f"GET /api/call/pid answered {status}: {body[:200]!r}")
        return int(orjson.loads(body)["result"])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body of a chunked response, chunk by chunk."""
        while True:
            size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]

    def close(self) -> None:
        self.writer.close()


class Sample:
    """A sample subscriber: when it read the push of each seq."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pid = 0
        self.got: dict[int, float] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def record(self, payload: dict[str, Any]) -> None:
        now = time.perf_counter()
        for entry in payload.get("invalidate", ()):
            self.got.setdefault(entry["params"]["seq"], now)


FEED_QUERY = "contexts=feed&publisher=bench"


async def sample_sse(port: int, sample: Sample, avoid: int) -> bool:
    """Subscribe over SSE on a connection whose worker is not `avoid`; read pushes until cancelled."""
    conn = await Http.open(port)
    try:
        sample.pid = await conn.pid()
        if sample.pid == avoid:
            return False
        conn.send("GET", f"/api/live?{FEED_QUERY}")
        status, headers = await conn.head()
        if status != 200 or headers.get(b"transfer-encoding") != b"chunked":
            raise SystemExit(f"GET /api/live answered {status} {headers}")
        buffer = b""
        async for chunk in conn.chunks():
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                kind, data = b"", b""
                for line in event.split(b"\n"):
                    if line.startswith(b"event:"):
                        kind = line[6:].strip()
                    elif line.startswith(b"data:"):
                        data += line[5:].strip()
                if kind == b"ready":
                    sample.ready.set()
                elif kind == b"effects":
                    sample.record(orjson.loads(data))
        return True
    finally:
        conn.close()


async def sample_ws(port: int, sample: Sample, avoid: int) -> bool:
    """Subscribe over the WebSocket envelope on a worker that is not `avoid`; read until cancelled."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/api/ws", max_size=None) as ws:
        await ws.send('{"uuid":"pid","route":"pid","payload":{}}')
        sample.pid = int(orjson.loads(await ws.recv())["payload"])
        if sample.pid == avoid:
            return False
        topic = {"context": "feed", "params": {"publisher": "bench"}}
        live = {"uuid": "live", "route": "LIVE", "payload": {"contexts": [topic]}}
        await ws.send(orjson.dumps(live).decode())
        async for raw in ws:
            message = orjson.loads(raw)
            stream = message.get("headers", {}).get("stream")
            if stream == "ready":
                sample.ready.set()
            elif stream == "item":
                sample.record(message["payload"])
            else:
                raise SystemExit(f"LIVE answered {message}")
        return True


async def open_samples(port: int, ws: int, sse: int, avoid: int = 0) -> list[Sample]:
    """`ws` + `sse` sample subscribers, none on worker `avoid` (0: any), each subscribed."""
    samples: list[Sample] = []
    for kind, count in (("ws", ws), ("sse", sse)):
        for _ in range(count):
            for _attempt in range(100):
                sample = Sample(kind)
                run = sample_ws if kind == "ws" else sample_sse
                task = asyncio.ensure_future(run(port, sample, avoid))
                ready = asyncio.ensure_future(sample.ready.wait())
                await asyncio.wait((task, ready), timeout=WAIT_S, return_when="FIRST_COMPLETED")
                if sample.ready.is_set():
                    sample.task = task
                    samples.append(sample)
                    break
                ready.cancel()
                if not task.done():
                    task.cancel()
                    raise SystemExit(f"a {kind} subscriber was not ready within {WAIT_S:g} s")
                if task.result():
                    raise SystemExit(f"a {kind} subscription ended before it was ready")
            else:
                raise SystemExit(f"no {kind} connection reached another worker than {avoid}")
    return samples


async def close_samples(samples: list[Sample]) -> None:
    for sample in samples:
        if sample.task is not None:
            sample.task.cancel()
    await asyncio.gather(*(s.task for s in samples if s.task), return_exceptions=True)


class Idle(asyncio.Protocol):
    """An idle SSE subscriber: ready once its `ready` event came; the rest is read and dropped."""

    def __init__(self, request: bytes, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.ready = ready
        self.seen = b""
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.ready.done():
            return
        self.seen += data
        if not self.seen.startswith(b"HTTP/1.1 200") and len(self.seen) >= 12:
            self.ready.set_exception(SystemExit(f"idle subscriber refused: {self.seen[:300]!r}"))
        elif b"event: ready" in self.seen:
            self.seen = b""
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(SystemExit(f"idle subscriber lost before ready: {exc}"))


IDLE_QUERIES = {
    "feed": "contexts=feed&publisher=idle-{}",
    "inbox": "contexts=inbox&owner=idle-{}",
    "fanout": FEED_QUERY,
}


async def open_idle(port: int, first: int, count: int, mode: str, held: list[Idle]) -> None:
    """Open `count` SSE subscribers (numbered from `first`) of `mode`, 200 at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    query = IDLE_QUERIES[mode]

    async def one(number: int) -> None:
        async with gate:
            path = "/api/live?" + query.format(quote(str(number)))
            request = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode()
            ready: asyncio.Future[None] = loop.create_future()
            _, protocol = await loop.create_connection(
                lambda: Idle(request, ready), "127.0.0.1", port
            )
            await asyncio.wait_for(ready, WAIT_S)
            held.append(protocol)

    await asyncio.gather(*(one(n) for n in range(first, first + count)))


# -- measuring -----------------------------------------------------------------------------


async def publish(
    port: int, posts: int, rate: float, first_seq: int, avoid_pid: int = 0
) -> tuple[dict[int, float], int, float]:
    """Post `posts` times at `rate` per second on one keep-alive connection; return send times.

    With `avoid_pid`, the connection is one whose worker is `avoid_pid` (the publisher's
    worker, chosen first by the caller). Returns (seq -> send time, its worker's PID, the
    achieved rate).
    """
    conn = await Http.open(port)
    for _ in range(100):
        pid = await conn.pid()
        if not avoid_pid or pid == avoid_pid:
            break
        conn.close()
        conn = await Http.open(port)
    else:
        raise SystemExit(f"no connection reached worker {avoid_pid}")
    sent: dict[int, float] = {}
    interval = 1.0 / rate
    started = time.perf_counter()
    try:
        for i in range(posts):
            delay = started + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = first_seq + i
            body = b'{"publisher":"bench","seq":' + str(seq).encode() + b"}"
            sent[seq] = time.perf_counter()
            conn.send("POST", "/api/call/post", body)
            status, answer = await conn.answer()
            if status != 200:
                raise SystemExit(f"post answered {status}: {answer[:200]!r}")
    finally:
        conn.close()
    achieved = posts / (time.perf_counter() - started)
    return sent, pid, achieved


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarize(sent: dict[int, float], samples: list[Sample]) -> dict[str, Any]:
    """Latency in ms per transport and for all samples: p50, p99, max; pushes lost."""
    found: dict[str, Any] = {}
    for name in ("ws", "sse", "all"):
        chosen = [s for s in samples if name in ("all", s.kind)]
        if not chosen:
            continue
        latencies = [
            (sample.got[seq] - at) * 1000
            for sample in chosen
            for seq, at in sent.items()
            if seq in sample.got
        ]
        expected = len(sent) * len(chosen)
        found[name] = {
            "subscribers": len(chosen),
            "pushes": len(latencies),
            "lost": expected - len(latencies),
            "p50_ms": round(statistics.median(latencies), 3) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99), 3) if latencies else None,
            "max_ms": round(max(latencies), 3) if latencies else None,
        }
    return found


async def settle(sent: dict[int, float], samples: list[Sample]) -> None:
    """Wait until every sample read every push of `sent` (or WAIT_S passed)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if all(all(seq in s.got for seq in sent) for s in samples):
            return
        await asyncio.sleep(0.05)


async def measure_latency(
    src: Path, args: argparse.Namespace, workers: int, broker: str | None, label: str
) -> dict[str, Any]:
    pinned = workers == 1 and args.cores > 1
    server = Server(src, workers, broker, pinned)
    try:
        await server.wait_ready()
        publisher_pid = 0
        if workers > 1:
            # The publisher's worker first; the samples on the others.
            probe = await Http.open(server.port)
            publisher_pid = await probe.pid()
            probe.close()
            server.pids.add(publisher_pid)
        samples = await open_samples(server.port, args.sample_ws, args.sample_sse, publisher_pid)
        server.pids |= {s.pid for s in samples}
        await publish(server.port, 20, args.rate, 10_000_000, publisher_pid)  # warm-up
        cpu = {pid: cpu_seconds(pid) for pid in server.pids}
        window = time.perf_counter()
        sent, pid, achieved = await publish(server.port, args.posts, args.rate, 0, publisher_pid)
        await settle(sent, samples)
        wall = time.perf_counter() - window
        server_cpu = sum(cpu_seconds(p) - cpu.get(p, 0.0) for p in server.pids | {pid})
        await close_samples(samples)
        result = {
            "label": label,
            "workers": workers,
            "broker": "redis" if broker else "memory",
            "publisher_pid": pid,
            "subscriber_pids": sorted({s.pid for s in samples}),
            "posts": args.posts,
            "rate_per_s": round(achieved, 1),
            "server_cpu_share": round(server_cpu / wall, 3),
            "latency": summarize(sent, samples),
        }
        if workers > 1:
            assert pid not in result["subscriber_pids"]
        return result
    finally:
        server.stop()


async def measure_ramp(src: Path, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    rate, posts = (
        (args.fanout_rate, args.fanout_posts) if mode == "fanout" else (args.rate, args.level_posts)
    )
    server = Server(src, 1, None, args.cores > 1)
    held: list[Idle] = []
    levels: list[dict[str, Any]] = []
    try:
        await server.wait_ready()
        (pid,) = server.pids
        samples = await open_samples(server.port, args.sample_ws, args.sample_sse)
        await publish(server.port, 20, rate, 10_000_000)  # warm-up
        for number, level in enumerate(args.levels):
            opened = time.perf_counter()
            await open_idle(server.port, len(held), level - len(held), mode, held)
            open_s = time.perf_counter() - opened
            await asyncio.sleep(1.0)  # let the server's allocations settle
            cpu, window = cpu_seconds(pid), time.perf_counter()
            first = (number + 1) * 1_000_000
            sent, _, achieved = await publish(server.port, posts, rate, first)
            await settle(sent, samples)
            wall = time.perf_counter() - window
            lost_idle = sum(idle.lost for idle in held)
            levels.append(
                {
                    "idle": len(held),
                    "open_s": round(open_s, 2),
                    "idle_lost": lost_idle,
                    "rss_mb": round(rss_mb(pid), 1),
                    "posts": posts,
                    "rate_per_s": round(achieved, 1),
                    "server_cpu_share": round((cpu_seconds(pid) - cpu) / wall, 3),
                    "latency": summarize(sent, samples),
                }
            )
            print_level(levels[-1])
        await close_samples(samples)
    finally:
        for idle in held:
            if idle.transport is not None:
                idle.transport.close()
        server.stop()
    held_under = [
        lv["idle"]
        for lv in levels
        if lv["latency"]["all"]["p99_ms"] is not None
        and lv["latency"]["all"]["p99_ms"] < TARGET_P99_MS
        and lv["latency"]["all"]["lost"] == 0
    ]
    return {
        "mode": mode,
        "rate": rate,
        "levels": levels,
        "holds_under_target": max(held_under, default=0),
    }


# -- the report ----------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:8.2f}"


def print_latency(results: list[dict[str, Any]]) -> None:
    base = results[0]["latency"]["all"]
    print("\npush latency: post sent over HTTP -> push read by a subscriber (ms)")
    print(
        f"  {'':34} {'via':4} {'p50':>8} {'p99':>8} {'max':>8} {'lost':>5}"
        f" {'p50/1w':>7} {'p99/1w':>7} {'posts/s':>8} {'srv CPU':>7}"
    )
    for result in results:
        for via in ("ws", "sse", "all"):
            row = result["latency"].get(via)
            if row is None:
                continue
            ratios = ""
            if via == "all" and row["p50_ms"] and base["p50_ms"]:
                ratios = f" {row['p50_ms'] / base['p50_ms']:6.2f}x {row['p99_ms'] / base['p99_ms']:6.2f}x"
            else:
                ratios = f" {'':7} {'':7}"
            name = result["label"] if via == "ws" or len(result["latency"]) == 1 else ""
            print(
                f"  {name:34} {via:4} {fmt(row['p50_ms'])} {fmt(row['p99_ms'])}"
                f" {fmt(row['max_ms'])} {row['lost']:5}{ratios}"
                f" {result['rate_per_s'] if via == 'all' else '':>8}"
                f" {format(result['server_cpu_share'], '.0%') if via == 'all' else '':>7}"
            )


def print_level(level: dict[str, Any]) -> None:
    row = level["latency"]["all"]
    print(
        f"  {level['idle']:>7,} subscribers: p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms,"
        f" max {fmt(row['max_ms'])} ms, lost {row['lost']}, worker RSS {level['rss_mb']:.0f} MB,"
        f" worker CPU {level['server_cpu_share']:.0%}, opened in {level['open_s']:.1f} s"
    )


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("fastapi", "starlette", "uvicorn", "websockets", "redis", "uvloop", "httptools"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


@contextlib.contextmanager
def maybe_redis(needed: bool, pinned: bool) -> Iterator[str | None]:
    if not needed:
        yield None
        return
    with redis_server(CLIENT_CORE if pinned else None) as (url, _):
        yield url


async def run(args: argparse.Namespace, src: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if args.only in (None, "latency"):
        with maybe_redis(True, args.cores > 1) as url:
            ways = [
                (1, None, "1 worker, memory broker"),
                (1, url, "1 worker, Redis"),
                (3, url, "3 workers + Redis, cross-worker"),
            ]
            results = []
            for workers, broker, label in ways:
                results.append(await measure_latency(src, args, workers, broker, label))
            print_latency(results)
            found["latency"] = results
    if args.only in (None, "ramp"):
        found["ramp"] = []
        for mode in args.modes:
            rate, posts = (
                (args.fanout_rate, args.fanout_posts)
                if mode == "fanout"
                else (args.rate, args.level_posts)
            )
            print(
                f"\nSSE subscribers on one worker, mode {mode}: latency seen by"
                f" {args.sample_ws} WebSocket + {args.sample_sse} SSE sample subscribers,"
                f" {posts} posts at {rate:g}/s per level"
            )
            ramp = await measure_ramp(src, args, mode)
            print(
                f"  holds {ramp['holds_under_target']:,} subscribers ({mode}) with p99 <"
                f" {TARGET_P99_MS:g} ms"
            )
            found["ramp"].append(ramp)
    return found


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--posts", type=int, default=500, help="posts per latency measurement")
    parser.add_argument("--rate", type=float, default=100.0, help="posts per second")
    parser.add_argument("--sample-ws", type=int, default=5)
    parser.add_argument("--sample-sse", type=int, default=5)
    parser.add_argument("--levels", default="1000,2000,5000,10000")
    parser.add_argument("--level-posts", type=int, default=300, help="posts per ramp level")
    parser.add_argument("--modes", default="feed,inbox,fanout", help="ramp modes, in order")
    parser.add_argument("--fanout-rate", type=float, default=10.0, help="posts/s, mode fanout")
    parser.add_argument("--fanout-posts", type=int, default=50, help="posts per fanout level")
    parser.add_argument("--only", choices=("latency", "ramp"), default=None)
    parser.add_argument("--save", action="store_true", help="also write results/<date>-live.json")
    parser.add_argument("--label", default="", help="with --save: results/<date>-LABEL-live.json")
    tether_source.add_option(parser)
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",")]
    args.modes = args.modes.split(",")
    if not set(args.modes) <= set(IDLE_QUERIES):
        parser.error(f"--modes: each of {', '.join(IDLE_QUERIES)}")
    args.cores = os.cpu_count() or 1

    started = time.monotonic()
    load = os.getloadavg()[0]
    if load >= 1.0:
        print(f"WARNING: load average {load:.2f} >= 1.0: the machine is busy, figures are noisy")
    files = raise_file_limit()
    if files < max(args.levels) + 1000:
        print(f"WARNING: RLIMIT_NOFILE is {files}: the largest levels cannot be opened")
    src = tether_source.src_dir(args.tether_src)
    tether = tether_source.describe(src)
    print(f"tether from {tether['package']} at {tether['revision']}")
    if args.cores > 1:
        os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        import uvloop

        found, loop = uvloop.run(run(args, src)), "uvloop"
    except ImportError:
        found, loop = asyncio.run(run(args, src)), "asyncio"
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tether_revision": tether["revision"],
        "tether_source": tether,
        "label": args.label,
        "settings": {
            "posts": args.posts,
            "rate": args.rate,
            "sample_ws": args.sample_ws,
            "sample_sse": args.sample_sse,
            "levels": args.levels,
            "level_posts": args.level_posts,
            "modes": args.modes,
            "fanout_rate": args.fanout_rate,
            "fanout_posts": args.fanout_posts,
            "cores": args.cores,
            "client_loop": loop,
            "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "nofile": files,
        },
        "versions": versions(),
        **found,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    written = record.write(report, kind="live", label=args.label, save=args.save)
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")


if __name__ == "__main__":
    main()
