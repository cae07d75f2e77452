"""tether's own schema document: every named type, operation and context of a Tether.

`tether schema tether --app module:app` prints it (see docs/schema.md). Types are built by
introspecting pydantic models and annotations directly (not from JSON Schema), so a client
generator reads one small closed vocabulary of type kinds. The document is deterministic:
`schema_json` gives byte-identical output for the same code, in any process.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import re
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import typing_extensions
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..auth import describe_policy
from .openapi import cache_extension, operation_errors

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..registry import Tether

__all__ = ("SCHEMA_VERSION", "schema_document", "schema_json")

SCHEMA_VERSION = "1"
"""The version of tether's schema document format (the document's `tether` member)."""

_FORMATS: dict[type, str] = {
    datetime.datetime: "date-time",
    datetime.date: "date",
    datetime.time: "time",
    datetime.timedelta: "duration",
    uuid.UUID: "uuid",
    decimal.Decimal: "decimal",
}
_SCALARS: dict[type, str] = {str: "string", bytes: "string", int: "integer", float: "number"}
_ARRAYS = (list, set, frozenset, Sequence, typing.Sequence, typing.AbstractSet)
_NOT_IDENTIFIER = re.compile(r"\W")
_KEY_QUALIFIERS = {
    typing.Required,
    typing.NotRequired,
    typing_extensions.Required,
    typing_extensions.NotRequired,
    typing_extensions.ReadOnly,
}


def _class_name(cls: type) -> str:
    # A generic model's name reads `Page[Todo]`: `Page_Todo_` is a valid identifier.
    return _NOT_IDENTIFIER.sub("_", cls.__name__)


def _discriminator(meta: Any) -> str | None:
    """The tag field of a `Field(discriminator=...)` or `Discriminator(...)` (None: no tag)."""
    value = getattr(meta, "discriminator", None)
    if isinstance(value, str):
        return value
    inner = getattr(value, "discriminator", None)
    return inner if isinstance(inner, str) else None


class _Types:
    """Renders annotations as document types, collecting every named class on the way."""

    def __init__(self) -> None:
        self.classes: list[type] = []
        self.names: dict[type, str] = {}
        # The type variables of the generic origin whose definition is being rendered.
        self.typevars: tuple[Any, ...] = ()
        # Comparing shapes: a ref is its class, a parametrized model its origin and arguments.
        self.canonical = False

    def name_classes(self) -> None:
        """Give every collected class a stable, unique name (module-suffixed on a clash)."""
        by_name: dict[str, list[type]] = {}
        for cls in self.classes:
            by_name.setdefault(_class_name(cls), []).append(cls)
        for name, classes in by_name.items():
            if len(classes) == 1:
                self.names[classes[0]] = name
                continue
            for index, cls in enumerate(classes):
                suffix = _NOT_IDENTIFIER.sub("_", cls.__module__)
                qualified = f"{name}_{suffix}"
                if sum(_NOT_IDENTIFIER.sub("_", c.__module__) == suffix for c in classes) > 1:
                    qualified = f"{qualified}_{index + 1}"  # same module: in order of first use
                self.names[cls] = qualified

    def ref(self, cls: type) -> dict[str, Any]:
        if cls not in self.classes:
            self.classes.append(cls)
            self.definition(cls)  # collect what it refers to, depth first
        if self.canonical:
            metadata = getattr(cls, "__pydantic_generic_metadata__", None)
            if metadata is not None and metadata["origin"] is not None:
                args = [self.of(arg) for arg in metadata["args"]]
                return {"kind": "instance", "origin": metadata["origin"], "args": args}
            if metadata is not None and metadata["parameters"]:
                # A bare origin is itself with its own variables (pydantic's `Box[T]` is `Box`).
                args = [self.of(param) for param in metadata["parameters"]]
                return {"kind": "instance", "origin": cls, "args": args}
            return {"kind": "ref", "class": cls}
        return {"kind": "ref", "name": self.names.get(cls, "")}

    def field_type(self, info: FieldInfo) -> dict[str, Any]:
        annotation = info.annotation
        rendered = self.of(annotation)
        discriminator = _discriminator(info)
        if discriminator is not None and rendered["kind"] == "union":
            rendered["discriminator"] = discriminator
        return rendered

    def of(self, annotation: Any) -> dict[str, Any]:
        """Return the document type of `annotation`."""
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            rendered = self.of(args[0])
            for meta in args[1:]:
                found = _discriminator(meta)
                if found is not None and rendered["kind"] == "union":
                    rendered["discriminator"] = found
            return rendered
        if origin in _KEY_QUALIFIERS:  # a TypedDict key's `NotRequired[T]`: `required` says it
            return self.of(args[0])
        if annotation is None or annotation is type(None):
            return {"kind": "null"}
        if annotation is Any or annotation is object:
            return {"kind": "any"}
        if origin is typing.Literal:
            literals = [{"kind": "literal", "value": _plain(value)} for value in args]
            return literals[0] if len(literals) == 1 else {"kind": "union", "of": literals}
        if origin is typing.Union or origin is types.UnionType:
            return {"kind": "union", "of": [self.of(arg) for arg in args]}
        if origin is not None and isinstance(origin, type):
            if issubclass(origin, BaseModel):
                return self.ref(annotation)
            if issubclass(origin, tuple):
                if len(args) == 2 and args[1] is Ellipsis:
                    return {"kind": "array", "items": self.of(args[0])}
                return {"kind": "tuple", "items": [self.of(arg) for arg in args]}
            if issubclass(origin, Mapping):
                return {"kind": "map", "values": self.of(args[1]) if args else {"kind": "any"}}
            if issubclass(origin, list | set | frozenset | Sequence | typing.AbstractSet):
                return {"kind": "array", "items": self.of(args[0]) if args else {"kind": "any"}}
            return {"kind": "any"}
        if isinstance(annotation, typing_extensions.TypeAliasType):
            return self.of(annotation.__value__)
        if isinstance(annotation, typing.TypeVar) and annotation in self.typevars:
            return {"kind": "typevar", "name": annotation.__name__}
        if not isinstance(annotation, type):
            return {"kind": "any"}
        if issubclass(annotation, bool):
            return {"kind": "boolean"}
        if issubclass(annotation, enum.Enum) or issubclass(annotation, BaseModel):
            return self.ref(annotation)
        if dataclasses.is_dataclass(annotation) or typing_extensions.is_typeddict(annotation):
            return self.ref(annotation)
        for cls, fmt in _FORMATS.items():
            if issubclass(annotation, cls):
                return {"kind": "string", "format": fmt}
        for cls, kind in _SCALARS.items():
            if issubclass(annotation, cls):
                return {"kind": kind}
        if issubclass(annotation, tuple):
            return {"kind": "array", "items": {"kind": "any"}}
        if issubclass(annotation, Mapping):
            return {"kind": "map", "values": {"kind": "any"}}
        if issubclass(annotation, list | set | frozenset):
            return {"kind": "array", "items": {"kind": "any"}}
        return {"kind": "any"}

    def definition(self, cls: type) -> dict[str, Any]:
        """Return the definition of a named class: an object or an enum."""
        definition: dict[str, Any]
        if issubclass(cls, enum.Enum):
            definition = {"kind": "enum", "values": [_plain(member.value) for member in cls]}
        elif issubclass(cls, BaseModel):
            definition = self.model(cls)
        elif dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls, include_extras=True)
            definition = {
                "kind": "object",
                "fields": {
                    f.name: {
                        "type": self.of(hints[f.name]),
                        "required": f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING,
                    }
                    for f in dataclasses.fields(cls)
                },
            }
        else:  # a TypedDict
            hints = typing.get_type_hints(cls, include_extras=True)
            required: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
            fields = {}
            for name, hint in hints.items():
                # `Required`/`NotRequired` as evaluated win: under `from __future__ import
                # annotations` the class itself cannot see them (it counts every key required).
                qualifier = typing.get_origin(hint)
                if qualifier in _KEY_QUALIFIERS and qualifier is not typing_extensions.ReadOnly:
                    is_required = qualifier in (typing.Required, typing_extensions.Required)
                else:
                    is_required = name in required
                entry = {"type": self.of(hint), "required": is_required}
                if not is_required:  # serialized as given: a key never set stays absent
                    entry["output_optional"] = True
                fields[name] = entry
            definition = {"kind": "object", "fields": fields}
        doc = cls.__doc__ if issubclass(cls, BaseModel | enum.Enum) else None
        if doc and doc not in (BaseModel.__doc__, enum.Enum.__doc__) and not _generated_doc(cls):
            definition["description"] = inspect.cleandoc(doc)
        return definition

    def model(self, cls: type[BaseModel]) -> dict[str, Any]:
        """Return a pydantic model's definition: its fields, and its generic origin if any."""
        metadata = cls.__pydantic_generic_metadata__
        outer = self.typevars
        # A generic model's own type variables (an origin's, or a partial one's) render as such;
        # any other type variable is `any`, whichever definition it is first met from.
        self.typevars = tuple(metadata["parameters"])
        try:
            definition: dict[str, Any] = {"kind": "object", "fields": self.model_fields(cls)}
            origin = metadata["origin"]
            if origin is None and metadata["parameters"]:
                definition["params"] = [param.__name__ for param in metadata["parameters"]]
            elif origin is not None:
                generic = self.generic(cls)
                if generic is not None:
                    definition["generic"] = generic
        finally:
            self.typevars = outer
        return definition

    def model_fields(self, cls: type[BaseModel]) -> dict[str, Any]:
        """Return a model's fields by wire name, computed (read-only) fields last."""
        fields: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            if info.exclude:
                continue
            alias = info.serialization_alias or info.alias or name
            entry: dict[str, Any] = {"type": self.field_type(info), "required": info.is_required()}
            validation = info.validation_alias if isinstance(info.validation_alias, str) else None
            if (validation or info.alias or name) != alias:  # sent under another name
                entry["input_name"] = validation or info.alias or name
            if info.description:
                entry["description"] = info.description
            fields[alias] = entry
        for name, computed in cls.model_computed_fields.items():
            entry = {"type": self.of(computed.return_type), "required": True, "read_only": True}
            if computed.description:
                entry["description"] = computed.description
            fields[computed.alias or name] = entry
        return fields

    def generic(self, instance: type[BaseModel]) -> dict[str, Any] | None:
        """Return `{"origin", "args"}` of a parametrized model, or None where it cannot be said.

        It is said only when the origin's fields, its type variables replaced by the
        arguments, are exactly the parametrized model's fields (so `Page<Todo>` is `Page_Todo_`).
        """
        metadata = instance.__pydantic_generic_metadata__
        origin = metadata["origin"]
        args: tuple[Any, ...] = metadata["args"]
        if origin is None:
            return None
        parameters = tuple(origin.__pydantic_generic_metadata__["parameters"])
        if origin.__pydantic_generic_metadata__["origin"] is not None:
            return None
        if not parameters or len(parameters) != len(args):
            return None
        rendered = [self.of(arg) for arg in args]
        outer, was_canonical = self.typevars, self.canonical
        self.canonical = True
        try:
            bound = {p.__name__: self.of(arg) for p, arg in zip(parameters, args, strict=True)}
            instance_fields = self.model_fields(instance)
            self.typevars = parameters
            origin_fields = self.model_fields(origin)
        finally:
            self.typevars, self.canonical = outer, was_canonical
        if _substitute(origin_fields, bound) != instance_fields:
            return None
        self.ref(origin)  # the origin is a definition of its own
        return {"origin": self.names.get(origin, ""), "args": rendered}


