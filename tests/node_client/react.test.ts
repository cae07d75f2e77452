// @vitest-environment happy-dom
// The React hooks, mounted with react-dom/client in a DOM, on a real TetherClient and the real server.
import { createElement, useState, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { describe, expect, it } from "vitest";
import type { ClientOptions, TetherClient } from "../../src/tether/codegen/runtime/client.js";
import { TetherError } from "../../src/tether/codegen/runtime/errors.js";
import {
  TetherProvider,
  useTetherClient,
  useTetherContext,
  useTetherMutation,
  useTetherQuery,
  useTetherStream,
  type ContextResult,
  type MutationResult,
  type StreamResult,
} from "../../src/tether/codegen/runtime/react.js";
import {
  cancelledAfter,
  cancelledStreams,
  cleanupAfterEach,
  direct,
  recordingClient,
  sleep,
  type Notes,
  unique,
  until,
} from "./runtime-fixtures.js";

// React renders as in a browser (its scheduler, no act()): the tests wait for what they expect.
const onCleanup = cleanupAfterEach();

function setup(options: ClientOptions = {}) {
  const recorded = recordingClient(options);
  onCleanup(() => recorded.client.close());
  return recorded;
}

/** Renders `node` inside a TetherProvider of `client` into a detached DOM element. */
async function render(
  client: TetherClient | { client: TetherClient },
  node: ReactNode,
): Promise<{ root: Root; element: HTMLElement }> {
  const element = document.createElement("div");
  const root = createRoot(element);
  root.render(createElement(TetherProvider, { client }, node));
  await sleep(0);
  onCleanup(() => root.unmount());
  return { root, element };
}

/** Waits until `check()` holds, then a little more (what else would render, has). */
async function settle(check: () => boolean, what: string): Promise<void> {
  await until(() => check(), 5000, what);
  await sleep(20);
}

describe("TetherProvider", () => {
  it("gives its client (or a generated api object's) to the hooks", async () => {
    const { client } = setup();
    const seen: TetherClient[] = [];
    function Probe(): null {
      seen.push(useTetherClient());
      return null;
    }
    await render(client, createElement(Probe));
    await render({ client }, createElement(Probe));
    expect(seen.at(0)).toBe(client);
    expect(seen.at(-1)).toBe(client);
  });

  it("a hook outside a provider throws a clear error", async () => {
    function Orphan(): null {
      useTetherClient();
      return null;
    }
    const errors: unknown[] = [];
    const root = createRoot(document.createElement("div"), { onUncaughtError: (error) => errors.push(error) });
    root.render(createElement(Orphan));
    await until(() => errors.length > 0, 5000, "the error");
    root.unmount();
    expect(errors[0]).toBeInstanceOf(Error);
    expect(String(errors[0])).toContain("<TetherProvider");
  });
});

describe("useTetherContext", () => {
  it("renders the bundle, and re-renders on a merge without a request", async () => {
    const { client, calls } = setup();
    const owner = unique("rc");
    await direct("add_note", { owner, text: "milk" });
    const results: ContextResult<Notes>[] = [];
    function NotesView(): ReactNode {
      const result = useTetherContext<Notes>("notes", { owner }); // inline params, new object each render
      results.push(result);
      const text = result.data === undefined ? "…" : `${result.data.title}:${result.data.notes.join(",")}`;
      return createElement("p", null, text);
    }
    const { element } = await render(client, createElement(NotesView));
    expect(results[0]).toMatchObject({ status: "loading", data: undefined, isFetching: true });
    await settle(() => results.at(-1)?.status === "success", "the bundle");
    expect(element.textContent).toBe(":milk");
    expect(results.at(-1)).toMatchObject({ status: "success", isFetching: false, error: undefined });
    expect(calls()).toEqual(["/api/context/notes"]);

    const beforeMerge = results.at(-1)?.data;
    await client.call("set_title", { owner, title: "Shopping" });
    await settle(() => element.textContent === "Shopping:milk", "the merge");
    expect(results.at(-1)?.data?.notes).toBe(beforeMerge?.notes);
    await sleep(50);
    expect(calls()).toEqual(["/api/context/notes", "/api/call/set_title"]); // no refetch
  });

  it("refetches on invalidation once, and not on re-renders with equal params", async () => {
    const { client, calls } = setup();
    const owner = unique("ri");
    let bump: () => void = () => undefined;
    let renders = 0;
    function NotesView(): ReactNode {
      const [n, setN] = useState(0);
      bump = () => setN((x) => x + 1);
      renders += 1;
      const result = useTetherContext<Notes>("notes", { owner, unused: undefined });
      return createElement("p", null, `${n}/${result.data?.notes.length ?? "-"}`);
    }
    const views = [createElement(NotesView, { key: 1 }), createElement(NotesView, { key: 2 })];
    const { element } = await render(client, views);
    await settle(() => element.textContent === "0/00/0", "both views loaded");
    bump(); // the second view re-renders, with new (equal) params objects
    await settle(() => element.textContent === "0/01/0", "a re-render");
    bump();
    await settle(() => element.textContent === "0/02/0", "another re-render");
    expect(renders).toBeGreaterThan(4);
    expect(calls()).toEqual(["/api/context/notes"]); // two views, re-rendered: one load

    await client.call("add_note", { owner, text: "a" });
    await settle(() => element.textContent === "0/12/1", "the refetch");
    expect(calls()).toEqual(["/api/context/notes", "/api/call/add_note", "/api/context/notes"]);
  });

  it("reports a failed load as a TetherError and refetch() loads again", async () => {
    const { client } = setup();
    const results: ContextResult<string>[] = [];
    function Secret(): null {
      results.push(useTetherContext<string>("secret"));
      return null;
    }
    await render(client, createElement(Secret));
    await settle(() => results.at(-1)?.status === "error", "the refusal");
    const error = results.at(-1)?.error;
    expect(error).toBeInstanceOf(TetherError);
    expect(error).toMatchObject({ code: "UNAUTHORIZED", status: 401 });
    const count = results.length;
    await results.at(-1)?.refetch();
    await settle(() => results.length > count, "a render");
    expect(results.slice(count).some((r) => r.isFetching)).toBe(true);
    expect(results.at(-1)).toMatchObject({ status: "error", isFetching: false });
  });
});

describe("useTetherQuery", () => {
  it("loads a query of no context by its input, and again when the input changes", async () => {
    const { client, calls } = setup();
    let set: (n: number) => void = () => undefined;
    function Echo(): ReactNode {
      const [value, setValue] = useState(1);
      set = setValue;
      const result = useTetherQuery<number>("echo", { value });
      return createElement("span", null, String(result.data ?? "-"));
    }
    const { element } = await render(client, createElement(Echo));
    await settle(() => element.textContent === "1", "echo 1");
    set(2);
    await settle(() => element.textContent === "2", "echo 2");
    set(1); // cached: no request
    await settle(() => element.textContent === "1", "echo 1 again");
    expect(calls()).toEqual(["/api/call/echo", "/api/call/echo"]);
  });
});

describe("useTetherMutation", () => {
  it("tracks isPending and data, and applies the command's effects", async () => {
    const { client, calls } = setup();
    const owner = unique("rm");
    const states: MutationResult<{ owner: string; text: string }, number>[] = [];
    function Adder(): ReactNode {
      const add = useTetherMutation<{ owner: string; text: string }, number>("add_note");
      const notes = useTetherContext<Notes>("notes", { owner });
      states.push(add);
      return createElement("p", null, notes.data?.notes.join(",") ?? "");
    }
    const { element } = await render(client, createElement(Adder));
    await settle(() => calls().length === 1 && states.at(-1) !== undefined, "mounted");
    expect(states.at(-1)).toMatchObject({ isPending: false, data: undefined, error: undefined });

    expect(await states.at(-1)?.mutate({ owner, text: "milk" })).toBe(1);
    await settle(() => element.textContent === "milk", "the refetched list");
    expect(states.at(-1)).toMatchObject({ isPending: false, data: 1, error: undefined });
    expect(calls()).toEqual(["/api/context/notes", "/api/call/add_note", "/api/context/notes"]);

    states.at(-1)?.reset();
    await settle(() => states.at(-1)?.data === undefined, "the reset");
    expect(states.at(-1)).toMatchObject({ isPending: false, data: undefined, error: undefined });
  });

  it("is pending while the call is in flight", async () => {
    const { client } = setup();
    const states: MutationResult<{ ms: number }, number>[] = [];
    function Slow(): null {
      states.push(useTetherMutation<{ ms: number }, number>("slow"));
      return null;
    }
    await render(client, createElement(Slow));
    const call = states.at(-1)?.mutate({ ms: 300 });
    await settle(() => states.at(-1)?.isPending === true, "pending");
    expect(states.at(-1)?.data).toBeUndefined();
    expect(await call).toBe(300);
    await settle(() => states.at(-1)?.isPending === false, "done");
    expect(states.at(-1)?.data).toBe(300);
  });

  it("rejects with a typed TetherError and keeps it in error", async () => {
    const { client } = setup();
    const states: MutationResult<{ kind: string }, string>[] = [];
    function Failing(): null {
      states.push(useTetherMutation<{ kind: string }, string>("fail"));
      return null;
    }
    await render(client, createElement(Failing));
    const caught: unknown = await states.at(-1)?.mutate({ kind: "stock" }).catch((e: unknown) => e);
    expect(caught).toBeInstanceOf(TetherError);
    await settle(() => states.at(-1)?.error !== undefined, "the error");
    const error: TetherError | undefined = states.at(-1)?.error;
    expect(error).toBe(caught);
    expect(error).toMatchObject({ code: "OUT_OF_STOCK", status: 409, details: { sku: "widget", available: 0 } });
    expect(states.at(-1)?.isPending).toBe(false);

    expect(await states.at(-1)?.mutate({ kind: "fine" })).toBe("fine");
    await settle(() => states.at(-1)?.data === "fine", "the success");
    expect(states.at(-1)).toMatchObject({ error: undefined, data: "fine", isPending: false });
  });
});

describe("useTetherStream", () => {
  it("follows the stream to its end", async () => {
    const { client } = setup();
    const states: StreamResult<number>[] = [];
    function Ticks(): null {
      states.push(useTetherStream<number>("ticks", { n: 3, ms: 5 }));
      return null;
    }
    await render(client, createElement(Ticks));
    expect(states[0]).toMatchObject({ status: "connecting", count: 0, latest: undefined });
    await settle(() => states.at(-1)?.status === "ended", "the end");
    expect(states.at(-1)).toMatchObject({ status: "ended", count: 3, latest: 3 });
    expect(states.some((s) => s.status === "open" && s.latest === 1)).toBe(true);
  });

  it("reports a stream's typed error", async () => {
    const { client } = setup();
    const states: StreamResult<number>[] = [];
    function Failing(): null {
      states.push(useTetherStream<number>("ticks_then_fail", { n: 2 }));
      return null;
    }
    await render(client, createElement(Failing));
    await settle(() => states.at(-1)?.status === "error", "the error");
    expect(states.at(-1)).toMatchObject({ count: 2, latest: 2 });
    expect(states.at(-1)?.error).toMatchObject({ code: "NOT_FOUND", details: { after: 2 } });
  });

  it("cancels the stream on unmount", async () => {
    const { client } = setup();
    const before = await cancelledStreams();
    const states: StreamResult<number>[] = [];
    function Forever(): null {
      states.push(useTetherStream<number>("forever", { ms: 10 }));
      return null;
    }
    const { root } = await render(client, createElement(Forever));
    await settle(() => (states.at(-1)?.count ?? 0) >= 2, "two items");
    root.unmount();
    expect(await cancelledAfter(before, 5000)).toBe(before + 1);
    const count = states.length;
    await sleep(60);
    expect(states.length).toBe(count); // no render after unmount
  });
});

describe("with the whole client", () => {
  it("loads the queries mounted in one commit as one JSON-RPC batch", async () => {
    const { client, seen } = setup({ transport: "jsonrpc" });
    function Echo(props: { value: number }): ReactNode {
      return createElement("i", null, String(useTetherQuery<number>("echo", { value: props.value }).data ?? "-"));
    }
    const views = [1, 2, 3].map((value) => createElement(Echo, { key: value, value }));
    const { element } = await render(client, views);
    await settle(() => element.textContent === "123", "three answers");
    expect(seen.map((s) => s.path)).toEqual(["/api/jsonrpc"]);
    const batch = seen[0]?.body as { method: string; params: unknown }[];
    expect(batch.map((item) => [item.method, item.params])).toEqual([
      ["echo", { value: 1 }],
      ["echo", { value: 2 }],
      ["echo", { value: 3 }],
    ]);
  });

  it("keeps two clients in sync by live push; the caller refetches once", async () => {
    const owner = unique("rl");
    const windows = [setup({ live: "sse", liveGraceMs: 500 }), setup({ live: "sse", liveGraceMs: 500 })];
    const texts: HTMLElement[] = [];
    for (const { client } of windows) {
      function NotesView(): ReactNode {
        const result = useTetherContext<Notes>("notes", { owner });
        return createElement("p", null, `${result.data?.title ?? ""}:${result.data?.notes.join(",") ?? ""}`);
      }
      texts.push((await render(client, createElement(NotesView))).element);
    }
    for (const { client } of windows) await until(() => client.cache.isLive("notes"), 5000, "live coverage");
    const base = windows.map((w) => w.calls().length);
    expect(base).toEqual([1, 1]);

    const [caller, other] = windows as [(typeof windows)[0], (typeof windows)[0]];
    await caller.client.call("add_note", { owner, text: "milk" });
    for (const element of texts) await settle(() => element.textContent === ":milk", "both windows updated");
    await caller.client.call("set_title", { owner, title: "Groceries" });
    for (const element of texts) await settle(() => element.textContent === "Groceries:milk", "both merged");
    await sleep(700); // past the grace: no late refetch
    expect(caller.calls().slice(1)).toEqual(["/api/call/add_note", "/api/context/notes", "/api/call/set_title"]);
    expect(other.calls().slice(1)).toEqual(["/api/context/notes"]);
  });
});
