# file: examples/docs/index_1.py
from fastapi import FastAPI

from tether import Tether

api = Tether(prefix="/api")


@api.query
async def greet(name: str) -> str:
    return f"Hello, {name}!"


app = FastAPI()
api.mount(app)
