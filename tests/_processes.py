"""Processes the tests start themselves (servers, workers): free ports, liveness, stopping by PID.

Standard library only: `.ci/run` imports the server modules that use it with the system
Python, before any virtual environment exists.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, an exited child not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pid(
    pid: int, first: signal.Signals = signal.SIGTERM, wait: float = 5.0, poll: float = 0.05
) -> None:
    """Send `first` (and SIGCONT, in case it is paused), then SIGKILL if it lingers past `wait` s."""
    for sig, seconds in ((first, wait), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid):
                return
            time.sleep(poll)
