# file: examples/docs/websocket_shutdown.py
import socket

import uvicorn

from tether.transports.websocket import WebSocketTransport


class TetherServer(uvicorn.Server):
    """uvicorn, closing tether's sockets with 1001 (going away) before it shuts down.

    Left alone, uvicorn closes the sockets still open with 1012 (service restart) itself.
    """

    def __init__(self, config: uvicorn.Config, transport: WebSocketTransport) -> None:
        super().__init__(config)
        self.transport = transport

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.transport.shutdown()  # close code 1001; waits for the sockets' tasks
        await super().shutdown(sockets)


# TetherServer(uvicorn.Config(app, host="127.0.0.1", port=8000), transport).run()
