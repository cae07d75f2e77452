// The cache kernel on its own: a recording loader stands in for the wire (no server needed).
import { describe, expect, it } from "vitest";
import { CacheKernel, canonicalJson, type Target } from "../../src/tether/codegen/runtime/cache.js";
import { TetherError } from "../../src/tether/codegen/runtime/errors.js";

interface Pending {
  target: Target;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** A loader that records each load; `auto` answers at once, otherwise `pending` holds them. */
function recorder(answer: (target: Target, n: number) => unknown = (t, n) => ({ [t.name]: n })) {
  const loads: Target[] = [];
  const pending: Pending[] = [];
  let auto = true;
  const load = (target: Target): Promise<unknown> => {
    loads.push(target);
    const n = loads.length;
    if (auto) return Promise.resolve(answer(target, n));
    return new Promise((resolve, reject) => pending.push({ target, resolve, reject }));
  };
  return {
    loads,
    pending,
    load,
    manual(): void {
      auto = false;
    },
    count(name: string, params?: Record<string, unknown>): number {
      return loads.filter(
        (t) => t.name === name && (params === undefined || canonicalJson(t.params) === canonicalJson(params)),
      ).length;
    },
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const todos = (params: Record<string, unknown> = {}): Target => ({ kind: "context", name: "todos", params });
const stats = (params: Record<string, unknown> = {}): Target => ({ kind: "query", name: "stats", params });

/** Mounts `target` with a counting listener and waits for its first load. */
async function mount(kernel: CacheKernel, target: Target): Promise<{ calls: () => number; off: () => void }> {
  let calls = 0;
  const off = kernel.subscribe(target, () => {
    calls += 1;
  });
  await tick();
  return { calls: () => calls, off };
}

describe("invalidation", () => {
  it("refetches a mounted target once for many entries in one tick", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load);
    await mount(kernel, todos({ owner_id: 5 }));
    expect(r.loads).toHaveLength(1);

    for (let i = 0; i < 5; i++) {
      kernel.applyResponse({ invalidate: [{ context: "todos", params: { owner_id: 5 } }, { context: "todos" }] });
    }
    kernel.applyPush({ id: "1", invalidate: [{ context: "todos" }], merge: [] });
    await tick();
    expect(r.count("todos")).toBe(2);
    expect(kernel.getSnapshot(todos({ owner_id: 5 })).data).toEqual({ todos: 2 });
  });

  it("marks unmounted targets stale without loading them, and loads them on ensure", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load);
    const mounted = await mount(kernel, todos({ owner_id: 5 }));
    mounted.off();
    expect(await kernel.ensure(stats())).toEqual({ stats: 2 });

    kernel.applyResponse({ invalidate: [{ context: "todos" }, { query: "stats" }] });
    await tick();
    expect(r.loads).toHaveLength(2); // nothing mounted: nothing loaded

    expect(await kernel.ensure(stats())).toEqual({ stats: 3 });
    expect(await kernel.ensure(stats())).toEqual({ stats: 3 }); // fresh again: cached
    await mount(kernel, todos({ owner_id: 5 })); // mounting a stale entry loads it
    expect(r.count("todos")).toBe(2);
  });

  it("matches params: absent on either side or equal by value", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load);
    await mount(kernel, todos({ owner_id: 5 }));
    await mount(kernel, todos({ owner_id: 6 }));
    await mount(kernel, todos({}));
    await mount(kernel, todos({ owner_id: 5, filter: { tags: ["a", "b"], done: false } }));
    await mount(kernel, stats({ owner_id: 5 }));
    expect(r.loads).toHaveLength(5);

    kernel.applyResponse({ invalidate: [{ context: "todos", params: { owner_id: 5 } }] });
    await tick();
    expect(r.count("todos", { owner_id: 5 })).toBe(2);
    expect(r.count("todos", {})).toBe(2); // lacks owner_id: covered
    expect(r.count("todos", { owner_id: 6 })).toBe(1);
    expect(r.count("stats")).toBe(1); // another kind: untouched

    // Object params compare by canonical JSON, whatever the key order.
    kernel.applyResponse({ invalidate: [{ context: "todos", params: { filter: { done: false, tags: ["a", "b"] } } }] });
    await tick();
    expect(r.count("todos", { owner_id: 5, filter: { tags: ["a", "b"], done: false } })).toBe(3);
    expect(r.count("todos", { owner_id: 6 })).toBe(2); // lacks filter: covered