def _substitute(value: Any, bound: Mapping[str, Any]) -> Any:
    """Replace every `{"kind": "typevar", "name": n}` in a document value by `bound[n]`."""
    if isinstance(value, dict):
        if value.get("kind") == "typevar" and value.get("name") in bound:
            return bound[value["name"]]
        return {key: _substitute(item, bound) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, bound) for item in value]
    return value


def _generated_doc(cls: type) -> bool:
    # An Enum without a docstring gets a generated one (`An enumeration.`) on some versions.
    return issubclass(cls, enum.Enum) and "__doc__" not in vars(cls)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _transports(api: Tether) -> list[tuple[str, set[str]]]:
    """Each wire that serves operations once mounted, with the kinds it serves.

    A transport says so itself, with `wire` (its name) and `serves` (the kinds it calls):
    the schema never imports a transport.
    """
    from ..transport import default_transports

    mounted = api.transports if api.app is not None else tuple(default_transports())
    wires: list[tuple[str, set[str]]] = []
    for transport in mounted:
        wire = getattr(transport, "wire", None)
        serves = getattr(transport, "serves", None)
        if isinstance(wire, str) and serves:
            wires.append((wire, set(serves)))
    return wires


def _input(op: Operation, builder: _Types) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, info in op.input_model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        param = alias or op.renamed.get(name, name)
        params[param] = {"type": builder.field_type(info), "required": info.is_required()}
    return params


