"""Commands, queries and events: `api.send` against python-cqrs's `mediator.send`; event throughput.

Usage: .venv/bin/python bench/events_bench.py [--calls N] [--repetitions R]
           [--commands C] [--events-per-command E] [--rounds K] [--redis-url URL]
           [--tether-src PATH] [--save [--label NAME]]

In one run, in one process pinned to one core (a child of this script, with tether imported
from `--tether-src` when given), on uvloop when it is installed (uvicorn's default loop):

1. **send**: `await api.send(GetNote(id=1))` for a tether query handler with no dependencies,
   against python-cqrs's `await mediator.send(GetNote(id=1))` for the same handler body
   (bench/apps/cqrs_app.py, the mediator built by python-cqrs's `bootstrap` with a request
   map and a `di` container, as its docs do; pydantic messages, and its default dataclass
   ones), and against awaiting the handler directly (the floor). Every repetition runs the
   four loops back to back; each figure is the median over repetitions of the µs per call,
   building the query included. Target: `api.send` at least 5x faster than `mediator.send`
   (the faster of python-cqrs's two flavours).
2. **events**: events per second from `api.send(CreateNotes(count=E))`, C commands per round
   (each handler emits E events), until every event was handled by an `@api.on` handler
   (`api.events.settle()`, and the handler's own count), through the in-process bus
   (`Tether()`, memory) and through Redis Streams (`Tether(broker="redis://...")`, the
   handler group reading with a consumer group in the same process). Without `--redis-url`
   the script starts Debian's `redis-server` on a free loopback port, pinned to the other
   core, and stops it by PID at the end.

Prints a table, then one JSON object (like bench/inprocess.py), and writes it to
bench/results/latest-events.json (with --save also a dated record). Each section records the
share of its core that other processes took (over 15%: CONTENDED, run it again when quiet).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR / "apps"))

MEASURE_CORE = 0
REDIS_CORE = 1
CONTENDED = 0.15
TARGET_RATIO = 5.0


# --- the measured process (a child, pinned) ---------------------------------------------------


def _core_busy_seconds(core: int) -> float:
    """Seconds core `core` spent not idle since boot, from /proc/stat (0 when not on Linux)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