    kernel.applyResponse({ invalidate: [{ query: "stats", params: { owner_id: 5 } }, { query: "todos" }] });
    await tick();
    expect(r.count("stats")).toBe(2);
    expect(r.count("todos", { owner_id: 6 })).toBe(2); // {"query": "todos"} is not the context
  });

  it("runs a refetch asked for during a load once more after it", async () => {
    const r = recorder();
    r.manual();
    const kernel = new CacheKernel(r.load);
    kernel.subscribe(todos(), () => undefined);
    expect(r.loads).toHaveLength(1);
    expect(kernel.getSnapshot(todos()).status).toBe("loading");

    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await tick();
    kernel.applyPush({ id: "2", invalidate: [{ context: "todos" }], merge: [] });
    await tick();
    expect(r.loads).toHaveLength(1); // one in flight: nothing else starts

    r.pending.shift()?.resolve({ todos: "old" });
    await tick();
    expect(r.loads).toHaveLength(2); // exactly one more
    const middle = kernel.getSnapshot<{ todos: string }>(todos());
    expect(middle).toMatchObject({ status: "success", data: { todos: "old" }, isFetching: true });

    r.pending.shift()?.resolve({ todos: "new" });
    await tick();
    expect(r.loads).toHaveLength(2);
    expect(kernel.getSnapshot(todos())).toMatchObject({ status: "success", data: { todos: "new" }, isFetching: false });
  });

  it("refetch() resolves after a load that started after it was asked", async () => {
    const r = recorder();
    r.manual();
    const kernel = new CacheKernel(r.load);
    const first = kernel.ensure(todos());
    const again = kernel.refetch(todos());
    let done = false;
    void again.then(() => {
      done = true;
    });
    r.pending.shift()?.resolve({ todos: 1 });
    expect(await first).toEqual({ todos: 1 });
    await tick();
    expect(done).toBe(false);
    expect(r.loads).toHaveLength(2);
    r.pending.shift()?.resolve({ todos: 2 });
    await again;
    expect(kernel.getSnapshot(todos()).data).toEqual({ todos: 2 });
  });
});

describe("merge", () => {
  it("splices the slot into a new object, other slots untouched, with no request", async () => {
    const r = recorder((t) => ({ todos: [{ id: 1 }], open_count: 1, owner: t.params["owner_id"] }));
    const kernel = new CacheKernel(r.load);
    const five = await mount(kernel, todos({ owner_id: 5 }));
    const six = await mount(kernel, todos({ owner_id: 6 }));
    await mount(kernel, stats());
    const before = kernel.getSnapshot<{ todos: unknown[]; open_count: number }>(todos({ owner_id: 5 }));
    const sixBefore = kernel.getSnapshot(todos({ owner_id: 6 }));
    const loads = r.loads.length;
    const calls = five.calls();

    kernel.applyResponse({ merge: [{ context: "todos", slot: "open_count", params: { owner_id: 5 }, value: 7 }] });
    const after = kernel.getSnapshot<{ todos: unknown[]; open_count: number }>(todos({ owner_id: 5 }));
    expect(after).not.toBe(before);
    expect(after.data).not.toBe(before.data);
    expect(after.data?.open_count).toBe(7);
    expect(after.data?.todos).toBe(before.data?.todos); // same reference: untouched
    expect(before.data?.open_count).toBe(1); // the old snapshot did not change
    expect(five.calls()).toBe(calls + 1);
    expect(kernel.getSnapshot(todos({ owner_id: 6 }))).toBe(sixBefore); // other params: untouched
    expect(six.calls()).toBeGreaterThan(0);

    kernel.applyPush({ id: "3", invalidate: [], merge: [{ context: "todos", slot: "open_count", value: 0 }] });
    expect(kernel.getSnapshot<{ open_count: number }>(todos({ owner_id: 6 })).data?.open_count).toBe(0);
    expect(kernel.getSnapshot<{ open_count: number }>(todos({ owner_id: 5 })).data?.open_count).toBe(0);
    expect(kernel.getSnapshot(stats()).data).toEqual({ todos: [{ id: 1 }], open_count: 1, owner: undefined });
    await tick();
    expect(r.loads).toHaveLength(loads); // zero requests
  });

  it("splices a merge that arrived during a load into what the load returns", async () => {
    const r = recorder(() => ({ current_user: { name: "ada" }, theme: "dark" }));
    const kernel = new CacheKernel(r.load);
    const user: Target = { kind: "context", name: "user", params: {} };
    await mount(kernel, user);
    r.manual();
    kernel.applyPush({ id: "1", invalidate: [{ context: "user" }], merge: [] });
    await tick();
    expect(r.pending).toHaveLength(1); // a refetch in flight...
    kernel.applyResponse({ merge: [{ context: "user", slot: "current_user", value: { name: "Ada" } }] });
    expect(kernel.getSnapshot(user).data).toEqual({ current_user: { name: "Ada" }, theme: "dark" });
    // ...that read the database before the rename committed: its answer is spliced again.
    r.pending[0]?.resolve({ current_user: { name: "ada" }, theme: "light" });
    await tick();
    expect(kernel.getSnapshot(user).data).toEqual({ current_user: { name: "Ada" }, theme: "light" });
    expect(r.loads).toHaveLength(2); // no further request
    // A later load starts clean: its answer is taken as it is.
    kernel.applyPush({ id: "2", invalidate: [{ context: "user" }], merge: [] });
    await tick();
    r.pending[1]?.resolve({ current_user: { name: "Bea" }, theme: "light" });
    await tick();
    expect(kernel.getSnapshot(user).data).toEqual({ current_user: { name: "Bea" }, theme: "light" });
  });

  it("applies a response's merge at once even when live covers the context", async () => {
    const r = recorder(() => ({ current_user: { name: "ada" } }));
    const kernel = new CacheKernel(r.load, { liveGraceMs: 10_000 });
    const user: Target = { kind: "context", name: "user", params: {} };
    await mount(kernel, user);
    kernel.setLive(new Set(["user"]));
    kernel.applyResponse({ merge: [{ context: "user", slot: "current_user", value: { name: "Ada" } }] });
    expect(kernel.getSnapshot(user).data).toEqual({ current_user: { name: "Ada" } });
    expect(r.loads).toHaveLength(1);
  });
});

