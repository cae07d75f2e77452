"""The generated TypeScript client (issue 13) against tRPC's client and plain `fetch`, from Node.

Usage: .venv/bin/python bench/client_bench.py [--rounds N] [--calls N] [--warmup N]
                                              [--save [--label NAME]]
       (needs Node 20+ and `npm ci` in bench/client/, which this script runs when
       bench/client/node_modules is missing)

What it measures, in one run, on loopback: the wall time of a round of `--calls` (20) calls of
`add(a, b)` (two integers in, their sum out), made by five clients from ONE Node process:

- `tether jsonrpc`: the client `tether generate` writes, transport "jsonrpc" (the default);
- `tether http`: the same client, transport "http" (`POST /api/call/add`, one request a call);
- `tether websocket`: the same client, transport "websocket" (one socket, the `ws` package);
- `trpc httpBatchLink`: tRPC's client (`createTRPCClient` + `httpBatchLink`) against tRPC's
  standalone Node server (`createHTTPServer`), the procedure a zod-checked query;
- `fetch fastapi`: plain `fetch` to `POST /add` of a plain FastAPI app (bench/apps/fastapi_app.py).

Two scenarios:

- **batch**: the round's calls are made in one tick and awaited together (`Promise.all`): one
  JSON-RPC batch for tether jsonrpc, one batched request for tRPC, 20 concurrent requests for
  tether http and fetch (undici opens as many keep-alive connections as it needs), 20 messages
  in flight on one socket for tether websocket;
- **sequential**: each call is awaited before the next is made.

Rounds are interleaved: round r runs each client once, in an order rotated by r, so every
client sees the same conditions of the machine; `--warmup` rounds of each come first and are
not measured. For each client the script prints the round's p50 and p99 wall time, calls per
second (the calls made over the summed wall time of the rounds), the CPU time per call of the
Node driver (during that client's rounds) and of that client's server, and the ratios of calls/s
to tRPC's and to fetch + FastAPI's (above 1: faster than the peer).

Servers: each client has its own server process, all pinned to core 1; the Node driver is
pinned to core 0 (one core each, on the 2-core machines this runs on). The tether app
(bench/apps/tether_app.py: a query `add` at /api) runs three times, one process per transport,
so that the server CPU per call is each transport's. Python servers run on plain uvicorn, as
bench/servers.py starts them (one worker, uvloop, httptools), with the setting
`tether.server.TetherServer` applies (`--ws-per-message-deflate false`; the `ws` client offers
compression) and its WebSocket size limit (`--ws-max-size 1048576`); the tRPC server is
`node bench/client/trpc_server.mjs`. The generated client is written at every run into a
temporary folder (`tether generate --app tether_app:app --out <tmp>/api --no-react`) and
bundled with bench/client/driver.ts by esbuild (bench/client/build.mjs).

The run is written to bench/results/latest-client.json, and with --save to
bench/results/<date>[-LABEL]-client.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import record
from servers import APPS_DIR, Server, core_busy_seconds, process_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
CLIENT_DIR = BENCH_DIR / "client"
REPO_DIR = BENCH_DIR.parent
SERVER_CORE = 1
DRIVER_CORE = 0
CLIENTS = (
    "tether jsonrpc",
    "tether http",
    "tether websocket",
    "trpc httpBatchLink",
    "fetch fastapi",
)
SCENARIOS = {
    "batch": "{calls} calls fired in one tick, awaited together",
    "sequential": "{calls} calls one at a time, sequential",
}
TETHER_WS = ["--ws-per-message-deflate", "false", "--ws-max-size", "1048576"]


class TetherAppServer(Server):
    """bench/apps/tether_app.py on plain uvicorn, with TetherServer's WebSocket settings."""

    def command(self) -> list[str]:
        return [*super().command(), *TETHER_WS]


class TrpcServer(Server):
    """tRPC's standalone server (bench/client/trpc_server.mjs) in its own Node process."""

    def command(self) -> list[str]:
        return ["node", str(CLIENT_DIR / "trpc_server.mjs"), str(self.port)]


