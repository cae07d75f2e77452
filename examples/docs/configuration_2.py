# file: examples/docs/configuration_2.py
from fastapi import FastAPI

from tether import Tether
from tether.transports import HttpTransport, JsonRpcTransport
from tether.transports.sse import SseTransport
from tether.transports.websocket import WebSocketTransport

api = Tether(prefix="/api")


@api.query
async def add(a: int, b: int) -> int:
    return a + b


app = FastAPI()
# Only the transports passed are mounted: here all four, with some options changed.
api.mount(
    app,
    transports=[
        HttpTransport(),
        JsonRpcTransport(max_batch_size=20),
        SseTransport(heartbeat=5),
        WebSocketTransport(max_in_flight=8, max_message_size=64 * 1024),
    ],
)
