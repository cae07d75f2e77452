"""`@api.handler` (one per command or query) and `@api.on` registration; `api.send`."""

# No `from __future__ import annotations`: handlers here annotate with local types.
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from tests.transports.test_websocket import MemorySocket
from tether import Tether, Unauthorized, ValidationFailed
from tether.errors import ConfigurationError
from tether.events import Command, Event, Events, Query


class NoteOut(BaseModel):
    id: int
    title: str


class CreateNote(Command[NoteOut]):
    title: str
    pinned: bool = False


class GetNote(Query[NoteOut]):
    id: int


class CountNotes(Query[int]):
    pass


class Unbound(Command[int]):
    n: int


class NoteCreated(Event):
    note_id: int


class NoteDeleted(Event):
    note_id: int


def make_api(**options: Any) -> tuple[Tether, FastAPI, list[str]]:
    api = Tether(**options)
    notes: dict[int, NoteOut] = {}
    log: list[str] = []

    async def resource() -> AsyncIterator[str]:
        log.append("open")
        yield "db"
        log.append("close")

    @api.handler
    async def create_note(
        cmd: CreateNote, db: Annotated[str, Depends(resource)], events: Events = Depends()
    ) -> NoteOut:
        note = NoteOut(id=len(notes) + 1, title=cmd.title + ("!" if cmd.pinned else ""))
        notes[note.id] = note
        events.emit(NoteCreated(note_id=note.id))
        log.append(f"create {db}")
        return note

    @api.handler
    def get_note(query: GetNote) -> NoteOut:
        return notes[query.id]

    @api.handler
    async def count_notes(query: CountNotes) -> int:
        return len(notes)

    app = FastAPI()
    api.mount(app)
    return api, app, log


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


# -- the operation a handler is -----------------------------------------------------------


def test_the_kind_follows_the_message() -> None:
    api, _, _ = make_api()
    assert api.get("create_note").kind == "command"
    assert api.get("get_note").kind == "query"
    assert api.get("count_notes").kind == "query"
    assert api.get("create_note").input_model is CreateNote


def test_a_handler_keeps_an_explicit_name() -> None:
    api = Tether()

    @api.handler(name="notes.create")
    async def anything(cmd: CreateNote) -> NoteOut:
        return NoteOut(id=1, title=cmd.title)

    assert api.get("notes.create").input_model is CreateNote


async def test_the_message_fields_are_the_http_params() -> None:
    _, app, log = make_api()
    async with client_for(app) as client:
        created = await client.post("/api/call/create_note", json={"title": "a", "pinned": True})
        by_get = await client.get("/api/call/get_note", params={"id": 1})
        by_post = await client.post("/api/call/get_note", json={"id": 1})
        counted = await client.get("/api/call/count_notes")
        refused = await client.get("/api/call/create_note", params={"title": "b"})
    assert created.status_code == 200
    assert created.json() == {"result": {"id": 1, "title": "a!"}}
    assert by_get.json() == by_post.json() == {"result": {"id": 1, "title": "a!"}}
    assert counted.json() == {"result": 1}
    assert refused.status_code == 405  # a command is not callable with GET
    assert log == ["open", "create db", "close"]


async def test_validation_errors_name_the_message_fields() -> None:
    _, app, _ = make_api()
    async with client_for(app) as client:
        missing = await client.post("/api/call/create_note", json={})
        extra = await client.post("/api/call/create_note", json={"title": "a", "colour": "red"})
        wrong = await client.get("/api/call/get_note", params={"id": "one"})
    assert missing.status_code == extra.status_code == wrong.status_code == 422
    fields = [
        [error["loc"] for error in response.json()["error"]["details"]]
        for response in (missing, extra, wrong)
    ]
    assert fields == [[["title"]], [["colour"]], [["id"]]]


