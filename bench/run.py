"""Benchmarks of tether against plain FastAPI and fastapi-jsonrpc, in one run.

Usage: python bench/run.py [--duration S] [--rounds N] [--connections C] [--quick] [--save]

Each app runs in its own uvicorn process (one worker, same settings), pinned to one core;
wrk runs pinned to the other core, so that the server, not the client, is the limit. The
scenarios are measured in interleaved rounds and the medians reported. Results go to
bench/results/latest.json (and to bench/results/<date>.json with --save). See docs/bench.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from load import LoadDriver, LoadResult
from servers import Server, uvicorn_options

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

BATCH_SIZE = 100
BATCH_CONNECTIONS = 16
"""Connections for batch scenarios: enough to keep one core busy, few enough that a slow
server still answers every request well within wrk's 5 s timeout."""
EXPECT = '"result":3'
"""Every answer under load must contain this (and no "error" member); see lua/post.lua."""
ADD_BODY = {"a": 1, "b": 2}
RPC_SINGLE = {"jsonrpc": "2.0", "method": "add", "params": ADD_BODY, "id": 1}
RPC_BATCH = [
    {"jsonrpc": "2.0", "method": "add", "params": ADD_BODY, "id": i}
    for i in range(1, BATCH_SIZE + 1)
]


# -- checks of one answer, run before any load: a wrong answer disqualifies the scenario --


def check_http_result(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if response.json() != {"result": 3}:
        return f"unexpected body {response.text[:200]}"
    return None


def check_rpc_single(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if response.json() != {"jsonrpc": "2.0", "result": 3, "id": 1}:
        return f"unexpected body {response.text[:200]}"
    return None


def check_rpc_batch(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    answers = response.json()
    expected = [{"jsonrpc": "2.0", "result": 3, "id": i} for i in range(1, BATCH_SIZE + 1)]
    if not isinstance(answers, list) or sorted(answers, key=lambda a: a.get("id")) != expected:
        return f"unexpected body {response.text[:200]}"
    return None


@dataclass
class Scenario:
    """One endpoint under load: which server, what it is sent, how an answer is checked."""

    key: str
    title: str
    server: str
    path: str
    body: Any
    calls_per_request: int
    check: Callable[[httpx.Response], str | None]
    connections: int = 0
    """wrk connections; 0 means --connections (batches need fewer to saturate a core)."""
    status: str = "pending"
    """"ok", or why the scenario could not run (reported, never hidden)."""
    rounds: list[LoadResult] = field(default_factory=list)
    remeasured: list[LoadResult] = field(default_factory=list)
    """Contended measurements that were replaced by a second one (kept for the record)."""

    @property
    def used_rounds(self) -> list[LoadResult]:
        """The rounds the figures come from: the uncontended ones, or all if none is."""
        clean = [r for r in self.rounds if r.contention <= CONTENDED]
        return clean or self.rounds

    def median(self, metric: Callable[[LoadResult], float]) -> float:
        return statistics.median(metric(r) for r in self.used_rounds)

    @property
    def ran(self) -> bool:
        return self.status == "ok" and bool(self.rounds)

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "title": self.title,
            "server": self.server,
            "path": self.path,
            "calls_per_request": self.calls_per_request,
            "status": self.status,
        }
        if self.ran:
            data |= {
                "requests_per_s": self.median(lambda r: r.requests_per_s),
                "calls_per_s": self.median(lambda r: r.requests_per_s) * self.calls_per_request,
                "server_cpu_us_per_request": self.median(lambda r: r.server_cpu_us_per_request),
                "server_cpu_us_per_call": self.median(lambda r: r.server_cpu_us_per_request)
                / self.calls_per_request,
                "latency_p50_us": self.median(lambda r: r.latency_us["p50"]),
                "latency_p99_us": self.median(lambda r: r.latency_us["p99"]),
                "server_util": self.median(lambda r: r.server_util),
                "client_util": self.median(lambda r: r.client_util),
                "rounds_used": len(self.used_rounds),
                "bad_answers": sum(r.bad for r in self.rounds),
                "socket_errors": sum(sum(r.socket_errors.values()) for r in self.rounds),
                "rounds": [r.to_json() for r in self.rounds],
                "remeasured": [r.to_json() for r in self.remeasured],
            }
        return data


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            "http_tether",
            "HTTP add, tether (POST /api/call/add)",
            "tether",
            "/api/call/add",
            ADD_BODY,
            1,
            check_http_result,
        ),
        Scenario(
            "http_fastapi",
            "HTTP add, plain FastAPI (POST /add)",
            "fastapi",
            "/add",
            ADD_BODY,
            1,
            check_http_result,
        ),
        Scenario(
            "jsonrpc_tether",
            "JSON-RPC single add, tether",
            "tether",
            "/api/jsonrpc",
            RPC_SINGLE,
            1,
            check_rpc_single,
        ),
        Scenario(
            "jsonrpc_fastapi_jsonrpc",
            "JSON-RPC single add, fastapi-jsonrpc",
            "fastapi_jsonrpc",
            "/api/jsonrpc",
            RPC_SINGLE,
            1,
            check_rpc_single,
        ),
        Scenario(
            "batch_tether",
            f"JSON-RPC batch of {BATCH_SIZE} add, tether",
            "tether",
            "/api/jsonrpc",
            RPC_BATCH,
            BATCH_SIZE,
            check_rpc_batch,
            BATCH_CONNECTIONS,
        ),
        Scenario(
            "batch_fastapi_jsonrpc",
            f"JSON-RPC batch of {BATCH_SIZE} add, fastapi-jsonrpc",
            "fastapi_jsonrpc",
            "/api/jsonrpc",
            RPC_BATCH,
            BATCH_SIZE,
            check_rpc_batch,
            BATCH_CONNECTIONS,
        ),
    ]


