# file: examples/docs/streams_2.py
from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio

from tether import Tether

api = Tether(prefix="/api")


@api.stream
async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
    for i in range(1, n + 1):
        if ms:
            await anyio.sleep(ms / 1000)
        yield i


async def all_ticks() -> list[int]:
    """Read a stream to its end; its dependencies close when the loop ends."""
    return [tick async for tick in api.stream_call("ticks", {"n": 3})]


async def first_ticks(count: int) -> list[int]:
    """Stop early: `aclosing` closes the stream (and its dependencies) at the break."""
    received = []
    async with aclosing(api.stream_call("ticks", {"n": 1_000_000})) as ticks:
        async for tick in ticks:
            received.append(tick)
            if len(received) == count:
                break
    return received


async def ticks_for(seconds: float) -> list[int]:
    """Read for a while: cancelling the reader cancels the generator at its next await."""
    received: list[int] = []
    with anyio.move_on_after(seconds):
        async with aclosing(api.stream_call("ticks", {"n": 1_000_000, "ms": 10})) as ticks:
            async for tick in ticks:
                received.append(tick)
    return received