def _operation(
    op: Operation, api: Tether, builder: _Types, wires: list[tuple[str, set[str]]]
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": op.kind,
        "input": _input(op, builder),
        "output": builder.of(op.output_type),
        "errors": [error.code for error in operation_errors(op)],
        "auth": describe_policy(op.auth),
        "transports": sorted({wire for wire, kinds in wires if op.kind in kinds}),
    }
    document.update(cache_extension(op, api.contexts))
    if op.summary:
        document["summary"] = op.summary
    if op.description:
        document["description"] = op.description
    if op.deprecated:
        document["deprecated"] = True
    return document


def _contexts(api: Tether, operations: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    contexts: dict[str, Any] = {}
    for context in api.contexts:
        params: dict[str, Any] = {}
        for param, required in context.params.items():
            declared = next(
                (
                    operations[op.name]["input"][param]["type"]
                    for op in context.slots
                    if param in operations[op.name]["input"]
                ),
                {"kind": "any"},
            )
            params[param] = {"type": declared, "required": required}
        entry: dict[str, Any] = {
            "slots": [op.name for op in context.slots],
            "params": params,
            "rev": context.rev,
            "per_user": context.per_user,
        }
        if context.description:
            entry["description"] = context.description
        contexts[context.name] = entry
    return contexts


def schema_document(api: Tether, app: FastAPI | None = None) -> dict[str, Any]:
    """Build tether's schema document (version `SCHEMA_VERSION`) of every operation of `api`.

    `app` (default: the app `api` is mounted on) gives the document's title and version.
    """
    app = app if app is not None else api.app
    builder = _Types()
    wires = _transports(api)
    ops = sorted(api, key=lambda op: op.name)
    for op in ops:  # first pass: collect every named class, so that names are assigned once
        _operation(op, api, builder, wires)
    builder.name_classes()
    operations = {op.name: _operation(op, api, builder, wires) for op in ops}
    type_definitions = {builder.names[cls]: builder.definition(cls) for cls in builder.classes}
    errors: dict[str, Any] = {}
    for op in ops:  # a code keeps the wire mapping of the first class that answers with it
        for error in operation_errors(op):
            errors.setdefault(error.code, {"status": error.status, "jsonrpc": error.jsonrpc_code})
    info: dict[str, Any] = {
        "title": app.title if app is not None else "tether",
        "version": app.version if app is not None else "0",
    }
    return {
        "tether": SCHEMA_VERSION,
        "info": info,
        "prefix": api.prefix,
        "types": type_definitions,
        "operations": operations,
        "contexts": _contexts(api, operations),
        "errors": errors,
    }


def schema_json(api: Tether, app: FastAPI | None = None) -> bytes:
    """Return `schema_document` as deterministic JSON: sorted keys, indent 2, trailing newline."""
    document = schema_document(api, app)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