async def test_jsonrpc_by_name_and_by_position() -> None:
    _, app, _ = make_api()
    calls = [
        {"jsonrpc": "2.0", "id": 1, "method": "create_note", "params": {"title": "a"}},
        {"jsonrpc": "2.0", "id": 2, "method": "create_note", "params": ["b", True]},
        {"jsonrpc": "2.0", "id": 3, "method": "get_note", "params": [2]},
        {"jsonrpc": "2.0", "id": 4, "method": "create_note", "params": {"name": "c"}},
    ]
    async with client_for(app) as client:
        # One at a time: a batch's items run concurrently.
        replies = [(await client.post("/api/jsonrpc", json=call)).json() for call in calls]
    by_id = {item["id"]: item for item in replies}
    assert by_id[1]["result"] == {"id": 1, "title": "a"}
    assert by_id[2]["result"] == {"id": 2, "title": "b!"}
    assert by_id[3]["result"] == {"id": 2, "title": "b!"}
    assert by_id[4]["error"]["code"] == -32602
    fields = [e["loc"] for e in by_id[4]["error"]["data"]["details"]]
    assert fields == [["title"], ["name"]]


async def test_websocket_envelope_calls_a_handler() -> None:
    _, app, _ = make_api()
    async with MemorySocket(app) as ws:
        created = await ws.call({"uuid": 1, "route": "create_note", "payload": {"title": "w"}})
        got = await ws.call({"uuid": 2, "route": "get_note", "payload": {"id": 1}})
        bad = await ws.call({"uuid": 3, "route": "get_note", "payload": {"id": "x"}})
    assert created["payload"] == {"id": 1, "title": "w"}
    assert got["payload"] == {"id": 1, "title": "w"}
    assert bad["status"] == 422
    assert bad["payload"]["error"]["details"][0]["loc"] == ["id"]


class Tagged(Command[str]):
    note_id: int = Field(alias="noteId")
    tags: list[str] = Field(default_factory=list)


async def test_aliased_fields_are_the_wire_names_by_name_and_by_position() -> None:
    api = Tether()

    @api.handler
    async def tag(cmd: Tagged) -> str:
        return f"{cmd.note_id}:{','.join(cmd.tags)}"

    app = FastAPI()
    api.mount(app)
    by_name = {"jsonrpc": "2.0", "id": 1, "method": "tag", "params": {"noteId": 1}}
    by_position = {"jsonrpc": "2.0", "id": 2, "method": "tag", "params": [2, ["a"]]}
    async with client_for(app) as client:
        http = await client.post("/api/call/tag", json={"noteId": 0, "tags": ["x", "y"]})
        named = (await client.post("/api/jsonrpc", json=by_name)).json()
        positional = (await client.post("/api/jsonrpc", json=by_position)).json()
    async with MemorySocket(app) as ws:
        socket = await ws.call({"uuid": 3, "route": "tag", "payload": [3]})
    assert http.json() == {"result": "0:x,y"}
    assert named.get("result") == "1:"
    assert positional.get("result") == "2:a", positional
    assert socket["payload"] == "3:", socket


@pytest.mark.parametrize("where", ["tether", "handler"])
async def test_strict_applies_to_handlers(where: str) -> None:
    api = Tether(strict=where == "tether")

    @api.handler(**({"strict": True} if where == "handler" else {}))
    async def get_note(query: GetNote) -> NoteOut:
        return NoteOut(id=query.id, title="t")

    assert await api.call("get_note", {"id": 1}) == NoteOut(id=1, title="t")
    with pytest.raises(ValidationFailed):  # "1" is not an integer, strictly
        await api.call("get_note", {"id": "1"})


# -- api.send -------------------------------------------------------------------------------


async def test_send_returns_the_result_and_runs_dependencies() -> None:
    api, _, log = make_api()
    note = await api.send(CreateNote(title="x"))
    assert note == NoteOut(id=1, title="x")
    assert await api.send(GetNote(id=1)) == note
    assert await api.send(CountNotes()) == 1
    assert log == ["open", "create db", "close"]
    await api.events.settle()


async def test_send_an_unbound_type_is_a_configuration_error() -> None:
    api, _, _ = make_api()
    with pytest.raises(ConfigurationError, match="no handler is bound to Unbound"):
        await api.send(Unbound(n=1))


