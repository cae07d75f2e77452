# file: examples/docs/testing_4.py
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from examples.docs.testing_1 import create_app


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` with a real uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_divide_over_a_real_server() -> None:
    with running(create_app()) as url, httpx.Client(base_url=url) as client:
        assert client.post("/api/call/divide", json={"a": 9, "b": 3}).json() == {"result": 3.0}