class _Window:
    """Wall time, this process's CPU time and other processes' share of the measured core.

    With `server` (a core and a PID: redis-server's), also that process's CPU time and the
    share of its core that neither it nor this process took.
    """

    def __init__(self, core: int | None, server: tuple[int, int] | None = None) -> None:
        self.core = core
        self.server = server
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.busy = _core_busy_seconds(core) if core is not None else 0.0
        if server is not None:
            self.server_busy = _core_busy_seconds(server[0])
            self.server_cpu = _cpu_seconds(server[1])

    def close(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        other = 0.0
        if self.core is not None:
            other = max(0.0, _core_busy_seconds(self.core) - self.busy - cpu) / wall
        found = {"wall_s": wall, "cpu_s": cpu, "other_load_on_core": other}
        if self.server is not None:
            server_cpu = _cpu_seconds(self.server[1]) - self.server_cpu
            busy = _core_busy_seconds(self.server[0]) - self.server_busy
            found["server_cpu_s"] = server_cpu
            found["other_load_on_server_core"] = max(0.0, busy - server_cpu) / wall
        return found


async def _measure_send(calls: int, repetitions: int, core: int | None) -> dict[str, Any]:
    import cqrs_app
    import tether_events_app

    api = tether_events_app.build_send_api()
    mediator = cqrs_app.build_mediator()
    send, mediator_send, get_note = api.send, mediator.send, tether_events_app.get_note
    TetherGetNote, GetNote, GetNoteDC = (
        tether_events_app.GetNote,
        cqrs_app.GetNote,
        cqrs_app.GetNoteDC,
    )

    async def direct() -> None:
        for _ in range(calls):
            await get_note(TetherGetNote(id=1))

    async def via_tether() -> None:
        for _ in range(calls):
            await send(TetherGetNote(id=1))

    async def via_cqrs() -> None:
        for _ in range(calls):
            await mediator_send(GetNote(id=1))

    async def via_cqrs_dataclass() -> None:
        for _ in range(calls):
            await mediator_send(GetNoteDC(id=1))

    # python-cqrs sets its "cqrs" logger to DEBUG when it is imported, so the logging
    # middleware `bootstrap` adds builds two log records per send even when no handler
    # prints them. The quiet loops set that logger to WARNING (what an app that configures
    # logging would likely do) to measure the mediator itself too.
    cqrs_logger = logging.getLogger("cqrs")

    def quiet(loop: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def quietly() -> None:
            level = cqrs_logger.level
            cqrs_logger.setLevel(logging.WARNING)
            try:
                await loop()
            finally:
                cqrs_logger.setLevel(level)

        return quietly

    loops = {
        "direct": direct,
        "tether_send": via_tether,
        "cqrs_send": via_cqrs,
        "cqrs_send_dataclass": via_cqrs_dataclass,
        "cqrs_send_quiet": quiet(via_cqrs),
        "cqrs_send_dataclass_quiet": quiet(via_cqrs_dataclass),
    }
    # The same answer from every path, then one warm-up loop of each.
    assert (await send(TetherGetNote(id=1))).model_dump() == {"id": 1, "title": "note"}
    assert (await mediator_send(GetNote(id=1))).to_dict() == {"id": 1, "title": "note"}
    assert (await mediator_send(GetNoteDC(id=1))).to_dict() == {"id": 1, "title": "note"}
    for loop in loops.values():
        await loop()
    runs: dict[str, list[float]] = {name: [] for name in loops}
    window = _Window(core)
    for _ in range(repetitions):
        for name, loop in loops.items():
            started = time.perf_counter_ns()
            await loop()
            runs[name].append((time.perf_counter_ns() - started) / calls / 1000)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    as_bootstrapped = min(medians["cqrs_send"], medians["cqrs_send_dataclass"])
    quietest = min(medians[name] for name in loops if name.startswith("cqrs_"))
    return {
        "calls_per_repetition": calls,
        "repetitions": repetitions,
        "us_per_call": runs,
        "median_us": medians,
        "tether_overhead_us": medians["tether_send"] - medians["direct"],
        "cqrs_overhead_us": quietest - medians["direct"],
        "ratio_cqrs_as_bootstrapped_over_tether": as_bootstrapped / medians["tether_send"],
        "ratio_cqrs_over_tether": quietest / medians["tether_send"],
        **window.close(),
    }


async def _measure_events(
    broker: str | None,
    commands: int,
    per_command: int,
    rounds: int,
    core: int | None,
    server: tuple[int, int] | None = None,
) -> dict[str, Any]:
    import tether_events_app

    api, handled = tether_events_app.build_events_api(broker)
    send, CreateNotes = api.send, tether_events_app.CreateNotes
    await api.events.start()
    try:
        # Warm-up: a tenth of a round, then the counts start from zero.
        warmup = max(1, commands // 10)
        for _ in range(warmup):
            await send(CreateNotes(count=per_command))
        await api.events.settle()
        total = commands * per_command
        runs: list[dict[str, float]] = []
        for _ in range(rounds):
            handled[0] = 0
            window = _Window(core, server)
            for _ in range(commands):
                await send(CreateNotes(count=per_command))
            emitted_s = time.perf_counter() - window.wall
            await api.events.settle()
            measured = window.close()
            if handled[0] != total:
                raise RuntimeError(f"{handled[0]} of {total} events handled after settle()")
            runs.append(
                {"events_per_s": total / measured["wall_s"], "emit_s": emitted_s, **measured}
            )
        stats = _stats(api.events.stats)
    finally:
        await api.events.close()
    if stats.get("dropped") or stats.get("failed") or stats.get("parked"):
        raise RuntimeError(f"events were lost: {stats}")
    return {
        "events_per_round": commands * per_command,
        "events_in_all": (warmup + commands * rounds) * per_command,
        "commands_per_round": commands,
        "events_per_command": per_command,
        "rounds": runs,
        "median_events_per_s": statistics.median(r["events_per_s"] for r in runs),
        "max_other_load_on_core": max(
            max(r["other_load_on_core"], r.get("other_load_on_server_core", 0.0)) for r in runs
        ),
        "bus_stats": stats,
    }


def _stats(stats: Any) -> dict[str, Any]:
    """The bus's counters as a dict (a dataclass, a mapping or an object with attributes)."""
    if isinstance(stats, dict):
        return dict(stats)
    names = ("published", "handled", "retried", "failed", "parked", "dropped")
    return {name: getattr(stats, name) for name in names if hasattr(stats, name)}


def _run_loop(main: Any) -> tuple[Any, str]:
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        return uvloop.run(main), "uvloop"
    return asyncio.run(main), "asyncio"


def child(args: argparse.Namespace) -> None:
    """Measure (in the pinned child) and print one JSON object."""
    core = args.core if args.core >= 0 else None
    result: dict[str, Any] = {}
    result["send"], result["loop"] = _run_loop(_measure_send(args.calls, args.repetitions, core))
    result["events_memory"], _ = _run_loop(
        _measure_events(None, args.commands, args.events_per_command, args.rounds, core)
    )
    if args.redis_url:
        result["events_redis"], _ = _run_loop(
            _measure_events(
                args.redis_url,
                args.commands,
                args.events_per_command,
                args.rounds,
                core,
                (args.server_core, args.server_pid) if args.server_pid > 0 else None,
            )
        )
    print(json.dumps(result))


# --- the driver: Redis, the child, the report -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(core: int | None) -> Iterator[tuple[str, int]]:
    """Start Debian's redis-server on a free loopback port (no persistence); stop it by PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server, or --redis-url")
    port = _free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", server.pid
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processor() -> str:
    """The CPU's model name, from /proc/cpuinfo (else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("fastapi", "pydantic", "anyio", "python-cqrs", "di", "redis", "uvloop"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    binary = shutil.which("redis-server")
    if binary is not None:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        words = [w for w in out.stdout.split() if w.startswith("v=")]
        found["redis-server"] = words[0][2:] if words else out.stdout.strip()
    return found


def _print_report(result: dict[str, Any]) -> None:
    send = result["send"]
    medians = send["median_us"]
    rows = [
        ("await handler(query) (floor)", "direct"),
        ("tether: await api.send(query)", "tether_send"),
        ("python-cqrs: mediator.send (pydantic)", "cqrs_send"),
        ("python-cqrs: mediator.send (dataclass)", "cqrs_send_dataclass"),
        ("python-cqrs: mediator.send (pydantic, quiet log)", "cqrs_send_quiet"),
        ("python-cqrs: mediator.send (dataclass, quiet log)", "cqrs_send_dataclass_quiet"),
    ]
    print(
        f"\nsend: a query with no dependencies, {send['calls_per_repetition']:,} calls x "
        f"{send['repetitions']} repetitions, {result['loop']}"
    )
    print(f"  {'':50} {'us/call':>9} {'over floor':>11} {'/ tether':>9}")
    for label, key in rows:
        over = medians[key] - medians["direct"]
        ratio = medians[key] / medians["tether_send"]
        print(f"  {label:50} {medians[key]:9.2f} {over:11.2f} {ratio:8.2f}x")
    ratio = send["ratio_cqrs_over_tether"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"  python-cqrs / tether: {send['ratio_cqrs_as_bootstrapped_over_tether']:.2f}x as "
        f"bootstrapped, {ratio:.2f}x against its fastest loop (quiet log);"
        f" target >= {TARGET_RATIO:.0f}x against the fastest: {verdict}"
    )
    print(f"  other processes took {send['other_load_on_core']:.0%} of the core")
    print("\nevents: api.send(CreateNotes(count=E)) until every @api.on handler ran")
    print(f"  {'bus':28} {'events/s':>10} {'events':>8} {'E':>4} {'rounds (events/s)'}")
    for name, key in (
        ("in-process (memory://)", "events_memory"),
        ("Redis Streams", "events_redis"),
    ):
        found = result.get(key)
        if found is None:
            continue
        each = ", ".join(f"{r['events_per_s']:,.0f}" for r in found["rounds"])
        contended = " CONTENDED" if found["max_other_load_on_core"] > CONTENDED else ""
        print(
            f"  {name:28} {found['median_events_per_s']:10,.0f} {found['events_per_round']:8,} "
            f"{found['events_per_command']:4} [{each}]{contended}"
        )
    for name, key in (("in-process", "events_memory"), ("Redis Streams", "events_redis")):
        found = result.get(key)
        if found is None:
            continue
        rounds = found["rounds"]
        events = found["events_per_round"]
        line = f"  {name}: this process's CPU per event "
        line += f"{statistics.median(r['cpu_s'] for r in rounds) / events * 1e6:.1f} us"
        if "server_cpu_s" in rounds[0]:
            server = statistics.median(r["server_cpu_s"] for r in rounds) / events * 1e6
            line += f", redis-server's {server:.1f} us"
        others = max(
            max(r["other_load_on_core"], r.get("other_load_on_server_core", 0.0)) for r in rounds
        )
        print(f"{line}; other processes took up to {others:.0%} of a core")


def main() -> None:
    import tether_source

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20_000, help="send: calls per loop")
    parser.add_argument("--repetitions", type=int, default=7, help="send: repetitions")
    parser.add_argument("--commands", type=int, default=2_000, help="events: commands per round")
    parser.add_argument("--events-per-command", type=int, default=10, help="events: E")
    parser.add_argument("--rounds", type=int, default=5, help="events: rounds per bus")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    parser.add_argument("--no-redis", action="store_true", help="measure the in-process bus only")
    parser.add_argument("--save", action="store_true", help="also write results/<date>-events.json")
    parser.add_argument("--label", default="", help="with --save: results/<date>-LABEL-events.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--server-core", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=-1, help=argparse.SUPPRESS)
    tether_source.add_option(parser)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    started = time.monotonic()
    src = tether_source.src_dir(args.tether_src)
    tether = tether_source.describe(src)
    print(f"tether from {tether['package']} at {tether['revision']}")
    cores = sorted(os.sched_getaffinity(0))
    pinned = len(cores) > 1
    measure_core = cores[MEASURE_CORE] if pinned else None
    redis_core = cores[REDIS_CORE] if pinned else None
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {len(cores)} cores")

    def run_child(redis_url: str | None, redis_pid: int = -1) -> dict[str, Any]:
        command = [sys.executable, str(Path(__file__).resolve()), "--child"]
        command += ["--calls", str(args.calls), "--repetitions", str(args.repetitions)]
        command += ["--commands", str(args.commands), "--rounds", str(args.rounds)]
        command += ["--events-per-command", str(args.events_per_command)]
        command += ["--core", str(measure_core if measure_core is not None else -1)]
        if redis_url:
            command += ["--redis-url", redis_url]
        if redis_pid > 0 and redis_core is not None:
            command += ["--server-core", str(redis_core), "--server-pid", str(redis_pid)]
        pin = (lambda: os.sched_setaffinity(0, {measure_core})) if pinned else None
        process = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=tether_source.environment(src),
            preexec_fn=pin,
            check=False,
        )
        if process.returncode != 0:
            raise SystemExit(f"the measurement failed:\n{process.stderr[-3000:]}")
        return json.loads(process.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    if args.no_redis:
        result = run_child(None)
    elif args.redis_url:
        result = run_child(args.redis_url)
    else:
        with redis_server(redis_core) as (url, redis_pid):
            result = run_child(url, redis_pid)
    _print_report(result)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tether_revision": tether["revision"],
        "tether_source": tether,
        "label": args.label,
        "machine": {
            "cores": len(cores),
            "pinned": pinned,
            "processor": _processor(),
            "load_average_at_start": load,
        },
        "versions": _versions(),
        "settings": {
            "calls": args.calls,
            "repetitions": args.repetitions,
            "commands": args.commands,
            "events_per_command": args.events_per_command,
            "rounds": args.rounds,
            "redis": "external" if args.redis_url else ("none" if args.no_redis else "started"),
        },
        "target": {
            "ratio_cqrs_over_tether": TARGET_RATIO,
            "met": result["send"]["ratio_cqrs_over_tether"] >= TARGET_RATIO,
        },
        **result,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    import record

    written = record.write(report, kind="events", label=args.label, save=args.save)
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
