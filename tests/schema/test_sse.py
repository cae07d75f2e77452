"""schema/sse.py: the OpenAPI description of streams, apart from the SSE transport's wire."""

from collections.abc import AsyncIterator

from fastapi import FastAPI

from tether import Tether
from tether.schema.sse import document_events, documentation_routes
from tether.transports.sse import SseTransport


def ticks_api() -> Tether:
    api = Tether(prefix="/api")

    @api.stream
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @api.query
    def plain() -> int:
        return 1

    return api


def event_kinds(document: dict[str, object], path: str) -> list[str]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    stream = paths[path]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert "schema" not in stream  # each event is described, not the stream as a whole
    return [event["properties"]["event"]["const"] for event in stream["itemSchema"]["oneOf"]]


def test_documents_streams_without_the_transport() -> None:
    api = ticks_api()
    app = FastAPI()
    for op in api:
        if op.kind == "stream":
            app.router.routes.extend(documentation_routes(op, api, "/events"))
    document_events(app, api, "/events")
    document = app.openapi()
    assert set(document["paths"]) == {"/api/events/ticks"}
    assert event_kinds(document, "/api/events/ticks") == ["data", "end", "error"]
    post = document["paths"]["/api/events/ticks"]["post"]
    assert post["operationId"] == "ticks__sse"


def test_the_transport_documents_its_own_path() -> None:
    api = ticks_api()
    app = FastAPI()
    api.mount(app, transports=[SseTransport(path="/events")])
    document = app.openapi()
    assert "/api/stream/ticks" not in document["paths"]
    assert event_kinds(document, "/api/events/ticks") == ["data", "end", "error"]
