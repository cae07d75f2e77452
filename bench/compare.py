"""Before and after: two labelled runs of `make bench`'s scripts side by side, as Markdown.

Usage: python bench/compare.py BEFORE_LABEL AFTER_LABEL
       python bench/compare.py LABEL        (one run made with --baseline-src)

Reads the newest dated records in bench/results/ saved with `--save --label BEFORE_LABEL` and
`--save --label AFTER_LABEL` by bench/run.py, bench/ws_bench.py and bench/sse_bench.py, and
prints one table: each figure before, after, and after / before. Given one label, it reads
that run's records, made with `--baseline-src`, and compares the baseline (before) with
tether (after), measured in the same rounds. Beside the absolute figures
it gives tether's ratio to the floor measured in the same run (the bare ASGI app for HTTP and
JSON-RPC, the bare ASGI echo for the WebSocket): the two runs happen minutes apart on a
shared machine, and a ratio to a floor measured in the same rounds drifts less than the
absolute figures.
"""

from __future__ import annotations

import argparse
from typing import Any

import record

Row = tuple[str, float | None, float | None, str]


def http_rows(data: dict[str, Any] | None) -> dict[str, float | None]:
    """The HTTP and JSON-RPC figures of a bench/run.py record."""
    if data is None:
        return {}
    scenarios = data["scenarios"]

    def get(key: str, metric: str) -> float | None:
        scenario = scenarios.get(key, {})
        return scenario.get(metric) if scenario.get("status") == "ok" else None

    figures: dict[str, float | None] = {}
    for key, name in (
        ("http_tether", "HTTP call"),
        ("jsonrpc_tether", "JSON-RPC single"),
        ("batch_tether", "JSON-RPC batch of 100"),
    ):
        figures[f"{name}, req/s"] = get(key, "requests_per_s")
        figures[f"{name}, server CPU µs/req"] = get(key, "server_cpu_us_per_request")
    single, batch = get("jsonrpc_tether", "requests_per_s"), get("batch_tether", "requests_per_s")
    figures["batch / single cost (target < 5x)"] = single / batch if single and batch else None
    cpu_single = get("jsonrpc_tether", "server_cpu_us_per_request")
    cpu_batch = get("batch_tether", "server_cpu_us_per_request")
    figures["batch / single cost by CPU"] = (
        cpu_batch / cpu_single if cpu_single and cpu_batch else None
    )
    floor = get("http_asgi", "server_cpu_us_per_request")
    starlette = get("http_starlette", "server_cpu_us_per_request")
    tether = get("http_tether", "server_cpu_us_per_request")
    figures["HTTP call CPU / bare Starlette route CPU"] = (
        tether / starlette if tether and starlette else None
    )
    figures["HTTP call CPU / bare ASGI app CPU"] = tether / floor if tether and floor else None
    rpc = get("jsonrpc_tether", "server_cpu_us_per_request")
    figures["JSON-RPC single CPU / bare ASGI app CPU"] = rpc / floor if rpc and floor else None
    figures["JSON-RPC batch CPU / bare ASGI app CPU"] = (
        cpu_batch / floor if cpu_batch and floor else None
    )
    figures["in-process api.call overhead, µs"] = (data.get("inprocess") or {}).get(
        "median_overhead_us"
    )
    return figures


def ws_rows(data: dict[str, Any] | None) -> dict[str, float | None]:
    """The WebSocket figures of a bench/ws_bench.py record."""
    if data is None:
        return {}
    figures: dict[str, float | None] = {}
    for label, scenario in data["scenarios"].items():
        medians = scenario.get("medians", {})
        tether = medians.get("tether", {})
        floor = scenario.get("floor_ratios", {})
        figures[f"WebSocket {label}, rt/s"] = tether.get("round_trips_per_s")
        figures[f"WebSocket {label}, server CPU µs/rt"] = tether.get("server_us_per_rt")
        figures[f"WebSocket {label}, CPU / bare ASGI echo CPU"] = floor.get("server_cpu_per_rt")
    return figures


