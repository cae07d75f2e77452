# file: examples/docs/quickstart_3.py
import anyio
from main import api


async def run() -> None:
    # The same validation, dependencies and auth as over the wire, without a server.
    print(await api.call("greet", {"name": "Ada"}))
    async for n in api.stream_call("countdown", {"start": 3}):
        print(n)


if __name__ == "__main__":
    anyio.run(run)
