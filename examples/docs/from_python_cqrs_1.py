# file: examples/docs/from_python_cqrs_1.py
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from tether import Command, Event, Events, NotFound, Query, Tether


class MeetingStore:
    def __init__(self) -> None:
        self.meetings: dict[str, list[str]] = {"standup": []}


STORE = MeetingStore()
ANNOUNCED: list[str] = []


def get_store() -> MeetingStore:  # was a binding in the di container
    return STORE


class Meeting(BaseModel):  # was a cqrs.Response
    meeting_id: str
    users: list[str]


class JoinMeeting(Command[None]):  # was cqrs.Request[None]
    meeting_id: str
    user_id: str


class ReadMeeting(Query[Meeting]):  # was cqrs.Request[ReadMeetingResult]
    meeting_id: str


class UserJoined(Event):  # was a cqrs.DomainEvent
    meeting_id: str
    user_id: str


api = Tether(prefix="/api")


@api.handler  # was JoinMeetingHandler, bound in commands_mapper
async def join_meeting(
    cmd: JoinMeeting,
    store: Annotated[MeetingStore, Depends(get_store)],
    events: Events = Depends(),  # was self._events on the handler instance
) -> None:
    if cmd.meeting_id not in store.meetings:
        raise NotFound(f"no meeting {cmd.meeting_id}")  # was try/except + HTTPException(404)
    store.meetings[cmd.meeting_id].append(cmd.user_id)
    events.emit(UserJoined(meeting_id=cmd.meeting_id, user_id=cmd.user_id))


@api.handler  # was ReadMeetingHandler, bound in queries_mapper
async def read_meeting(
    query: ReadMeeting, store: Annotated[MeetingStore, Depends(get_store)]
) -> Meeting:
    if query.meeting_id not in store.meetings:
        raise NotFound(f"no meeting {query.meeting_id}")
    return Meeting(meeting_id=query.meeting_id, users=store.meetings[query.meeting_id])


@api.on(UserJoined)  # was AnnounceUser(cqrs.EventHandler[UserJoined]), bound in events_mapper
async def announce_user(event: UserJoined) -> None:
    ANNOUNCED.append(f"{event.user_id} joined {event.meeting_id}")


app = FastAPI()
api.mount(app)  # was the routes, mediator_factory and the bootstrap call
