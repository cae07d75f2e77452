# file: examples/docs/security_2.py
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware  # Starlette's CORSMiddleware

from tether import Tether

# The single-page app is served from another origin than the API (https://api.example.com).
FRONTEND_ORIGINS = ["https://app.example.com"]

# CORS does not apply to WebSockets: the socket has its own list.
api = Tether(prefix="/api", allowed_origins=FRONTEND_ORIGINS)


@api.query
async def greet(name: str) -> str:
    return f"Hello, {name}!"


app = FastAPI()
app.add_middleware(
    CORSMiddleware,
    allow_origins=FRONTEND_ORIGINS,  # exact origins: never "*" with credentials
    allow_credentials=True,  # the front-end's fetch may send cookies (credentials: "include")
    allow_methods=["GET", "POST"],
    allow_headers=["Content-Type", "Authorization", "Last-Event-ID"],
)
api.mount(app)