SERVERS = {
    "tether": "tether_app",
    "fastapi": "fastapi_app",
    "fastapi_jsonrpc": "fastapi_jsonrpc_app",
}


def preflight(scenario: Scenario, server: Server) -> str:
    """Send one request and check the answer; return "ok" or why the scenario cannot run."""
    try:
        response = httpx.post(server.url + scenario.path, json=scenario.body, timeout=10)
    except httpx.HTTPError as exc:
        return f"request failed: {exc!r}"
    if scenario.server == "tether" and scenario.path.endswith("/jsonrpc"):
        if response.status_code in (404, 405):
            return (
                f"tether JSON-RPC endpoint missing (POST {scenario.path} answered "
                f"{response.status_code})"
            )
    problem = scenario.check(response)
    return "ok" if problem is None else f"wrong answer: {problem}"


# -- the targets of issues 2 and 3 --------------------------------------------------------


@dataclass
class Target:
    """One figure an issue sets a target for, with what was measured."""

    issue: int
    name: str
    target: str
    measured: float | None
    unit: str
    passed: bool | None
    note: str = ""
    by_cpu: float | None = None
    """The same figure from server CPU time per call instead of throughput (less noisy)."""

    def verdict(self) -> str:
        if self.target == "-":
            return "info"
        return "n/a" if self.passed is None else ("PASS" if self.passed else "MISS")


def ratio(a: Scenario, b: Scenario) -> float | None:
    if not (a.ran and b.ran):
        return None
    return a.median(lambda r: r.requests_per_s * a.calls_per_request) / b.median(
        lambda r: r.requests_per_s * b.calls_per_request
    )


def cpu_per_call(s: Scenario) -> float:
    return s.median(lambda r: r.server_cpu_us_per_request) / s.calls_per_request


def cpu_ratio(a: Scenario, b: Scenario) -> float | None:
    """How many times less server CPU per call `a` spends than `b` (the throughput analogue)."""
    if not (a.ran and b.ran):
        return None
    return cpu_per_call(b) / cpu_per_call(a)


def missing_note(*items: Scenario) -> str:
    return "; ".join(f"{s.key}: {s.status}" for s in items if not s.ran)


