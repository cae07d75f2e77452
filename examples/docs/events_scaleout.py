# file: examples/docs/events_scaleout.py
import os

from fastapi import Depends, FastAPI

from tether import Event, Events, Tether

HANDLED: list[int] = []


class JobQueued(Event):
    job_id: int
    pid: int


# Tether(broker=...) takes a Broker, "memory://" or "redis://host:port/db".
# Without it, the TETHER_BROKER environment variable chooses, and memory:// is the default:
#     TETHER_BROKER=redis://127.0.0.1:6379/0 uvicorn main:app --workers 4
api = Tether(prefix="/api")


@api.command
async def queue_job(job_id: int, events: Events = Depends()) -> None:
    events.emit(JobQueued(job_id=job_id, pid=os.getpid()))


@api.on(JobQueued, group="workers")  # once per event across every process of the group
async def run_job(event: JobQueued) -> None:
    HANDLED.append(event.job_id)


app = FastAPI()
api.mount(app)
