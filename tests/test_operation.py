import inspect
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Annotated, Any, Literal

import pytest
from fastapi import Body, Depends, Header, Path, Query, Request
from pydantic import BaseModel, Field

from tests import _future_annotations_ops, _plain_annotations_ops
from tether import (
    ConfigurationError,
    NotFound,
    Tether,
    ValidationFailed,
    command,
    query,
    stream,
)
from tether._compile import compile_operation
from tether._encoding import ResultEncoder
from tether._introspect import stream_item_type
from tether.operation import (
    Operation,
    OperationSpec,
    get_spec,
    model_name,
    operation,
)


class Todo(BaseModel):
    id: int
    title: str


class TodoWithSecret(Todo):
    secret: str


def compile_(func: Any, **kwargs: Any) -> Operation:
    spec = get_spec(func)
    assert spec is not None
    return compile_operation(func, spec, **kwargs)


# -- markers -------------------------------------------------------------------------------


def test_query_and_command_mark_and_return_the_function() -> None:
    def f() -> int:
        return 1

    assert query(f) is f
    spec = get_spec(f)
    assert spec == OperationSpec(kind="query")

    def g() -> None:
        pass

    marked = command(name="things.g", tags=["t"], summary="S", description="D", deprecated=True)(g)
    assert marked is g
    assert get_spec(g) == OperationSpec(
        kind="command",
        name="things.g",
        tags=("t",),
        summary="S",
        description="D",
        deprecated=True,
    )


def test_operation_marker_takes_kind() -> None:
    def f() -> None:
        pass

    operation(kind="command", errors=[NotFound])(f)
    spec = get_spec(f)
    assert spec is not None
    assert spec.kind == "command"
    assert spec.errors == (NotFound,)


def test_get_spec_of_unmarked_function() -> None:
    def f() -> None:
        pass

    assert get_spec(f) is None


def test_bad_kind() -> None:
    with pytest.raises(ConfigurationError, match="kind"):
        operation(kind="event")  # type: ignore[arg-type]


def test_errors_must_be_tether_errors() -> None:
    with pytest.raises(ConfigurationError, match="errors="):
        query(errors=[ValueError])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="errors="):
        query(errors=["NOT_FOUND"])  # type: ignore[list-item]


@pytest.mark.parametrize("policy", ["admin", 1, 3.5, ["staff"]])
def test_bad_auth_policy(policy: Any) -> None:
    with pytest.raises(ConfigurationError, match="auth must be"):
        query(auth=policy)


# -- input model ------------------------------------------------------------------------------


def test_input_model_from_non_dependency_parameters() -> None:
    def get_db() -> str:
        return "db"

    @query
    def search(
        text: str,
        limit: Annotated[int, Field(ge=1, le=50)] = 10,
        tags: list[str] | None = None,
        todo: Todo | None = None,
        db: str = Depends(get_db),
        request: Request = None,  # type: ignore[assignment]
    ) -> list[Todo]:
        return []

    op = compile_(search)
    assert op.name == "search"
    assert op.kind == "query"
    assert op.input_names == ("text", "limit", "tags", "todo")
    assert list(op.input_model.model_fields) == ["text", "limit", "tags", "todo"]
    assert op.input_model.__name__ == "SearchParams"
    assert op.plan is not None
    assert op.plan.names == ("db", "request")
    assert op.bind({"text": "a"}) == {"text": "a", "limit": 10, "tags": None, "todo": None}
    bound = op.bind({"text": "a", "limit": "5", "tags": ["x"], "todo": {"id": 1, "title": "t"}})
    assert bound == {"text": "a", "limit": 5, "tags": ["x"], "todo": Todo(id=1, title="t")}
    with pytest.raises(ValidationFailed) as info:
        op.bind({"limit": 0, "tags": "x", "extra": 1})
    assert sorted((tuple(f.loc), f.type) for f in info.value.details) == [
        (("extra",), "extra_forbidden"),
        (("limit",), "greater_than_equal"),
        (("tags",), "list_type"),
        (("text",), "missing"),
    ]


def test_field_default_and_description() -> None:
    @query
    def f(n: int = Field(default=3, ge=0, description="how many")) -> int:
        return n

    op = compile_(f)
    assert op.bind({}) == {"n": 3}
    assert op.input_model.model_fields["n"].description == "how many"
    with pytest.raises(ValidationFailed):
        op.bind({"n": -1})


def test_bind_accepts_model_instance_and_none() -> None:
    @query
    def f(a: int = 1) -> int:
        return a

    op = compile_(f)
    assert op.bind(None) == {"a": 1}
    assert op.bind(op.input_model(a=4)) == {"a": 4}


