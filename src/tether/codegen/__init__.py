"""The TypeScript client generator: `tether generate --app module:app --out DIR`.

`generate(document, out)` writes a typed client of a schema document (`tether.schema.document`)
into `out`, with the runtime (shipped in this package as TypeScript source) copied beside it.
"""

from .generate import GenerateError as GenerateError, generate as generate, render as render

__all__ = ("GenerateError", "generate", "render")
