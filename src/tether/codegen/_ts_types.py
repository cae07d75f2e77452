"""types.ts: the schema document's named types as TypeScript interfaces and aliases.

Object types are interfaces in their OUTPUT shape: every field is present (pydantic serializes
defaults; only a TypedDict's keys that were never set stay absent: `output_optional`),
computed fields included (`readonly`). A type whose INPUT shape differs (a field with
a default is optional, computed fields are dropped, a field is sent under another name, or a type it holds differs) and that is
used in an input position also gets `Name.Input`, an interface in a type-only namespace merged
with `Name`. A parametrized generic model (`Page_Todo_`) is written as its origin with its
arguments (`Page<Todo>`; `Page.Input<Todo.Input>` in input position).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ._ts_names import Namespace, key, string

FORMAT_ALIASES: dict[str, str] = {
    "date-time": "DateTime",
    "date": "DateOnly",
    "time": "Time",
    "duration": "Duration",
    "uuid": "UUID",
    "decimal": "Decimal",
}
"""The string alias each string format is written as (a user type of the name wins)."""

_FORMAT_DOCS: dict[str, str] = {
    "date-time": "An ISO 8601 date and time, such as `2026-01-31T12:00:00Z`.",
    "date": "An ISO 8601 date, such as `2026-01-31`.",
    "time": "An ISO 8601 time of day, such as `12:00:00`.",
    "duration": "An ISO 8601 duration, such as `PT1H30M`.",
    "uuid": "A UUID in its canonical text form.",
    "decimal": "A decimal number, as a string to keep its precision.",
}


def doc_comment(text: str | None, indent: str = "", *, deprecated: bool = False) -> list[str]:
    """Return `text` as the lines of a `/** ... */` comment (none when empty)."""
    lines = (text or "").strip().replace("*/", "*\\/").splitlines()
    if deprecated:
        lines += ([""] if lines else []) + ["@deprecated"]
    if not lines:
        return []
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    body = [f"{indent} *{' ' + line if line.strip() else ''}" for line in lines]
    return [f"{indent}/**", *body, f"{indent} */"]


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every type object inside a document type (itself included)."""
    if isinstance(value, dict):
        if "kind" in value:
            yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


