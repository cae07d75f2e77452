# file: examples/docs/testing_3.py
import httpx

from examples.docs.testing_1 import create_app


async def test_divide_over_http() -> None:
    transport = httpx.ASGITransport(create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/api/call/divide", json={"a": 1, "b": 0})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BAD_REQUEST"
        response = await client.get("/api/call/divide", params={"a": 3, "b": 2})
        assert response.json() == {"result": 1.5}
