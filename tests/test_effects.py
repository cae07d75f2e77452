"""Cache coordination in-process (tether.effects): contexts, `affects=` and `merge=`.

Registration (which options go where, bad values, names resolved at each registration and
at mount, merge slots), what a context is (params, rev, per-user, query shape), how a
command's entries are scoped, when effects exist at all (success only), `api.call(...,
effects=True)`, `api.fetch_context`, services, and the JSON helpers every wire splices.

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

import anyio
import orjson
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from tests._cache_users import Todo, User, current_user
from tether import (
    CallContext,
    CallResult,
    ConfigurationError,
    Conflict,
    Forbidden,
    NotFound,
    Service,
    Tether,
    Unauthorized,
    ValidationFailed,
    command,
    query,
)
from tether.effects import Context, Effects, default_user_key
from tether.events import Command, Query


class Profile(BaseModel):
    id: int
    name: str


class Theme(BaseModel):
    dark: bool


class Filter(BaseModel):
    words: list[str]


def todo_api(**options: Any) -> Tether:
    """The issue's example: contexts `todos` (two slots) and a command that affects it."""
    api = Tether(**options)

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[Todo]:
        return [Todo(id=1, owner_id=owner_id, title="milk")]

    @api.query(context="todos")
    async def todo_count(owner_id: int, done: bool | None = None) -> int:
        return 1

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> Todo:
        return Todo(id=2, owner_id=owner_id, title=title)

    return api


def mount(api: Tether) -> FastAPI:
    app = FastAPI()
    api.mount(app)
    return app


def message_of(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


# -- registration: which option goes on which kind -----------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"context": "todos"}, {"rev": 2}, {"context": "todos", "rev": "a"}],
    ids=["context", "rev", "both"],
)
def test_context_and_rev_are_refused_on_commands_and_streams(options: dict[str, Any]) -> None:
    api = Tether()
    for decorator in (api.command, api.stream, command):
        with pytest.raises(ConfigurationError) as excinfo:
            decorator(**options)
        assert "context= and rev= apply to queries" in message_of(excinfo)


@pytest.mark.parametrize(
    "options", [{"affects": ["todos"]}, {"merge": ["user"]}], ids=["affects", "merge"]
)
def test_affects_and_merge_are_refused_on_queries_and_streams(options: dict[str, Any]) -> None:
    api = Tether()
    for decorator in (api.query, api.stream, query):
        with pytest.raises(ConfigurationError) as excinfo:
            decorator(**options)
        assert "affects= and merge= apply to commands" in message_of(excinfo)


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        ("query", {"context": "has space"}, "context= takes a name such as 'todos'"),
        ("query", {"context": "todos."}, "context= takes a name such as 'todos'"),
        ("query", {"context": 3}, "context= takes a name such as 'todos'"),
        ("query", {"rev": True}, "rev= takes a string or an integer, not True"),
        ("query", {"rev": 1.5}, "rev= takes a string or an integer, not 1.5"),
        ("command", {"affects": "todos"}, "affects= takes a list, such as affects=['todos']"),
        (
            "command",
            {"affects": [3]},
            "affects= takes context names, query names, query functions and operations, not 3",
        ),
        ("command", {"merge": "user"}, "merge= takes a list of contexts (merge=['user'])"),
        ("command", {"merge": [3]}, "merge= names contexts and slots with strings, not 3"),
        ("command", {"merge": {"user": 3}}, "merge= names contexts and slots with strings"),
    ],
)
def test_bad_values_are_refused_with_what_the_option_takes(
    kind: str, options: dict[str, Any], expected: str
) -> None:
    api = Tether()
    decorator = api.query if kind == "query" else api.command
    with pytest.raises(ConfigurationError) as excinfo:
        decorator(name="op", **options)
    assert message_of(excinfo).startswith("op: ")
    assert expected in message_of(excinfo)


def test_context_declaration_is_checked() -> None:
    api = Tether()
    with pytest.raises(ConfigurationError, match="rev= takes a string or an integer"):
        api.context("todos", rev=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="per_user= takes True, False or None"):
        api.context("todos", per_user="yes")  # type: ignore[arg-type]
    api.context("todos", rev=3)
    with pytest.raises(ConfigurationError, match="context 'todos' is already declared"):
        api.context("todos")


def test_a_declared_context_without_queries_is_refused_at_mount() -> None:
    api = Tether()
    api.context("ghost", rev=1)
    with pytest.raises(ConfigurationError) as excinfo:
        mount(api)
    assert message_of(excinfo) == "context 'ghost' is declared, but no query has context='ghost'"


# -- affects: what it may name ------------------------------------------------------------