describe("resync", () => {
  it("refetches mounted entries and marks the others stale", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load);
    await mount(kernel, todos({ owner_id: 5 }));
    const gone = await mount(kernel, stats());
    gone.off();
    kernel.applyPush({ id: "9", resync: true });
    kernel.applyPush({ id: "9", resync: true });
    await tick();
    expect(r.count("todos")).toBe(2);
    expect(r.count("stats")).toBe(1);
    await kernel.ensure(stats());
    expect(r.count("stats")).toBe(2);
  });
});

describe("live coverage", () => {
  it("lets a response's invalidation wait for the push: one load in total", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load, { liveGraceMs: 80 });
    await mount(kernel, todos({ owner_id: 5 }));
    kernel.setLive(new Set(["todos"]));

    kernel.applyResponse({ invalidate: [{ context: "todos", params: { owner_id: 5 } }] });
    await sleep(20);
    expect(r.loads).toHaveLength(1); // waiting for the push
    kernel.applyPush({ id: "4", invalidate: [{ context: "todos", params: { owner_id: 5 } }], merge: [] });
    await tick();
    expect(r.loads).toHaveLength(2);
    await sleep(120); // past the grace: nothing more
    expect(r.loads).toHaveLength(2);
  });

  it("refetches once after the grace when no push comes", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load, { liveGraceMs: 50 });
    await mount(kernel, todos());
    await mount(kernel, stats());
    kernel.setLive(new Set(["todos"]));
    kernel.applyResponse({ invalidate: [{ context: "todos" }, { query: "stats" }] });
    await tick();
    expect(r.count("stats")).toBe(2); // not covered: at once
    expect(r.count("todos")).toBe(1);
    await sleep(90);
    expect(r.count("todos")).toBe(2);
    await sleep(60);
    expect(r.count("todos")).toBe(2);
  });

  it("counts a push that came before the response", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load, { liveGraceMs: 60 });
    await mount(kernel, todos());
    kernel.setLive(new Set(["todos"]));
    kernel.applyPush({ id: "5", invalidate: [{ context: "todos" }], merge: [] });
    await tick();
    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await sleep(100);
    expect(r.count("todos")).toBe(2);
  });

  it("refetches at once what was waiting when live goes down", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load, { liveGraceMs: 10_000 });
    await mount(kernel, todos());
    kernel.setLive(new Set(["todos"]));
    expect(kernel.isLive("todos")).toBe(true);
    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await tick();
    expect(r.count("todos")).toBe(1);
    kernel.setLive(null);
    await tick();
    expect(r.count("todos")).toBe(2);
    kernel.applyResponse({ invalidate: [{ context: "todos" }] }); // live down: no wait
    await tick();
    expect(r.count("todos")).toBe(3);
  });
});

