"""Plain FastAPI: `POST /add` with a pydantic body model, answering {"result": a + b}."""

from fastapi import FastAPI
from pydantic import BaseModel


class AddInput(BaseModel):
    a: int
    b: int


class AddOutput(BaseModel):
    result: int


app = FastAPI()


@app.post("/add")
async def add(body: AddInput) -> AddOutput:
    """Add two integers."""
    return AddOutput(result=body.a + body.b)