def targets(by_key: dict[str, Scenario], inprocess: dict[str, Any] | None) -> list[Target]:
    http_t, http_f = by_key["http_tether"], by_key["http_fastapi"]
    rpc_t, rpc_p = by_key["jsonrpc_tether"], by_key["jsonrpc_fastapi_jsonrpc"]
    batch_t, batch_p = by_key["batch_tether"], by_key["batch_fastapi_jsonrpc"]
    result: list[Target] = []

    r = ratio(http_t, http_f)
    result.append(
        Target(
            2,
            "HTTP add req/s, tether / plain FastAPI",
            ">= 0.9x",
            r,
            "x",
            None if r is None else r >= 0.9,
            missing_note(http_t, http_f),
            cpu_ratio(http_t, http_f),
        )
    )
    overhead = None if inprocess is None else inprocess["median_overhead_us"]
    result.append(
        Target(
            2,
            "api.call overhead over a direct call",
            "< 10 us",
            overhead,
            "us",
            None if overhead is None else overhead < 10,
            "" if inprocess is not None else "in-process measurement failed",
        )
    )
    r = ratio(rpc_t, rpc_p)
    result.append(
        Target(
            3,
            "JSON-RPC single calls/s, tether / fastapi-jsonrpc",
            ">= 1.0x",
            r,
            "x",
            None if r is None else r >= 1.0,
            missing_note(rpc_t, rpc_p),
            cpu_ratio(rpc_t, rpc_p),
        )
    )
    r = ratio(rpc_t, http_f)
    result.append(
        Target(
            3,
            "JSON-RPC single calls/s, tether / plain FastAPI HTTP",
            "-",
            r,
            "x",
            None,
            missing_note(rpc_t, http_f),
            cpu_ratio(rpc_t, http_f),
        )
    )
    r = ratio(batch_t, batch_p)
    result.append(
        Target(
            3,
            f"JSON-RPC batch-of-{BATCH_SIZE} calls/s, tether / fastapi-jsonrpc",
            ">= 3x",
            r,
            "x",
            None if r is None else r >= 3.0,
            missing_note(batch_t, batch_p),
            cpu_ratio(batch_t, batch_p),
        )
    )
    # Cost of one request at saturation = 1 / (requests per second) of a server-bound core.
    cost = cost_by_cpu = None
    if batch_t.ran and rpc_t.ran:
        cost = rpc_t.median(lambda r: r.requests_per_s) / batch_t.median(lambda r: r.requests_per_s)
        cost_by_cpu = batch_t.median(lambda r: r.server_cpu_us_per_request) / rpc_t.median(
            lambda r: r.server_cpu_us_per_request
        )
    result.append(
        Target(
            3,
            f"tether batch-of-{BATCH_SIZE} cost / single-call cost",
            "< 5x",
            cost,
            "x",
            None if cost is None else cost < 5.0,
            missing_note(batch_t, rpc_t),
            cost_by_cpu,
        )
    )
    return result


# -- running ----------------------------------------------------------------------------


def run_inprocess(core: int | None) -> dict[str, Any] | None:
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    process = subprocess.run(
        [sys.executable, str(BENCH_DIR / "inprocess.py")],
        capture_output=True,
        text=True,
        preexec_fn=pin,
        check=False,
    )
    if process.returncode != 0:
        print(f"  in-process measurement failed:\n{process.stderr[-2000:]}")
        return None
    return json.loads(process.stdout)  # type: ignore[no-any-return]


def pick_cores() -> tuple[int | None, int | None]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[0], cores[1]


def versions() -> dict[str, str]:
    found = {}
    for dist in ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "orjson"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    try:
        found["fastapi-jsonrpc"] = importlib.metadata.version("fastapi-jsonrpc")
    except importlib.metadata.PackageNotFoundError:
        found["fastapi-jsonrpc"] = "not installed"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    found["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else ""
    found["python"] = platform.python_version()
    return found


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_DIR, capture_output=True, text=True, check=False
        ).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


CONTENDED = 0.15
"""Share of the server's or wrk's core taken by other processes above which a measurement is
noisy: it is measured once more, and left out of the medians when the scenario has clean
rounds."""
RETRIES_WHEN_CONTENDED = 1


def bound_verdict(result: LoadResult) -> str:
    if result.client_util >= 0.9:
        return "CLIENT-LIMITED"
    if result.contention > CONTENDED:
        return "CONTENDED"
    if result.server_util >= 0.85:
        return "server-bound"
    return "server core not saturated"