def run(command: list[str], cwd: Path) -> str:
    """Run a setup command; stop with its output when it fails."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build_driver(tmp: Path) -> Path:
    """Generate the tether client into `tmp/api` and bundle the driver with it: the bundle's path."""
    if not (CLIENT_DIR / "node_modules").is_dir():
        print("npm ci in bench/client ...")
        run(["npm", "ci", "--no-audit", "--no-fund"], CLIENT_DIR)
    tether_cli = Path(sys.executable).with_name("tether")
    # Like uvicorn's --app-dir: `tether generate` imports the app from its working directory.
    run(
        [
            str(tether_cli),
            "generate",
            "--app",
            "tether_app:app",
            "--out",
            str(tmp / "api"),
            "--no-react",
        ],
        APPS_DIR,
    )
    bundle = tmp / "driver.mjs"
    run(["node", str(CLIENT_DIR / "build.mjs"), str(tmp / "api"), str(bundle)], CLIENT_DIR)
    return bundle


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summarize(measured: dict[str, Any], calls: int) -> dict[str, Any]:
    """p50/p99 of the round, calls/s and CPU per call of one client in one scenario."""
    rounds = measured["round_ms"]
    total_calls = calls * len(rounds)
    summary = {
        "rounds": len(rounds),
        "round_p50_ms": round(statistics.median(rounds), 3),
        "round_p99_ms": round(percentile(rounds, 0.99), 3),
        "round_mean_ms": round(statistics.fmean(rounds), 3),
        "calls_per_s": round(total_calls / measured["wall_s"], 1),
        "driver_cpu_us_per_call": round(measured["driver_cpu_s"] / total_calls * 1e6, 1),
        "server_cpu_us_per_call": round(measured["server_cpu_s"] / total_calls * 1e6, 1),
    }
    if measured["call_ms"]:
        summary["call_p50_ms"] = round(statistics.median(measured["call_ms"]), 3)
        summary["call_p99_ms"] = round(percentile(measured["call_ms"], 0.99), 3)
    return summary


