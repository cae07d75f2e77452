"""The TypeScript runtime's vitest suite, run by node against a real uvicorn server (runtime_app).

Every `tests/node_client/*.test.ts` runs here: RTA's transport tests need the server
(`TETHER_TEST_URL`), RTB's kernel, hook and TanStack tests need none. The JSON report must hold
every expected file, each with the expected tests (a file or test that silently vanished fails),
all passed, and nothing else; tsc type-checks the runtime and the tests under `--strict` first.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._node import NODE_CLIENT, tsc
from tests.codegen.runtime_app import app
from tests.conftest import LiveServer, serve

pytestmark = pytest.mark.e2e

BIN = NODE_CLIENT / "node_modules" / ".bin"

# The transport tests, by file and full name (describe + test): each must run and pass.
TRANSPORT_TESTS: dict[str, list[str]] = {
    "batch.test.ts": [
        "JSON-RPC batching sends the calls of one tick as one request with one item each",
        "JSON-RPC batching sends a lone call as a plain object, and calls of later ticks separately",
        "JSON-RPC batching splits more than maxItems calls into several batches",
        "JSON-RPC batching defaults to batches of 100, the server's limit",
        "JSON-RPC batching types each item's outcome: results, effects and errors side by side",
        "JSON-RPC batching rejects every call of a batch the server refuses whole",
        "JSON-RPC batching drops a call aborted before the flush, and rejects one aborted in flight"
        " at once",
        "JSON-RPC batching rejects with NETWORK_ERROR when the server cannot be reached",
    ],
    "transport.test.ts": [
        "HTTP transport calls POST {prefix}/call/{name} and returns the result with its effects",
        "HTTP transport answers errors as TetherError with code, status, message and details",
        "HTTP transport turns an unreachable server and a non-JSON answer into NETWORK_ERROR",
        "HTTP transport fetches a context bundle with POST {prefix}/context/{name}",
        "HTTP transport reads the headers for every request",
        "HTTP transport maps camelCase names to wire names",
        "HTTP transport routes an operation that is not on the chosen wire to HTTP",
        "HTTP transport applies a command's effects to the client's cache (unless told not to)",
    ],
    "websocket.test.ts": [
        "WebSocket calls calls over one lazily opened socket, with the headers in every message",
        "WebSocket calls answers errors with the envelope's code, status and details",
        "WebSocket calls rejects an aborted call at once and ignores its reply",
        "WebSocket calls fails calls in flight with NETWORK_ERROR when the socket drops,"
        " then reconnects",
        "WebSocket streams yields a subscription's items, then ends",
        "WebSocket streams throws the stream's error after its items",
        "WebSocket streams sends CANCEL when the loop is left early, and the server's generator"
        " stops",
        "WebSocket streams ends an open stream with NETWORK_ERROR when the socket drops",
        "WebSocket heartbeat pings an idle socket, and drops one whose PING goes unanswered",
    ],
    "sse.test.ts": [
        "readEvents reads LF, CRLF and CR line ends, comments, multi-line data and ids",
        "readEvents drops an event the body ends inside",
        "SSE streams yields the items of POST {prefix}/stream/{name}",
        "SSE streams throws an error event as a TetherError, after the items",
        "SSE streams throws a refusal before the stream with its status",
        "SSE streams cancels the server's generator when the loop is left early",
        "SSE streams stops at once when its signal aborts",
    ],
    "live.test.ts": [
        f"live push over {mode} {name}"
        for mode in ("sse", "websocket")
        for name in (
            "follows the names of loaded entries, and a push refetches the mounted context",
            "makes exactly one refetch for the caller's own command: the push's",
            "stays in error after a refusal (no retries) until reset() brings new headers",
            "resubscribes when the followed names change, resuming from the last id",
            "reconnects with growing backoff and is replayed exactly the pushes it missed",
        )
    ],
}
# The kernel, hook and TanStack tests (RTB's): each file must run and pass, with at least this many tests.
KERNEL_TESTS: dict[str, int] = {"cache.test.ts": 8, "react.test.ts": 2, "tanstack.test.ts": 2}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with serve(app, timeout_graceful_shutdown=3) as live:
        yield live


def test_the_runtime_and_its_tests_type_check() -> None:
    tsc(NODE_CLIENT / "tsconfig.json")


def test_every_vitest_file_runs_and_passes(server: LiveServer, tmp_path: Path) -> None:
    report_path = tmp_path / "vitest.json"
    completed = subprocess.run(
        [str(BIN / "vitest"), "run", "--reporter=json", f"--outputFile={report_path}"],
        cwd=NODE_CLIENT,
        env={**os.environ, "TETHER_TEST_URL": server.url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout[-4000:] + completed.stderr[-4000:]
    assert report_path.exists(), output
    report: dict[str, Any] = json.loads(report_path.read_text())
    files = {Path(result["name"]).name: result for result in report["testResults"]}
    on_disk = {path.name for path in NODE_CLIENT.glob("*.test.ts")}
    expected = set(TRANSPORT_TESTS) | set(KERNEL_TESTS)
    assert expected <= on_disk, f"missing test files: {sorted(expected - on_disk)}"
    assert set(files) == on_disk, f"files that did not report: {sorted(on_disk - set(files))}"
    failed = {
        f"{name}: {test['fullName']}: {test['status']} {test.get('failureMessages', [])}"
        for name, result in files.items()
        for test in result["assertionResults"]
        if test["status"] != "passed"
    }
    assert not failed, "\n".join(sorted(failed))
    for name, result in files.items():
        assert result["status"] == "passed", f"{name}: {result.get('message', '')}"
    for name, titles in TRANSPORT_TESTS.items():
        ran = [test["fullName"] for test in files[name]["assertionResults"]]
        assert sorted(ran) == sorted(titles), name
    for name, least in KERNEL_TESTS.items():
        assert len(files[name]["assertionResults"]) >= least, name
    assert report["numFailedTests"] == 0
    assert report["numPendingTests"] == 0
    assert report["numTodoTests"] == 0
    assert completed.returncode == 0, output
