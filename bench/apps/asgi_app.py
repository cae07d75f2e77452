"""HTTP floor: a bare ASGI app answering `POST /add` with tether's JSON work, and no framework.

It reads the body, parses it, checks that `a` and `b` are integers (422 otherwise), adds
them and encodes `{"result": a + b}` with orjson: what uvicorn plus the JSON work cost, the
least any ASGI server-side code can spend on this call.
"""

from typing import Any

import orjson

JSON = (b"content-type", b"application/json")
INVALID = b'{"error":"a and b must be integers"}'


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _result(body: bytes) -> bytes | None:
    try:
        params: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(params, dict):
        return None
    a, b = params.get("a"), params.get("b")
    if type(a) is not int or type(b) is not int:
        return None
    return orjson.dumps({"result": a + b})


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Serve `POST /add`; anything else is 404, and lifespan events are acknowledged."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    if scope["path"] != "/add" or scope["method"] != "POST":
        await _answer(send, 404, b'{"error":"not found"}')
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    result = _result(body)
    await _answer(send, 422 if result is None else 200, INVALID if result is None else result)
