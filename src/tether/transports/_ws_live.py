"""Live push on a WebSocket: the envelope route `LIVE` and the JSON-RPC method `rpc.live`.

Envelope:

```
-> {"uuid": u, "route": "LIVE", "payload": {"contexts": [...], "since": "..."?}}
<- {"uuid": u, "status": 200, "headers": {"stream": "ready"}, "payload": {"id", "topics"}}
<- {"uuid": u, "status": 200, "headers": {"stream": "item"}, "payload": <push>}
-> {"uuid": u, "route": "CANCEL"}
<- {"uuid": u, "status": 200, "headers": {"stream": "cancelled"}, "payload": null}
```

JSON-RPC:

```
-> {"jsonrpc": "2.0", "id": 7, "method": "rpc.live", "params": {"contexts": [...], "since": ...}}
<- {"jsonrpc": "2.0", "id": 7, "result": {"subscription": 7, "id": <resume token>}}
<- {"jsonrpc": "2.0", "method": "subscription", "params": {"subscription": 7, "result": <push>}}
-> {"jsonrpc": "2.0", "id": 8, "method": "rpc.cancel", "params": {"subscription": 7}}
```

`contexts` is a list of context names or `{"context": name, "params": {...}}` objects (see
`LiveHub.topics`); `since` is the last entry id the client saw: what it missed comes
first, in order, or one `{"id", "resync": true}` push. A push is `{"id", "invalidate",
"merge"}`. When the hub ends a subscription (the server stops its feed) the client gets
`{"stream": "end"}` (envelope) or a notification with `{"subscription": 7, "end": "closed"}`.

A subscription holds no task: `LiveHub.subscribe` (the gate, `auth=`, the replay) runs in
the connection's worker pool, and afterwards the hub's feed puts each push straight into
the connection's outbox. When the outbox is full (the client does not read), the
connection is closed with 1013. Live subscriptions count toward `max_subscriptions`; they
are in `conn.pending` (envelope) or `conn.rpc_subscriptions` (JSON-RPC) while open, and
closing the connection closes them all (`close_all`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..context import CallContext
from ..errors import BadRequest, Conflict, TetherError, ValidationFailed
from ..live import resync_payload
from ._json_out import dumps
from ._jsonrpc_responses import RESPONSE_HEAD, tether_error_response
from ._ws_envelope import (
    LIVE,
    encode_uuid,
    error_reply,
    headed_reply,
    item_reply,
    scope_with_headers,
    valid_uuid,
)

if TYPE_CHECKING:
    from starlette.types import Scope

    from ..live import LiveSubscription, Topic
    from ._ws_connection import Connection

__all__ = (
    "LIVE",
    "LIVE_METHOD",
    "LIVE_OVERFLOW_CODE",
    "LiveSocketSubscription",
    "close_all",
    "start_envelope_live",
    "start_jsonrpc_live",
)


LIVE_METHOD = "rpc.live"
"""The JSON-RPC method that opens a live subscription."""
LIVE_OVERFLOW_CODE = 1013
"""Close code of a socket whose outgoing queue is full when a push arrives."""
_OVERFLOW_REASON = "Live subscriber fell behind"
_PAYLOAD_KEYS = frozenset(("contexts", "since"))
_NOTIFICATION_HEAD = b'{"jsonrpc":"2.0","method":"subscription","params":{"subscription":'


class LiveSocketSubscription:
    """One live subscription on a socket: the hub's sink, and what `CANCEL` cancels.

    Pushes that arrive while it is being set up (the replay) wait here until the ready
    message is out; past the hub's queue size they collapse into one `resync`. Afterwards
    each push goes straight into the connection's outbox.
    """

    __slots__ = (
        "_counted",
        "_held",
        "_resync",
        "cancelled",
        "conn",
        "envelope",
        "key",
        "key_json",
        "limit",
        "subscription",
    )

    def __init__(self, conn: Connection, key: Any, key_json: bytes, *, envelope: bool) -> None:
        self.conn = conn
        """The connection it pushes to."""
        self.key = key
        """The envelope uuid or the JSON-RPC id that names it."""
        # A copy: orjson's output keeps a 4 KB buffer, too much to hold per subscription.
        self.key_json = bytes(memoryview(key_json))
        self.envelope = envelope
        """True for the envelope dialect, False for JSON-RPC."""
        self.limit = conn.handle.live.settings.subscriber_queue
        self.subscription: LiveSubscription | None = None
        """The hub's subscription, once admitted."""
        self.cancelled = False
        """Cancelled by the client, or closed with the connection."""
        self._held: list[bytes] | None = []
        self._resync: str | None = None
        self._counted = True

    def _message(self, payload: bytes) -> bytes:
        if self.envelope:
            return item_reply(self.key_json, payload)
        # Made for each push, not kept: an idle subscription holds no message head.
        return b"".join((_NOTIFICATION_HEAD, self.key_json, b',"result":', payload, b"}}"))

    # -- the sink (called by the hub's feed; never blocks) --------------------------------

    def push(self, entry_id: str, payload: bytes) -> bool:
        """Put one push into the outbox; False when the outbox is full (the client does not read)."""
        held = self._held
        if held is not None:
            if self._resync is not None or len(held) >= self.limit:
                # Too much was missed to replay: the client refetches instead.
                held.clear()
                self._resync = entry_id
            else:
                held.append(payload)
            return True
        outbox = self.conn.outbox
        queued = outbox._messages
        if queued is not None and len(queued) >= outbox.capacity:
            return False
        outbox.put(self._message(payload))
        return True

    def end(self, reason: str) -> None:
        """The hub ended the subscription: close the socket (overflow) or tell the client."""
        self._forget()
        conn = self.conn
        if reason == "overflow":
            conn.close(LIVE_OVERFLOW_CODE, _OVERFLOW_REASON)
        elif self.envelope:
            conn.outbox.put(headed_reply(self.key_json, 200, {"stream": "end"}, None))
        else:
            conn.outbox.put(_NOTIFICATION_HEAD + self.key_json + b',"end":' + dumps(reason) + b"}}")

    # -- the client's side -----------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel it (`CANCEL` or `rpc.cancel`); the envelope dialect answers `cancelled`."""
        if self.cancelled:
            return
        self.cancelled = True
        subscription = self.subscription
        if subscription is None:
            return  # still being set up: its worker finishes the cancellation
        subscription.close()
        self._forget()
        if self.envelope:
            self.conn.outbox.put(headed_reply(self.key_json, 200, {"stream": "cancelled"}, None))

    def close(self) -> None:
        """Close it silently (the connection is closing)."""
        self.cancelled = True
        if self.subscription is not None:
            self.subscription.close()
        self._forget()

    def _forget(self) -> None:
        conn = self.conn
        if self.envelope:
            if conn.pending.get(self.key) is self:
                del conn.pending[self.key]
        elif conn.rpc_subscriptions.get(self.key) is self:
            del conn.rpc_subscriptions[self.key]
        if self._counted:
            self._counted = False
            conn.subscriptions -= 1

    async def open(self, scope: Scope, topics: list[Topic], since: str | None) -> None:
        """Subscribe (in a worker of the connection), then answer ready and send what was held."""
        conn = self.conn
        try:
            subscription = await conn.handle.live.subscribe(
                CallContext("websocket", scope),
                topics,
                self,
                since=since,
                dependency_cache=conn.seed,
            )
        except Exception as exc:
            self._forget()
            self.cancelled = True
            error = conn.handle.invoker.map_exception(exc, "live subscription")
            if self.envelope:
                conn.outbox.put(error_reply(self.key_json, error))
            else:
                conn.outbox.put(tether_error_response(self.key_json, error))
            return
        except BaseException:
            self._forget()
            raise
        self.subscription = subscription
        if subscription.closed:  # the hub ended it meanwhile (and said so)
            return
        if self.cancelled:  # cancelled while it was being set up
            subscription.close()
            self._forget()
            if self.envelope:
                conn.outbox.put(headed_reply(self.key_json, 200, {"stream": "cancelled"}, None))
            else:
                conn.outbox.put(self._ready(subscription, topics, since))
            return
        outbox = conn.outbox
        outbox.put(self._ready(subscription, topics, since))
        held = self._held or []
        self._held = None
        if self._resync is not None:
            held = [resync_payload(self._resync)]
            self._resync = None
        for payload in held:
            if not self.push("", payload):
                subscription.close()
                self.end("overflow")
                return

    def _ready(
        self, subscription: LiveSubscription, topics: list[Topic], since: str | None
    ) -> bytes:
        token = subscription.last_id or since
        if self.envelope:
            payload = {"id": token, "topics": [topic.to_dict() for topic in topics]}
            return headed_reply(self.key_json, 200, {"stream": "ready"}, payload)
        return (
            RESPONSE_HEAD
            + self.key_json
            + b',"result":{"subscription":'
            + self.key_json
            + b',"id":'
            + dumps(token)
            + b"}}"
        )


