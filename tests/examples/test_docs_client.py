"""The examples of docs/client.md (examples/docs/client_*), exercised as the page says.

- The page shows each example file verbatim.
- `client_app.py` behaves as the page's snippets assume (in-process).
- `tether generate` writes the layout the page lists, deterministically, and manages its own
  files only.
- The TypeScript snippets type-check (`tsc --strict`) beside the client generated for
  `client_app`. `client_calls.ts` and `client_cache.ts`, compiled, run under Node against a
  real server and print what the page says they print; so does `client_plain.mjs`, the client
  without the generator. `client_react.ts`, bundled with esbuild, renders in Chromium and
  makes the requests the page says; `client_live.js` (EventSource) runs there too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

from tests._docs_examples import (
    EXAMPLES,
    assert_links_resolve,
    load,
    relative_links,
    serve_example_script,
)
from tests._node import NODE_BROWSER, NODE_CLIENT, files_of, require_browser, run_node, tsc
from tests.conftest import LiveServer
from tether import Forbidden, NotFound, Unauthorized

# Most of these tests run Node (tsc, esbuild, the examples) or Chromium.
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "client.md"
NODE_PLAIN = ROOT / "tests" / "node"
ADA = {"Authorization": "Bearer ada"}
BLOCK = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"(?://|#) file: (examples/docs/client_[a-z_]+\.(?:py|ts|js|mjs))")
TSCONFIG: dict[str, Any] = {
    "compilerOptions": {
        "strict": True,
        "noUncheckedIndexedAccess": True,
        "exactOptionalPropertyTypes": True,
        "target": "ES2022",
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "types": ["node"],
        "skipLibCheck": True,
        "noEmit": True,
    },
    "include": ["*.ts", "api/**/*.ts"],
}


# -- the page shows its examples verbatim ---------------------------------------------------


def page_blocks() -> list[tuple[str, str]]:
    """The page's fenced blocks, as (language, text)."""
    return BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def shown_files() -> dict[str, str]:
    """The example files the page includes, by path: the block that shows each."""
    shown = {}
    for _, text in page_blocks():
        match = MARKER.fullmatch(text.split("\n", 1)[0])
        if match:
            assert match.group(1) not in shown, f"{match.group(1)} is shown twice"
            shown[match.group(1)] = text
    return shown


def printed_after(path: str) -> str:
    """The ```text block that follows the block of `path`: what the page says it prints."""
    blocks = page_blocks()
    index = next(i for i, (_, text) in enumerate(blocks) if text.startswith(f"// file: {path}\n"))
    language, text = blocks[index + 1]
    assert language == "text", f"the block after {path} is not its output"
    return text


def test_page_shows_every_client_example_verbatim() -> None:
    shown = shown_files()
    files = {f"examples/docs/{p.name}" for p in EXAMPLES.glob("client_*") if p.is_file()}
    assert set(shown) == files
    for path, block in shown.items():
        assert block == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from its block"
    # Every example names its own file on its first line.
    for path in files:
        first = (ROOT / path).read_text(encoding="utf-8").split("\n", 1)[0]
        match = MARKER.fullmatch(first)
        assert match is not None, path
        assert match.group(1) == path


def test_client_page_links_resolve() -> None:
    # Links from the page, and from any page (or the README) into it, reach a file and a heading.
    links = relative_links(
        [*PAGE.parent.rglob("*.md"), ROOT / "README.md"],
        lambda page, target: page == PAGE or target.split("#")[0].endswith("client.md"),
    )
    assert len(links) > 10
    assert_links_resolve(links)


# -- the example app, in-process ------------------------------------------------------------


@asynccontextmanager
async def client_app() -> AsyncIterator[ModuleType]:
    module = load("client_app")
    try:
        yield module
    finally:
        await module.api.live.close()
        await module.api.events.close()


async def test_client_app_behaves_as_the_snippets_assume() -> None:
    async with client_app() as module:
        api = module.api
        added = await api.call(
            "add_todo",
            {"title": "milk", "attachment": {"kind": "note", "text": "2 l"}},
            headers=ADA,
            effects=True,
        )
        assert (added.result.id, added.result.owner, added.result.priority.value) == (
            1,
            "ada",
            "low",
        )
        assert added.result.attachment == module.Note(text="2 l")
        assert added.invalidate == [{"context": "todos"}]
        bundle = await api.fetch_context("todos", {"done": False})
        assert [todo.title for todo in bundle["list_todos"].items] == ["milk"]
        renamed = await api.call("rename_user", {"display_name": "Ada"}, headers=ADA, effects=True)
        assert renamed.merge == [{"context": "user", "slot": "current_user", "value": "Ada"}]
        assert await api.fetch_context("user", headers=ADA) == {"current_user": "Ada"}
        with pytest.raises(NotFound, match="no todo 99"):
            await api.call("get_todo", {"id": 99})
        with pytest.raises(Forbidden):
            await api.call("open_count", {}, headers=ADA)
        with pytest.raises(Unauthorized):
            await api.call("add_todo", {"title": "tea"})
        assert await api.call("open_count", {}, headers={"Authorization": "Bearer admin"}) == 1
        assert [n async for n in api.stream_call("countdown", {"start": 3})] == [3, 2, 1]


