# file: examples/docs/events_failures.py
from fastapi import Depends, FastAPI

from tether import Conflict, Event, Events, EventSettings, Tether

STOCK = {"pen": 1}
SHIPPING_ATTEMPTS: list[int] = []
REORDERED: list[str] = []


class OrderPlaced(Event):
    order_id: int
    sku: str


class StockRanOut(Event):
    sku: str


# Retries wait 0.05 s, then 0.1 s, 0.2 s... (doubling up to max_backoff, 5 s by default).
api = Tether(prefix="/api", events=EventSettings(backoff=0.05))


@api.command
async def place_order(order_id: int, sku: str, events: Events = Depends()) -> int:
    events.emit(OrderPlaced(order_id=order_id, sku=sku))  # emitted first...
    if STOCK.get(sku, 0) < 1:
        raise Conflict(f"{sku} is out of stock")  # ...but the call failed: nothing is released
    STOCK[sku] -= 1
    return STOCK[sku]


@api.on(OrderPlaced, retries=3)  # up to 3 more attempts, with backoff
async def book_shipping(event: OrderPlaced, events: Events = Depends()) -> None:
    SHIPPING_ATTEMPTS.append(event.order_id)
    if len(SHIPPING_ATTEMPTS) < 3:
        raise ConnectionError("the carrier's API is busy")  # logged, then retried
    if STOCK[event.sku] == 0:
        events.emit(StockRanOut(sku=event.sku))  # a handler may emit events in turn


@api.on(StockRanOut)
async def reorder(event: StockRanOut) -> None:
    REORDERED.append(event.sku)


@api.on(StockRanOut, group="audit", retries=0)
async def audit(event: StockRanOut) -> None:
    raise RuntimeError("the audit log is offline")  # logged, counted, then parked


app = FastAPI()
api.mount(app)
