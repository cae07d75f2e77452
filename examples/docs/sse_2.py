# file: examples/docs/sse_2.py
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx


async def read_stream(client: httpx.AsyncClient, name: str, **params: Any) -> AsyncIterator[Any]:
    """Yield a tether stream's items from Python; raise on an `error` event."""
    outcome = "interrupted"  # a stream that closes without `end` or `error`
    async with (
        client.stream("GET", f"/api/stream/{name}", params=params) as response,
        aclosing(response.aiter_lines()) as lines,
    ):
        event: dict[str, str] = {}
        # Read to the end of the body: the server closes it right after `end` or `error`.
        async for line in lines:
            if line.startswith(":"):
                continue  # a heartbeat comment
            if line:
                field, _, value = line.partition(": ")
                event[field] = value
                continue
            if event.get("event") == "data":
                yield json.loads(event["data"])
            elif event.get("event") == "end":
                outcome = "end"
            elif event.get("event") == "error":
                error = json.loads(event["data"])["error"]
                outcome = f"{error['code']}: {error['message']}"
            event = {}
    if outcome != "end":
        raise RuntimeError(outcome)