def measure(
    driver: LoadDriver, scenario: Scenario, server: Server, args: argparse.Namespace, warm_up: bool
) -> LoadResult:
    """Load one scenario for args.duration; measure again when other processes took its core."""
    url = server.url + scenario.path
    body = json.dumps(scenario.body, separators=(",", ":")).encode()
    load = functools.partial(
        driver.run,
        url,
        body,
        expect=EXPECT,
        connections=scenario.connections or args.connections,
        server_pid=server.pid,
    )
    if warm_up and args.warmup > 0:
        load(seconds=args.warmup)
    result = load(seconds=args.duration)
    for _ in range(RETRIES_WHEN_CONTENDED):
        if result.contention <= CONTENDED:
            break
        print(
            f"  {scenario.key:<24} measured again: other processes took "
            f"{result.other_load_on_server_core:.0%} of the server's core and "
            f"{result.other_load_on_client_core:.0%} of wrk's"
        )
        scenario.remeasured.append(result)
        result = load(seconds=args.duration)
    return result


def print_round(scenario: Scenario, result: LoadResult) -> None:
    errors = sum(result.socket_errors.values())
    print(
        f"  {scenario.key:<24} {result.requests_per_s:>9.0f} req/s "
        f"{result.requests_per_s * scenario.calls_per_request:>10.0f} calls/s  "
        f"cpu {result.server_cpu_us_per_request:>7.1f} us/req  "
        f"server {result.server_util:>4.0%} client {result.client_util:>4.0%} "
        f"other {result.other_load_on_server_core:>4.0%}/{result.other_load_on_client_core:<4.0%} "
        f"{bound_verdict(result)}"
        + (f"  BAD ANSWERS {result.bad}: {result.bad_sample}" if result.bad else "")
        + (f"  socket errors {result.socket_errors}" if errors else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (round 1)")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke run")
    parser.add_argument("--save", action="store_true", help="also write results/<date>.json")
    parser.add_argument(
        "--markdown", type=Path, help="print a saved results file as docs/bench.md tables; exit"
    )
    args = parser.parse_args()
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    if args.quick:
        args.duration, args.rounds = 2.0, 1

    started = time.monotonic()
    server_core, client_core = pick_cores()
    print("tether bench: tether vs plain FastAPI vs fastapi-jsonrpc, one run")
    print(f"  uvicorn settings (every server): {' '.join(uvicorn_options())}")
    if server_core is None:
        print("  WARNING: fewer than 2 cores available: server and wrk are not pinned apart")
    else:
        print(f"  server pinned to core {server_core}; wrk (1 thread) pinned to core {client_core}")
    print(
        f"  {args.connections} keep-alive connections ({BATCH_CONNECTIONS} for batches), "
        f"{args.rounds} round(s) of "
        f"{args.duration:g} s per scenario, {args.warmup:g} s warm-up; medians reported\n"
        f"  a measurement during which other processes took over {CONTENDED:.0%} of the "
        "server's or wrk's core is CONTENDED: measured once more, and left out of the medians when "
        "the scenario has clean rounds"
    )

    print("\n[in-process] await api.call('add', {...}) vs await add(a=1, b=2)")
    inprocess = run_inprocess(server_core)
    if inprocess is not None:
        print(
            f"  direct {inprocess['median_direct_us']:.2f} us, api.call "
            f"{inprocess['median_api_call_us']:.2f} us, overhead "
            f"{inprocess['median_overhead_us']:.2f} us/call (median of "
            f"{inprocess['repetitions']} x {inprocess['calls_per_repetition']} calls, "
            f"{inprocess['loop']}; the loop had {inprocess['core_share']:.0%} of its core)"
        )

    driver = LoadDriver(
        core=client_core if client_core is not None else 0,
        server_core=server_core if server_core is not None else 0,
    )
    all_scenarios = scenarios()
    by_key = {s.key: s for s in all_scenarios}
    log_dir = Path(tempfile.mkdtemp(prefix="tether-bench-logs-"))
    servers: dict[str, Server] = {}
    server_errors: dict[str, str] = {}
    try:
        print("\n[servers]")
        for name, module in SERVERS.items():
            server = Server(name, module, core=server_core if server_core is not None else 0)
            try:
                server.start(log_dir)
                servers[name] = server
                print(f"  {name}: {server.url} (pid {server.pid})")
            except RuntimeError as exc:
                server_errors[name] = str(exc)
                print(f"  {name}: FAILED TO START\n    " + str(exc).replace("\n", "\n    "))
        for scenario in all_scenarios:
            if scenario.server in server_errors:
                first_line = server_errors[scenario.server].splitlines()[0]
                scenario.status = f"{scenario.server} server failed to start: {first_line}"
            else:
                scenario.status = preflight(scenario, servers[scenario.server])
            if scenario.status != "ok":
                print(f"  SKIPPED {scenario.key}: {scenario.status}")

        for round_index in range(args.rounds):
            print(f"\n[round {round_index + 1}/{args.rounds}]")
            for scenario in [s for s in all_scenarios if s.status == "ok"]:
                server = servers[scenario.server]
                try:
                    result = measure(driver, scenario, server, args, warm_up=round_index == 0)
                except RuntimeError as exc:
                    scenario.status = f"load run failed: {exc}"
                    print(f"  {scenario.key}: {scenario.status}")
                    continue
                scenario.rounds.append(result)
                print_round(scenario, result)
                if result.bad:
                    scenario.status = (
                        f"{result.bad} wrong answers under load, e.g. {result.bad_sample!r}"
                    )
                if server.process is not None and server.process.poll() is not None:
                    scenario.status = f"server died during the run:\n{server.log_tail()}"
                    print(f"  {scenario.key}: {scenario.status}")
    finally:
        for server in servers.values():
            server.stop()

    table = targets(by_key, inprocess)
    print_report(all_scenarios, table, inprocess)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tether_revision": git_revision(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "versions": versions(),
        "settings": {
            "uvicorn": uvicorn_options(),
            "server_core": server_core,
            "client_core": client_core,
            "connections": args.connections,
            "batch_connections": BATCH_CONNECTIONS,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "batch_size": BATCH_SIZE,
        },
        "inprocess": inprocess,
        "scenarios": {s.key: s.summary() for s in all_scenarios},
        "server_errors": server_errors,
        "targets": [
            {
                "issue": t.issue,
                "name": t.name,
                "target": t.target,
                "measured": t.measured,
                "unit": t.unit,
                "verdict": t.verdict(),
                "by_cpu": t.by_cpu,
                "note": t.note,
            }
            for t in table
        ],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS_DIR / "latest.json").write_text(text)
    written = ["bench/results/latest.json"]
    if args.save:
        name = f"{dt.datetime.now(dt.UTC).date().isoformat()}.json"
        (RESULTS_DIR / name).write_text(text)
        written.append(f"bench/results/{name}")
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")
    # The harness worked if the two baseline HTTP scenarios ran; misses are findings.
    return 0 if by_key["http_tether"].ran and by_key["http_fastapi"].ran else 1


