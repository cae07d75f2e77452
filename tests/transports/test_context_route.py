"""The context endpoint: `GET/POST {prefix}/context/{name}` answers a context's bundle.

Bundles over GET (query string, repeated keys for list params) and POST (a JSON object),
required and optional params, the errors (unknown context, missing or unknown params, a
failing slot's own error, a slot's `auth=`), the headers (`Cache-Control: no-cache`,
`X-Tether-Rev`, what the slots' dependencies set), the after-answer work, and hostile
requests (malformed, oversized, deeply nested bodies; floods).

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

import json
from typing import Annotated, Any

import anyio
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Response
from pydantic import BaseModel

from tests._core_helpers import asgi_client, mounted
from tether import Conflict, NotFound, Tether
from tether.transports._body import MAX_DEPTH


class Todo(BaseModel):
    id: int
    owner_id: int
    title: str


class User(BaseModel):
    id: int
    name: str
    is_staff: bool = False


class Window(BaseModel):
    start: int
    end: int


USERS = {"1": User(id=1, name="ada"), "9": User(id=9, name="root", is_staff=True)}


async def current_user(x_user: Annotated[str | None, Header()] = None) -> User | None:
    return USERS.get(x_user) if x_user is not None else None


def make_api(**options: Any) -> tuple[Tether, FastAPI, list[str]]:
    api = Tether(user=Depends(current_user), **options)
    after: list[str] = []

    @api.query(context="todos", rev=3)
    async def todos(owner_id: int) -> list[Todo]:
        return [Todo(id=1, owner_id=owner_id, title="milk")]

    @api.query(context="todos")
    async def todo_count(owner_id: int, tags: list[str] | None = None) -> dict[str, Any]:
        return {"owner_id": owner_id, "tags": tags}

    @api.query(context="board")
    async def board_ok() -> int:
        return 1

    @api.query(context="board")
    async def board_conflict() -> int:
        raise Conflict("board is busy")

    @api.query(context="board")
    async def board_missing() -> int:
        raise NotFound("no board")

    @api.query(context="staff_only")
    async def public_part() -> str:
        return "public"

    @api.query(context="staff_only", auth="staff")
    async def staff_part() -> str:
        return "secret"

    @api.query(context="window")
    async def in_window(window: Window) -> int:
        return window.end - window.start

    @api.query(context="sync")
    def sync_slot(n: int) -> int:
        return n * 2

    @api.query(context="cooked")
    async def cookie_slot(response: Response, tasks: BackgroundTasks) -> str:
        response.set_cookie("seen", "yes")
        response.headers["cache-control"] = "max-age=600"
        tasks.add_task(after.append, "cookie_slot")
        return "cookie"

    @api.query(context="cooked")
    async def header_slot(response: Response) -> str:
        response.headers["x-slot"] = "header"
        return "header"

    return api, mounted(api), after


@pytest.fixture
def app() -> FastAPI:
    return make_api()[1]


async def test_get_answers_every_slot_with_the_params_it_declares(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/todos", params={"owner_id": 5})
    assert response.status_code == 200
    assert response.json() == {
        "result": {
            "todos": [{"id": 1, "owner_id": 5, "title": "milk"}],
            "todo_count": {"owner_id": 5, "tags": None},
        }
    }
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-tether-rev"] == "todos:3"
    assert response.headers["content-type"] == "application/json"


async def test_post_reads_a_json_object(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/context/todos", json={"owner_id": 7, "tags": ["a"]})
    assert response.status_code == 200
    assert response.json()["result"]["todo_count"] == {"owner_id": 7, "tags": ["a"]}
    assert response.headers["x-tether-rev"] == "todos:3"


async def test_repeated_keys_make_a_list_param(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/todos?owner_id=5&tags=a&tags=b")
    assert response.json()["result"]["todo_count"] == {"owner_id": 5, "tags": ["a", "b"]}


async def test_a_scalar_param_given_twice_is_refused(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/todos?owner_id=5&owner_id=6")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["owner_id"]


async def test_a_context_without_rev_sends_no_rev_header(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/sync", params={"n": 4})
    assert response.json() == {"result": {"sync_slot": 8}}
    assert "x-tether-rev" not in response.headers


async def test_unknown_context_is_404(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/nope")
        posted = await client.post("/api/context/nope", json={})
    for answer in (response, posted):
        assert answer.status_code == 404
        assert answer.json()["error"] == {
            "code": "NOT_FOUND",
            "message": "Unknown context 'nope'",
            "details": {"context": "nope"},
        }


async def test_missing_required_param_is_422(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/todos", params={"tags": "a"})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details == [{"loc": ["owner_id"], "msg": "Field required", "type": "missing"}]


async def test_optional_param_may_be_left_out_but_unknown_is_422(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        fine = await client.post("/api/context/todos", json={"owner_id": 1})
        unknown = await client.post("/api/context/todos", json={"owner_id": 1, "colour": "red"})
    assert fine.status_code == 200
    assert unknown.status_code == 422
    error = unknown.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert [d["loc"] for d in error["details"]] == [["colour"]]
    assert error["details"][0]["type"] == "extra_forbidden"


async def test_a_slot_validation_failure_is_422(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/todos", params={"owner_id": "five"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["owner_id"]


async def test_first_failing_slot_in_slot_order_answers(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/api/context/board")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    assert response.json()["error"]["message"] == "board is busy"
    assert "x-tether-rev" not in response.headers


async def test_a_slots_auth_is_enforced(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        anonymous = await client.get("/api/context/staff_only")
        user = await client.get("/api/context/staff_only", headers={"x-user": "1"})
        staff = await client.get("/api/context/staff_only", headers={"x-user": "9"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "FORBIDDEN"
    assert staff.status_code == 200
    assert staff.json() == {"result": {"public_part": "public", "staff_part": "secret"}}


async def test_structured_params_take_post_and_get_is_405(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        get = await client.get("/api/context/window")
        post = await client.post("/api/context/window", json={"window": {"start": 2, "end": 9}})
        put = await client.put("/api/context/todos", json={})
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"
    assert get.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert post.json() == {"result": {"in_window": 7}}
    assert put.status_code == 405
    assert put.headers["allow"] == "GET, POST"


async def test_slot_headers_are_merged_and_background_tasks_run_after() -> None:
    _, app, after = make_api()
    async with asgi_client(app) as client:
        response = await client.get("/api/context/cooked")
    assert response.json() == {"result": {"cookie_slot": "cookie", "header_slot": "header"}}
    assert response.cookies["seen"] == "yes"
    assert response.headers["x-slot"] == "header"
    # A slot's own caching does not say how the bundle is cached.
    assert response.headers.get_list("cache-control") == ["no-cache"]
    assert after == ["cookie_slot"]


# -- hostile requests ----------------------------------------------------------------------


async def test_post_needs_a_json_content_type(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/context/todos", content=b'{"owner_id": 1}', headers={"content-type": "text/plain"}
        )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"owner_id": NaN}', b"[1, 2]", b'"text"', b"\xff\xfe"],
    ids=["truncated", "nan", "array", "string", "not-utf8"],
)
async def test_malformed_bodies_are_400(app: FastAPI, body: bytes) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/context/todos", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"


async def test_deeply_nested_body_is_400(app: FastAPI) -> None:
    depth = MAX_DEPTH + 50
    body = b'{"owner_id": ' + b"[" * depth + b"]" * depth + b"}"
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/context/todos", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]["message"]


async def test_oversized_body_is_413_and_closes() -> None:
    _, app, _ = make_api(max_body_size=1024)
    body = json.dumps({"owner_id": 1, "tags": ["x" * 100] * 50}).encode()
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/context/todos", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.headers["connection"] == "close"


async def test_a_flood_of_bad_requests_leaves_it_serving(app: FastAPI) -> None:
    statuses: list[int] = []

    async with asgi_client(app) as client:

        async def bad(index: int) -> None:
            body = b"{" * (index % 7 + 1) if index % 2 else b'{"nope": 1}'
            response = await client.post(
                "/api/context/todos", content=body, headers={"content-type": "application/json"}
            )
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for index in range(300):
                group.start_soon(bad, index)
        good = await client.get("/api/context/todos", params={"owner_id": 2})
    assert sorted(set(statuses)) == [400, 422]
    assert len(statuses) == 300
    assert good.status_code == 200
    assert good.json()["result"]["todos"][0]["owner_id"] == 2


async def test_a_strict_context_reads_query_text() -> None:
    api = Tether(strict=True)

    @api.query(context="todos")
    async def todos(owner_id: int) -> int:
        return owner_id

    @api.query(context="todos")
    async def flags(owner_id: int, ids: list[int] | None = None) -> list[int] | None:
        return ids

    app = mounted(api)
    async with asgi_client(app) as client:
        text = await client.get("/api/context/todos?owner_id=5&ids=1&ids=2")
        posted_text = await client.post("/api/context/todos", json={"owner_id": "5"})
        posted = await client.post("/api/context/todos", json={"owner_id": 5})
    assert text.status_code == 200
    assert text.json() == {"result": {"todos": 5, "flags": [1, 2]}}
    # Strict over JSON: a string is not an integer.
    assert posted_text.status_code == 422
    assert posted.json() == {"result": {"todos": 5, "flags": None}}


async def test_a_bundle_whose_client_leaves_is_cancelled_and_answers_nothing() -> None:
    api = Tether()
    started = anyio.Event()
    seen: list[str] = []

    @api.query(context="slow")
    async def waits() -> int:
        started.set()
        try:
            await anyio.sleep(30)
        except BaseException:
            seen.append("cancelled")
            raise
        return 1

    @api.query(context="slow")
    async def quick() -> int:
        return 2

    app = mounted(api)
    sent: list[Any] = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Any:
        if messages:
            return messages.pop(0)
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/context/slow",
        "raw_path": b"/api/context/slow",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    with anyio.fail_after(10):
        await app(scope, receive, send)
    assert seen == ["cancelled"]
    assert sent == []
