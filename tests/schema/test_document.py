"""tether's own schema document (`tether schema tether`): its types, operations and contexts,
determinism, and agreement with the OpenAPI and OpenRPC documents.

To regenerate the demo's snapshot after an intended change:

    TETHER_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/schema/test_document.py
"""

import datetime
import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Generic, NotRequired, Required, TypeVar

import orjson
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field, computed_field, create_model, field_serializer
from typing_extensions import TypedDict

from tests._docs_examples import load
from tether import NotFound, Tether, TetherError
from tether.cli import find_tether
from tether.demo.app import create_app
from tether.schema.document import schema_document, schema_json
from tether.schema.openrpc import openrpc_document

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "examples" / "snapshots" / "todo_tether_schema.json"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def demo_document(tmp_path: Path) -> tuple[FastAPI, Tether, bytes]:
    app = create_app(tmp_path / "todo.db")
    api = find_tether(app)
    return app, api, schema_json(api, app)


def test_demo_document_matches_snapshot(tmp_path: Path) -> None:
    _, _, current = demo_document(tmp_path)
    if os.environ.get("TETHER_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_bytes(current)
    expected = SNAPSHOT.read_bytes()
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.decode().splitlines(keepends=True),
                current.decode().splitlines(keepends=True),
                fromfile=f"{SNAPSHOT.name} (snapshot)",
                tofile="schema_json (now)",
            )
        )
        raise AssertionError(
            "the demo app's tether schema changed; if intended, regenerate with"
            f" TETHER_UPDATE_SNAPSHOTS=1:\n{diff}"
        )


