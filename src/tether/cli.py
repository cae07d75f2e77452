"""The `tether` command: print an app's schema documents, generate its client, serve it.

```
tether schema openapi --app tether.demo.app:app      # FastAPI's OpenAPI, every operation
tether schema openrpc --app tether.demo.app:app      # the OpenRPC document of JSON-RPC
tether schema tether --app tether.demo.app:app       # tether's own document (docs/schema.md)
tether generate --app main:app --out web/src/api    # the typed TypeScript client (docs/client.md)
                [--camel-case] [--no-react] [--tanstack]
tether serve main:app [--host 127.0.0.1] [--port 8000] [--grace 10]   # any app, TetherServer
                      [--ws-per-message-deflate]
tether demo [--port 8000]                            # the todo demo on 127.0.0.1
```

`serve` and `demo` run `tether.server.TetherServer` (uvicorn with tether's WebSocket message
limit, WebSocket compression off, and a bounded shutdown); they need the `server` extra.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI

from ._mounted import mounted_tethers
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
            f"the app is named module:attribute, such as tether.demo.app:app, not {target!r}"
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
    """Return the Tether mounted on `app` (found through its routes, mounts and middleware).

    Raises:
        SystemExit: no Tether is mounted on the app.
    """
    tethers = mounted_tethers(app)
    if not tethers:
        raise SystemExit("no Tether is mounted on this app (call api.mount(app))")
    return tethers[0]


def _schema(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    if args.document == "tether":
        from .schema.document import schema_json

        sys.stdout.buffer.write(schema_json(find_tether(app), app))
        return 0
    if args.document == "openapi":
        document: Any = app.openapi()
    else:
        from .schema.openrpc import openrpc_document

        document = openrpc_document(find_tether(app))
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .codegen import GenerateError, generate
    from .schema.document import schema_document

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file, not a directory")
    app = load_app(args.app)
    document = schema_document(find_tether(app), app)
    try:
        written = generate(
            document, out, camel_case=args.camel_case, react=args.react, tanstack=args.tanstack
        )
    except GenerateError as exc:
        raise SystemExit(str(exc)) from None
    if written:
        for path in written:
            print(f"wrote {path}")
    else:
        print(f"{out}: up to date")
    return 0


_SERVER_EXTRA_HINT = (
    "this command needs uvicorn, which the `server` extra installs;"
    " from the tether checkout: pip install -e '.[server]'"
)


def _serve_with_tether_server(
    app: FastAPI, *, host: str, port: int, grace: float, **uvicorn_config: Any
) -> int:
    try:
        from .server import serve
    except ImportError:
        print(_SERVER_EXTRA_HINT, file=sys.stderr)
        return 1
    serve(app, host=host, port=port, grace=grace, **uvicorn_config)  # pragma: no cover
    return 0  # pragma: no cover


def _serve(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    find_tether(app)  # a clear message now, rather than a traceback once the server starts
    # Given, the flag keeps uvicorn's compression on; absent, TetherServer's setting applies.
    extra = {"ws_per_message_deflate": True} if args.ws_per_message_deflate else {}
    return _serve_with_tether_server(app, host=args.host, port=args.port, grace=args.grace, **extra)


def _demo(args: argparse.Namespace) -> int:
    # Imported from the installed package: the demo runs from any directory.
    from .demo.app import app

    return _serve_with_tether_server(app, host="127.0.0.1", port=args.port, grace=args.grace)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds (0 or more), not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `tether` command with `argv` (default: the process arguments)."""
    parser = argparse.ArgumentParser(prog="tether", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="print an app's OpenAPI/OpenRPC/tether schema")
    schema.add_argument("document", choices=("openapi", "openrpc", "tether"))
    schema.add_argument("--app", required=True, help="module:attribute of the FastAPI app")
    schema.set_defaults(run=_schema)
    generate = commands.add_parser("generate", help="write the app's typed TypeScript client")
    generate.add_argument("--app", required=True, help="module:attribute of the FastAPI app")
    generate.add_argument("--out", required=True, help="the folder to write, such as web/src/api")
    generate.add_argument(
        "--camel-case", action="store_true", help="camelCase param names, mapped to the wire"
    )
    generate.add_argument(
        "--no-react", dest="react", action="store_false", help="leave out the React hooks"
    )
    generate.add_argument(
        "--tanstack", action="store_true", help="add TanStack Query v5 options (tanstack.ts)"
    )
    generate.set_defaults(run=_generate)
    grace_help = "seconds in-flight calls get on shutdown before they are cancelled (default 10)"
    serve = commands.add_parser("serve", help="serve an app with tether's server (loopback)")
    serve.add_argument("app", help="module:attribute of the FastAPI app, such as main:app")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on (8000)")
    serve.add_argument("--grace", type=_seconds, default=10.0, help=grace_help)
    serve.add_argument(
        "--ws-per-message-deflate",
        action="store_true",
        help="keep WebSocket compression on (off by default: about 33 KB per connection)",
    )
    serve.set_defaults(run=_serve)
    demo = commands.add_parser("demo", help="serve the todo demo on 127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="TCP port to listen on (8000)")
    demo.add_argument("--grace", type=_seconds, default=10.0, help=grace_help)
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
