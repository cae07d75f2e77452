"""Type-check tests/typing/services_usage.py with `mypy --strict` and read its reveal_type notes.

mypy runs as a subprocess of this interpreter (`sys.executable -m mypy`), from the
repository root, on the one file given explicitly and with tests/typing/mypy.ini, so the
project's own `[tool.mypy] files = ["src"]` neither narrows nor widens what is checked.
Its cache lives in the temp directory: a warm run takes well under a second.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI

from tests.typing import cache_usage, events_usage, services_usage

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MODULE = HERE / "services_usage.py"
NOTE = re.compile(r'^(?P<path>[^:]+):(?P<line>\d+): note: Revealed type is "(?P<type>.*)"$')


def run_mypy(*target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(HERE / "mypy.ini"),
            "--cache-dir",
            str(Path(tempfile.gettempdir()) / "tether-typing-mypy-cache"),
            "--no-error-summary",
            "--hide-error-context",
            *target,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def revealed(output: str, source: str) -> dict[str, str]:
    """Map each `reveal_type(<expression>)` in `source` to the type mypy revealed for it."""
    lines = source.splitlines()
    result = {}
    for line in output.splitlines():
        match = NOTE.match(line)
        if match is None:
            continue
        code = lines[int(match["line"]) - 1].strip()
        expression = code.removeprefix("reveal_type(").removesuffix(")")
        result[expression] = match["type"]
    return result


def test_services_usage_passes_mypy_strict_and_keeps_method_types() -> None:
    completed = run_mypy(str(MODULE.relative_to(ROOT)))
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    assert errors == []
    assert completed.returncode == 0, completed.stdout + completed.stderr
    types = revealed(completed.stdout, MODULE.read_text())
    assert types == {
        "got": "tests.typing.services_usage.User",
        "found": "list[str]",
        "renamed": "tests.typing.services_usage.User",
        "users.tenant": "str",
        "users.watch(1)": "typing.AsyncIterator[tests.typing.services_usage.User]",
        "admin.purge": "def (id: int) -> typing.Coroutine[Any, Any, None]",
    }


def test_mypy_still_catches_a_misused_service_method() -> None:
    # The markers keep the signature: a wrong argument type is an error, not Any.
    program = "\n".join(
        [
            "from tests.typing.services_usage import Session, Users",
            "async def wrong() -> None:",
            "    users = Users(tenant='acme', db=Session())",
            "    await users.get('1')",
            "    users.search(q=1)",
        ]
    )
    completed = run_mypy("-c", program)
    assert completed.returncode == 1
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    assert errors == [
        '<string>:4: error: Argument 1 to "get" of "Users" has incompatible type "str";'
        ' expected "int"  [arg-type]',
        '<string>:5: error: Argument "q" to "search" of "Users" has incompatible type "int";'
        ' expected "str"  [arg-type]',
    ]


async def test_services_usage_also_runs() -> None:
    got, found, renamed, watched, names = await services_usage.main()
    assert got == services_usage.User(id=1, name="ada")
    assert found == ["a", "acme"]
    assert renamed == services_usage.User(id=1, name="grace")
    assert watched == [services_usage.User(id=1, name="grace")]
    assert names == {}
    app = services_usage.build()
    assert isinstance(app, FastAPI)
    paths = set(app.openapi()["paths"])
    assert "/api/call/admin_users.purge" in paths
    assert "/api/call/users.search" in paths
    assert "/api/call/admin_users.search" not in paths


def test_events_usage_passes_mypy_strict_and_send_is_typed_by_the_message() -> None:
    module = HERE / "events_usage.py"
    completed = run_mypy(str(module.relative_to(ROOT)))
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    assert errors == []
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert revealed(completed.stdout, module.read_text()) == {
        "note": "tests.typing.events_usage.NoteOut",
        "found": "list[tests.typing.events_usage.NoteOut]",
        "note.title": "str",
        'await api.send(CreateNote(title="y"))': "tests.typing.events_usage.NoteOut",
    }


def test_mypy_catches_a_misused_send() -> None:
    # The result is R, not Any; what is not a Command or Query is refused.
    program = "\n".join(
        [
            "from tests.typing.events_usage import CreateNote, NoteCreated, NoteOut, api",
            "async def wrong() -> None:",
            "    count: int = await api.send(CreateNote(title='x'))",
            "    await api.send(NoteCreated(note_id=1))",
            "    await api.send(NoteOut(id=1, title='x'))",
        ]
    )
    completed = run_mypy("-c", program)
    assert completed.returncode == 1
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    assert [line.split(": error: ")[0] for line in errors] == [
        "<string>:3",
        "<string>:4",
        "<string>:5",
    ]
    assert all('Argument 1 to "send" of "Tether"' in line for line in errors)
    assert '"CreateNote"; expected "Command[int] | Query[int]"' in errors[0]
    assert 'incompatible type "NoteCreated"' in errors[1]
    assert 'incompatible type "NoteOut"' in errors[2]


async def test_events_usage_also_runs() -> None:
    note, found, indexed = await events_usage.main()
    assert note == events_usage.NoteOut(id=1, title="x")
    assert found == [note]
    assert indexed == [1, 2]


def test_cache_usage_passes_mypy_strict_and_call_with_effects_is_a_call_result() -> None:
    module = HERE / "cache_usage.py"
    completed = run_mypy(str(module.relative_to(ROOT)))
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    assert errors == []
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert revealed(completed.stdout, module.read_text()) == {
        "added": "tether.effects.CallResult",
        "added.invalidate": "list[dict[str, Any]]",
        "plain": "Any",
        "bundle": "dict[str, Any]",
    }


def test_call_takes_effects_as_a_plain_bool() -> None:
    # A flag known only at run time: the result is the one or the other.
    program = "\n".join(
        [
            "from typing import reveal_type",
            "from tests.typing.cache_usage import api",
            "async def either(wanted: bool) -> None:",
            "    reveal_type(await api.call('rename', {'name': 'x'}, effects=wanted))",
        ]
    )
    completed = run_mypy("-c", program)
    assert [line for line in completed.stdout.splitlines() if ": error:" in line] == []
    assert completed.returncode == 0, completed.stdout


async def test_cache_usage_also_runs() -> None:
    added, plain, bundle = await cache_usage.main()
    assert added == cache_usage.CallResult(
        cache_usage.Todo(id=2, owner_id=5, title="x"),
        [{"context": "todos", "params": {"owner_id": 5}}],
        [],
    )
    assert plain == cache_usage.Profile(name="grace")
    assert bundle == {"todos": [cache_usage.Todo(id=1, owner_id=5, title="milk")]}
    assert cache_usage.api.contexts.get("todos").rev == "2"