async def test_send_applies_auth_and_headers() -> None:
    def current_user(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return authorization

    api = Tether(user=Depends(current_user))

    @api.handler(auth=True)
    async def guarded(query: GetNote) -> NoteOut:
        return NoteOut(id=query.id, title="secret")

    with pytest.raises(Unauthorized):
        await api.send(GetNote(id=1))
    got = await api.send(GetNote(id=1), headers={"authorization": "ada"})
    assert got == NoteOut(id=1, title="secret")


async def test_send_and_call_agree() -> None:
    api, _, _ = make_api()
    via_send = await api.send(CreateNote(title="a"))
    via_call = await api.call("create_note", {"title": "b"})
    assert via_send == NoteOut(id=1, title="a")
    assert via_call == NoteOut(id=2, title="b")
    with pytest.raises(ValidationFailed):
        await api.call("create_note", {"title": 3})
    await api.events.settle()


# -- registration errors ------------------------------------------------------------------


def test_a_handler_needs_exactly_one_message() -> None:
    api = Tether()
    with pytest.raises(ConfigurationError, match=r"handler 'plain'.*found inputs: n: int"):

        @api.handler
        async def plain(n: int) -> int:
            return n

    with pytest.raises(ConfigurationError, match=r"found inputs: a: CreateNote, b: GetNote"):

        @api.handler
        async def two(a: CreateNote, b: GetNote) -> NoteOut:
            raise AssertionError

    with pytest.raises(ConfigurationError, match=r"found inputs: none"):

        @api.handler
        async def nothing() -> int:
            return 1

    with pytest.raises(ConfigurationError, match=r"found inputs: cmd: CreateNote, n: int"):

        @api.handler
        async def extra(cmd: CreateNote, n: int) -> NoteOut:
            raise AssertionError

    with pytest.raises(ConfigurationError, match=r"found inputs: event: NoteCreated"):

        @api.handler
        async def an_event(event: NoteCreated) -> None:
            raise AssertionError

    with pytest.raises(ConfigurationError, match=r"found inputs: cmd: Command"):

        @api.handler
        async def bare(cmd: Command) -> None:  # type: ignore[type-arg]
            raise AssertionError

    assert not api.operations


def test_a_second_handler_for_one_type_is_refused() -> None:
    api = Tether()

    @api.handler
    async def first(cmd: CreateNote) -> NoteOut:
        return NoteOut(id=1, title=cmd.title)

    with pytest.raises(ConfigurationError, match=r"CreateNote already has a handler: 'first'"):

        @api.handler
        async def second(cmd: CreateNote) -> NoteOut:
            return NoteOut(id=2, title=cmd.title)

    assert list(api.operations) == ["first"]


def test_a_return_type_disagreeing_with_the_message_is_refused() -> None:
    api = Tether()
    with pytest.raises(
        ConfigurationError,
        match=r"handler 'wrong' returns int, but CreateNote is Command\[NoteOut\]",
    ):

        @api.handler
        async def wrong(cmd: CreateNote) -> int:
            return 1


async def test_an_unannotated_return_is_encoded_as_the_message_result() -> None:
    api = Tether()

    @api.handler
    async def create(cmd: CreateNote):  # type: ignore[no-untyped-def]
        return {"id": 1, "title": cmd.title, "ignored": True}

    app = FastAPI()
    api.mount(app)
    async with client_for(app) as client:
        response = await client.post("/api/call/create", json={"title": "t"})
    assert response.json() == {"result": {"id": 1, "title": "t"}}


# -- schemas ----------------------------------------------------------------------------------


async def test_openapi_and_openrpc_list_the_handler_with_the_message_schema() -> None:
    _, app, _ = make_api()
    async with client_for(app) as client:
        openapi = (await client.get("/openapi.json")).json()
        openrpc = (await client.get("/api/openrpc.json")).json()
    post = openapi["paths"]["/api/call/create_note"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = openapi["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"title", "pinned"}
    assert body["required"] == ["title"]
    assert body.get("additionalProperties") is False
    get = openapi["paths"]["/api/call/get_note"]["get"]
    assert [p["name"] for p in get["parameters"]] == ["id"]
    (method,) = [m for m in openrpc["methods"] if m["name"] == "create_note"]
    assert [(p["name"], p["required"]) for p in method["params"]] == [
        ("title", True),
        ("pinned", False),
    ]
    result = method["result"]["schema"]
    if "$ref" in result:
        result = openrpc["components"]["schemas"][result["$ref"].rsplit("/", 1)[-1]]
    assert set(result["properties"]) == {"id", "title"}


# -- @api.on errors -------------------------------------------------------------------------


def test_on_needs_event_types() -> None:
    api = Tether()
    with pytest.raises(ConfigurationError, match=r"name the event types"):

        @api.on()
        async def nothing(event: NoteCreated) -> None: ...

    with pytest.raises(ConfigurationError, match=r"@api.on takes Event subclasses, not"):

        @api.on(CreateNote)  # type: ignore[arg-type]
        async def not_an_event(event: NoteCreated) -> None: ...

    with pytest.raises(ConfigurationError, match=r"@api.on takes Event subclasses"):

        @api.on("NoteCreated")  # type: ignore[arg-type]
        async def a_string(event: NoteCreated) -> None: ...


def test_on_refuses_a_parameter_that_cannot_hold_a_type() -> None:
    api = Tether()
    with pytest.raises(
        ConfigurationError,
        match=r"its parameter 'event' is NoteCreated, which cannot hold NoteDeleted",
    ):

        @api.on(NoteCreated, NoteDeleted)
        async def narrow(event: NoteCreated) -> None: ...

    # A union, the base class, Any or no annotation hold them all.
    @api.on(NoteCreated, NoteDeleted)
    async def union(event: NoteCreated | NoteDeleted) -> None: ...

    @api.on(NoteCreated, NoteDeleted)
    async def base(event: Event) -> None: ...

    @api.on(NoteCreated, NoteDeleted)
    async def anything(event: Any) -> None: ...

    assert len(api.events.handlers(NoteDeleted)) == 3


def test_on_takes_one_input() -> None:
    api = Tether()
    with pytest.raises(ConfigurationError, match=r"found: event, n\)"):

        @api.on(NoteCreated)
        async def two(event: NoteCreated, n: int) -> None: ...

    with pytest.raises(ConfigurationError, match=r"found: none\)"):

        @api.on(NoteCreated)
        async def none(events: Events = Depends()) -> None: ...


def test_on_refuses_a_duplicate_name() -> None:
    api = Tether()

    @api.on(NoteCreated, name="indexer")
    async def first(event: NoteCreated) -> None: ...

    with pytest.raises(ConfigurationError, match=r"event handler 'indexer' is already registered"):

        @api.on(NoteDeleted, name="indexer")
        async def second(event: NoteDeleted) -> None: ...

    assert api.events.handlers(NoteDeleted) == ()


def test_on_refuses_two_classes_with_one_wire_name() -> None:
    api = Tether()

    @api.on(NoteCreated)
    async def first(event: NoteCreated) -> None: ...

    class Impostor(Event, name="NoteCreated"):
        other: str

    with pytest.raises(ConfigurationError, match=r"two event classes are named 'NoteCreated'"):

        @api.on(Impostor)
        async def second(event: Impostor) -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries= takes an integer >= 0"),
        ({"group": ""}, "group= takes a non-empty string"),
    ],
)
def test_on_checks_its_options(options: dict[str, Any], message: str) -> None:
    api = Tether()
    with pytest.raises(ConfigurationError, match=message):

        @api.on(NoteCreated, **options)
        async def handler(event: NoteCreated) -> None: ...


def test_handlers_are_listed_per_type_and_not_served() -> None:
    api = Tether()

    @api.on(NoteCreated)
    async def index(event: NoteCreated) -> None: ...

    @api.on(NoteCreated, group="mail")
    def mail(event: NoteCreated) -> None: ...

    found = api.events.handlers(NoteCreated)
    assert [(h.group, h.param) for h in found] == [("tether", "event"), ("mail", "event")]
    assert found[0].name.endswith("index")
    assert not api.operations  # an event handler is not an operation of any transport
