"""Run a tether app on uvicorn with tether's limits: `TetherServer` and `serve`.

This module needs uvicorn (the `server` extra: `pip install -e '.[server]'` from a checkout);
`import tether` never imports it.

```python
from tether.server import serve

serve(app, port=8000)  # 127.0.0.1 by default; grace=10.0 seconds for in-flight calls
```

What `TetherServer` adds to `uvicorn.Server`, and the plain-uvicorn equivalent of each:

- **The WebSocket frame limit is tether's.** uvicorn assembles a WebSocket message up to
  `ws_max_size` (16 MiB by default) before the app sees it; `TetherServer` lowers it to the
  largest `WebSocketTransport.max_message_size` mounted (1 MiB by default), so an oversized
  message is refused (close 1009) as its frame header arrives. With plain uvicorn, pass
  `--ws-max-size 1048576` (`uvicorn.Config(ws_max_size=1048576)`).
- **Shutdown is bounded.** On SIGTERM or SIGINT it stops accepting connections, closes
  tether's sockets with 1001 (`await api.shutdown()`), and gives in-flight calls `grace`
  seconds (10 by default) to finish; then it cancels them and waits (up to 0.5 s) for
  their yield dependencies to close, then runs uvicorn's own shutdown (the app's lifespan
  included) and exits. With plain uvicorn, pass `--timeout-graceful-shutdown 10`
  (`uvicorn.Config(timeout_graceful_shutdown=10)`; by default uvicorn waits for ever). Two
  differences remain: sockets close with 1012 (service restart), before the app's lifespan
  hears of the shutdown; and after a signal, uvicorn exits without letting the calls it
  cancelled run their teardown, so a yield dependency whose teardown awaits is not closed.

- **WebSocket compression is off.** uvicorn accepts every client's offer of
  permessage-deflate (browsers always offer it), and then keeps a compressor and a
  decompressor for each socket: about 33 KB of each idle connection's 61 KB on uvicorn's
  default WebSocket implementation (`bench/live_memory.py`). tether's messages are small
  JSON, so `TetherServer` sets `ws_per_message_deflate=False` (`SERVER_SETTINGS`). With
  plain uvicorn, pass `--ws-per-message-deflate false`
  (`uvicorn.Config(ws_per_message_deflate=False)`). To keep compression on, pass
  `ws_per_message_deflate=True` to `serve`, or `TetherServer(config, settings={})`.

It runs one process: `reload` and `workers` are uvicorn's CLI features, not the server's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import uvicorn

from ._mounted import mounted_tethers
from .errors import ConfigurationError
from .registry import Tether
from .transports.websocket import WebSocketTransport

__all__ = ("DEFAULT_GRACE", "SERVER_SETTINGS", "TetherServer", "serve")

DEFAULT_GRACE = 10.0
"""Seconds in-flight calls get to finish on shutdown before they are cancelled, by default."""

SERVER_SETTINGS: Mapping[str, Any] = MappingProxyType({"ws_per_message_deflate": False})
"""The `uvicorn.Config` settings `TetherServer` applies where the config keeps uvicorn's default.

