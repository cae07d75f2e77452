# file: examples/docs/sse_1.py
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI

from tether import NotFound, Tether
from tether.transports import HttpTransport, JsonRpcTransport
from tether.transports.sse import SseTransport

api = Tether(prefix="/api")


@api.stream
async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
    for i in range(1, n + 1):
        if ms:
            await anyio.sleep(ms / 1000)
        yield i


@api.stream
async def pages(of: str) -> AsyncIterator[list[str]]:
    yield [f"{of}-1", f"{of}-2"]
    raise NotFound(f"no more pages of {of}", details={"of": of})


app = FastAPI()
# The default transports, with a heartbeat every 5 s instead of 15 s.
api.mount(app, transports=[HttpTransport(), JsonRpcTransport(), SseTransport(heartbeat=5)])