def test_bind_without_inputs() -> None:
    @query
    def f() -> int:
        return 1

    op = compile_(f)
    assert op.bind(None) == {}
    assert op.bind({}) == {}
    with pytest.raises(ValidationFailed) as info:
        op.bind({"x": 1})
    assert info.value.to_dict()["details"] == [
        {"loc": ["x"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


class Node(BaseModel):
    """A recursive model: the input model's schema then has definitions."""

    name: str
    children: list["Node"] = []


@query
def _many_inputs(
    count: Annotated[int, Field(gt=0)],
    node: Node,
    tags: list[str] | None = None,
    mode: Literal["fast", "slow"] = "fast",
    todo: Todo | None = None,
    renamed: Annotated[str, Field(alias="renamedAlias")] = "r",
    json: int = 0,
) -> int:
    return count


@pytest.mark.parametrize(
    "params",
    [
        {"count": 1, "node": {"name": "n"}},
        {"count": 1, "node": {"name": "n", "children": [{"name": "m"}]}, "tags": ["a"]},
        {"count": "2", "node": {"name": "n"}, "mode": "slow", "renamedAlias": "x", "json": 3},
        {"count": 0, "node": {"name": 1}},
        {"count": 1, "node": {"name": "n", "children": [{"children": []}]}},
        {"node": {"name": "n"}, "extra": 1, "mode": "other"},
        {"count": 1, "node": "not a node", "todo": {"id": "x"}, "tags": "a"},
        {"count": 1, "node": {"name": "n"}, "renamed": "by name, not alias"},
        {},
    ],
)
def test_bind_validates_exactly_as_the_input_model(params: dict[str, Any]) -> None:
    # bind runs the model's field schemas without building a model: same values, same errors.
    op = compile_(_many_inputs)
    try:
        model = op.input_model.model_validate(params)
    except Exception as exc:
        expected = exc.errors(include_url=False, include_context=False, include_input=False)  # type: ignore[attr-defined]
        with pytest.raises(ValidationFailed) as info:
            op.bind(params)
        assert (
            info.value.to_dict()["details"]
            == ValidationFailed.from_errors(expected).to_dict()["details"]
        )
    else:
        values = dict(model.__dict__)
        values["json"] = values.pop("tether_field_json")
        assert op.bind(params) == values


def test_parameter_shadowing_a_basemodel_attribute() -> None:
    # `json`, `copy` and `model_*` are BaseModel attributes: the input model renames them.
    @command
    def f(json: int, model_name: str = "m") -> str:
        return f"{json}{model_name}"

    op = compile_(f)
    assert op.input_names == ("json", "model_name")
    assert op.bind({"json": 1, "model_name": "x"}) == {"json": 1, "model_name": "x"}
    assert op.bind({"json": 2}) == {"json": 2, "model_name": "m"}
    instance = op.input_model.model_validate({"json": 3})
    assert op.bind(instance) == {"json": 3, "model_name": "m"}


def test_params_from_positional() -> None:
    @query
    def f(a: int, b: int = 2) -> int:
        return a + b

    op = compile_(f)
    assert op.params_from_positional([1]) == {"a": 1}
    assert op.params_from_positional([1, 5]) == {"a": 1, "b": 5}
    with pytest.raises(ValidationFailed) as info:
        op.params_from_positional([1, 2, 3, 4])
    assert [f.loc for f in info.value.details] == [[2], [3]]
    assert {f.type for f in info.value.details} == {"extra_forbidden"}


def test_params_from_query_and_query_shape() -> None:
    @query
    def f(
        ids: list[int],
        q: str | None = None,
        kind: Literal["a", "b"] = "a",
        tags: tuple[str, ...] = (),
        on: Annotated[bool, Field()] = False,
    ) -> int:
        return 0

    op = compile_(f)
    assert op.query_shape == {"ids": True, "q": False, "kind": False, "tags": True, "on": False}
    assert op.params_from_query([("ids", "1"), ("q", "x"), ("ids", "2")]) == {
        "ids": ["1", "2"],
        "q": "x",
    }
    assert op.bind(op.params_from_query([("ids", "1"), ("on", "true")])) == {
        "ids": [1],
        "q": None,
        "kind": "a",
        "tags": (),
        "on": True,
    }
    with pytest.raises(ValidationFailed) as info:
        op.params_from_query([("q", "x"), ("q", "y")])
    assert info.value.to_dict()["details"] == [
        {"loc": ["q"], "msg": "Parameter given more than once", "type": "duplicate"}
    ]


@pytest.mark.parametrize(
    "annotation", [Todo, dict[str, int], list[Todo], int | list[int], list[list[int]]]
)
def test_structured_inputs_cannot_use_a_query_string(annotation: Any) -> None:
    def f(x: Any) -> None:
        pass

    f.__annotations__["x"] = annotation
    op = compile_(query(f))
    assert op.query_shape is None


def test_optional_list_reads_repeated() -> None:
    @query
    def f(x: list[int] | None = None) -> None:
        pass

    assert compile_(f).query_shape == {"x": True}


# -- names and options ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["get_todo", "users.rename", "_x", "a.b.c", "A1"])
def test_good_names(name: str) -> None:
    def f() -> None:
        pass

    assert compile_(query(name=name)(f)).name == name


@pytest.mark.parametrize(
    "name", ["1abc", "a-b", "a..b", ".a", "a.", "a b", "a/b", "é", "rpc.discover", "a.1b"]
)
def test_bad_names(name: str) -> None:
    def f() -> None:
        pass

    with pytest.raises(ConfigurationError, match="names"):
        compile_(query(name=name)(f))


def test_lambda_name_is_refused() -> None:
    f = query(lambda: 1)
    with pytest.raises(ConfigurationError, match="names"):
        compile_(f)


def test_name_argument_overrides_spec() -> None:
    @query(name="a")
    def f() -> None:
        pass

    spec = get_spec(f)
    assert spec is not None
    assert compile_operation(f, spec, name="b").name == "b"


def test_model_name() -> None:
    assert model_name("users.rename", "Params") == "UsersRenameParams"
    assert model_name("get_todo", "Result") == "GetTodoResult"


def test_options_are_kept_and_docstring_is_description() -> None:
    @command(tags=["todos", "x"], summary="Add", deprecated=True, errors=[NotFound])
    def add_todo(title: str) -> None:
        """Add a todo.

        More text.
        """

    op = compile_(add_todo, tags=["api", "todos"])
    assert op.kind == "command"
    assert op.tags == ("api", "todos", "x")
    assert op.summary == "Add"
    assert op.description == "Add a todo.\n\nMore text."
    assert op.deprecated is True
    assert op.errors == (NotFound,)
    assert op.func is add_todo
    assert op.is_async is False


def test_description_option_wins_over_docstring() -> None:
    @query(description="explicit")
    async def f() -> None:
        """Docstring."""

    op = compile_(f)
    assert op.description == "explicit"
    assert op.is_async is True


# -- refused declarations ---------------------------------------------------------------------


def test_generators_are_refused() -> None:
    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> AsyncIterator[int]:
        yield 1

    for func in (gen, agen):
        with pytest.raises(ConfigurationError, match="generators"):
            compile_(query(func))


def test_var_args_are_refused() -> None:
    def f(*args: int) -> None:
        pass

    def g(**kwargs: int) -> None:
        pass

    for func in (f, g):
        with pytest.raises(ConfigurationError, match=r"\*args"):
            compile_(query(func))


def test_positional_only_is_refused() -> None:
    def f(a: int, /) -> None:
        pass

    with pytest.raises(ConfigurationError, match="positional-only"):
        compile_(query(f))


def test_auth_without_user_resolver() -> None:
    @query(auth=True)
    def f() -> None:
        pass

    with pytest.raises(ConfigurationError, match="user resolver"):
        compile_(f)
    api = Tether()
    with pytest.raises(ConfigurationError, match=r"Tether\(user=Depends"):
        api.query(auth="staff")(f)


@pytest.mark.parametrize("marker", [Query(), Body(), Path()])
def test_input_markers_are_refused(marker: Any) -> None:
    def f(x: int = marker) -> None:
        pass

    with pytest.raises(ConfigurationError, match=type(marker).__name__):
        compile_(query(f))

    def g(x: Annotated[int, marker]) -> None:
        pass

    with pytest.raises(ConfigurationError, match="plain parameters"):
        compile_(query(g))


def test_unusable_input_annotation() -> None:
    class NotAType:
        pass

    def f(x: NotAType) -> None:
        pass

    with pytest.raises(ConfigurationError, match="input model"):
        compile_(query(f))


def test_unusable_return_annotation() -> None:
    class NotAType:
        pass

    def f() -> NotAType:
        return NotAType()

    with pytest.raises(ConfigurationError, match="serialize return type"):
        compile_(query(f))


def test_unresolvable_annotation() -> None:
    with pytest.raises(ConfigurationError, match="cannot resolve a type annotation"):
        compile_(_future_annotations_ops.unresolvable)


# -- output ------------------------------------------------------------------------------------


def test_encoder_serializes_like_a_response_model() -> None:
    encoder = ResultEncoder(Todo)
    assert encoder.to_json(Todo(id=1, title="a")) == b'{"id":1,"title":"a"}'
    # A dict for a model validates into it.
    assert encoder.to_json({"id": "2", "title": "b"}) == b'{"id":2,"title":"b"}'
    # Extra fields are filtered, from a subclass instance and from a dict.
    assert encoder.to_json(TodoWithSecret(id=3, title="c", secret="s")) == b'{"id":3,"title":"c"}'
    assert encoder.to_json({"id": 4, "title": "d", "secret": "s"}) == b'{"id":4,"title":"d"}'

    class Row:
        def __init__(self) -> None:
            self.id = 5
            self.title = "e"
            self.secret = "s"

    # Objects with attributes (ORM rows) validate from attributes; extras are filtered.
    assert encoder.to_json(Row()) == b'{"id":5,"title":"e"}'


def test_encoder_reads_attributes_that_are_properties() -> None:
    # ORM rows (SQLAlchemy) expose columns as descriptors, not instance __dict__ entries;
    # a FastAPI response_model reads them with from_attributes.
    class LazyRow:
        def __init__(self) -> None:
            self.id = 6

        @property
        def title(self) -> str:
            return "lazy"

    assert ResultEncoder(Todo).to_json(LazyRow()) == b'{"id":6,"title":"lazy"}'


def test_encoder_containers_and_aliases() -> None:
    class Aliased(BaseModel):
        value: int = Field(alias="Value")

    assert ResultEncoder(list[Todo]).to_json([{"id": 1, "title": "a"}]) == (
        b'[{"id":1,"title":"a"}]'
    )
    assert ResultEncoder(Aliased).to_json(Aliased(Value=1)) == b'{"Value":1}'
    assert ResultEncoder(None).to_json(None) == b"null"
    assert ResultEncoder(Any).to_json({"a": [1, 2.5, None]}) == b'{"a":[1,2.5,null]}'


def test_encoder_refuses_a_wrong_value() -> None:
    with pytest.raises(ValueError, match="validation error"):
        ResultEncoder(int).to_json("not a number")


def test_output_type_from_return_annotation() -> None:
    @query
    def f() -> list[Todo]:
        return []

    @query
    def g():  # type: ignore[no-untyped-def]
        return 1

    assert compile_(f).output_type == list[Todo]
    assert compile_(g).output_type is Any


# -- user modules with and without postponed annotations ---------------------------------------


@pytest.mark.parametrize("module", [_future_annotations_ops, _plain_annotations_ops])
def test_user_module_annotations_resolve(module: Any) -> None:
    describe = compile_(module.describe)
    assert describe.input_names == ("item", "count")
    assert describe.plan is not None
    assert describe.plan.names == ("prefix",)
    assert describe.bind({"item": {"name": "n"}}) == {"item": module.Item(name="n"), "count": 1}
    with pytest.raises(ValidationFailed):
        describe.bind({"item": {"name": "n"}, "count": 4})
    assert describe.description == "Describe an item, with a prefix taken from a header."
    assert describe.output_type is str
    assert describe.input_model.__module__ == module.__name__

    touch = compile_(module.touch)
    assert touch.name == "future.touch"
    assert touch.input_names == ("names",)
    assert touch.plan is not None
    assert touch.plan.names == ("request", "response", "tasks", "agent")
    assert touch.output_type is module.Item
    assert touch.query_shape == {"names": True}


def test_signature_of_function_is_untouched() -> None:
    @query
    def f(a: int, b: str = "x") -> int:
        return a

    compile_(f)
    assert list(inspect.signature(f).parameters) == ["a", "b"]


def test_header_dependency_is_not_input() -> None:
    @query
    def f(a: int, token: Annotated[str, Header()]) -> int:
        return a

    op = compile_(f)
    assert op.input_names == ("a",)
    assert op.plan is not None
    assert op.plan.names == ("token",)


def test_static_and_class_methods_cannot_be_marked() -> None:
    with pytest.raises(ConfigurationError, match="static or class"):
        query(staticmethod(lambda: 1))  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="static or class"):
        command(classmethod(lambda cls: 1))  # type: ignore[call-overload]


def test_stream_kind_needs_a_generator_and_types_its_items() -> None:
    async def ticks(n: int) -> AsyncIterator[Todo]:
        yield Todo(id=n, title="t")

    op = compile_(stream(ticks))
    assert op.kind == "stream"
    assert op.output_type is Todo
    assert op.is_async is True

    def not_a_generator() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="is a generator"):
        compile_(stream(not_a_generator))


def test_stream_item_type() -> None:
    assert stream_item_type(AsyncIterator[int]) is int
    assert stream_item_type(Iterator[str]) is str
    assert stream_item_type(Generator[Todo, None, None]) is Todo
    assert stream_item_type(AsyncIterator) is Any
    assert stream_item_type(int) is Any
