# file: examples/docs/jsonrpc_1.py
from fastapi import FastAPI

from tether import NotFound, Tether

api = Tether(prefix="/api")
NOTES: dict[int, str] = {1: "buy milk"}


@api.query
async def subtract(minuend: int, subtrahend: int) -> int:
    """Positional params bind in this order: [42, 23] is minuend=42, subtrahend=23."""
    return minuend - subtrahend


@api.query(name="notes.get")
async def get_note(id: int) -> str:
    """A dotted name is a JSON-RPC method name as it is: "notes.get"."""
    if id not in NOTES:
        raise NotFound(f"No note {id}", details={"id": id})
    return NOTES[id]


@api.command(name="notes.add")
async def add_note(text: str) -> int:
    """Commands and queries are both methods; sent as a notification, nothing is answered."""
    NOTES[len(NOTES) + 1] = text
    return len(NOTES)


app = FastAPI()
api.mount(app)  # POST /api/jsonrpc, GET /api/openrpc.json