class TypeScriptTypes:
    """Names and renders the document's types; `module()` is the text of types.ts."""

    def __init__(self, types: Mapping[str, Any], names: Namespace) -> None:
        self.types = types
        # Every named type keeps its document name unless TypeScript reserves it.
        self.names = {name: names.claim(name) for name in sorted(types) if not self.hidden(name)}
        self.aliases = dict(FORMAT_ALIASES)
        self.inputs: set[str] = set()  # names of types with a distinct `Name.Input`
        self.used_formats: set[str] = set()

    def hidden(self, name: str) -> bool:
        """Whether a definition is written as its generic origin rather than by its own name."""
        return "generic" in self.types[name]

    def claim_aliases(self, names: Namespace) -> None:
        """Name the string-format aliases (after the user types: theirs win, `DateTime_`)."""
        self.aliases = {fmt: names.claim(alias) for fmt, alias in sorted(FORMAT_ALIASES.items())}

    # -- input shapes ---------------------------------------------------------------------

    def refs(self, value: Any) -> set[str]:
        """Names of the definitions a document type refers to, directly."""
        return {t["name"] for t in walk(value) if t["kind"] == "ref" and t["name"] in self.types}

    def find_inputs(self, positions: Iterable[Any]) -> None:
        """Mark the types reachable from input `positions` whose input shape differs."""
        reachable: set[str] = set()
        pending = sorted(set().union(*(self.refs(p) for p in positions)))
        while pending:
            name = pending.pop()
            if name in reachable:
                continue
            reachable.add(name)
            definition = self.types[name]
            if "generic" in definition:
                pending += sorted(
                    self.refs(definition["generic"]) | {definition["generic"]["origin"]}
                )
            else:
                pending += sorted(self.refs(definition.get("fields", {})))
        differs = {
            name
            for name in reachable
            if self.types[name]["kind"] == "object"
            and "generic" not in self.types[name]
            and any(
                not field["required"] or field.get("read_only") or "input_name" in field
                for field in self.types[name]["fields"].values()
            )
        }
        changed = True
        while changed:  # a type that holds a differing type differs too
            changed = False
            for name in sorted(reachable - differs):
                definition = self.types[name]
                if definition["kind"] != "object" or "generic" in definition:
                    continue
                if any(self.differs(f["type"], differs) for f in definition["fields"].values()):
                    differs.add(name)
                    changed = True
        self.inputs = differs

    def differs(self, value: Any, differs: set[str]) -> bool:
        """Whether a document type's input rendering differs from its output rendering."""
        for t in walk(value):
            if t["kind"] != "ref" or t["name"] not in self.types:
                continue
            definition = self.types[t["name"]]
            if t["name"] in differs:
                return True
            if "generic" in definition:
                generic = definition["generic"]
                if generic["origin"] in differs or self.differs(generic["args"], differs):
                    return True
        return False

    # -- rendering ------------------------------------------------------------------------

    def render(self, t: Mapping[str, Any], *, input: bool, params: tuple[str, ...] = ()) -> str:
        """Return the TypeScript of document type `t` (input or output shape)."""
        kind = t["kind"]
        if kind == "string":
            fmt = t.get("format")
            if fmt in self.aliases:
                self.used_formats.add(fmt)
                return self.aliases[fmt]
            return "string"
        if kind in ("integer", "number"):
            return "number"
        if kind == "boolean":
            return "boolean"
        if kind == "null":
            return "null"
        if kind == "any":
            return "unknown"
        if kind == "literal":
            return literal(t["value"])
        if kind == "typevar":
            return t["name"] if t["name"] in params else "unknown"
        if kind == "array":
            item = self.render(t["items"], input=input, params=params)
            return f"({item})[]" if needs_parens(item) else f"{item}[]"
        if kind == "tuple":
            return (
                "["
                + ", ".join(self.render(i, input=input, params=params) for i in t["items"])
                + "]"
            )
        if kind == "map":
            return "{ [key: string]: " + self.render(t["values"], input=input, params=params) + " }"
        if kind == "union":
            members: list[str] = []
            for member in t["of"]:
                text = self.render(member, input=input, params=params)
                tag = self.required_tag(member, t.get("discriminator")) if input else None
                if tag is not None:
                    text = f"({text} & {{ {tag} }})"
                if text not in members:
                    members.append(text)
            if "unknown" in members:
                return "unknown"
            return " | ".join(members) if members else "never"
        if kind == "ref":
            return self.ref(t["name"], input=input, params=params)
        return "unknown"

    def required_tag(self, member: Mapping[str, Any], tag: str | None) -> str | None:
        """`kind: "circle"` when a discriminated union's variant gives its tag a default.

        pydantic needs the tag to pick the variant, so in input position it is required even
        though `Circle.Input` (used elsewhere) may leave it out.
        """
        if tag is None or member.get("kind") != "ref" or member.get("name") not in self.types:
            return None
        field = self.types[member["name"]].get("fields", {}).get(tag)
        if field is None or field["required"] or field["type"].get("kind") != "literal":
            return None
        return f"{key(tag)}: {literal(field['type']['value'])}"

    def ref(self, name: str, *, input: bool, params: tuple[str, ...]) -> str:
        """Return a reference to named type `name`."""
        if name not in self.types:
            return "unknown"
        definition = self.types[name]
        if "generic" in definition:
            origin = definition["generic"]["origin"]
            args = [
                self.render(a, input=input, params=params) for a in definition["generic"]["args"]
            ]
            return self.name_of(origin, input=input) + "<" + ", ".join(args) + ">"
        text = self.name_of(name, input=input)
        own = definition.get("params", [])
        if own:
            # A bare origin: inside a generic of the same variables it is itself (pydantic
            # writes `Page[T]` inside `Page` as `Page`), elsewhere its variables are unknown.
            args = [p if p in params else "unknown" for p in own]
            text += "<" + ", ".join(args) + ">"
        return text

    def name_of(self, name: str, *, input: bool) -> str:
        """The TypeScript name of a definition (its `.Input` in input position, if it differs)."""
        return self.names[name] + (".Input" if input and name in self.inputs else "")

    def definitions(self) -> list[str]:
        """The declarations of every named type, sorted by name, each preceded by a blank line."""
        out: list[str] = []
        for name in sorted(self.names, key=lambda n: self.names[n]):
            definition = self.types[name]
            ts_name = self.names[name]
            out.append("")
            out += doc_comment(definition.get("description"))
            if definition["kind"] == "enum":
                values = [literal(v) for v in definition["values"]]
                out.append(f"export type {ts_name} = {' | '.join(values) if values else 'never'};")
                continue
            params = tuple(definition.get("params", []))
            type_params = "<" + ", ".join(params) + ">" if params else ""
            out += self.interface(
                f"export interface {ts_name}{type_params}", definition, "", input=False
            )
            if name in self.inputs:
                out.append(f"export namespace {ts_name} {{")
                out += doc_comment(
                    f"What `{ts_name}` is when sent: fields with defaults may be left out.", "  "
                )
                out += self.interface(
                    f"  export interface Input{type_params}", definition, "  ", input=True
                )
                out.append("}")
        return out

    def interface(
        self, head: str, definition: Mapping[str, Any], indent: str, *, input: bool
    ) -> list[str]:
        """An interface declaration of an object definition's fields."""
        params = tuple(definition.get("params", []))
        lines: list[str] = []
        for field, entry in definition["fields"].items():
            if input and entry.get("read_only"):
                continue
            lines += doc_comment(entry.get("description"), indent + "  ")
            if input:
                optional = "" if entry["required"] else "?"
            else:
                optional = "?" if entry.get("output_optional") else ""
            readonly = "readonly " if not input and entry.get("read_only") else ""
            rendered = self.render(entry["type"], input=input, params=params)
            name = entry.get("input_name", field) if input else field
            lines.append(f"{indent}  {readonly}{key(name)}{optional}: {rendered};")
        if not lines:
            return [f"{head} {{}}"]
        return [f"{head} {{", *lines, f"{indent}}}"]

    def alias_declarations(self) -> list[str]:
        """The string-format aliases used, each with its doc comment."""
        out: list[str] = []
        for fmt in sorted(self.used_formats, key=lambda f: self.aliases[f]):
            out.append("")
            out += doc_comment(_FORMAT_DOCS.get(fmt))
            out.append(f"export type {self.aliases[fmt]} = string;")
        return out


def literal(value: Any) -> str:
    """Return a JSON scalar as a TypeScript literal type."""
    if isinstance(value, str):
        return string(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return string(str(value))


def needs_parens(text: str) -> bool:
    """Whether a rendered type must be parenthesized as an array's item (a top-level union)."""
    depth = 0
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':  # a string literal may hold any character: skip it
            index += 1
            while text[index] != '"':
                index += 2 if text[index] == "\\" else 1
        elif char in "<([{":
            depth += 1
        elif char in ">)]}":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        index += 1
    return False
