# file: examples/docs/quickstart_2.py
import json

from websockets.sync.client import connect


def main(url: str = "ws://127.0.0.1:8000/api/ws") -> None:
    with connect(url) as ws:
        # The envelope dialect: a call, answered by a message with the same uuid.
        ws.send(json.dumps({"uuid": 1, "route": "greet", "payload": {"name": "Ada"}}))
        print(ws.recv())
        # The JSON-RPC dialect, on the same socket.
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "greet", "params": ["Bob"]}))
        print(ws.recv())
        # A stream operation is a subscription: one message per item, then the end.
        ws.send(json.dumps({"uuid": "c", "route": "countdown", "payload": {"start": 2}}))
        for _ in range(3):
            print(ws.recv())


if __name__ == "__main__":
    main()
