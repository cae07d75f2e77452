// Live push over SSE and the WebSocket: pushes reach the cache, refusals, and reconnect with resume
// through a TCP proxy that cuts every connection while mutations happen elsewhere.
import { afterEach, describe, expect, it } from "vitest";
import type { TetherClient } from "../../src/tether/codegen/runtime/client.js";
import type { LivePush } from "../../src/tether/codegen/runtime/wire.js";
import { Proxy, WebSocket, direct, makeClient, recordingFetch, sleep, unique, until } from "./runtime-fixtures.js";

const clients: TetherClient[] = [];
const proxies: Proxy[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const proxy of proxies.splice(0)) await proxy.close();
});

type Mode = "sse" | "websocket";

function setup(live: Mode, options: Parameters<typeof makeClient>[0] = {}) {
  const { fetch, seen } = recordingFetch();
  const sent: unknown[] = [];
  class Recording extends (WebSocket as unknown as new (url: string) => globalThis.WebSocket) {
    override send(data: string): void {
      sent.push(JSON.parse(data) as unknown);
      super.send(data);
    }
  }
  const client = makeClient({ fetch, live, WebSocket: Recording, ...options });
  clients.push(client);
  const pushes: LivePush[] = [];
  client.onLivePush((push) => pushes.push(push));
  return { client, seen, sent, pushes };
}

/** The owner a push of add_note invalidates. */
const ownerOf = (push: LivePush): unknown => push.invalidate?.[0]?.params?.owner;