def markdown(report: dict[str, Any]) -> str:
    """The figures of a results file as the Markdown tables docs/bench.md shows."""

    def clean(rounds: list[dict[str, Any]]) -> int:
        return sum(
            max(r["other_load_on_server_core"], r["other_load_on_client_core"]) <= CONTENDED
            for r in rounds
        )

    def number(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        "| scenario | req/s | calls/s | server CPU µs/req | µs/call | p50 ms | p99 ms | uncontended rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["scenarios"].values():
        if s["status"] != "ok":
            lines.append(f"| {s['title']} | {s['status']} | | | | | | |")
            continue
        lines.append(
            f"| {s['title']} | {number(s['requests_per_s'])} | {number(s['calls_per_s'])} "
            f"| {number(s['server_cpu_us_per_request'], 1)} "
            f"| {number(s['server_cpu_us_per_call'], 2)} "
            f"| {number(s['latency_p50_us'] / 1000, 2)} | {number(s['latency_p99_us'] / 1000, 2)} "
            f"| {clean(s['rounds'])} of {len(s['rounds'])} |"
        )
    inprocess = report.get("inprocess")
    if inprocess is not None:
        lines += [
            "",
            f"In-process: `await add(...)` {inprocess['median_direct_us']:.2f} µs, "
            f'`await api.call("add", ...)` {inprocess["median_api_call_us"]:.2f} µs: '
            f"**{inprocess['median_overhead_us']:.2f} µs** overhead per call "
            f"({inprocess['loop']}"
            + (
                f"; the loop had {inprocess['core_share']:.0%} of its core"
                if "core_share" in inprocess
                else ""
            )
            + ").",
        ]
    lines += [
        "",
        "| issue | figure | target | measured | by CPU | verdict |",
        "|---|---|---|---:|---:|---|",
    ]
    for t in report["targets"]:
        unit = " µs" if t["unit"] == "us" else t["unit"]
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}{unit}"
        by_cpu = "-" if t["by_cpu"] is None else f"{t['by_cpu']:.2f}{unit}"
        verdict = t["verdict"] + (f" ({t['note']})" if t["note"] else "")
        lines.append(
            f"| {t['issue']} | {t['name']} | {t['target']} | {measured} | {by_cpu} | {verdict} |"
        )
    return "\n".join(lines)