async def test_affects_names_a_context_a_query_name_a_query_function_or_a_query_of_no_context() -> (
    None
):
    api = todo_api()

    @api.query
    async def stats(owner_id: int, day: date) -> int:
        return 0

    @api.query
    async def everything() -> int:
        return 0

    todos = api.get("todos").func

    @api.command(affects=["todos"])
    async def by_context(owner_id: int) -> None: ...

    @api.command(affects=["todo_count"])
    async def by_query_name(owner_id: int) -> None: ...

    @api.command(affects=[todos])
    async def by_function(owner_id: int) -> None: ...

    @api.command(affects=[api.get("todos")])
    async def by_operation(owner_id: int) -> None: ...

    @api.command(affects=["stats", everything])
    async def by_plain_query(owner_id: int, day: date) -> None: ...

    mount(api)
    todos_5 = {"context": "todos", "params": {"owner_id": 5}}
    for name in ("by_context", "by_query_name", "by_function", "by_operation"):
        found = await api.call(name, {"owner_id": 5}, effects=True)
        assert found == CallResult(None, [todos_5], []), name
    found = await api.call("by_plain_query", {"owner_id": 5, "day": "2026-12-06"}, effects=True)
    assert found.invalidate == [
        {"query": "stats", "params": {"owner_id": 5, "day": "2026-12-06"}},
        {"query": "everything"},
    ]


async def test_a_context_named_twice_in_affects_is_one_entry() -> None:
    # By name, by a slot's name and by a slot's function: the same context, invalidated once.
    api = todo_api()
    todos = api.get("todos").func

    @api.command(affects=["todos", "todo_count", todos])
    async def reset(owner_id: int) -> None: ...

    found = await api.call("reset", {"owner_id": 5}, effects=True)
    assert found.invalidate == [{"context": "todos", "params": {"owner_id": 5}}]


def test_affects_refuses_a_command_or_a_stream() -> None:
    api = todo_api()

    @api.stream
    async def ticks() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(ConfigurationError) as excinfo:

        @api.command(affects=["add_todo"])
        async def again(owner_id: int) -> None: ...

    assert message_of(excinfo) == (
        "operation 'again': affects= names command 'add_todo'; only queries and contexts are"
        " cached by clients"
    )
    assert "again" not in api.operations
    with pytest.raises(ConfigurationError, match="affects= names stream 'ticks'"):

        @api.command(affects=[ticks])
        async def tick() -> None: ...

    assert "tick" not in api.operations


