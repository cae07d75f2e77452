# file: examples/docs/websocket_shutdown.py
import uvicorn
from fastapi import FastAPI

from tether import Tether
from tether.server import TetherServer

api = Tether(prefix="/api")
app = FastAPI()
api.mount(app)

# On SIGTERM or Ctrl+C: sockets close with 1001, calls in flight get 10 s, then are cancelled.
server = TetherServer(uvicorn.Config(app, host="127.0.0.1", port=8000), grace=10.0)

if __name__ == "__main__":
    server.run()