describe("snapshots", () => {
  it("are the same object until the entry changes", async () => {
    const r = recorder();
    r.manual();
    const kernel = new CacheKernel(r.load);
    const idle = kernel.getSnapshot(todos());
    expect(idle).toMatchObject({ status: "idle", data: undefined, isFetching: false });
    expect(kernel.getSnapshot(todos({ owner_id: undefined }))).toBe(idle);

    kernel.subscribe(todos({ b: 1, a: 2 }), () => undefined);
    const loading = kernel.getSnapshot(todos({ a: 2, b: 1, c: undefined })); // same key
    expect(loading).toMatchObject({ status: "loading", isFetching: true });
    expect(kernel.getSnapshot(todos({ b: 1, a: 2 }))).toBe(loading);
    expect(r.loads[0]?.params).toEqual({ a: 2, b: 1 }); // undefined dropped before the load
    r.pending.shift()?.resolve({ todos: [] });
    await tick();
    const done = kernel.getSnapshot(todos({ a: 2, b: 1 }));
    expect(done).not.toBe(loading);
    expect(kernel.getSnapshot(todos({ a: 2, b: 1 }))).toBe(done);
    expect(Object.isFrozen(done)).toBe(true);
  });

  it("key by the rev the kernel is given", async () => {
    const r = recorder();
    let rev = "1";
    const kernel = new CacheKernel(r.load, { rev: (t) => (t.kind === "context" ? rev : null) });
    expect(await kernel.ensure(todos())).toEqual({ todos: 1 });
    rev = "2";
    expect(kernel.getSnapshot(todos()).status).toBe("idle");
    expect(await kernel.ensure(todos())).toEqual({ todos: 2 });
  });
});

describe("errors", () => {
  it("keeps a TetherError, and the data of the last success", async () => {
    let fail: unknown = null;
    const r = recorder((t, n) => {
      if (fail !== null) throw fail;
      return { todos: n };
    });
    const kernel = new CacheKernel(r.load);
    await mount(kernel, todos());
    fail = new TetherError("FORBIDDEN", "staff only", 403, { role: "staff" });
    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await tick();
    await tick();
    const snap = kernel.getSnapshot<{ todos: number }>(todos());
    expect(snap.status).toBe("error");
    expect(snap.error).toBe(fail);
    expect(snap.error?.status).toBe(403);
    expect(snap.data).toEqual({ todos: 1 });

    await expect(kernel.ensure(stats())).rejects.toBe(fail);
  });

  it("wraps a network TypeError as NETWORK_ERROR and anything else as INTERNAL_ERROR", async () => {
    const kernel = new CacheKernel((t) =>
      t.name === "net" ? Promise.reject(new TypeError("fetch failed")) : Promise.reject(new Error("boom")),
    );
    const net = await kernel.ensure({ kind: "query", name: "net", params: {} }).catch((e: unknown) => e);
    expect(net).toBeInstanceOf(TetherError);
    expect(net).toMatchObject({ code: "NETWORK_ERROR", status: 0, message: "fetch failed" });
    const other = await kernel.ensure({ kind: "query", name: "other", params: {} }).catch((e: unknown) => e);
    expect(other).toMatchObject({ code: "INTERNAL_ERROR", message: "boom" });
  });

  it("loads an errored target again when it is mounted again", async () => {
    let n = 0;
    const kernel = new CacheKernel(() => (++n === 1 ? Promise.reject(new Error("once")) : Promise.resolve(n)));
    await expect(kernel.ensure(stats())).rejects.toMatchObject({ code: "INTERNAL_ERROR" });
    await mount(kernel, stats());
    expect(kernel.getSnapshot(stats())).toMatchObject({ status: "success", data: 2, error: undefined });
  });
});

