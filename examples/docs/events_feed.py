# file: examples/docs/events_feed.py
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import Depends, FastAPI

from tether import Event, Events, Tether


class MessagePosted(Event, name="chat.message_posted"):  # its type name on the wire
    room: str
    author: str
    text: str


api = Tether(prefix="/api")


@api.command
async def post(room: str, author: str, text: str, events: Events = Depends()) -> None:
    events.emit(MessagePosted(room=room, author=author, text=text))


@api.stream  # over SSE: GET /api/stream/messages?room=general; or a WebSocket subscription
async def messages(room: str) -> AsyncIterator[MessagePosted]:
    async with aclosing(api.events.subscribe(MessagePosted)) as events:  # every process's
        async for event in events:
            if event.room == room:
                yield event


app = FastAPI()
api.mount(app)
