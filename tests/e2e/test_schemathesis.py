"""schemathesis, with all its checks, against the demo's and the conformance app's OpenAPI.

Each app is served by a real uvicorn on loopback and fuzzed from its own `/openapi.json`,
in the default lax mode and with `strict=True`, deterministically and with a bounded
number of examples per operation. Zero failures is the bar. The checks left out, each
where a documented choice contradicts it (docs/operations.md "Strict inputs", docs/
transports/jsonrpc.md):

- `negative_data_rejection` in lax mode: lax inputs coerce as FastAPI does (`0` is a
  boolean, `false` an integer, `"1"` a number), so a value of the wrong JSON type is
  accepted by design; the strict runs keep the check on every operation.
- `negative_data_rejection` on `POST /api/jsonrpc`: JSON-RPC answers an invalid request
  with HTTP 200 and a JSON-RPC error object (-32600, -32602), as JSON-RPC over HTTP does.
- `not_a_server_error` and `positive_data_acceptance` on the conformance app's `fail`: it
  exists to answer each built-in error, 400 to 500, for the code it is given. The custom
  check `fail_answers_the_error_it_is_named` (tests/e2e/_schemathesis_hooks.py) holds it
  to more instead: every code its schema allows is answered with exactly that error.

The bearer token is sent with every request, so that authenticated operations are fuzzed
past their gate: `admin` is staff in the demo, `alice` in the conformance app.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from examples.conformance.app import create_app as create_conformance_app

from tests.conftest import LiveServer
from tether.demo.app import create_app as create_demo_app

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 10

CONFIG = """
[checks]
# Every check schemathesis has, unless an operation below leaves one out.
enabled = true

[[operations]]
include-path = "/api/jsonrpc"
# JSON-RPC answers an invalid request with HTTP 200 and a JSON-RPC error object.
checks.negative_data_rejection.enabled = false
"""

FAIL = """
[[operations]]
include-path = "/api/call/fail"
# `fail` answers the built-in error it is named: 400 to 500, by design. The custom check
# `fail_answers_the_error_it_is_named` holds every schema-valid call to exactly that error.
checks.not_a_server_error.enabled = false
checks.positive_data_acceptance.enabled = false
"""

LAX = """
# Lax inputs coerce as FastAPI does: a value of another JSON type may be accepted.
negative_data_rejection.enabled = false
"""


def demo(tmp_path: Path, strict: bool) -> Any:
    return create_demo_app(tmp_path / "todo.db", strict=strict)


def conformance(tmp_path: Path, strict: bool) -> Any:
    return create_conformance_app(strict=strict)


def run_schemathesis(url: str, token: str, tmp_path: Path, *, strict: bool, extra: str) -> str:
    config = CONFIG.replace("enabled = true\n", "enabled = true\n" + ("" if strict else LAX), 1)
    config += extra
    (tmp_path / "schemathesis.toml").write_text(config, encoding="utf-8")
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e._schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    completed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=55, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    return output


@pytest.mark.parametrize("strict", [False, True], ids=["lax", "strict"])
@pytest.mark.parametrize(
    ("build", "token", "extra"),
    [(demo, "admin", ""), (conformance, "alice", FAIL)],
    ids=["demo", "conformance"],
)
def test_schemathesis_finds_nothing(
    live_server: Callable[..., LiveServer],
    tmp_path: Path,
    build: Callable[[Path, bool], Any],
    token: str,
    extra: str,
    strict: bool,
) -> None:
    server = live_server(build(tmp_path, strict))
    output = run_schemathesis(server.url, token, tmp_path, strict=strict, extra=extra)
    assert "Unmatched filters" not in output, output
    # Every operation was tested, and the run really generated cases.
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert selected is not None, output
    assert selected[1] == selected[2] == selected[3], output
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None, output
    assert int(generated[1]) >= MAX_EXAMPLES * int(selected[3]), output
