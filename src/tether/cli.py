"""The `tether` command: print an app's schema documents, or serve the demo.

```
tether schema openapi --app examples.todo.app:app      # FastAPI's OpenAPI, every operation
tether schema openrpc --app examples.todo.app:app      # the OpenRPC document of JSON-RPC
tether demo [--port 8000]                              # the todo demo on 127.0.0.1
```
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI

from .registry import Tether

__all__ = ("find_tether", "load_app", "main")


def load_app(target: str) -> FastAPI:
    """Import `module:attribute` and return the FastAPI app it names.

    Raises:
        SystemExit: the target cannot be imported or is not a FastAPI app (with a message).
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(
            f"--app takes module:attribute, such as examples.todo.app:app, not {target!r}"
        )
    # Like uvicorn's --app-dir ".": apps in the working directory import as they do there.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, FastAPI):
        raise SystemExit(f"{target} is not a FastAPI app")
    return app


def find_tether(app: FastAPI) -> Tether:
    """Return the Tether mounted on `app` (found through its routes).

    Raises:
        SystemExit: no Tether is mounted on the app.
    """
    for route in app.router.routes:
        transport: Any = getattr(route, "endpoint", None) or getattr(route, "app", None)
        api = getattr(transport, "api", None)
        if isinstance(api, Tether):
            return api
    raise SystemExit("no Tether is mounted on this app (call api.mount(app))")


def _schema(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    if args.document == "openapi":
        document: Any = app.openapi()
    else:
        from .schema.openrpc import openrpc_document

        document = openrpc_document(find_tether(app))
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _demo(args: argparse.Namespace) -> int:  # pragma: no cover - serves until interrupted
    try:
        import uvicorn
    except ImportError:
        print("the demo needs uvicorn: pip install 'tether[server]'", file=sys.stderr)
        return 1
    uvicorn.run("examples.todo.app:app", host="127.0.0.1", port=args.port, app_dir=".")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `tether` command with `argv` (default: the process arguments)."""
    parser = argparse.ArgumentParser(prog="tether", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="print an app's OpenAPI or OpenRPC document")
    schema.add_argument("document", choices=("openapi", "openrpc"))
    schema.add_argument("--app", required=True, help="module:attribute of the FastAPI app")
    schema.set_defaults(run=_schema)
    demo = commands.add_parser("demo", help="serve the todo demo on 127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
