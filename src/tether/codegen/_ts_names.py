"""TypeScript names: identifiers from Python names, cases, quoting, and one namespace of them."""

from __future__ import annotations

import json
import re

_WORDS = re.compile(r"[A-Za-z0-9]+")
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")

RESERVED = frozenset(
    """
    abstract accessor any as asserts async await bigint boolean break case catch class const
    constructor continue debugger declare default delete do else enum export extends false
    finally for from function get global if implements import in infer instanceof interface
    is keyof let module namespace never new null number object of out package private
    protected public readonly require return satisfies set static string super switch symbol
    this throw true try type typeof undefined unique unknown var void while with yield
    """.split()
)
"""Words that cannot (or should not) name a type or a function in TypeScript."""

GLOBALS = frozenset(
    """
    AbortSignal Array ArrayBuffer AsyncIterable AsyncIterator Awaited BigInt Boolean Date Error
    Exclude Extract Function Headers Iterable JSON Map Math NonNullable Number Object Omit
    Parameters Partial Pick Promise PromiseLike Readonly ReadonlyArray ReadonlyMap ReadonlySet
    Record RegExp Request Required Response ReturnType Set String Symbol URL Uint8Array WebSocket
    QueryClient
    """.split()
)
"""Global and library names the generated files use: a user type never shadows them."""

RUNTIME = frozenset(
    """
    Api CacheKernel CallOptions ClientOptions ContextMeta ContextResult Effects ErrorCode
    InvalidateEntry LivePush LiveStatus MergeEntry MutationResult OperationKind OperationMeta
    Outcome Params SchemaMeta Snapshot Status StreamResult Target TetherClient TetherError
    TetherProvider commandMutationOptions contextQueryOptions createApi createTetherClient
    followLive isTetherError queryQueryOptions schema tetherQueryKey useTetherClient
    useTetherContext useTetherMutation useTetherQuery useTetherStream
    """.split()
)
"""Names the generated files export or import from the runtime."""


def words(name: str) -> list[str]:
    """Split a Python name (`add_todo`, `math.sum`, `users/get`) into its words."""
    return _WORDS.findall(name)


def pascal(name: str) -> str:
    """Return `name` in PascalCase (`add_todo` -> `AddTodo`), a valid identifier."""
    text = "".join(word[:1].upper() + word[1:] for word in words(name))
    return _safe(text)


def camel(name: str) -> str:
    """Return `name` in camelCase (`math.sum` -> `mathSum`), a valid identifier."""
    parts = words(name)
    if not parts:
        return "_"
    text = parts[0][:1].lower() + parts[0][1:]
    text += "".join(word[:1].upper() + word[1:] for word in parts[1:])
    return _safe(text)


def _safe(text: str) -> str:
    if not text or text[0].isdigit():
        return "_" + text
    return text


def is_identifier(name: str) -> bool:
    """Whether `name` may stand unquoted as a property key."""
    return bool(_IDENTIFIER.match(name))


def string(value: str) -> str:
    """Return `value` as a TypeScript string literal (ASCII, double quotes)."""
    return json.dumps(value, ensure_ascii=True)


def key(name: str) -> str:
    """Return `name` as a property key: bare when it is an identifier, else quoted."""
    return name if is_identifier(name) else string(name)


class Namespace:
    """One set of top-level names: each request gets a free name, suffixed with `_` if taken."""

    def __init__(self, taken: frozenset[str] = RESERVED | GLOBALS | RUNTIME) -> None:
        self.taken: set[str] = set(taken)

    def claim(self, wanted: str) -> str:
        """Return `wanted`, or `wanted_`, `wanted__`... (the first one free), and take it."""
        name = wanted
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name
