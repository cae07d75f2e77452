"""Commands, queries and events: typed messages, their handlers, the bus and the outbox.

`Command[R]` and `Query[R]` are sent to one handler (`@api.handler`, `await api.send(msg)`);
an `Event` is emitted by a call (`events: Events = Depends()`, `events.emit(...)`),
released when the call succeeds, and handled by every `@api.on(...)` handler of its type.
"""

from .bus import (
    EventBus as EventBus,
    EventSettings as EventSettings,
    EventStats as EventStats,
    SubscriptionOverflow as SubscriptionOverflow,
)
from .emitter import EventLoopError as EventLoopError, Events as Events
from .messages import Command as Command, Event as Event, Message as Message, Query as Query

__all__ = (
    "Command",
    "Event",
    "EventBus",
    "EventLoopError",
    "EventSettings",
    "EventStats",
    "Events",
    "Message",
    "Query",
    "SubscriptionOverflow",
)
