"""Benchmarks of tether against plain FastAPI and fastapi-jsonrpc, in one run.

Usage: python bench/run.py [--duration S] [--rounds N] [--connections C] [--quick]
                           [--tether-src PATH] [--baseline-src PATH [--baseline-label NAME]]
                           [--save [--label NAME]]
       python bench/run.py --markdown bench/results/<date>.json

Each app runs in its own uvicorn process (one worker, same settings), pinned to one core;
wrk runs pinned to the other core, so that the server, not the client, is the limit. The
scenarios are measured in interleaved rounds and the medians reported. Results go to
bench/results/latest.json, and with --save to bench/results/<date>.json (<date>-2.json and
so on when that record exists). The floors of the HTTP call, a bare Starlette route and a bare
ASGI app doing the same JSON work, run in the same rounds. With --baseline-src, another tether
(for example the commit before a change) serves the same scenarios, each measured right after
tether's, and the report gives tether's ratio to it. See docs/bench.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import record
import tether_source
from load import CONTENDED, LoadDriver, LoadResult
from report import markdown, print_report, print_round, targets
from scenarios import (
    BASELINE,
    BATCH_CONNECTIONS,
    BATCH_SIZE,
    EXPECT,
    SERVERS,
    Scenario,
    preflight,
    scenarios,
    with_baseline,
)
from servers import Server, uvicorn_options

BENCH_DIR = Path(__file__).resolve().parent

RETRIES_WHEN_CONTENDED = 1
"""How many times a CONTENDED measurement is taken again."""


# -- running ----------------------------------------------------------------------------


def run_inprocess(core: int | None, env: dict[str, str]) -> dict[str, Any] | None:
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    process = subprocess.run(
        [sys.executable, str(BENCH_DIR / "inprocess.py")],
        capture_output=True,
        text=True,
        env=env,
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


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (round 1)")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke run")
    parser.add_argument("--save", action="store_true", help="also write results/<date>.json")
    parser.add_argument("--label", default="", help="with --save: results/<date>-LABEL.json")
    tether_source.add_option(parser)
    tether_source.add_baseline_option(parser)
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
    src = tether_source.src_dir(args.tether_src)
    tether = tether_source.describe(src)
    env = tether_source.environment(src)
    baseline = baseline_env = None
    if args.baseline_src is not None:
        baseline_dir = tether_source.src_dir(args.baseline_src)
        baseline = tether_source.describe(baseline_dir)
        baseline_env = tether_source.environment(baseline_dir)
    server_core, client_core = pick_cores()
    print("tether bench: tether vs plain FastAPI vs fastapi-jsonrpc vs the floors, one run")
    print(f"  tether from {tether['package']} at {tether['revision']}")
    if baseline is not None:
        print(
            f"  baseline ({args.baseline_label}): tether from {baseline['package']} at "
            f"{baseline['revision']}, each scenario measured right after tether's"
        )
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
    # Twice each, in the order A B B A (A A without a baseline), keeping the lower median of
    # each: noise only adds time, and the first run of a pair tends to be the slower one.
    envs = [env] if baseline_env is None else [env, baseline_env]
    runs: list[list[dict[str, Any]]] = [[] for _ in envs]
    for index in [*range(len(envs)), *reversed(range(len(envs)))]:
        measured = run_inprocess(server_core, envs[index])
        if measured is not None:
            runs[index].append(measured)
    best = [min(found, key=lambda m: m["median_overhead_us"]) if found else None for found in runs]
    inprocess = best[0]
    inprocess_baseline = best[1] if len(best) > 1 else None
    if inprocess is not None:
        inprocess["runs_overhead_us"] = [m["median_overhead_us"] for m in runs[0]]
    if inprocess_baseline is not None:
        inprocess_baseline["runs_overhead_us"] = [m["median_overhead_us"] for m in runs[1]]
    for name, measured in (("", inprocess), (f" [{args.baseline_label}]", inprocess_baseline)):
        if measured is not None:
            print(
                f"  direct {measured['median_direct_us']:.2f} us, api.call "
                f"{measured['median_api_call_us']:.2f} us, overhead "
                f"{measured['median_overhead_us']:.2f} us/call{name} (the lower of "
                f"{', '.join(f'{v:.2f}' for v in measured['runs_overhead_us'])}, each a median of "
                f"{measured['repetitions']} x {measured['calls_per_repetition']} calls, "
                f"{measured['loop']}; the loop had {measured['core_share']:.0%} of its core)"
            )

    driver = LoadDriver(
        core=client_core if client_core is not None else 0,
        server_core=server_core if server_core is not None else 0,
    )
    all_scenarios = scenarios()
    serving = dict(SERVERS)
    if baseline is not None:
        all_scenarios = with_baseline(all_scenarios, args.baseline_label)
        serving[BASELINE] = SERVERS["tether"]
    by_key = {s.key: s for s in all_scenarios}
    log_dir = Path(tempfile.mkdtemp(prefix="tether-bench-logs-"))
    servers: dict[str, Server] = {}
    server_errors: dict[str, str] = {}
    try:
        print("\n[servers]")
        for name, module in serving.items():
            server = Server(
                name,
                module,
                core=server_core if server_core is not None else 0,
                env=baseline_env if name == BASELINE and baseline_env is not None else env,
            )
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

    table = targets(
        by_key, inprocess, args.baseline_label if baseline else None, inprocess_baseline
    )
    print_report(all_scenarios, table, inprocess)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tether_revision": tether["revision"],
        "tether_source": tether,
        "label": args.label,
        "baseline_source": baseline,
        "baseline_label": args.baseline_label if baseline else None,
        "inprocess_baseline": inprocess_baseline,
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
    written = record.write(report, label=args.label, save=args.save)
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")
    # The harness worked if the two baseline HTTP scenarios ran; misses are findings.
    return 0 if by_key["http_tether"].ran and by_key["http_fastapi"].ran else 1


if __name__ == "__main__":
    sys.exit(main())