def print_table(scenario: str, calls: int, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n{scenario}: {SCENARIOS[scenario].format(calls=calls)}")
    header = (
        f"  {'client':<20} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9} "
        f"{'node µs/call':>12} {'server µs/call':>14} {'÷ tRPC':>7} {'÷ fetch':>8}"
    )
    print(header)
    trpc = rows["trpc httpBatchLink"]["calls_per_s"]
    plain = rows["fetch fastapi"]["calls_per_s"]
    for name, row in rows.items():
        print(
            f"  {name:<20} {row['round_p50_ms']:>8.2f} {row['round_p99_ms']:>8.2f} "
            f"{row['calls_per_s']:>9,.0f} {row['driver_cpu_us_per_call']:>12.0f} "
            f"{row['server_cpu_us_per_call']:>14.0f} {row['calls_per_s'] / trpc:>6.2f}x "
            f"{row['calls_per_s'] / plain:>7.2f}x"
        )


def machine_sample(servers: dict[str, Server], pinned: bool) -> dict[str, float]:
    """Busy seconds of both cores, CPU seconds of the servers and of finished children, now."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall": time.monotonic(),
        "server_core": core_busy_seconds(SERVER_CORE) if pinned else 0.0,
        "driver_core": core_busy_seconds(DRIVER_CORE) if pinned else 0.0,
        "servers": sum(process_cpu_seconds(server.pid) for server in servers.values()),
        "children": children.ru_utime + children.ru_stime,
    }


def other_load(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The share of each core that processes other than this bench's took during the driver's run."""
    wall = after["wall"] - before["wall"]
    ours = {
        "server_core": after["servers"] - before["servers"],
        "driver_core": after["children"] - before["children"],  # the Node driver
    }
    return {
        core: round(max(0.0, after[core] - before[core] - ours[core]) / wall, 3)
        for core in ("server_core", "driver_core")
    } | {"wall_s": round(wall, 1)}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in (
        "tether",
        "fastapi",
        "starlette",
        "pydantic",
        "uvicorn",
        "uvloop",
        "httptools",
        "websockets",
    ):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    for package in ("@trpc/server", "@trpc/client", "zod", "esbuild", "ws"):
        manifest = CLIENT_DIR / "node_modules" / package / "package.json"
        found[package] = json.loads(manifest.read_text())["version"] if manifest.exists() else "?"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--rounds", type=int, default=300, help="measured rounds per scenario and client"
    )
    parser.add_argument("--calls", type=int, default=20, help="calls per round")
    parser.add_argument(
        "--warmup", type=int, default=100, help="rounds per client before measuring"
    )
    parser.add_argument("--save", action="store_true", help="also write results/<date>-client.json")
    parser.add_argument("--label", default="", help="with --save: results/<date>-LABEL-client.json")
    args = parser.parse_args()
    if shutil.which("node") is None:
        raise SystemExit("this bench needs Node 20+ on PATH")

    started = time.monotonic()
    cores = os.cpu_count() or 1
    pinned = cores > 1
    with tempfile.TemporaryDirectory(prefix="tether-client-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = build_driver(tmp)
        core = SERVER_CORE if pinned else 0
        servers: dict[str, Server] = {
            "tether jsonrpc": TetherAppServer("tether-jsonrpc", "tether_app", core),
            "tether http": TetherAppServer("tether-http", "tether_app", core),
            "tether websocket": TetherAppServer("tether-websocket", "tether_app", core),
            "fetch fastapi": Server("fastapi", "fastapi_app", core),
            "trpc httpBatchLink": TrpcServer("trpc", "trpc_server", core),
        }
        try:
            for server in servers.values():
                server.start(tmp)
            urls = {name: servers[name].url for name in CLIENTS}
            settings = {
                "urls": urls,
                "pids": {name: servers[name].pid for name in CLIENTS},
                "rounds": args.rounds,
                "warmup": args.warmup,
                "calls": args.calls,
                "scenarios": list(SCENARIOS),
                "clock_ticks": os.sysconf("SC_CLK_TCK"),
            }
            print(
                f"{len(CLIENTS)} clients, {args.calls} calls a round, {args.warmup} warm-up + "
                f"{args.rounds} measured rounds each, interleaved; {cores} cores "
                f"(servers on core {core}, the Node driver on core {DRIVER_CORE if pinned else 0})"
            )
            before = machine_sample(servers, pinned)
            driver = subprocess.run(
                ["node", str(bundle), json.dumps(settings)],
                cwd=CLIENT_DIR,
                capture_output=True,
                text=True,
                check=False,
                preexec_fn=(lambda: os.sched_setaffinity(0, {DRIVER_CORE})) if pinned else None,
            )
            contention = other_load(before, machine_sample(servers, pinned))
            if driver.returncode != 0:
                raise SystemExit(
                    f"the driver failed:\n{driver.stdout[-2000:]}\n{driver.stderr[-4000:]}"
                )
        finally:
            for server in servers.values():
                server.stop()
    output = json.loads(driver.stdout.strip().splitlines()[-1])
    if pinned:
        print(
            f"other processes took {contention['server_core']:.0%} of the servers' core and "
            f"{contention['driver_core']:.0%} of the driver's during the {contention['wall_s']} s run"
        )
    summaries: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        measured = output["results"][scenario]
        summaries[scenario] = {name: summarize(measured[name], args.calls) for name in CLIENTS}
        print_table(scenario, args.calls, summaries[scenario])
    print(
        "\n  p50/p99: wall time of one round of all its calls; calls/s: calls over the summed"
        " wall time of the rounds;\n  node/server µs/call: CPU time of the driver during that"
        " client's rounds, and of its server, per call;\n  ÷ tRPC, ÷ fetch: calls/s over tRPC"
        " httpBatchLink's and over fetch + FastAPI's (above 1: faster)."
    )
    ratios = {
        scenario: {
            name: {
                "vs_trpc": round(
                    rows[name]["calls_per_s"] / rows["trpc httpBatchLink"]["calls_per_s"], 3
                ),
                "vs_fetch_fastapi": round(
                    rows[name]["calls_per_s"] / rows["fetch fastapi"]["calls_per_s"], 3
                ),
            }
            for name in CLIENTS
        }
        for scenario, rows in summaries.items()
    }
    import tether

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "tether_package": str(Path(tether.__file__).parent),
        "settings": {
            "rounds": args.rounds,
            "calls": args.calls,
            "warmup": args.warmup,
            "cores": cores,
            "servers": "plain uvicorn (bench/servers.py options) + --ws-per-message-deflate false"
            " --ws-max-size 1048576 for tether; tRPC createHTTPServer under node",
            "pinning": {"servers": core, "driver": DRIVER_CORE if pinned else 0},
        },
        "versions": {**versions(), "node": output["node"]},
        "scenarios": {k: v.format(calls=args.calls) for k, v in SCENARIOS.items()},
        "results": summaries,
        "ratios": ratios,
        "other_load": contention if pinned else None,
        "raw_round_ms": {
            scenario: {name: output["results"][scenario][name]["round_ms"] for name in CLIENTS}
            for scenario in SCENARIOS
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    written = record.write(report, kind="client", label=args.label, save=args.save)
    print(f"\nwrote {', '.join(written)} ({report['elapsed_s']} s)")


if __name__ == "__main__":
    main()
