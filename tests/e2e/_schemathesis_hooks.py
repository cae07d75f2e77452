"""schemathesis hooks and checks for tests/e2e/test_schemathesis.py (via SCHEMATHESIS_HOOKS).

`slow` sleeps, and `ticks` and the demo's `counter` stream, as long as asked, up to a minute and a million items:
values the fuzzer draws inside those bounds are lowered to at most `CAP` before the call,
so each call ends in milliseconds (the demo's `counter`, whose defaults run for days, is
given a short `count` and `every_ms` when a case leaves them out). schemathesis re-checks a case that a `before_call` hook
changed, so a lowered value is still judged valid; values outside the bounds are sent as
drawn, and refused.

`fail` answers the built-in error it is named, 400 to 500, so schemathesis's own
`not_a_server_error` and `positive_data_acceptance` are left out for it; the check
`fail_answers_the_error_it_is_named` below holds it to more: every input its schema allows
is answered with exactly the error of that code, and nothing else (no 422 for a value the
schema allows).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation.modes import GenerationMode

from tether.errors import BUILTIN_ERRORS

CAP = 20
LONG_INPUTS = ("ms", "n", "every_ms", "count")
UPPER_BOUND = 1_000_000


def _lowered(value: Any) -> Any:
    if type(value) in (int, float) and CAP < value <= UPPER_BOUND:
        return CAP
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if CAP < number <= UPPER_BOUND:
            return str(CAP)
    return value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not case.operation.path.endswith(("/slow", "/ticks", "/counter")):
        return
    if case.operation.path.endswith("/counter"):
        # Its defaults count a million numbers, one a second: a case that leaves them out
        # (an empty body, no query string) is given a short count instead.
        if case.method.upper() == "GET" and case.query is None:
            case.query = {}
        if case.method.upper() == "POST" and case.body is None:
            case.body = {}
        for part in (case.body, case.query):
            if isinstance(part, dict):
                part.setdefault("count", CAP)
                part.setdefault("every_ms", CAP)
    for part in (case.body, case.query):
        if isinstance(part, dict):
            for key in LONG_INPUTS:
                if key in part:
                    part[key] = _lowered(part[key])


@schemathesis.check
def fail_answers_the_error_it_is_named(ctx: Any, response: Any, case: Any) -> None:
    """A schema-valid call of `fail` is answered with the error its `code` names."""
    if case.operation.path != "/api/call/fail" or case.method.upper() != "POST":
        return
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    code = case.body.get("code") if isinstance(case.body, dict) else None
    expected = next((error for error in BUILTIN_ERRORS if error.code == code), None)
    if expected is None:
        raise AssertionError(f"fail's schema allows {code!r}, which names no built-in error")
    answered = response.json().get("error", {}).get("code")
    if response.status_code != expected.status or answered != code:
        raise AssertionError(
            f"fail({code!r}) answered {response.status_code} {answered!r},"
            f" not {expected.status} {code!r}"
        )