# -- tether generate, as the page describes it ----------------------------------------------

LAYOUT = {
    "runtime/errors.ts",
    "runtime/wire.ts",
    "runtime/http.ts",
    "runtime/jsonrpc.ts",
    "runtime/websocket.ts",
    "runtime/sse.ts",
    "runtime/live.ts",
    "runtime/cache.ts",
    "runtime/client.ts",
    "runtime/index.ts",
    "types.ts",
    "api.ts",
    "index.ts",
}
REACT = {"runtime/react.ts", "react.ts"}
TANSTACK = {"runtime/tanstack.ts", "tanstack.ts"}


def generate(out: Path, *options: str, fails: bool = False) -> str:
    """`tether generate --app examples.docs.client_app:app --out <out> [options]`: its output."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tether.cli",
            "generate",
            "--app",
            "examples.docs.client_app:app",
            "--out",
            str(out),
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (completed.returncode != 0) == fails, completed.stderr
    return completed.stdout + completed.stderr


def test_generate_writes_the_layout_the_page_lists(tmp_path: Path) -> None:
    out = tmp_path / "api"
    generate(out)
    first = files_of(out)
    assert set(first) == LAYOUT | REACT
    header = re.compile(rb"// Generated by tether [^\n:]+: do not edit\.\n")
    assert all(header.match(text) for text in first.values()), "a file without the header"
    assert not [name for name, text in first.items() if name not in REACT and b'"react"' in text]
    # Deterministic, and a rerun rewrites nothing.
    stamps = {name: (out / name).stat().st_mtime_ns for name in first}
    generate(out)
    assert files_of(out) == first
    assert {name: (out / name).stat().st_mtime_ns for name in first} == stamps
    # Its own files only: --tanstack adds; --no-react drops react and tanstack; yours stay.
    (out / "mine.ts").write_text("export const mine = 1;\n", encoding="utf-8")
    generate(out, "--tanstack")
    assert set(files_of(out)) == LAYOUT | REACT | TANSTACK | {"mine.ts"}
    generate(out, "--no-react")
    assert set(files_of(out)) == LAYOUT | {"mine.ts"}
    assert not [name for name, text in files_of(out).items() if b'"react"' in text]
    # --camel-case: params in camelCase, mapped to the wire; slots and fields as on the wire.
    generate(out, "--camel-case")
    api_ts = (out / "api.ts").read_text(encoding="utf-8")
    assert "export type RenameUserInput = { displayName: string };" in api_ts
    assert 'displayName: "display_name"' in api_ts
    assert "  list_todos: Page<Todo>;\n" in api_ts
    assert generate(out, "--camel-case").strip() == f"{out}: up to date"
    # A file without the header where the generator would write: refused, left as it is.
    (out / "types.ts").write_text("export type Mine = 1;\n", encoding="utf-8")
    refused = generate(out, fails=True).strip()
    assert (
        refused
        == f"{out / 'types.ts'} exists and tether did not write it (no header line): move it away"
    )
    assert (out / "types.ts").read_text(encoding="utf-8") == "export type Mine = 1;\n"
    # docs/cli.md shows the message.
    assert "| `X exists and tether did not write it (no header line): move it away` |" in (
        ROOT / "docs" / "cli.md"
    ).read_text(encoding="utf-8")


# -- the TypeScript snippets, type-checked and run ------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client generated for client_app (with --tanstack), and the page's snippets beside it."""
    root = tmp_path_factory.mktemp("client")
    generate(root / "api", "--tanstack")
    for snippet in EXAMPLES.glob("client_*.ts"):
        shutil.copy(snippet, root / snippet.name)
    (root / "package.json").write_text('{"type": "module"}\n', encoding="utf-8")
    (root / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2), encoding="utf-8")
    (root / "node_modules").symlink_to(NODE_CLIENT / "node_modules")
    return root


def test_snippets_type_check(project: Path) -> None:
    assert {p.name for p in project.glob("*.ts")} == {
        "client_cache.ts",
        "client_calls.ts",
        "client_node.ts",
        "client_react.ts",
        "client_tanstack.ts",
        "client_types.ts",
    }
    tsc(project / "tsconfig.json")


