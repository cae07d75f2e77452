# file: examples/docs/http_1.py
from fastapi import BackgroundTasks, FastAPI, Response

from tether import Tether

# Bodies over 64 KiB are refused with 413 before they are read in full.
api = Tether(prefix="/api", max_body_size=64 * 1024)
SENT: list[str] = []


@api.command
async def create_session(name: str, response: Response) -> str:
    """Set a cookie, a header and the status through FastAPI's `Response` parameter."""
    response.set_cookie("session", f"session-of-{name}", httponly=True)
    response.headers["X-Session-Owner"] = name
    response.status_code = 201
    return name


@api.command
async def send_welcome(to: str, tasks: BackgroundTasks) -> None:
    """Queue work that runs after the response is sent."""
    tasks.add_task(SENT.append, f"welcome, {to}")


app = FastAPI()
api.mount(app)