Measured on 10,000 idle WebSockets (docs/deployment.md, "Many idle connections"): with
per-message deflate negotiated, each costs the server about 33 KB more.
"""

# After the grace period, cancelled calls get this long to close their dependencies. (A call
# that ignores its cancellation then gets uvicorn's own last second, see `shutdown`.)
_CANCEL_WAIT = 0.5

logger = logging.getLogger("uvicorn.error")


class TetherServer(uvicorn.Server):
    """uvicorn's server, with tether's WebSocket limits and settings and a bounded shutdown.

    Args:
        config: uvicorn's configuration; its app (or an app it mounts) has a Tether mounted.
        grace: seconds in-flight calls get to finish on shutdown before they are cancelled;
            by default the config's `timeout_graceful_shutdown`, else `DEFAULT_GRACE` (10).
        settings: `uvicorn.Config` attributes to set, each only where `config` still has
            uvicorn's default value (`SERVER_SETTINGS` by default: WebSocket compression
            off); `{}` leaves the config as it is.

    Raises:
        ConfigurationError: `grace` is negative, or `settings` names no `uvicorn.Config`
            argument.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        grace: float | None = None,
        settings: Mapping[str, Any] = SERVER_SETTINGS,
    ) -> None:
        super().__init__(config)
        defaults = _uvicorn_defaults()
        for name, value in settings.items():
            if name not in defaults:
                raise ConfigurationError(f"{name!r} is not a uvicorn.Config setting")
            if getattr(config, name) == defaults[name]:
                setattr(config, name, value)
        if grace is None:
            configured = config.timeout_graceful_shutdown
            grace = DEFAULT_GRACE if configured is None else float(configured)
        if not grace >= 0:
            raise ConfigurationError("grace must be zero or a positive number of seconds")
        self.grace = float(grace)
        """Seconds in-flight calls get to finish on shutdown before they are cancelled."""
        self.tethers: tuple[Tether, ...] = ()
        """The Tethers mounted on the app (found when the server starts)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Find the app's Tethers and set the WebSocket limit from theirs, then start serving.

        Raises:
            ConfigurationError: no Tether is mounted on the app.
        """
        config = self.config
        if not config.loaded:  # pragma: no cover - Server.serve loads the config first
            config.load()
        self.tethers = mounted_tethers(config.loaded_app)
        if not self.tethers:
            raise ConfigurationError("no Tether is mounted on this app (call api.mount(app))")
        limits = [
            transport.max_message_size
            for api in self.tethers
            for transport in api.transports
            if isinstance(transport, WebSocketTransport)
        ]
        if limits:
            # Never assemble a message tether would refuse anyway.
            config.ws_max_size = min(config.ws_max_size, max(limits))
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, close tether's sockets (1001), and wait `grace` for in-flight calls.

        Past `grace`, the calls still running are cancelled (their yield dependencies
        close), then uvicorn's own shutdown runs, the app's lifespan shutdown included.
        """
        deadline = time.monotonic() + self.grace
        for server in self.servers:
            server.close()  # no new connections while the open ones finish
        for api in self.tethers:
            # Before uvicorn's own step, which would close the sockets with 1012.
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    await api.shutdown()
            except TimeoutError:
                pass
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle connections close; busy ones close after replying
        await self._drain(deadline)
        # uvicorn's own shutdown, with nothing left in flight, is quick; a call that ignored
        # its cancellation gets one more second there before uvicorn cancels it again.
        self.config.timeout_graceful_shutdown = 1
        await super().shutdown(sockets)

    async def _drain(self, deadline: float) -> None:
        """Wait until no call is in flight, or `deadline` passes; then cancel what is left."""
        state = self.server_state
        while (state.connections or state.tasks) and not self.force_exit:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        tasks = list(state.tasks)
        if not tasks:
            return
        logger.warning(
            "Cancelling %d call(s) still running after the %.3g s grace period",
            len(tasks),
            self.grace,
        )
        for task in tasks:
            task.cancel("the server is shutting down")
        # Cancelled, the calls close their yield dependencies; wait for that, briefly.
        await asyncio.wait(tasks, timeout=_CANCEL_WAIT)


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    grace: float = DEFAULT_GRACE,
    **uvicorn_config: Any,
) -> None:
    """Serve `app` (an app object or `"module:attribute"`) with `TetherServer` until stopped.

    It returns after Ctrl-C (SIGINT); after SIGTERM the process ends by that signal, as
    under uvicorn's own command.

    Args:
        app: the ASGI app with a Tether mounted, or its import string.
        host: the address to listen on (loopback by default).
        port: the TCP port to listen on.
        grace: seconds in-flight calls get to finish on shutdown before they are cancelled.
        **uvicorn_config: any other `uvicorn.Config` argument, such as `log_level`; one
            that `SERVER_SETTINGS` names (`ws_per_message_deflate`) overrides tether's value.

    Raises:
        ConfigurationError: `reload` or `workers` is asked for (they are uvicorn CLI features).
    """
    if uvicorn_config.get("reload") or (uvicorn_config.get("workers") or 1) > 1:
        raise ConfigurationError(
            "serve() runs one process: for reload or workers, run uvicorn's CLI with"
            " --ws-max-size and --timeout-graceful-shutdown (see tether.server)"
        )
    config = uvicorn.Config(app, host=host, port=port, **uvicorn_config)
    # A setting given here is kept, even when it is uvicorn's default.
    settings = {k: v for k, v in SERVER_SETTINGS.items() if k not in uvicorn_config}
    try:
        TetherServer(config, grace=grace, settings=settings).run()
    except KeyboardInterrupt:
        # Ctrl-C: the server has shut down already (uvicorn re-raises the signal it handled).
        pass


def _uvicorn_defaults() -> dict[str, Any]:
    """Return `uvicorn.Config`'s argument defaults, by name."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(uvicorn.Config).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