def run_snippet(script: Path, server: LiveServer) -> str:
    """What Node prints running `script` against `server` (API_URL); it writes no errors."""
    completed = run_node(script, cwd=script.parent, env={"API_URL": server.url})
    assert completed.stderr == ""
    return completed.stdout


def run_driver(driver: str, tmp_path: Path, url: str, timeout: float = 60) -> Any:
    """Run the Chromium `driver` script on `url` (its argv[2]): the JSON it prints.

    The script runs with chromium.mjs's `withPage` imported.
    """
    require_browser()
    script = tmp_path / "driver.mjs"
    chromium = json.dumps((NODE_BROWSER / "chromium.mjs").as_uri())
    script.write_text(f"import {{ withPage }} from {chromium};\n{driver}", encoding="utf-8")
    return json.loads(run_node(script, url, timeout=timeout).stdout)


@pytest.fixture(scope="module")
def built(project: Path) -> Path:
    """The runnable snippets, compiled by tsc as they are (with the client they import)."""
    build = {
        **TSCONFIG,
        "compilerOptions": {**TSCONFIG["compilerOptions"], "noEmit": False, "outDir": "build"},
        "include": list(RUNNABLE),
    }
    (project / "tsconfig.json").write_text(json.dumps(build, indent=2), encoding="utf-8")
    try:
        tsc(project / "tsconfig.json")
    finally:
        (project / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2), encoding="utf-8")
    return project / "build"


RUNNABLE = ("client_calls.ts", "client_cache.ts", "client_node.ts")


@pytest.mark.parametrize("snippet", RUNNABLE)
def test_snippet_runs_and_prints_what_the_page_shows(
    snippet: str, built: Path, tether_server: Callable[[Any], LiveServer]
) -> None:
    # Run by Node 20 against a fresh copy of the example app.
    server = tether_server(load("client_app").app)
    printed = run_snippet(built / snippet.replace(".ts", ".js"), server)
    assert printed == printed_after(f"examples/docs/{snippet}")


def test_plain_client_runs_and_prints_what_the_page_shows(
    tmp_path: Path, tether_server: Callable[[Any], LiveServer]
) -> None:
    assert (NODE_PLAIN / "node_modules" / "json-rpc-2.0").exists(), (
        "run `npm install` in tests/node (make test does)"
    )
    shutil.copy(EXAMPLES / "client_plain.mjs", tmp_path / "client_plain.mjs")
    (tmp_path / "node_modules").symlink_to(NODE_PLAIN / "node_modules")
    server = tether_server(load("client_app").app)
    printed = run_snippet(tmp_path / "client_plain.mjs", server)
    assert printed == printed_after("examples/docs/client_plain.mjs")


BROWSER_DRIVER = """
const pushes = await withPage(async (page) => {
  await page.goto(process.argv[2]);
  return await page.evaluate(async () => {
    const { followLive } = await import("/client_live.js");
    const pushes = [];
    let stop = () => {};
    const ready = await new Promise((resolve) => {
      stop = followLive(["todos"], (push) => pushes.push(push), resolve);
    });
    const headers = { "Content-Type": "application/json", Authorization: "Bearer ada" };
    const body = JSON.stringify({ title: "milk" });
    await fetch("/api/call/add_todo", { method: "POST", headers, body });
    for (let waited = 0; pushes.length === 0 && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stop();
    return { ready, pushes };
  });
});
console.log(JSON.stringify(pushes));
"""


def test_live_example_in_a_browser(
    tmp_path: Path, tether_server: Callable[[Any], LiveServer]
) -> None:
    # client_live.js, loaded as a module by a page of the example app, in Debian's Chromium.
    server = tether_server(serve_example_script(load("client_app").app, "client_live.js"))
    seen = run_driver(BROWSER_DRIVER, tmp_path, f"{server.url}/page")
    assert seen["ready"]["topics"] == [{"context": "todos", "params": {}}]
    assert seen["pushes"] == [
        {"id": seen["pushes"][0]["id"], "invalidate": [{"context": "todos"}], "merge": []}
    ]
    # The page quotes the push as it is.
    shown = json.dumps(seen["pushes"][0])
    assert f"pushes\n`{shown}`" in PAGE.read_text(encoding="utf-8")


