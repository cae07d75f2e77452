# file: examples/docs/events_durable.py
import os

from fastapi import Depends, FastAPI

from tether import Event, Events, Tether

OUTBOX = os.environ.get("PAYMENTS_OUTBOX", "sqlite+aiosqlite:///payments-outbox.sqlite3")
RECEIPTS: list[str] = []


class PaymentReceived(Event):
    invoice: str
    cents: int


# Events go to the outbox before the answer; a relay moves them to the broker
# (TETHER_BROKER, or memory:// when it is unset).
api = Tether(prefix="/api", outbox=OUTBOX)


@api.command
async def pay(invoice: str, cents: int, events: Events = Depends()) -> str:
    events.emit(PaymentReceived(invoice=invoice, cents=cents))
    return invoice


@api.on(PaymentReceived)
async def send_receipt(event: PaymentReceived) -> None:
    RECEIPTS.append(f"{event.invoice}: {event.cents / 100:.2f}")  # once per event_id


app = FastAPI()
api.mount(app)  # the relay and the handlers start and stop with the app
