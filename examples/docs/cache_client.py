# file: examples/docs/cache_client.py
import json
from collections.abc import Iterator
from typing import Any

import httpx


class BundleCache:
    """A client's cache of context bundles, kept fresh by the entries the server sends."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.bundles: dict[tuple[str, str], dict[str, Any]] = {}
        self.params: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, context: str, **params: Any) -> dict[str, Any]:
        """Return the bundle `{slot: value}`, fetched once per context and params."""
        key = (context, json.dumps(params, sort_keys=True))
        if key not in self.bundles:
            response = self.client.get(f"/api/context/{context}", params=params)
            self.bundles[key] = response.json()["result"]
            self.params[key] = params
        return self.bundles[key]

    def apply(self, message: dict[str, Any]) -> None:
        """Apply a call's answer or a push: drop what it invalidates, patch what it merges."""
        if message.get("resync"):  # the server could not replay what was missed
            self.bundles.clear()
            self.params.clear()
            return
        for entry in message.get("invalidate", []):
            for key in self._matching(entry):
                del self.bundles[key], self.params[key]  # refetched on the next get
        for entry in message.get("merge", []):
            for key in self._matching(entry):
                self.bundles[key][entry["slot"]] = entry["value"]

    def _matching(self, entry: dict[str, Any]) -> list[tuple[str, str]]:
        # An entry without params covers every bundle of its context; with params, only
        # the bundles that agree on each of them.
        given = entry.get("params", {})
        return [
            key
            for key, params in self.params.items()
            if key[0] == entry.get("context")
            and all(params.get(name, value) == value for name, value in given.items())
        ]


def follow(
    client: httpx.Client, contexts: list[str], last_id: str | None = None, **params: Any
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield `(event, id, data)` for each message of `GET /api/live`; pass `last_id` to resume."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    query = {"contexts": ",".join(contexts), **params}
    with client.stream("GET", "/api/live", params=query, headers=headers) as response:
        response.raise_for_status()
        event, entry_id, data = "message", "", []
        for line in response.iter_lines():
            if line.startswith(":"):  # a heartbeat
                continue
            if line:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "id":
                    entry_id = value
                elif field == "data":
                    data.append(value)
                continue
            if data:  # a blank line ends a message
                yield event, entry_id, json.loads("\n".join(data))
            event, data = "message", []
