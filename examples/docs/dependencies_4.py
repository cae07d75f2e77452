# file: examples/docs/dependencies_4.py
import httpx

from examples.docs.dependencies_2 import app, get_settings


async def test_greet_with_other_settings() -> None:
    # Overrides work exactly as for a FastAPI route, on every transport.
    app.dependency_overrides[get_settings] = lambda: {"greeting": "Hi"}
    try:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(
                "/api/call/greet", json={"name": "Ada"}, headers={"X-API-Key": "secret"}
            )
        assert response.json() == {"result": "Hi, Ada!"}
    finally:
        app.dependency_overrides.clear()
