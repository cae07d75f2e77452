# file: examples/docs/cache_testing.py
from examples.docs.cache_todos import api


async def test_adding_a_todo_invalidates_its_owners_todos() -> None:
    called = await api.call("add_todo", {"owner_id": 5, "title": "milk"}, effects=True)

    assert called.result.title == "milk"
    assert called.invalidate == [{"context": "todos", "params": {"owner_id": 5}}]
    assert called.merge == []
    bundle = await api.fetch_context("todos", {"owner_id": 5})  # {slot: value}
    assert [todo.title for todo in bundle["todos"]] == ["milk"]
    assert bundle["open_count"] == 1


async def test_renaming_merges_the_new_profile() -> None:
    ada = {"Authorization": "Bearer 1"}  # what the user resolver reads

    called = await api.call("rename_user", {"name": "Ada"}, headers=ada, effects=True)

    assert called.merge == [{"context": "user", "slot": "current_user", "value": called.result}]
    assert await api.fetch_context("user", headers=ada) == {"current_user": called.result}
