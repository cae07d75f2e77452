"""The SSE transport in memory (asyncio and trio): wire format, errors, limits, OpenAPI."""

from __future__ import annotations


def parse_events(text: str) -> list[dict[str, str]]:
    """Parse a text/event-stream body into its events (comments left out), per the spec."""
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            if event:
                events.append(event)
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
    if event:
        raise AssertionError(f"an event was not terminated by a blank line: {event}")
    return events
