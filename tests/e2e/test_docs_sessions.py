"""The shell sessions the README and the docs show, replayed as a reader would run them.

For each page, the example files it shows are written into an empty folder outside the
checkout, under the names the page gives them (`main.py`, ...). Then every `$ command` of
the page's shell blocks runs there, in order, and what it prints must equal the lines the
page shows under it, byte for byte:

- `uvicorn X:app`, `tether serve X:app` and `tether demo` start a real server process on a
  free loopback port (the page's `127.0.0.1:8000` becomes that address, in commands and in
  the files), stopped when the next one starts or the page ends;
- `curl ...` is replayed with httpx, for the flags the pages use (`-s`, `-N`, `-X`, `-H`,
  `-d`, `-o /dev/null`, `-w` with `%{http_code}`), so the tests need no curl binary;
- `echo $?` prints the exit code of the command before it;
- anything else (`python x.py`, `tether schema ... | head`) runs in bash, with this
  virtual environment's commands first on the PATH and nothing of the checkout importable.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "docs"
BIN = Path(sys.executable).parent
SHOWN_ADDRESS = "127.0.0.1:8000"

# page -> {file name the page tells the reader to save: the example it shows}
PAGES = {
    "README.md": {"main.py": "index_1"},
    "docs/quickstart.md": {
        "main.py": "quickstart_1",
        "ws_client.py": "quickstart_2",
        "calls.py": "quickstart_3",
        "notes.py": "quickstart_4",
    },
    "docs/cli.md": {"main.py": "quickstart_1"},
    "docs/from-fastapi-jsonrpc.md": {"main.py": "from_fastapi_jsonrpc_1"},
}

SHELL_BLOCK = re.compile(r"^```shell\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Step:
    """One `$ command` of a page and the output the page shows under it."""

    command: str
    expected: str


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # "No closing quotation"
        return False
    return True


def steps_of(page: str) -> list[Step]:
    """Every `$ ...` command of the page's shell blocks, with the output shown under it."""
    steps: list[Step] = []
    for block in SHELL_BLOCK.findall((ROOT / page).read_text(encoding="utf-8")):
        lines = block.split("\n")[:-1]
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            if not line.startswith("$ "):
                continue
            command = line[2:]
            # A trailing backslash, or an open quote, continues the command on the next line.
            while command.endswith("\\") or not _complete(command):
                if command.endswith("\\"):
                    command = command[:-1] + lines[index].strip()
                else:
                    command = command + "\n" + lines[index]
                index += 1
            output = []
            while index < len(lines) and not lines[index].startswith("$ "):
                output.append(lines[index])
                index += 1
            steps.append(Step(command, "".join(f"{o}\n" for o in output)))
    return steps


def curl(argv: list[str]) -> str:
    """What `curl argv` prints, for the flags the docs use, made with httpx."""
    method, url, headers, data = None, None, {}, None
    write_out, show_body = "", True
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-s", "-N"):
            continue
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = next(args).encode()
        elif arg == "-w":
            write_out = next(args)
        elif arg == "-o":
            assert next(args) == "/dev/null", argv
            show_body = False
        elif arg.startswith("-"):
            raise AssertionError(f"the docs use a curl flag this replay does not know: {arg}")
        else:
            url = arg
    assert url is not None, argv
    if not url.startswith("http"):
        url = f"http://{url}"
    method = method or ("POST" if data is not None else "GET")
    if data is not None:
        headers.setdefault("content-type", "application/x-www-form-urlencoded")  # as curl -d
    response = httpx.request(method, url, headers=headers, content=data, timeout=10)
    extra = write_out.replace("\\n", "\n").replace("%{http_code}", str(response.status_code))
    return (response.text if show_body else "") + extra


def environment() -> dict[str, str]:
    """The reader's shell: this venv's commands first, nothing of the checkout importable."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ""}


@contextmanager
def server(argv: list[str], folder: Path, address: str) -> Iterator[None]:
    """Run a server command in `folder`, listening on `address`, until the block ends."""
    host, _, port = address.partition(":")
    if argv[0] == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", *argv[1:], "--host", host, "--port", port]
    elif argv[1] == "serve":
        argv = [str(BIN / "tether"), *argv[1:], "--host", host, "--port", port]
    else:  # tether demo, always on 127.0.0.1
        argv = [str(BIN / "tether"), *argv[1:], "--port", port]
    env = {**environment(), "TODO_DB": str(folder / "todo.db")}
    process = subprocess.Popen(
        argv, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://{address}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise AssertionError(f"{argv} exited:\n{stderr[-2000:]}") from None
                assert time.monotonic() < deadline, f"{argv} did not start"
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)
        stderr = process.stderr.read().decode() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    assert "Traceback" not in stderr, stderr


def is_server(argv: list[str]) -> bool:
    return argv[0] == "uvicorn" or argv[:2] in (["tether", "serve"], ["tether", "demo"])


@pytest.mark.parametrize("page", list(PAGES))
def test_every_command_shown_prints_what_the_page_shows(page: str, tmp_path: Path) -> None:
    folder = tmp_path / "reader"
    folder.mkdir()
    address = f"127.0.0.1:{free_port()}"
    for name, example in PAGES[page].items():
        source = (EXAMPLES / f"{example}.py").read_text(encoding="utf-8")
        (folder / name).write_text(source.replace(SHOWN_ADDRESS, address), encoding="utf-8")
    ran: list[str] = []
    exit_code = 0
    with ExitStack() as servers:
        for step in steps_of(page):
            command = step.command.replace(SHOWN_ADDRESS, address)
            argv = shlex.split(command)
            if is_server(argv):
                servers.close()  # one server at a time, on the page's one address
                servers.enter_context(server(argv, folder, address))
                output = ""
            elif argv[0] == "curl":
                output = curl(argv)
            elif command == "echo $?":
                output = f"{exit_code}\n"
            else:
                completed = subprocess.run(
                    ["bash", "-c", command],
                    cwd=folder,
                    env=environment(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=60,
                    check=False,
                )
                output, exit_code = completed.stdout, completed.returncode
            assert output == step.expected, f"{page}: $ {step.command}"
            ran.append(argv[0])
    # The page still shows a server and calls to it: an empty session proves nothing.
    assert "curl" in ran