def test_document_is_byte_identical_across_processes() -> None:
    command = [sys.executable, "-m", "tether.cli", "schema", "tether", "--app"]
    outputs = [
        subprocess.run(
            [*command, "tether.demo.app:app"], capture_output=True, check=True, timeout=60
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1]
    # Deterministic JSON: sorted keys, two-space indent, one trailing newline.
    assert outputs[0] == SNAPSHOT.read_bytes()
    assert outputs[0].endswith(b"}\n")
    assert (
        outputs[0]
        == orjson.dumps(json.loads(outputs[0]), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        + b"\n"
    )


def string(fmt: str | None = None) -> dict[str, Any]:
    return {"kind": "string", "format": fmt} if fmt else {"kind": "string"}


def nullable(of: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "union", "of": [of, {"kind": "null"}]}


def ref(name: str) -> dict[str, Any]:
    return {"kind": "ref", "name": name}


def test_every_type_kind() -> None:
    module = load("schema_types")
    document = schema_document(module.api)
    assert document["tether"] == "1"
    assert document["info"] == {"title": "todos", "version": "1.0"}
    assert document["prefix"] == "/api"
    assert document["types"] == {
        "Link": {
            "kind": "object",
            "fields": {
                "kind": {"type": {"kind": "literal", "value": "link"}, "required": False},
                "url": {"type": string(), "required": True},
            },
        },
        "Note": {
            "kind": "object",
            "fields": {
                "kind": {"type": {"kind": "literal", "value": "note"}, "required": False},
                "text": {"type": string(), "required": True},
            },
        },
        "Page_Todo_": {
            "kind": "object",
            "fields": {
                "items": {"type": {"kind": "array", "items": ref("Todo")}, "required": True},
                "next": {"type": nullable(string()), "required": False},
            },
            "generic": {"origin": "Page", "args": [ref("Todo")]},
        },
        "Page": {
            "kind": "object",
            "params": ["T"],
            "fields": {
                "items": {
                    "type": {"kind": "array", "items": {"kind": "typevar", "name": "T"}},
                    "required": True,
                },
                "next": {"type": nullable(string()), "required": False},
            },
        },
        "Priority": {"kind": "enum", "values": ["low", "high"]},
        "Todo": {
            "kind": "object",
            "description": "One thing to do.",
            "fields": {
                "id": {"type": string("uuid"), "required": True},
                "title": {"type": string(), "required": True, "description": "What to do."},
                "due": {"type": nullable(string("date")), "required": False},
                "created_at": {"type": string("date-time"), "required": True},
                "priority": {"type": ref("Priority"), "required": False},
                "ownerId": {"type": {"kind": "integer"}, "required": True},
                "attachment": {
                    "type": {
                        "kind": "union",
                        "of": [ref("Note"), ref("Link")],
                        "discriminator": "kind",
                    },
                    "required": True,
                },
                "position": {
                    "type": {"kind": "tuple", "items": [{"kind": "number"}, {"kind": "number"}]},
                    "required": True,
                },
                "labels": {
                    "type": {"kind": "map", "values": {"kind": "integer"}},
                    "required": False,
                },
            },
        },
    }
    assert document["errors"] == {
        "BAD_REQUEST": {"status": 400, "jsonrpc": -32000},
        "VALIDATION_FAILED": {"status": 422, "jsonrpc": -32602},
        "INTERNAL_ERROR": {"status": 500, "jsonrpc": -32603},
    }
    todos = document["operations"]["todos"]
    assert todos["input"] == {
        "owner_id": {"type": {"kind": "integer"}, "required": True},
        "cursor": {"type": nullable(string()), "required": False},
    }
    assert todos["output"] == ref("Page_Todo_")
    assert todos["kind"] == "query"
    assert todos["description"] == "List one owner's todos, a page at a time."


def test_scalars_and_collections() -> None:
    api = Tether()

    @api.query
    async def shapes(
        flag: bool, ratio: float, blob: bytes, when: datetime.time, tags: set[str]
    ) -> tuple[int, ...] | list[dict[str, Any]] | None:
        return None

    document = schema_document(api)
    assert document["operations"]["shapes"]["input"] == {
        "flag": {"type": {"kind": "boolean"}, "required": True},
        "ratio": {"type": {"kind": "number"}, "required": True},
        "blob": {"type": string(), "required": True},
        "when": {"type": string("time"), "required": True},
        "tags": {"type": {"kind": "array", "items": string()}, "required": True},
    }
    assert document["operations"]["shapes"]["output"] == {
        "kind": "union",
        "of": [
            {"kind": "array", "items": {"kind": "integer"}},
            {"kind": "array", "items": {"kind": "map", "values": {"kind": "any"}}},
            {"kind": "null"},
        ],
    }
    assert document["types"] == {}


def test_names_are_deduplicated_by_module_and_valid() -> None:
    first = create_model("Item", __module__="shop.catalog", sku=(str, ...))
    second = create_model("Item", __module__="shop.cart", count=(int, ...))
    api = Tether()

    @api.query
    async def catalog() -> first:  # type: ignore[valid-type]
        raise NotImplementedError

    @api.query
    async def cart() -> list[second]:  # type: ignore[valid-type]
        raise NotImplementedError

    document = schema_document(api)
    assert set(document["types"]) == {"Item_shop_catalog", "Item_shop_cart"}
    assert document["operations"]["catalog"]["output"] == ref("Item_shop_catalog")
    assert document["operations"]["cart"]["output"]["items"] == ref("Item_shop_cart")
    assert document["types"]["Item_shop_cart"]["fields"] == {
        "count": {"type": {"kind": "integer"}, "required": True}
    }
    assert all(IDENTIFIER.match(name) for name in document["types"])


class Node(BaseModel):
    name: str
    children: "list[Node]" = []


class Profile(BaseModel):
    id: int
    name: str


async def current_user() -> dict[str, Any]:
    return {"id": 1}


def cache_api() -> Tether:
    api = Tether(user=Depends(current_user))
    api.context("user", per_user=True, description="Who is signed in.")

    @api.query(context="todos", rev=2)
    async def todos(owner_id: int) -> list[str]:
        return []

    @api.query(context="todos")
    async def todo_count(owner_id: int, done: bool | None = None) -> int:
        return 0

    @api.query(context="user", auth=True)
    async def me() -> Profile:
        raise NotImplementedError

    @api.query(summary="Find todos.", deprecated=True)
    async def search(text: str) -> list[str]:
        return []

    @api.command(affects=["todos", search])
    async def add(owner_id: int, title: str) -> None:
        return None

    @api.command(merge=["user"], auth="staff")
    async def rename(name: str) -> Profile:
        raise NotImplementedError

    return api


def test_contexts_affects_merge_and_rev_as_the_registry_says() -> None:
    api = cache_api()
    document = schema_document(api)
    operations = document["operations"]
    assert operations["todos"]["context"] == "todos"
    assert operations["todos"]["rev"] == "2"
    assert "rev" not in operations["todo_count"]
    assert operations["add"]["affects"] == [
        {"context": "todos", "params": ["owner_id"]},
        {"query": "search", "params": []},
    ]
    assert operations["rename"]["merge"] == [{"context": "user", "slot": "me"}]
    assert operations["rename"]["auth"] == "staff"
    assert operations["me"]["auth"] is True
    assert operations["search"]["auth"] is False
    assert "context" not in operations["search"]
    assert "affects" not in operations["search"]
    assert operations["search"]["summary"] == "Find todos."
    assert operations["search"]["deprecated"] is True
    assert "deprecated" not in operations["todos"]
    assert document["contexts"] == {
        "todos": {
            "slots": ["todos", "todo_count"],
            "params": {
                "owner_id": {"type": {"kind": "integer"}, "required": True},
                "done": {"type": nullable({"kind": "boolean"}), "required": False},
            },
            "rev": api.contexts.get("todos").rev,
            "per_user": False,
        },
        "user": {
            "slots": ["me"],
            "params": {},
            "rev": None,
            "per_user": True,
            "description": "Who is signed in.",
        },
    }
    for context in api.contexts:
        entry = document["contexts"][context.name]
        assert entry["slots"] == [op.name for op in context.slots]
        assert {name: p["required"] for name, p in entry["params"].items()} == dict(context.params)


def test_transports_follow_what_is_mounted() -> None:
    api = Tether()

    @api.query
    async def one() -> int:
        return 1

    @api.stream
    async def ticks() -> AsyncIterator[Node]:
        yield Node(name="root")

    document = schema_document(api)
    # A stream's output is its item type; a model that refers to itself is one definition.
    assert document["operations"]["ticks"]["output"] == ref("Node")
    assert document["types"]["Node"]["fields"]["children"] == {
        "type": {"kind": "array", "items": ref("Node")},
        "required": False,
    }
    unmounted = document["operations"]
    assert unmounted["one"]["transports"] == ["http", "jsonrpc", "websocket"]
    assert unmounted["ticks"]["transports"] == ["sse", "websocket"]
    from tether.transports.http import HttpTransport

    api.mount(FastAPI(), transports=[HttpTransport()])
    mounted = schema_document(api)["operations"]
    assert mounted["one"]["transports"] == ["http"]
    assert mounted["ticks"]["transports"] == []


def test_a_custom_transport_is_listed_by_the_wire_and_kinds_it_declares() -> None:
    api = Tether()

    @api.query
    async def one() -> int:
        return 1

    class Carrier:
        wire = "carrier-pigeon"
        serves = frozenset({"query"})

        def attach(self, handle: Any, app: FastAPI) -> None:
            pass

        def operation_added(self, op: Any) -> None:
            pass

    class Silent(Carrier):
        wire = None  # type: ignore[assignment]

    api.mount(FastAPI(), transports=[Carrier(), Silent()])
    assert schema_document(api)["operations"]["one"]["transports"] == ["carrier-pigeon"]


def x_tether_operations(app: FastAPI) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in app.openapi()["paths"].values():
        for operation in item.values():
            extension = operation.get("x-tether")
            if extension is not None and "name" in extension:
                found[extension["name"]] = extension
    return found


def test_agrees_with_openapi(tmp_path: Path) -> None:
    app, _, text = demo_document(tmp_path)
    document = json.loads(text)
    documented = x_tether_operations(app)
    assert set(documented) == set(document["operations"])
    for name, operation in document["operations"].items():
        extension = documented[name]
        assert operation["kind"] == extension["kind"], name
        assert operation["errors"] == extension["errors"], name
        assert operation["auth"] == extension["auth"], name
        for key in ("context", "rev", "affects", "merge"):
            assert operation.get(key) == extension.get(key), (name, key)
    assert {
        name: {"slots": c["slots"], "params": {p: v["required"] for p, v in c["params"].items()}}
        for name, c in document["contexts"].items()
    } == {
        name: {"slots": c["slots"], "params": c["params"]}
        for name, c in app.openapi()["x-tether-contexts"].items()
    }


@pytest.mark.parametrize("which", ["demo", "cache", "types"])
def test_agrees_with_openrpc(which: str, tmp_path: Path) -> None:
    if which == "demo":
        api = demo_document(tmp_path)[1]
    elif which == "cache":
        api = cache_api()
    else:
        api = load("schema_types").api
    document = schema_document(api)
    methods = {method["name"]: method for method in openrpc_document(api)["methods"]}
    assert set(methods) == set(document["operations"])
    for name, operation in document["operations"].items():
        params = {param["name"]: param["required"] for param in methods[name]["params"]}
        assert params == {p: v["required"] for p, v in operation["input"].items()}, name
        codes = [error["data"]["code"] for error in methods[name]["errors"]]
        assert codes == operation["errors"], name


def test_the_docs_page_shows_the_example_document() -> None:
    page = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```json\n(.*?)^```$", page, re.MULTILINE | re.DOTALL)
    document = schema_document(load("schema_types").api)
    shown = [
        document["operations"]["add_todo"],
        document["types"]["Page_Todo_"],
        document["types"]["Page"],
        document["contexts"],
    ]
    assert [json.loads(block) for block in blocks] == shown
    # Shown as `schema_json` prints them.
    for block, part in zip(blocks, shown, strict=True):
        assert (
            block
            == orjson.dumps(part, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
        )


class Teapot(TetherError):
    code = "TEAPOT"
    status = 418
    jsonrpc_code = -32418


def test_errors_table_holds_every_listed_code_with_its_wire_mapping(tmp_path: Path) -> None:
    api = Tether(user=Depends(current_user))

    @api.query(errors=[Teapot, NotFound])
    async def brew() -> int:
        return 1

    @api.command(auth=True)
    async def sign() -> None:
        return None

    document = schema_document(api)
    assert document["errors"] == {
        "BAD_REQUEST": {"status": 400, "jsonrpc": -32000},
        "VALIDATION_FAILED": {"status": 422, "jsonrpc": -32602},
        "TEAPOT": {"status": 418, "jsonrpc": -32418},
        "NOT_FOUND": {"status": 404, "jsonrpc": -32004},
        "INTERNAL_ERROR": {"status": 500, "jsonrpc": -32603},
        "UNAUTHORIZED": {"status": 401, "jsonrpc": -32001},
        "FORBIDDEN": {"status": 403, "jsonrpc": -32003},
    }
    listed = {code for op in document["operations"].values() for code in op["errors"]}
    assert set(document["errors"]) == listed
    demo = json.loads(demo_document(tmp_path)[2])
    assert demo["errors"]["CONFLICT"] == {"status": 409, "jsonrpc": -32009}
    assert set(demo["errors"]) == {c for op in demo["operations"].values() for c in op["errors"]}


A = TypeVar("A")
B = TypeVar("B")


class Pair(BaseModel, Generic[A, B]):
    first: A
    second: B


class Chain(BaseModel, Generic[A]):
    value: A
    rest: "list[Chain[A]]" = []


class Box(BaseModel, Generic[A]):
    inner: Pair[A, int]


class Scaled(BaseModel, Generic[A]):
    value: A

    @field_serializer("value")
    def _value(self, value: Any) -> Any:
        return value


class Shape(BaseModel):
    width: int
    height: int
    label: str = Field(default="", serialization_alias="shownAs")
    code: str = Field(default="", validation_alias="given", serialization_alias="shown")

    @computed_field(description="width times height")  # type: ignore[prop-decorator]
    @property
    def area(self) -> int:
        return self.width * self.height


def test_generic_models_keep_their_origin_and_parameters() -> None:
    api = Tether()

    @api.query
    async def pairs(shape: Shape) -> Box[str]:
        raise NotImplementedError

    @api.query
    async def pair() -> Pair[int, Shape | None]:
        raise NotImplementedError

    document = schema_document(api)
    types = document["types"]
    typevar = {"kind": "typevar", "name": "A"}
    assert types["Pair"]["params"] == ["A", "B"]
    assert types["Pair"]["fields"]["first"]["type"] == typevar
    # A partly parametrized model inside an origin refers to the origin's own variables.
    assert types["Box"]["fields"]["inner"]["type"] == ref("Pair__A__int_")
    assert types["Pair__A__int_"]["generic"] == {
        "origin": "Pair",
        "args": [typevar, {"kind": "integer"}],
    }
    assert types["Box_str_"]["generic"] == {"origin": "Box", "args": [string()]}
    assert "params" not in types["Box_str_"]
    assert types["Pair_int__Union_Shape__NoneType__"]["generic"] == {
        "origin": "Pair",
        "args": [{"kind": "integer"}, nullable(ref("Shape"))],
    }
    # An origin is a definition of its own; every other definition is free of type variables.
    free = json.dumps({n: t for n, t in types.items() if "params" not in t and "generic" not in t})
    assert "typevar" not in free


def test_a_generic_whose_origin_differs_has_no_generic_member() -> None:
    api = Tether()

    class Narrowed(Scaled[int]):
        extra: bool = False

    @api.query
    async def narrowed() -> Narrowed:
        raise NotImplementedError

    @api.query
    async def bare() -> Scaled:  # type: ignore[type-arg]
        raise NotImplementedError

    @api.query
    async def chain() -> Chain[int]:
        raise NotImplementedError

    types = schema_document(api)["types"]
    # pydantic makes `Chain[A]` inside Chain the origin itself: a generator supplies A.
    assert types["Chain"]["fields"]["rest"]["type"] == {"kind": "array", "items": ref("Chain")}
    # Parametrized, the recursion is pydantic's internal reference (`any` here): no generic.
    assert types["Chain_int_"]["fields"]["rest"]["type"] == {
        "kind": "array",
        "items": {"kind": "any"},
    }
    assert "generic" not in types["Chain_int_"]
    assert "generic" not in types["Narrowed"]
    assert types["Narrowed"]["fields"]["value"]["type"] == {"kind": "integer"}
    assert types["Scaled"]["params"] == ["A"]


def test_computed_fields_are_read_only() -> None:
    api = Tether()

    @api.query
    async def shape() -> Shape:
        raise NotImplementedError

    fields = schema_document(api)["types"]["Shape"]["fields"]
    assert fields["area"] == {
        "type": {"kind": "integer"},
        "required": True,
        "read_only": True,
        "description": "width times height",
    }
    assert "read_only" not in fields["width"]
    # Written under one name, read under another: `input_name` is the name it is sent under.
    assert fields["shownAs"]["input_name"] == "label"
    assert fields["shown"]["input_name"] == "given"
    assert "input_name" not in fields["width"]


class Window(TypedDict, total=False):
    start: Required[int]
    end: int
    label: NotRequired[str]


def test_typed_dicts_keys_that_are_not_required_may_be_absent_from_the_output() -> None:
    api = Tether()

    @api.query
    async def window(w: Window) -> Window:
        return w

    document = schema_document(api)
    assert document["types"]["Window"] == {
        "kind": "object",
        "fields": {
            "start": {"type": {"kind": "integer"}, "required": True},
            "end": {"type": {"kind": "integer"}, "required": False, "output_optional": True},
            "label": {"type": string(), "required": False, "output_optional": True},
        },
    }
    assert document["operations"]["window"]["input"]["w"]["type"] == ref("Window")
