"""A flood of HTTP and JSON-RPC requests is shed with 429, and the server keeps serving."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import anyio
import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import LiveServer
from tether import ConfigurationError, Tether
from tether.limits import Admission

pytestmark = pytest.mark.e2e

LIMIT = 3
FLOOD = 12


def create_app(release: threading.Event) -> FastAPI:
    api = Tether(prefix="/api", max_in_flight=LIMIT)

    @api.query
    async def hold() -> str:
        # Holds its place until the test has seen every answer of the flood (a thread
        # event, set by the test's thread, waited for in a worker thread).
        await anyio.to_thread.run_sync(release.wait, 10)
        return "done"

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    app = FastAPI()
    api.mount(app)
    return app


def flood(
    server: LiveServer, path: str, body: object
) -> tuple[list[httpx.Response], list[threading.Thread]]:
    """Send FLOOD concurrent requests; return the answers as they arrive, and the senders."""
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = client.post(path, json=body)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(FLOOD)]
    for thread in threads:
        thread.start()
    return answers, threads


@pytest.mark.parametrize(
    ("path", "body", "ok"),
    [
        ("/api/call/hold", {}, lambda r: r.json() == {"result": "done"}),
        (
            "/api/jsonrpc",
            {"jsonrpc": "2.0", "id": 1, "method": "hold"},
            lambda r: r.json() == {"jsonrpc": "2.0", "id": 1, "result": "done"},
        ),
    ],
    ids=["http", "jsonrpc"],
)
def test_a_flood_is_shed_with_429_and_the_server_keeps_serving(
    live_server: Callable[..., LiveServer],
    path: str,
    body: object,
    ok: Callable[[httpx.Response], bool],
) -> None:
    release = threading.Event()
    server = live_server(create_app(release))
    answers, threads = flood(server, path, body)
    # Everything past the limit is refused, while the first LIMIT still hold their places
    # (they cannot answer before `release` is set).
    for _ in range(1000):
        if len(answers) >= FLOOD - LIMIT:
            break
        release.wait(0.01)
    refused = list(answers)
    assert len(refused) == FLOOD - LIMIT
    for response in refused:
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        if path.endswith("jsonrpc"):
            assert error["code"] == -32029
            assert error["data"]["code"] == "TOO_MANY_REQUESTS"
        else:
            assert error["code"] == "TOO_MANY_REQUESTS"
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    held = answers[len(refused) :]
    assert len(held) == LIMIT
    assert all(response.status_code == 200 and ok(response) for response in held)
    # The places are free again: the next calls are served.
    with httpx.Client(base_url=server.url) as client:
        assert Counter(
            client.post("/api/call/add", json={"a": 1, "b": i}).status_code
            for i in range(LIMIT + 2)
        ) == Counter({200: LIMIT + 2})


def test_admission_counts_and_refuses() -> None:
    admission = Admission(2)
    admission.enter()
    admission.enter()
    with pytest.raises(Exception, match="handling 2 requests") as info:
        admission.enter()
    assert getattr(info.value, "code", None) == "TOO_MANY_REQUESTS"
    admission.leave()
    admission.enter()
    assert admission.in_flight == 2
    with pytest.raises(ConfigurationError):
        Admission(0)
