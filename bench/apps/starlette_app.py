"""HTTP floor: a bare Starlette route `POST /add` doing tether's JSON work, nothing more.

It parses the JSON body, checks that `a` and `b` are integers (422 otherwise), adds them and
encodes `{"result": a + b}` with orjson, the encoder tether uses: what any Starlette app must
do for this call, without FastAPI's or tether's layers.
"""

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _params(body: bytes) -> tuple[int, int] | None:
    try:
        params: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(params, dict):
        return None
    a, b = params.get("a"), params.get("b")
    if type(a) is not int or type(b) is not int:
        return None
    return a, b


async def add(request: Request) -> Response:
    """Add two integers."""
    params = _params(await request.body())
    if params is None:
        return Response(b'{"error":"a and b must be integers"}', 422, media_type="application/json")
    return Response(orjson.dumps({"result": params[0] + params[1]}), media_type="application/json")


app = Starlette(routes=[Route("/add", add, methods=["POST"])])