def print_report(
    all_scenarios: list[Scenario], table: list[Target], inprocess: dict[str, Any] | None
) -> None:
    print("\n[results] medians over rounds")
    print(
        f"  {'scenario':<46} {'req/s':>9} {'calls/s':>10} {'cpu us/req':>10} "
        f"{'cpu us/call':>11} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for s in all_scenarios:
        if not s.ran:
            print(f"  {s.title:<46} {s.status}")
            continue
        rps = s.median(lambda r: r.requests_per_s)
        cpu = s.median(lambda r: r.server_cpu_us_per_request)
        print(
            f"  {s.title:<46} {rps:>9.0f} {rps * s.calls_per_request:>10.0f} {cpu:>10.1f} "
            f"{cpu / s.calls_per_request:>11.2f} "
            f"{s.median(lambda r: r.latency_us['p50']) / 1000:>7.2f} "
            f"{s.median(lambda r: r.latency_us['p99']) / 1000:>7.2f}"
        )
    measured = [r for s in all_scenarios if s.ran for r in s.rounds]
    used = [r for s in all_scenarios if s.ran for r in s.used_rounds]
    if used:
        print(
            "\n[client check] CPU seconds over each measured window: the server's from "
            "/proc/<pid>/stat, wrk's from its rusage; core usage from /proc/stat"
        )
        print(
            f"  wrk used at most {max(r.client_util for r in measured):.0%} of its core in any "
            f"measurement; in the {len(used)} measurements behind the figures each server used "
            f"{min(r.server_util for r in used):.0%} to {max(r.server_util for r in used):.0%} "
            f"of its core."
        )
        dropped = len(measured) - len(used)
        if dropped:
            print(
                f"  {dropped} CONTENDED measurement(s) (other processes on the cores) "
                "were left out of the medians."
            )
        limited = [r for r in used if bound_verdict(r) != "server-bound"]
        if limited:
            print(
                f"  WARNING: {len(limited)} of the {len(used)} measurements behind the figures "
                "were not server-bound (see the per-round lines): treat them with care."
            )
        else:
            print(
                "  Every measurement behind the figures was server-bound (server core >= 85% "
                "busy, wrk < 90%): the client was not the limit."
            )

    print("\n[targets]")
    print(f"  {'issue':<6}{'figure':<58}{'target':>9}{'measured':>11}  verdict  (by CPU)")
    for t in table:
        measured = "-" if t.measured is None else f"{t.measured:.2f}{t.unit}"
        by_cpu = "" if t.by_cpu is None else f"  ({t.by_cpu:.2f}{t.unit})"
        print(f"  #{t.issue:<5}{t.name:<58}{t.target:>9}{measured:>11}  {t.verdict():<7}{by_cpu}")
        if t.note:
            print(f"  {'':<6}  ({t.note})")


if __name__ == "__main__":
    sys.exit(main())
