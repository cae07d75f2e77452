# file: examples/docs/services_testing.py
from examples.docs.services_example import (
    AuditLog,
    Entry,
    Session,
    User,
    Users,
    api,
    app,
    get_db,
)


async def test_rename_calls_get_and_records_an_entry() -> None:
    entries: list[Entry] = []
    users = Users(tenant="acme", db=Session({1: "ada"}), audit=AuditLog(entries))

    renamed = await users.rename(1, "ada lovelace")

    assert renamed == User(id=1, name="ada lovelace", tenant="acme")
    assert entries == [Entry(user_id=1, action="rename")]


def test_search_is_a_plain_method() -> None:
    users = Users(tenant="acme", db=Session({1: "ada", 2: "grace"}))  # no audit: not read

    assert [user.name for user in users.search("a", limit=1)] == ["ada"]


async def test_through_the_api_with_a_fake_database() -> None:
    app.dependency_overrides[get_db] = lambda: Session({7: "fake"})
    try:
        user = await api.call(
            "users.get",
            {"id": 7},
            headers={"X-Tenant": "acme", "Authorization": "Bearer bob-token"},
        )
    finally:
        app.dependency_overrides.clear()

    assert user == User(id=7, name="fake", tenant="acme")
