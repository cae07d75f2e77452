"""In-process overhead: `await api.call("add", {...})` against awaiting `add` directly.

Both loops run back to back in one event loop (uvloop when installed), `repetitions` times;
the overhead is the median over repetitions of (api.call time - direct time) / calls. Run
as a script it prints one JSON object; bench/run.py runs it pinned to one core.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

from tether_app import add, api


async def _measure(calls: int, repetitions: int) -> dict[str, Any]:
    params = {"a": 1, "b": 2}
    call = api.call
    assert await call("add", params) == 3
    direct_us: list[float] = []
    via_api_us: list[float] = []
    # CPU time over wall time: below 1, other processes took the core during the loops.
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for _ in range(repetitions):
        started = time.perf_counter_ns()
        for _ in range(calls):
            await add(a=1, b=2)
        direct_us.append((time.perf_counter_ns() - started) / calls / 1000)
        started = time.perf_counter_ns()
        for _ in range(calls):
            await call("add", params)
        via_api_us.append((time.perf_counter_ns() - started) / calls / 1000)
    core_share = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
    overheads = [v - d for v, d in zip(via_api_us, direct_us, strict=True)]
    return {
        "calls_per_repetition": calls,
        "repetitions": repetitions,
        "direct_us": direct_us,
        "api_call_us": via_api_us,
        "overhead_us": overheads,
        "median_direct_us": statistics.median(direct_us),
        "median_api_call_us": statistics.median(via_api_us),
        "median_overhead_us": statistics.median(overheads),
        "core_share": core_share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        loop = "uvloop"
        result = uvloop.run(_measure(args.calls, args.repetitions))
    else:
        loop = "asyncio"
        result = asyncio.run(_measure(args.calls, args.repetitions))
    result["loop"] = loop
    print(json.dumps(result))


if __name__ == "__main__":
    main()