def test_unknown_names_wait_for_mount_and_are_refused_there() -> None:
    api = Tether()

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int) -> None: ...

    @api.command(merge=["user"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    # Declared before the queries they name: accepted until mount.
    assert set(api.operations) == {"add_todo", "rename"}
    with pytest.raises(ConfigurationError) as excinfo:
        mount(api)
    assert message_of(excinfo) == (
        "operation 'add_todo': affects= names 'todos', which is neither a context nor a"
        " registered query"
    )
    assert api.app is None

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[Todo]:
        return []

    with pytest.raises(ConfigurationError) as excinfo:
        mount(api)
    assert message_of(excinfo) == (
        "operation 'rename': merge= names context 'user', which no query has"
    )

    @api.query(context="user")
    async def me() -> Profile:
        return Profile(id=1, name="ada")

    mount(api)
    assert api.app is not None


def test_an_unknown_function_in_affects_is_named_at_mount() -> None:
    api = Tether()

    async def not_registered() -> int:
        return 0

    @api.command(affects=[not_registered])
    async def touch() -> None: ...

    with pytest.raises(ConfigurationError) as excinfo:
        mount(api)
    assert "affects= names 'test_an_unknown_function_in_affects_is_named_at_mount.<locals>" in (
        message_of(excinfo)
    )
    assert "not_registered'" in message_of(excinfo)


def test_after_mount_an_unknown_name_is_refused_at_once_and_rolled_back() -> None:
    api = todo_api()
    app = mount(api)
    paths = {route.path for route in app.routes}  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="affects= names 'nothing'"):

        @api.command(affects=["nothing"])
        async def late(owner_id: int) -> None: ...

    assert "late" not in api.operations
    assert {route.path for route in app.routes} == paths  # type: ignore[attr-defined]
    assert api.contexts.plan(api.get("add_todo")) is not None


# -- merge: the slot ---------------------------------------------------------------------


def profile_api() -> Tether:
    api = Tether()

    @api.query(context="user")
    async def current_user() -> Profile:
        return Profile(id=1, name="ada")

    @api.query(context="user")
    async def theme() -> Theme:
        return Theme(dark=True)

    return api


async def test_merge_finds_the_slot_by_output_type() -> None:
    api = profile_api()

    @api.command(merge=["user"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    @api.command(merge=["user"])
    async def go_dark() -> Theme:
        return Theme(dark=True)

    found = await api.call("rename", {"name": "grace"}, effects=True)
    assert found == CallResult(
        Profile(id=1, name="grace"),
        [],
        [{"context": "user", "slot": "current_user", "value": Profile(id=1, name="grace")}],
    )
    assert (await api.call("go_dark", {}, effects=True)).merge == [
        {"context": "user", "slot": "theme", "value": Theme(dark=True)}
    ]


async def test_merge_names_its_slot_explicitly() -> None:
    api = profile_api()

    @api.query(context="user")
    async def previous() -> Profile:
        return Profile(id=1, name="old")

    @api.command(merge={"user": "previous"})
    async def archive(name: str) -> Profile:
        return Profile(id=1, name=name)

    assert (await api.call("archive", {"name": "x"}, effects=True)).merge == [
        {"context": "user", "slot": "previous", "value": Profile(id=1, name="x")}
    ]


def test_merge_without_a_matching_slot_names_the_slots_and_their_types() -> None:
    api = profile_api()
    with pytest.raises(ConfigurationError) as excinfo:

        @api.command(merge=["user"])
        async def count() -> int:
            return 1

    assert message_of(excinfo) == (
        "operation 'count': merge=['user'] finds no slot of context 'user' that returns int"
        " (its slots: current_user -> Profile, theme -> Theme); return the slot's type, or"
        " affects=['user'] to invalidate it instead"
    )
    assert "count" not in api.operations


def test_an_ambiguous_merge_names_the_slots_and_how_to_choose() -> None:
    api = profile_api()

    @api.query(context="user")
    async def previous() -> Profile:
        return Profile(id=1, name="old")

    with pytest.raises(ConfigurationError) as excinfo:

        @api.command(merge=["user"])
        async def rename(name: str) -> Profile:
            return Profile(id=1, name=name)

    assert message_of(excinfo) == (
        "operation 'rename': merge=['user'] is ambiguous: slots 'current_user', 'previous' all"
        " return Profile; name one: merge={'user': 'current_user'}"
    )
    assert "rename" not in api.operations


def test_an_explicit_slot_must_exist_and_hold_the_commands_type() -> None:
    api = profile_api()
    with pytest.raises(ConfigurationError) as excinfo:

        @api.command(merge={"user": "avatar"})
        async def upload() -> Profile:
            return Profile(id=1, name="x")

    assert message_of(excinfo) == (
        "operation 'upload': merge= names slot 'avatar', which context 'user' does not have"
        " (its slots: current_user -> Profile, theme -> Theme)"
    )
    with pytest.raises(ConfigurationError) as excinfo:

        @api.command(merge={"user": "theme"})
        async def rename(name: str) -> Profile:
            return Profile(id=1, name=name)

    assert message_of(excinfo) == (
        "operation 'rename': returns Profile, but slot 'theme' of context 'user' holds Theme;"
        " a merge replaces the slot with the result, so the types must be the same"
    )
    assert not {"upload", "rename"} & set(api.operations)


def test_generic_output_types_are_named_readably() -> None:
    api = todo_api()
    with pytest.raises(ConfigurationError) as excinfo:

        @api.command(merge=["todos"])
        async def titles() -> dict[str, Todo]:
            return {}

    assert "(its slots: todos -> list[Todo], todo_count -> int)" in (message_of(excinfo))
    assert "returns dict[str, Todo]" in message_of(excinfo)


async def test_a_query_that_makes_a_merge_ambiguous_is_refused_and_rolled_back() -> None:
    api = profile_api()

    @api.command(merge=["user"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    with pytest.raises(ConfigurationError) as excinfo:

        @api.query(context="user")
        async def previous() -> Profile:
            return Profile(id=1, name="old")

    assert "operation 'rename': merge=['user'] is ambiguous: slots 'current_user'," in (
        message_of(excinfo)
    )
    # Not registered, not a slot; everything resolves as before.
    assert "previous" not in api.operations
    assert [op.name for op in api.contexts.get("user").slots] == ["current_user", "theme"]
    assert (await api.call("rename", {"name": "g"}, effects=True)).merge[0]["slot"] == (
        "current_user"
    )
    mount(api)
    with pytest.raises(ConfigurationError, match="is ambiguous"):

        @api.query(context="user")
        async def previous_again() -> Profile:
            return Profile(id=1, name="old")

    assert "previous_again" not in api.operations
    assert await api.fetch_context("user") == {
        "current_user": Profile(id=1, name="ada"),
        "theme": Theme(dark=True),
    }


def test_a_service_that_makes_a_merge_ambiguous_is_refused_whole() -> None:
    api = profile_api()

    @api.command(merge=["user"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    class Accounts(Service, name="accounts"):
        @query
        async def plan(self) -> int:
            return 1

        @query(context="user")
        async def shadow(self) -> Profile:
            return Profile(id=2, name="x")

    with pytest.raises(ConfigurationError, match="is ambiguous"):
        api.include(Accounts)
    assert not any(name.startswith("accounts.") for name in api.operations)


# -- contexts ---------------------------------------------------------------------------


def test_a_param_every_slot_declares_is_required_the_others_optional() -> None:
    api = todo_api()
    context = api.contexts.get("todos")
    assert isinstance(context, Context)
    assert context.name == "todos"
    assert [op.name for op in context.slots] == ["todos", "todo_count"]
    assert dict(context.params) == {"owner_id": True, "done": False}
    assert context.rev is None
    assert context.per_user is False
    assert [c.name for c in api.contexts] == ["todos"]


def test_a_param_every_slot_gives_a_default_is_optional() -> None:
    api = Tether()

    @api.query(context="feed")
    async def posts(page: int, limit: int = 10) -> list[str]:
        return []

    @api.query(context="feed")
    async def pages(page: int = 1, limit: int = 20) -> int:
        return 1

    assert dict(api.contexts.get("feed").params) == {"page": True, "limit": False}


async def test_params_named_like_model_attributes_or_by_alias_scope_and_validate() -> None:
    # `json` shadows a BaseModel attribute (its field is renamed); `ownerId` is a field alias.
    api = Tether()

    @api.query(context="files")
    async def listing(json: int, copy: str = "x") -> list[str]:
        return []

    @api.command(affects=["files"])
    async def upload(json: int) -> None: ...

    class ListByOwner(Query[int]):
        owner_id: int = Field(alias="ownerId")

    class AddByOwner(Command[int]):
        owner_id: int = Field(alias="ownerId")

    @api.handler(context="owned")
    async def owned(q: ListByOwner) -> int:
        return q.owner_id

    @api.handler(affects=["owned"])
    async def add_owned(cmd: AddByOwner) -> int:
        return cmd.owner_id

    assert dict(api.contexts.get("files").params) == {"json": True, "copy": False}
    assert (await api.call("upload", {"json": "5"}, effects=True)).invalidate == [
        {"context": "files", "params": {"json": 5}}
    ]
    (files,) = api.live.topics([{"context": "files", "params": {"json": "5", "copy": "y"}}])
    assert dict(files.params) == {"json": 5, "copy": "y"}
    assert dict(api.contexts.get("owned").params) == {"ownerId": True}
    assert (await api.call("add_owned", {"ownerId": 3}, effects=True)).invalidate == [
        {"context": "owned", "params": {"ownerId": 3}}
    ]
    (owned_topic,) = api.live.topics([{"context": "owned", "params": {"ownerId": "3"}}])
    assert dict(owned_topic.params) == {"ownerId": 3}
    assert await api.fetch_context("owned", {"ownerId": 3}) == {"owned": 3}


def test_rev_is_declared_or_derived_from_the_slots() -> None:
    api = Tether()

    @api.query(context="a", rev=2)
    async def one() -> int:
        return 1

    @api.query(context="a")
    async def two() -> int:
        return 2

    @api.query(context="a", rev="x")
    async def three() -> int:
        return 3

    @api.query(context="b", rev=7)
    async def four() -> int:
        return 4

    api.context("b", rev=5, description="declared")
    assert api.contexts.get("a").rev == "one:2,three:x"
    assert api.contexts.get("b").rev == "5"
    assert api.contexts.get("b").description == "declared"


def test_per_user_is_inferred_from_the_user_resolver_and_may_be_overridden() -> None:
    api = Tether(user=Depends(current_user))

    async def my_tenant(user: Annotated[User | None, Depends(current_user)]) -> int:
        return 0 if user is None else user.id

    @api.query(context="me")
    async def profile(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(id=1, name="x")

    @api.query(context="deep")
    async def tenant_items(tenant: Annotated[int, Depends(my_tenant)]) -> list[str]:
        return []

    @api.query(context="shared", auth=True)  # auth reads the user; the data does not
    async def news() -> list[str]:
        return []

    @api.query(context="forced_off")
    async def inbox(user: Annotated[User | None, Depends(current_user)]) -> list[str]:
        return []

    @api.query(context="forced_on")
    async def board() -> list[str]:
        return []

    api.context("forced_off", per_user=False)
    api.context("forced_on", per_user=True)
    per_user = {context.name: context.per_user for context in api.contexts}
    assert per_user == {
        "me": True,
        "deep": True,
        "shared": False,
        "forced_off": False,
        "forced_on": True,
    }


def test_without_a_user_resolver_nothing_is_inferred_per_user() -> None:
    api = Tether()

    @api.query(context="me")
    async def profile(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(id=1, name="x")

    assert api.contexts.get("me").per_user is False


def test_query_shape_says_which_params_repeat_and_none_when_get_cannot_carry_them() -> None:
    api = Tether()

    @api.query(context="search")
    async def hits(q: str, tags: list[str] = []) -> int:  # noqa: B006
        return 0

    @api.query(context="search")
    async def pages(q: str) -> int:
        return 0

    @api.query(context="body")
    async def by_filter(filter: Filter) -> int:
        return 0

    search = api.contexts.get("search")
    assert dict(search.query_shape or {}) == {"q": False, "tags": True}
    assert search.params_from_query([("q", "x"), ("tags", "a"), ("tags", "b")]) == {
        "q": "x",
        "tags": ["a", "b"],
    }
    with pytest.raises(ValidationFailed) as excinfo:
        search.params_from_query([("q", "x"), ("q", "y")])
    assert excinfo.value.to_dict()["details"][0]["loc"] == ["q"]
    assert api.contexts.get("body").query_shape is None


def test_split_gives_each_slot_its_own_params() -> None:
    context = todo_api().contexts.get("todos")
    assert [(op.name, p) for op, p in context.split({"owner_id": 5, "done": True})] == [
        ("todos", {"owner_id": 5}),
        ("todo_count", {"owner_id": 5, "done": True}),
    ]
    with pytest.raises(ValidationFailed) as excinfo:
        context.split({"done": True, "colour": "red"})
    errors = excinfo.value.to_dict()["details"]
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["owner_id"], "missing"),
        (["colour"], "extra_forbidden"),
    ]


def test_get_of_an_unknown_context_is_not_found() -> None:
    with pytest.raises(NotFound) as excinfo:
        todo_api().contexts.get("nothing")
    assert excinfo.value.to_dict()["details"] == {"context": "nothing"}


# -- scoping ----------------------------------------------------------------------------


async def test_inputs_named_like_context_params_narrow_the_entry() -> None:
    api = todo_api()

    @api.command(affects=["todos"])
    async def finish(owner_id: int, done: bool, note: str) -> None: ...

    @api.command(affects=["todos"])
    async def purge() -> int:
        return 0

    assert (
        await api.call("add_todo", {"owner_id": "5", "title": "x"}, effects=True)
    ).invalidate == [{"context": "todos", "params": {"owner_id": 5}}]
    assert (
        await api.call("finish", {"owner_id": 5, "done": True, "note": "n"}, effects=True)
    ).invalidate == [{"context": "todos", "params": {"owner_id": 5, "done": True}}]
    assert (await api.call("purge", {}, effects=True)).invalidate == [{"context": "todos"}]


async def test_scoped_params_are_json_values() -> None:
    api = Tether()

    @api.query(context="days")
    async def agenda(day: date) -> list[str]:
        return []

    @api.command(affects=["days"])
    async def book(day: date) -> None: ...

    found = await api.call("book", {"day": "2026-12-06"}, effects=True)
    assert found.invalidate == [{"context": "days", "params": {"day": "2026-12-06"}}]


class AddTodo(Command[Todo]):
    owner_id: int
    title: str


class GetTodos(Query[list[Todo]]):
    owner_id: int


async def test_a_message_handler_is_scoped_by_the_message_fields() -> None:
    api = todo_api()

    @api.handler(affects=["todos"])
    async def add(cmd: AddTodo) -> Todo:
        return Todo(id=3, owner_id=cmd.owner_id, title=cmd.title)

    found = await api.call("add", {"owner_id": 7, "title": "t"}, effects=True)
    assert found.invalidate == [{"context": "todos", "params": {"owner_id": 7}}]
    assert await api.send(AddTodo(owner_id=7, title="t")) == Todo(id=3, owner_id=7, title="t")
    await api.live.settle()
    assert api.live.published == 2  # api.send pushes too


async def test_a_query_message_handler_takes_context_not_affects() -> None:
    # A Query message's handler is a query: it may be a slot, and it changes nothing.
    api = todo_api()
    with pytest.raises(ConfigurationError, match="affects= and merge= apply to commands"):

        @api.handler(affects=["todos"])
        async def get_todos(q: GetTodos) -> list[Todo]:
            return []

    assert "get_todos" not in api.operations

    @api.handler(context="todos")
    async def listed(q: GetTodos) -> list[Todo]:
        return [Todo(id=1, owner_id=q.owner_id, title="x")]

    assert [op.name for op in api.contexts.get("todos").slots] == ["todos", "todo_count", "listed"]
    assert await api.fetch_context("todos", {"owner_id": 2}) == {
        "todos": [Todo(id=1, owner_id=2, title="milk")],
        "todo_count": 1,
        "listed": [Todo(id=1, owner_id=2, title="x")],
    }
    with pytest.raises(ConfigurationError, match="context= and rev= apply to queries"):

        @api.handler(context="todos")
        async def add(cmd: AddTodo) -> Todo:
            return Todo(id=3, owner_id=cmd.owner_id, title=cmd.title)

    assert "add" not in api.operations


# -- effects only on success ------------------------------------------------------------


async def test_a_failing_command_has_no_effects_and_pushes_nothing() -> None:
    api = todo_api()

    @api.command(affects=["todos"])
    async def refuse(owner_id: int) -> None:
        raise Conflict("no")

    with pytest.raises(Conflict):
        await api.call("refuse", {"owner_id": 5}, effects=True)
    with pytest.raises(Conflict):
        await api.call("refuse", {"owner_id": 5})
    with pytest.raises(ValidationFailed):
        await api.call("add_todo", {"owner_id": "five", "title": "x"})
    await api.live.settle()
    assert api.live.published == 0
    assert await api.live.broker.position(api.live.stream) == "0"
    await api.call("add_todo", {"owner_id": 5, "title": "x"})
    await api.live.settle()
    assert api.live.published == 1
    assert await api.live.broker.position(api.live.stream) == "1"


async def test_a_failing_teardown_answers_but_pushes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = todo_api()
    closed: list[str] = []

    async def session() -> AsyncIterator[str]:
        yield "db"
        closed.append("teardown")
        raise RuntimeError("commit failed")

    @api.command(affects=["todos"])
    async def save(owner_id: int, db: Annotated[str, Depends(session)]) -> int:
        return 1

    with caplog.at_level(logging.ERROR, logger="tether"):
        found = await api.call("save", {"owner_id": 5}, effects=True)
    # The answer stands (a wire client had it already), but nobody else is told to refetch.
    assert found == CallResult(1, [{"context": "todos", "params": {"owner_id": 5}}], [])
    assert closed == ["teardown"]
    await api.live.settle()
    assert api.live.published == 0
    assert "operation 'save': cache effects not pushed, since a yield dependency failed" in (
        caplog.text
    )


# -- api.call(..., effects=True) ---------------------------------------------------------


async def test_call_with_effects_returns_a_call_result_for_every_kind_of_operation() -> None:
    api = todo_api(user=Depends(current_user))

    @api.command
    async def ping(n: int) -> int:
        return n

    @api.query
    async def whoami(user: Annotated[User | None, Depends(current_user)]) -> str:
        return "nobody" if user is None else user.name

    assert await api.call("ping", {"n": 3}, effects=True) == CallResult(3, [], [])
    assert await api.call("todos", {"owner_id": 1}, effects=True) == CallResult(
        [Todo(id=1, owner_id=1, title="milk")], [], []
    )
    found = await api.call("whoami", {}, headers={"X-User": "1"}, effects=True)
    assert found == CallResult("ada", [], [])
    added = await api.call("add_todo", {"owner_id": 1, "title": "x"}, effects=True)
    assert isinstance(added, CallResult)
    assert added.result == Todo(id=2, owner_id=1, title="x")
    # Without effects=True, the result alone.
    assert await api.call("add_todo", {"owner_id": 1, "title": "x"}) == added.result


# -- api.fetch_context ------------------------------------------------------------------


async def test_fetch_context_runs_the_slots_concurrently() -> None:
    api = Tether()
    started = {"left": anyio.Event(), "right": anyio.Event()}

    @api.query(context="pair")
    async def left(n: int) -> str:
        started["left"].set()
        # Only returns once `right` has started too: run one after the other, they never end.
        with anyio.fail_after(10):
            await started["right"].wait()
        return f"left {n}"

    @api.query(context="pair")
    async def right(n: int, suffix: str = "!") -> str:
        started["right"].set()
        with anyio.fail_after(10):
            await started["left"].wait()
        return f"right {n}{suffix}"

    assert await api.fetch_context("pair", {"n": 1}) == {"left": "left 1", "right": "right 1!"}


async def test_fetch_context_answers_the_first_failing_slot_in_slot_order() -> None:
    api = Tether()
    second_failed = anyio.Event()
    closed: list[str] = []

    async def resource() -> AsyncIterator[str]:
        try:
            yield "r"
        finally:
            closed.append("closed")

    @api.query(context="bundle")
    async def first(db: Annotated[str, Depends(resource)]) -> int:
        with anyio.fail_after(10):
            await second_failed.wait()
        raise Conflict("first")

    @api.query(context="bundle")
    async def second() -> int:
        second_failed.set()
        raise Forbidden("second")

    @api.query(context="bundle")
    async def third() -> int:
        return 3

    with pytest.raises(Conflict, match="first"):
        await api.fetch_context("bundle")
    assert closed == ["closed"]


async def test_fetch_context_refuses_missing_and_unknown_params_and_unknown_contexts() -> None:
    api = todo_api()
    with pytest.raises(ValidationFailed) as excinfo:
        await api.fetch_context("todos")
    assert excinfo.value.code == "VALIDATION_FAILED"
    assert excinfo.value.to_dict()["details"][0]["loc"] == ["owner_id"]
    with pytest.raises(ValidationFailed) as excinfo:
        await api.fetch_context("todos", {"owner_id": 1, "colour": "red"})
    assert excinfo.value.to_dict()["details"][0]["loc"] == ["colour"]
    with pytest.raises(ValidationFailed):
        await api.fetch_context("todos", {"owner_id": "one"})
    with pytest.raises(NotFound) as found:
        await api.fetch_context("nothing")
    assert found.value.code == "NOT_FOUND"
    assert await api.fetch_context("todos", {"owner_id": 1, "done": True}) == {
        "todos": [Todo(id=1, owner_id=1, title="milk")],
        "todo_count": 1,
    }


async def test_fetch_context_enforces_each_slots_auth() -> None:
    api = Tether(user=Depends(current_user))
    seen: list[Any] = []

    def own_only(user: Any, ctx: CallContext) -> bool:
        seen.append(ctx.params)
        return user is not None and ctx.params is not None and ctx.params["owner_id"] == user.id

    @api.query(context="account")
    async def public(owner_id: int) -> str:
        return "public"

    @api.query(context="account", auth=own_only)
    async def private(owner_id: int) -> str:
        return "private"

    @api.query(context="admin", auth="staff")
    async def audit() -> list[str]:
        return []

    with pytest.raises(Unauthorized):
        await api.fetch_context("account", {"owner_id": 1})
    with pytest.raises(Forbidden):
        await api.fetch_context("account", {"owner_id": 2}, headers={"X-User": "1"})
    assert await api.fetch_context("account", {"owner_id": 1}, headers={"X-User": "1"}) == {
        "public": "public",
        "private": "private",
    }
    assert seen[-1] == {"owner_id": 1}
    with pytest.raises(Forbidden):
        await api.fetch_context("admin", headers={"X-User": "1"})
    assert await api.fetch_context("admin", headers={"X-User": "9"}) == {"audit": []}


# -- services ---------------------------------------------------------------------------


async def test_service_methods_take_context_affects_and_merge() -> None:
    api = Tether()
    store: dict[int, list[str]] = {}

    class Todos(Service, name="todolist"):
        @query(context="todolist", rev=3)
        async def items(self, owner_id: int) -> list[str]:
            return store.get(owner_id, [])

        @query(context="todolist")
        async def size(self, owner_id: int) -> int:
            return len(store.get(owner_id, []))

        @command(affects=["todolist"])
        async def add(self, owner_id: int, title: str) -> None:
            store.setdefault(owner_id, []).append(title)

        @command(merge={"todolist": "todolist.items"})
        async def replace(self, owner_id: int, titles: list[str]) -> list[str]:
            store[owner_id] = titles
            return titles

        @command(affects=["todolist.items"])
        async def clear(self, owner_id: int) -> None:
            store.pop(owner_id, None)

    api.include(Todos)
    mount(api)
    context = api.contexts.get("todolist")
    assert [op.name for op in context.slots] == ["todolist.items", "todolist.size"]
    assert context.rev == "todolist.items:3"
    added = await api.call("todolist.add", {"owner_id": 4, "title": "a"}, effects=True)
    assert added.invalidate == [{"context": "todolist", "params": {"owner_id": 4}}]
    replaced = await api.call("todolist.replace", {"owner_id": 4, "titles": ["b"]}, effects=True)
    assert replaced.merge == [
        {"context": "todolist", "slot": "todolist.items", "params": {"owner_id": 4}, "value": ["b"]}
    ]
    cleared = await api.call("todolist.clear", {"owner_id": 4}, effects=True)
    assert cleared.invalidate == [{"context": "todolist", "params": {"owner_id": 4}}]
    assert await api.fetch_context("todolist", {"owner_id": 4}) == {
        "todolist.items": [],
        "todolist.size": 0,
    }


# -- the JSON the wires splice ----------------------------------------------------------


def effects(invalidate: list[dict[str, Any]], merge: list[dict[str, Any]], result: Any) -> Effects:
    return Effects(invalidate, merge, result, None, orjson.dumps)


def test_members_has_only_the_lists_that_are_not_empty() -> None:
    only_invalidate = effects([{"context": "todos", "params": {"owner_id": 5}}], [], None)
    assert (
        only_invalidate.members() == b'"invalidate":[{"context":"todos","params":{"owner_id":5}}]'
    )
    only_merge = effects([], [{"context": "user", "slot": "me"}], {"name": "a"})
    assert only_merge.members() == b'"merge":[{"context":"user","slot":"me","value":{"name":"a"}}]'
    both = effects([{"query": "stats"}], [{"context": "user", "slot": "me"}], 1)
    assert orjson.loads(b"{" + both.members() + b"}") == {
        "invalidate": [{"query": "stats"}],
        "merge": [{"context": "user", "slot": "me", "value": 1}],
    }
    empty = effects([], [], None)
    assert not empty
    assert empty.members() == b""
    assert empty.to_json() == b'{"invalidate":[],"merge":[]}'
    assert both
    assert orjson.loads(both.to_json()) == orjson.loads(b"{" + both.members() + b"}")


def test_the_merge_value_is_the_results_json_spliced_in_unchanged() -> None:
    # The result's JSON as the operation's encoder made it (once), not re-encoded.
    found = Effects(
        [],
        [{"context": "user", "slot": "me"}, {"context": "team", "slot": "lead"}],
        object(),
        b'{"name":"Zo\xc3\xab","n":1.50}',
        orjson.dumps,
    )
    assert found.members() == (
        b'"merge":[{"context":"user","slot":"me","value":{"name":"Zo\xc3\xab","n":1.50}},'
        b'{"context":"team","slot":"lead","value":{"name":"Zo\xc3\xab","n":1.50}}]'
    )
    encoded: list[Any] = []

    def encode(value: Any) -> bytes:
        encoded.append(value)
        return orjson.dumps(value)

    lazy = Effects([], [{"context": "user", "slot": "me"}], [1, 2], None, encode)
    assert (
        lazy.to_json()
        == b'{"invalidate":[],"merge":[{"context":"user","slot":"me","value":[1,2]}]}'
    )
    assert lazy.members() == b'"merge":[{"context":"user","slot":"me","value":[1,2]}]'
    assert encoded == [[1, 2]]  # encoded once, on first need


def test_the_header_is_ascii_json_of_the_invalidate_list() -> None:
    found = effects(
        [{"context": "people", "params": {"name": "Zoë 東京"}}, {"query": "stats"}],
        [{"context": "user", "slot": "me"}],
        None,
    )
    header = found.header()
    assert header == (
        '[{"context":"people","params":{"name":"Zo\\u00eb \\u6771\\u4eac"}},{"query":"stats"}]'
    )
    assert header.isascii()
    assert orjson.loads(header) == found.invalidate
    assert effects([], [], None).header() == "[]"


async def test_the_user_key_of_a_per_user_entry_stays_on_the_server() -> None:
    api = Tether(user=Depends(current_user))

    @api.query(context="me")
    async def profile(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(id=1, name="x")

    @api.command(merge=["me"], affects=["me"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    pushed_effects: list[Effects] = []

    async def capture(found: Effects) -> None:
        pushed_effects.append(found)

    api.live.publish = capture  # type: ignore[method-assign]
    found = await api.call("rename", {"name": "z"}, headers={"X-User": "2"}, effects=True)
    assert found.invalidate == [{"context": "me"}]
    assert found.merge == [{"context": "me", "slot": "profile", "value": Profile(id=1, name="z")}]
    (pushed,) = pushed_effects
    assert orjson.loads(pushed.push_json()) == {
        "invalidate": [{"context": "me", "user": "2"}],
        "merge": [
            {"context": "me", "slot": "profile", "user": "2", "value": {"id": 1, "name": "z"}}
        ],
    }
    assert b'"user"' not in pushed.members()
    assert b'"user"' not in pushed.to_json()
    assert "user" not in pushed.header()


def test_default_user_key_reads_id_then_names() -> None:
    class Named:
        id = None
        username = "ada"

    assert default_user_key(None) is None
    assert default_user_key(User(id=4, name="x")) == "4"
    assert default_user_key({"email": "a@example.com"}) == "a@example.com"
    assert default_user_key(Named()) == "ada"
    assert default_user_key("plain") == "plain"


async def test_user_key_tells_users_apart_as_configured() -> None:
    api = Tether(user=Depends(current_user), user_key=lambda user: user and user.name.upper())

    @api.query(context="me")
    async def profile(user: Annotated[User | None, Depends(current_user)]) -> Profile:
        return Profile(id=1, name="x")

    @api.command(affects=["me"])
    async def touch() -> None: ...

    published: list[bytes] = []

    async def capture(found: Effects) -> None:
        published.append(found.push_json())

    api.live.publish = capture  # type: ignore[method-assign]
    await api.call("touch", {}, headers={"X-User": "1"})
    await api.call("touch", {})
    assert [orjson.loads(p)["invalidate"] for p in published] == [
        [{"context": "me", "user": "ADA"}],
        [{"context": "me", "user": None}],
    ]


def test_tether_refuses_bad_live_and_user_key_options() -> None:
    with pytest.raises(ConfigurationError, match="live= takes LiveSettings"):
        Tether(live={"subscriber_queue": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="user_key= takes a function of the user"):
        Tether(user_key="id")  # type: ignore[arg-type]


async def test_a_service_query_is_named_in_affects_by_its_method() -> None:
    # In the class body a sibling query is a plain function: affects=[items] names it.
    api = Tether()

    class Notes(Service, name="notes"):
        @query
        async def items(self, owner_id: int) -> list[str]:
            return []

        @command(affects=[items])
        async def clear(self, owner_id: int) -> None: ...

    api.include(Notes)
    mount(api)
    found = await api.call("notes.clear", {"owner_id": 4}, effects=True)
    assert found.invalidate == [{"query": "notes.items", "params": {"owner_id": 4}}]