describe.each(["sse", "websocket"] as const)("live push over %s", (mode) => {
  it("follows the names of loaded entries, and a push refetches the mounted context", async () => {
    const { client, seen, pushes } = setup(mode, { headers: () => ({ "x-user": "ada" }) });
    const owner = unique(`live-${mode}`);
    const target = { kind: "context" as const, name: "notes", params: { owner } };
    const stop = client.cache.subscribe(target, () => undefined);
    expect(client.liveStatus()).toBe("off");
    await until(() => client.liveStatus() === "ready", 5000, "live ready");
    if (mode === "sse") {
      const live = seen.find((s) => s.path.startsWith("/api/live"));
      expect(live).toMatchObject({ method: "GET", path: "/api/live?contexts=notes", headers: { "x-user": "ada" } });
    }
    await direct("add_note", { owner, text: "from elsewhere" });
    await until(() => pushes.some((p) => ownerOf(p) === owner), 5000, "the push");
    expect(pushes.filter((p) => ownerOf(p) === owner)[0]).toMatchObject({
      invalidate: [{ context: "notes", params: { owner } }],
      merge: [],
    });
    await until(() => {
      const data = client.cache.getSnapshot<{ notes: string[] }>(target).data;
      return data?.notes.length === 1;
    }, 5000, "the refetch");
    expect(client.cache.getSnapshot(target).data).toEqual({ notes: ["from elsewhere"], title: "" });
    // A merge pushed by someone else splices the slot without a request.
    const loads = seen.filter((s) => s.path === "/api/context/notes").length;
    await direct("set_title", { owner, title: "pushed" });
    await until(() => (client.cache.getSnapshot<{ title: string }>(target).data?.title ?? "") === "pushed", 5000, "the merge");
    await sleep(50);
    expect(seen.filter((s) => s.path === "/api/context/notes").length).toBe(loads);
    stop();
  });

  it("makes exactly one refetch for the caller's own command: the push's", async () => {
    const { client, seen, pushes } = setup(mode, { liveGraceMs: 400, transport: "http" });
    const owner = unique(`own-${mode}`);
    const target = { kind: "context" as const, name: "notes", params: { owner } };
    const stop = client.cache.subscribe(target, () => undefined);
    await until(() => client.liveStatus() === "ready", 5000, "live ready");
    await until(() => client.cache.getSnapshot(target).status === "success", 5000, "loaded");
    const loads = () => seen.filter((s) => s.path === "/api/context/notes").length;
    const before = loads();
    await client.call("add_note", { owner, text: "mine" });
    await until(() => pushes.some((p) => ownerOf(p) === owner), 5000, "the push");
    await sleep(700); // past the grace: no second refetch
    expect(loads()).toBe(before + 1);
    expect(client.cache.getSnapshot(target).data).toEqual({ notes: ["mine"], title: "" });
    stop();
  });

  it("stays in error after a refusal (no retries) until reset() brings new headers", async () => {
    let user: string | undefined;
    const proxy = await Proxy.start();
    proxies.push(proxy);
    const { client } = setup(mode, {
      baseUrl: proxy.url,
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
      headers: () => (user === undefined ? {} : { "x-user": user }),
    });
    const drop = client.follow(["secret"]);
    await until(() => client.liveStatus() === "error", 5000, "the refusal");
    const attempts = proxy.attempts.length;
    await sleep(400); // retries would come every <= 100 ms
    expect(client.liveStatus()).toBe("error");
    expect(proxy.attempts.length).toBe(attempts);
    user = "ada";
    client.reset();
    await until(() => client.liveStatus() === "ready", 5000, "ready after reset");
    drop();
    await until(() => client.liveStatus() === "off", 5000, "off once nothing is followed");
  });

  it("resubscribes when the followed names change, resuming from the last id", async () => {
    const { client: target, seen, sent, pushes: local } = setup(mode, { headers: () => ({ "x-user": "ada" }) });
    const run = unique(`switch-${mode}`);
    const dropNotes = target.follow(["notes"]);
    await until(() => target.liveStatus() === "ready", 5000, "ready");
    await direct("add_note", { owner: run, text: "x" });
    await until(() => local.some((p) => ownerOf(p) === run), 5000, "the push");
    const lastId = local.filter((p) => ownerOf(p) === run).at(-1)?.id;
    const dropSecret = target.follow(["secret"]);
    await until(() => target.liveStatus() === "connecting", 5000, "the switch");
    await until(() => target.liveStatus() === "ready", 5000, "ready again");
    if (mode === "sse") {
      const lives = seen.filter((s) => s.path.startsWith("/api/live"));
      expect(lives.map((s) => s.path)).toEqual(["/api/live?contexts=notes", "/api/live?contexts=notes%2Csecret"]);
      expect(lives[1]?.headers["last-event-id"]).toBe(lastId);
    } else {
      const lives = sent.filter((m) => (m as { route: string }).route === "LIVE");
      expect(lives.map((m) => (m as { payload: unknown }).payload)).toEqual([
        { contexts: ["notes"] },
        { contexts: ["notes", "secret"], since: lastId },
      ]);
      expect(lives[1]).toMatchObject({ headers: { "x-user": "ada" } });
    }
    dropSecret();
    dropNotes();
    await until(() => target.liveStatus() === "off", 5000, "off");
  });

  it("reconnects with growing backoff and is replayed exactly the pushes it missed", async () => {
    const proxy = await Proxy.start();
    proxies.push(proxy);
    const { client, pushes } = setup(mode, {
      baseUrl: proxy.url,
      reconnect: { initialDelayMs: 40, maxDelayMs: 5000 },
    });
    const statuses: string[] = [];
    client.onLiveStatus(() => statuses.push(client.liveStatus()));
    const run = unique(`resume-${mode}`);
    const drop = client.follow(["notes"]);
    await until(() => client.liveStatus() === "ready", 5000, "live ready");
    await direct("add_note", { owner: `${run}-0`, text: "before" });
    await until(() => pushes.some((p) => ownerOf(p) === `${run}-0`), 5000, "the first push");

    proxy.refuse = true;
    const cutAt = proxy.attempts.length;
    proxy.cut();
    await until(() => client.liveStatus() === "connecting", 5000, "the drop");
    for (const i of [1, 2, 3]) await direct("add_note", { owner: `${run}-${i}`, text: "missed" });
    await sleep(1300);
    const refused = proxy.attempts.slice(cutAt);
    proxy.refuse = false;
    await until(() => pushes.some((p) => ownerOf(p) === `${run}-3`), 8000, "the replay");
    await direct("add_note", { owner: `${run}-4`, text: "after" });
    await until(() => pushes.some((p) => ownerOf(p) === `${run}-4`), 5000, "a live push after the replay");

    const mine = pushes.filter((p) => String(ownerOf(p)).startsWith(run));
    expect(mine.map(ownerOf)).toEqual([0, 1, 2, 3, 4].map((i) => `${run}-${i}`));
    expect(pushes.some((p) => p.resync === true)).toBe(false);
    const ids = mine.map((p) => Number(p.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    expect(statuses).toEqual(["connecting", "ready", "connecting", "ready"]);

    // Backoff: the k-th wait between refused attempts is jittered within [40, 80] * 2^k ms
    // (initialDelayMs 40, doubling; timers never fire early, small slack for the event loop).
    expect(refused.length).toBeGreaterThanOrEqual(4);
    const gaps = refused.slice(1).map((t, i) => t - (refused[i] ?? 0));
    gaps.forEach((gap, k) => {
      expect(gap).toBeGreaterThanOrEqual(40 * 2 ** k - 10);
      expect(gap).toBeLessThanOrEqual(80 * 2 ** k + 150);
    });
    expect(gaps.at(-1) ?? 0).toBeGreaterThan(2 * (gaps[0] ?? 0));
    drop();
  });
});