def _read_request(conn: Connection, params: Any, where: str) -> tuple[list[Topic], str | None]:
    """Read `{"contexts": [...], "since": "..."?}` into topics and the resume token.

    Raises:
        ValidationFailed: not that object, unknown members, a `since` that is no string,
            or topics the hub refuses.
        NotFound: an unknown context.
    """
    if type(params) is not dict:
        raise ValidationFailed.from_errors(
            [
                {
                    "loc": [where],
                    "msg": 'Expected an object such as {"contexts": ["todos"], "since": "..."}',
                    "type": "dict_type",
                }
            ]
        )
    errors = [
        {"loc": [where, key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        for key in params
        if key not in _PAYLOAD_KEYS
    ]
    if "contexts" not in params:
        errors.append({"loc": [where, "contexts"], "msg": "Field required", "type": "missing"})
    since = params.get("since")
    if since is not None and type(since) is not str:
        errors.append(
            {"loc": [where, "since"], "msg": "Input should be a string", "type": "string_type"}
        )
    if errors:
        raise ValidationFailed.from_errors(errors)
    return conn.handle.live.topics(params["contexts"]), since or None


def start_envelope_live(
    conn: Connection, message: dict[str, Any], uuid: Any, uuid_json: bytes
) -> None:
    """Open a live subscription for an envelope `LIVE` request (its uuid is valid and free)."""
    try:
        headers = message.get("headers")
        scope = (
            conn.scope
            if headers is None or headers == {}
            else scope_with_headers(conn.scope, headers)
        )
        topics, since = _read_request(conn, message.get("payload"), "payload")
        conn.check_subscription_room()
    except TetherError as error:
        conn.outbox.put(error_reply(uuid_json, error))
        return
    live = LiveSocketSubscription(conn, uuid, uuid_json, envelope=True)
    conn.pending[uuid] = live
    conn.subscriptions += 1
    conn.pool.start(live.open, scope, topics, since)


def start_jsonrpc_live(conn: Connection, message: dict[str, Any]) -> bool:
    """Open a live subscription for `rpc.live`; False leaves a malformed request to the dispatcher.

    A notification (no `id`) is dropped: a subscription nobody can name cannot be used.
    """
    if "id" not in message:
        return True
    id_value = message["id"]
    if not valid_uuid(id_value):
        if id_value is not None and type(id_value) is not float:
            return False  # not a JSON-RPC id at all: Invalid Request, from the dispatcher
        error: TetherError = BadRequest(
            f"{LIVE_METHOD} needs an id that is a string or an integer: it names the subscription",
            details={"field": "id"},
        )
        conn.outbox.put(tether_error_response(dumps(id_value), error))
        return True
    id_json = encode_uuid(id_value)
    try:
        if id_value in conn.rpc_subscriptions:
            raise Conflict(f"Subscription {id_value!r} is already open", details={"id": id_value})
        topics, since = _read_request(conn, message.get("params"), "params")
        conn.check_subscription_room()
    except TetherError as failure:
        conn.outbox.put(tether_error_response(id_json, failure))
        return True
    live = LiveSocketSubscription(conn, id_value, id_json, envelope=False)
    conn.rpc_subscriptions[id_value] = live
    conn.subscriptions += 1
    conn.pool.start(live.open, conn.scope, topics, since)
    return True


def close_all(conn: Connection) -> None:
    """Close every live subscription of a connection that is closing."""
    for live in [*conn.pending.values(), *conn.rpc_subscriptions.values()]:
        if isinstance(live, LiveSocketSubscription):
            live.close()
