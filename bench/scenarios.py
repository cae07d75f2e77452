"""The scenarios: which server gets which request, and how one answer is checked."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from load import CONTENDED, LoadResult
from servers import Server

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
            "http_starlette",
            "HTTP add floor, bare Starlette route (POST /add)",
            "starlette",
            "/add",
            ADD_BODY,
            1,
            check_http_result,
        ),
        Scenario(
            "http_asgi",
            "HTTP add floor, bare ASGI app (POST /add)",
            "asgi",
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


def with_baseline(items: list[Scenario], label: str) -> list[Scenario]:
    """Each tether scenario followed by the same one against the baseline tether (`--baseline-src`).

    Measured back to back in every round, the two see the same conditions of the machine.
    """
    result = []
    for scenario in items:
        result.append(scenario)
        if scenario.server == "tether":
            result.append(
                dataclasses.replace(
                    scenario,
                    key=f"{scenario.key}_baseline",
                    title=f"{scenario.title} [{label}]",
                    server=BASELINE,
                    rounds=[],
                    remeasured=[],
                )
            )
    return result


BASELINE = "tether_baseline"
"""The server of the baseline tether (the same app, another source tree)."""
SERVERS = {
    "tether": "tether_app",
    "fastapi": "fastapi_app",
    "starlette": "starlette_app",
    "asgi": "asgi_app",
    "fastapi_jsonrpc": "fastapi_jsonrpc_app",
}


def preflight(scenario: Scenario, server: Server) -> str:
    """Send one request and check the answer; return "ok" or why the scenario cannot run."""
    try:
        response = httpx.post(server.url + scenario.path, json=scenario.body, timeout=10)
    except httpx.HTTPError as exc:
        return f"request failed: {exc!r}"
    if scenario.server in ("tether", BASELINE) and scenario.path.endswith("/jsonrpc"):
        if response.status_code in (404, 405):
            return (
                f"tether JSON-RPC endpoint missing (POST {scenario.path} answered "
                f"{response.status_code})"
            )
    problem = scenario.check(response)
    return "ok" if problem is None else f"wrong answer: {problem}"