def sse_rows(data: dict[str, Any] | None) -> dict[str, float | None]:
    """The SSE figures of a bench/sse_bench.py record."""
    if data is None:
        return {}
    return {
        "SSE items/s": data.get("items_per_s"),
        "SSE server CPU µs/item": data.get("server_cpu_us_per_item"),
    }


def baseline_view(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The baseline's figures of a record made with --baseline-src, shaped as a plain record."""
    if not data.get("baseline_source"):
        print(f"({kind} record labelled {data.get('label')!r} has no baseline)")
        return None
    if kind == "http":
        scenarios = dict(data["scenarios"])
        for key in ("http_tether", "jsonrpc_tether", "batch_tether"):
            scenarios[key] = scenarios[f"{key}_baseline"]
        return {**data, "scenarios": scenarios, "inprocess": data.get("inprocess_baseline")}
    if kind == "ws":
        scenarios = {}
        for label, scenario in data["scenarios"].items():
            medians = scenario.get("medians", {})
            ours, floor = medians.get("tether-baseline", {}), medians.get("bare-asgi-floor", {})
            scenarios[label] = {
                **scenario,
                "medians": {"tether": ours},
                "floor_ratios": {
                    "server_cpu_per_rt": ours["server_us_per_rt"] / floor["server_us_per_rt"]
                }
                if ours and floor
                else {},
            }
        return {**data, "scenarios": scenarios}
    return data.get("baseline")  # type: ignore[no-any-return]


def load(kind: str, label: str) -> dict[str, Any] | None:
    found = record.newest(kind, label)
    if found is None:
        print(f"(no {kind} record labelled {label!r} in bench/results/)")
        return None
    path, data = found
    print(
        f"{kind:>4} {label}: bench/results/{path.name}, tether {data.get('tether_revision')}, "
        f"{contention(kind, data)}"
    )
    return data


def contention(kind: str, data: dict[str, Any]) -> str:
    """How many of a record's measurements the figures rest on, in words."""
    if kind == "http":
        ran = [s for s in data["scenarios"].values() if s.get("status") == "ok"]
        used = sum(s["rounds_used"] for s in ran)
        total = sum(len(s["rounds"]) for s in ran)
        return f"{used} of {total} measurements uncontended"
    if kind == "ws":
        rounds = data["settings"]["rounds"]
        return ", ".join(
            f"{label}: {len(s['clean_rounds'])} of {rounds} rounds clean"
            for label, s in data["scenarios"].items()
        )
    return f"{data['rounds_used']} of {len(data['rounds'])} rounds used ({data['contended_rounds']} contended)"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?")
    args = parser.parse_args()
    extractors = (("http", http_rows), ("ws", ws_rows), ("sse", sse_rows))
    figures: dict[str, dict[str, float | None]]
    if args.after is None:
        # One run with --baseline-src: the baseline is "before", tether "after".
        label, args.before, args.after = args.before, "before", "after"
        figures = {"before": {}, "after": {}}
        for kind, extract in extractors:
            data = load(kind, label)
            figures["after"].update(extract(data))
            figures["before"].update(extract(None if data is None else baseline_view(kind, data)))
    else:
        figures = {args.before: {}, args.after: {}}
        for label, found in figures.items():
            for kind, extract in extractors:
                found.update(extract(load(kind, label)))
    names = dict.fromkeys([*figures[args.before], *figures[args.after]])
    print(f"\n| figure | {args.before} | {args.after} | {args.after} / {args.before} |")
    print("|---|---:|---:|---:|")
    for name in names:
        before, after = figures[args.before].get(name), figures[args.after].get(name)
        change = f"{after / before:.2f}x" if before and after else "-"
        print(f"| {name} | {number(before)} | {number(after)} | {change} |")


if __name__ == "__main__":
    main()