describe("garbage collection", () => {
  it("drops entries nothing mounts after gcMs, and keeps mounted ones", async () => {
    const r = recorder();
    const kernel = new CacheKernel(r.load, { gcMs: 100 });
    const seen: string[][] = [];
    kernel.onTopics((names) => seen.push([...names].sort()));
    const kept = await mount(kernel, todos());
    const gone = await mount(kernel, stats());
    await kernel.ensure(stats({ x: 1 }));
    gone.off(); // t = 0
    await sleep(50);
    const again = await mount(kernel, stats()); // mounted again in time: kept
    again.off(); // t = 50
    await sleep(70); // t = 120
    expect(kernel.getSnapshot(stats()).status).toBe("success");
    expect(kernel.getSnapshot(stats({ x: 1 })).status).toBe("idle"); // ensured, never mounted: dropped
    await sleep(80); // t = 200
    expect(kernel.getSnapshot(stats()).status).toBe("idle");
    expect(kernel.getSnapshot(todos()).status).toBe("success");
    expect(seen.at(-1)).toEqual(["todos"]);
    kept.off();
  });
});

describe("topics and clear", () => {
  it("reports the names of loaded entries once per tick, when they change", async () => {
    const r = recorder((t) => {
      if (t.name === "bad") throw new Error("no");
      return {};
    });
    const kernel = new CacheKernel(r.load);
    const seen: string[][] = [];
    kernel.onTopics((names) => seen.push([...names].sort()));
    kernel.subscribe(todos({ owner_id: 5 }), () => undefined);
    kernel.subscribe(todos({ owner_id: 6 }), () => undefined);
    kernel.subscribe(stats(), () => undefined);
    kernel.subscribe({ kind: "context", name: "bad", params: {} }, () => undefined);
    await tick();
    expect(seen).toEqual([["stats", "todos"]]);
    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await tick();
    expect(seen).toHaveLength(1); // same names: no call
  });

  it("waits for mounted entries' first loads (bounded) before reporting new names", async () => {
    const r = recorder();
    r.manual();
    const kernel = new CacheKernel(r.load);
    const seen: string[][] = [];
    kernel.onTopics((names) => seen.push([...names].sort()));
    kernel.subscribe(todos(), () => undefined);
    kernel.subscribe(stats(), () => undefined);
    kernel.subscribe({ kind: "context", name: "user", params: {} }, () => undefined);
    r.pending.shift()?.resolve({});
    await tick();
    await tick();
    expect(seen).toEqual([]); // stats and user are still on their way
    r.pending.shift()?.resolve({});
    await tick();
    expect(seen).toEqual([]);
    await sleep(300); // user is slow: the others are reported without it
    expect(seen).toEqual([["stats", "todos"]]);
    r.pending.shift()?.resolve({});
    await tick();
    expect(seen).toEqual([["stats", "todos"], ["stats", "todos", "user"]]);
  });

  it("clear() drops every entry, reloads the mounted ones and ignores loads in flight", async () => {
    const r = recorder();
    r.manual();
    const kernel = new CacheKernel(r.load);
    const seen: number[] = [];
    kernel.onTopics((names) => seen.push(names.size));
    let calls = 0;
    const off = kernel.subscribe(todos(), () => {
      calls += 1;
    });
    void kernel.ensure(stats()).catch(() => undefined);
    r.pending.shift()?.resolve({ todos: "alice" });
    r.pending.shift()?.resolve({ stats: "alice" });
    await tick();
    expect(seen).toEqual([2]);

    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await tick();
    expect(r.loads).toHaveLength(3); // alice's refetch, in flight
    kernel.clear();
    expect(kernel.getSnapshot(stats()).status).toBe("idle");
    expect(kernel.getSnapshot(todos())).toMatchObject({ status: "loading", data: undefined });
    expect(r.loads).toHaveLength(4);
    const before = calls;
    r.pending.shift()?.resolve({ todos: "alice, late" });
    await tick();
    expect(kernel.getSnapshot(todos()).data).toBeUndefined(); // the old load is ignored
    r.pending.shift()?.resolve({ todos: "bob" });
    await tick();
    expect(kernel.getSnapshot(todos()).data).toEqual({ todos: "bob" });
    expect(calls).toBeGreaterThan(before);
    expect(seen).toEqual([2, 1]); // no empty set between: the reload was waited for

    off(); // the unmount reaches the entry made by clear()
    kernel.applyResponse({ invalidate: [{ context: "todos" }] });
    await tick();
    expect(r.loads).toHaveLength(4);
  });
});
