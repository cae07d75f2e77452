"""The report: targets of issues 2, 3 and 10, the printed tables, the Markdown for docs/bench.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from load import CONTENDED, LoadResult
from scenarios import BATCH_SIZE, Scenario

# -- the targets of issues 2, 3 and 10 -----------------------------------------------------


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


def floor_target(tether: Scenario, floor: Scenario, name: str) -> Target:
    """tether's HTTP figures over a floor's: throughput, and server CPU per request (in the note)."""
    note = missing_note(tether, floor)
    if not note:
        ours, theirs = cpu_per_call(tether), cpu_per_call(floor)
        note = (
            f"server CPU {ours:.1f} vs {theirs:.1f} us/req: tether spends {ours / theirs:.2f}x, "
            f"{ours - theirs:+.1f} us"
        )
    return Target(
        10,
        f"HTTP add req/s, tether / {name}",
        "-",
        ratio(tether, floor),
        "x",
        None,
        note,
        cpu_ratio(tether, floor),
    )


def baseline_targets(
    by_key: dict[str, Scenario], label: str, inprocess: dict[str, Any] | None
) -> list[Target]:
    """tether over the baseline tether measured in the same rounds (issue 10: no slower)."""
    result = []
    for key, name in (
        ("http_tether", "HTTP add req/s"),
        ("jsonrpc_tether", "JSON-RPC single calls/s"),
        ("batch_tether", f"JSON-RPC batch-of-{BATCH_SIZE} calls/s"),
    ):
        ours, theirs = by_key[key], by_key[f"{key}_baseline"]
        note = missing_note(ours, theirs)
        if not note:
            note = f"server CPU {cpu_per_call(ours):.2f} vs {cpu_per_call(theirs):.2f} us/call"
        result.append(
            Target(
                10,
                f"{name}, tether / {label}",
                "-",
                ratio(ours, theirs),
                "x",
                None,
                note,
                cpu_ratio(ours, theirs),
            )
        )
    single, batch = by_key["jsonrpc_tether_baseline"], by_key["batch_tether_baseline"]
    cost = cost_by_cpu = None
    if batch.ran and single.ran:
        cost = single.median(lambda r: r.requests_per_s) / batch.median(lambda r: r.requests_per_s)
        cost_by_cpu = batch.median(lambda r: r.server_cpu_us_per_request) / single.median(
            lambda r: r.server_cpu_us_per_request
        )
    result.append(
        Target(
            10,
            f"{label}: batch-of-{BATCH_SIZE} cost / single-call cost",
            "< 5x",
            cost,
            "x",
            None if cost is None else cost < 5.0,
            missing_note(batch, single),
            cost_by_cpu,
        )
    )
    overhead = None if inprocess is None else inprocess["median_overhead_us"]
    result.append(
        Target(
            10,
            f"{label}: api.call overhead over a direct call",
            "< 10 us",
            overhead,
            "us",
            None if overhead is None else overhead < 10,
            "" if inprocess is not None else "in-process measurement failed",
        )
    )
    return result


def targets(
    by_key: dict[str, Scenario],
    inprocess: dict[str, Any] | None,
    baseline_label: str | None = None,
    baseline_inprocess: dict[str, Any] | None = None,
) -> list[Target]:
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
    result.append(floor_target(http_t, by_key["http_starlette"], "bare Starlette route"))
    result.append(floor_target(http_t, by_key["http_asgi"], "bare ASGI app"))
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
    if baseline_label is not None:
        result += baseline_targets(by_key, baseline_label, baseline_inprocess)
    return result


def bound_verdict(result: LoadResult) -> str:
    if result.client_util >= 0.9:
        return "CLIENT-LIMITED"
    if result.contention > CONTENDED:
        return "CONTENDED"
    if result.server_util >= 0.85:
        return "server-bound"
    return "server core not saturated"


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
        figure = "-" if t.measured is None else f"{t.measured:.2f}{t.unit}"
        by_cpu = "" if t.by_cpu is None else f"  ({t.by_cpu:.2f}{t.unit})"
        print(f"  #{t.issue:<5}{t.name:<58}{t.target:>9}{figure:>11}  {t.verdict():<7}{by_cpu}")
        if t.note:
            print(f"  {'':<6}  ({t.note})")