ESBUILD = ROOT / "web" / "node_modules" / ".bin" / "esbuild"
MAIN = """
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./%s";

createRoot(document.getElementById("root")!).render(createElement(App));
"""
# A driver (run by run_driver) that records the paths of the page's /api/ requests (but the live
# subscription's); `requests()` takes those made since it last ran, joined by spaces.
RECORDING_DRIVER = """
const seen = await withPage(async (page) => {
  const sent = [];
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (path.startsWith("/api/") && path !== "/api/live") sent.push(path);
  });
  const requests = () => sent.splice(0).join(" ");
  await page.goto(process.argv[2]);
%s
  return out;
});
console.log(JSON.stringify(seen));
"""
TANSTACK_DRIVER = (
    RECORDING_DRIVER
    % """
  await page.locator("section ul").waitFor({ state: "attached" });
  await page.waitForTimeout(500);
  const out = { loaded: requests() };
  await page.click("text=Add");
  await page.locator("li", { hasText: "milk" }).waitFor();
  await page.waitForTimeout(1200); // past liveGraceMs: nothing more is loaded
  out.added = requests();
  out.items = await page.locator("li").allInnerTexts();
"""
)
REACT_DRIVER = (
    RECORDING_DRIVER
    % """
  const text = (selector) => page.locator(selector).innerText();
  await page.locator("header b", { hasText: "ada" }).waitFor();
  await page.locator("header span", { hasText: "403 FORBIDDEN" }).waitFor();
  const out = { header: await text("header b"), open: await text("header span >> nth=1") };
  out.loaded = requests().split(" ").sort();
  await page.fill("input", "milk");
  await page.click("text=Add");
  await page.locator("li", { hasText: "milk" }).waitFor();
  await page.waitForTimeout(1200); // past liveGraceMs: nothing more is loaded
  out.added = requests();
  await page.click("text=Rename");
  await page.locator("header b", { hasText: "Ada" }).waitFor();
  await page.waitForTimeout(300);
  out.renamed = requests();
  await page.locator("header span", { hasText: /^ 1 $/ }).waitFor({ timeout: 15000 });
  out.items = await page.locator("li").allInnerTexts();
"""
)


def render_in_browser(
    project: Path, tmp_path: Path, server_for: Any, snippet: str, driver: str
) -> Any:
    """Bundle `snippet`'s `App` with esbuild, serve it with the example app, run `driver`."""
    assert ESBUILD.exists(), "run `npm install` in web/ (make test does)"
    main = project / f"main_{snippet}"
    main.write_text(MAIN % snippet.replace(".ts", ".js"), encoding="utf-8")
    try:
        completed = subprocess.run(
            [
                str(ESBUILD),
                main.name,
                "--bundle",
                "--format=esm",
                "--define:process.env.NODE_ENV='\"production\"'",
                f"--outfile={tmp_path / 'bundle.js'}",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        main.unlink()
    assert completed.returncode == 0, completed.stderr
    app: FastAPI = load("client_app").app
    bundle = (tmp_path / "bundle.js").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        root = '<div id="root"></div><script type="module" src="/bundle.js"></script>'
        return f"<!doctype html><title>react</title>{root}"

    @app.get("/bundle.js")
    async def script() -> Response:
        return Response(bundle, media_type="text/javascript")

    server = server_for(app)
    return run_driver(driver, tmp_path, f"{server.url}/", timeout=90)


def test_react_snippet_in_a_browser(
    project: Path, tmp_path: Path, tether_server: Callable[[Any], LiveServer]
) -> None:
    # client_react.ts, bundled with esbuild as it is, rendered by React in Debian's Chromium.
    seen = render_in_browser(project, tmp_path, tether_server, "client_react.ts", REACT_DRIVER)
    assert seen["header"] == "ada"
    assert seen["open"] == "403 FORBIDDEN"
    # One request per mounted context, query (open_count, over JSON-RPC) and stream.
    assert seen["loaded"] == [
        "/api/context/todos",
        "/api/context/user",
        "/api/jsonrpc",
        "/api/stream/countdown",
    ]
    assert seen["added"] == "/api/jsonrpc /api/context/todos"  # the call, one refetch
    assert seen["renamed"] == "/api/jsonrpc"  # a merge: the call alone
    assert seen["items"] == ["milk"]


def test_tanstack_snippet_in_a_browser(
    project: Path, tmp_path: Path, tether_server: Callable[[Any], LiveServer]
) -> None:
    # client_tanstack.ts in Chromium: TanStack Query loads todos once; adding a todo makes the
    # call and one refetch, driven by the live push that followLive applies.
    seen = render_in_browser(
        project, tmp_path, tether_server, "client_tanstack.ts", TANSTACK_DRIVER
    )
    assert seen["loaded"] == "/api/context/todos"
    assert seen["added"] == "/api/jsonrpc /api/context/todos"
    assert seen["items"] == ["milk"]
