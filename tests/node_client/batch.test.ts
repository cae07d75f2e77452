// JSON-RPC batching against the real server: one tick, one request; maxItems splits; typed errors.
import { afterEach, describe, expect, it } from "vitest";
import { TetherError, isTetherError } from "../../src/tether/codegen/runtime/errors.js";
import type { TetherClient } from "../../src/tether/codegen/runtime/client.js";
import { makeClient, recordingFetch, unique } from "./runtime-fixtures.js";

const clients: TetherClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

function setup(maxItems?: number): { client: TetherClient; seen: ReturnType<typeof recordingFetch>["seen"] } {
  const { fetch, seen } = recordingFetch();
  const client = makeClient({ fetch, ...(maxItems === undefined ? {} : { batch: { maxItems } }) });
  clients.push(client);
  return { client, seen };
}

const rpcPosts = (seen: ReturnType<typeof recordingFetch>["seen"]) => seen.filter((s) => s.path === "/api/jsonrpc");

describe("JSON-RPC batching", () => {
  it("sends the calls of one tick as one request with one item each", async () => {
    const { client, seen } = setup();
    const results = await Promise.all([1, 2, 3, 4, 5].map((value) => client.call<number>("echo", { value })));
    expect(results).toEqual([1, 2, 3, 4, 5]);
    const posts = rpcPosts(seen);
    expect(posts).toHaveLength(1);
    const body = posts[0]?.body as { method: string; params: unknown; id: number }[];
    expect(body.map((item) => [item.method, item.params])).toEqual([1, 2, 3, 4, 5].map((value) => ["echo", { value }]));
    expect(new Set(body.map((item) => item.id)).size).toBe(5);
    expect(posts[0]?.headers["x-tether-effects"]).toBe("1");
    expect(posts[0]?.headers["content-type"]).toBe("application/json");
  });

  it("sends a lone call as a plain object, and calls of later ticks separately", async () => {
    const { client, seen } = setup();
    expect(await client.call<number>("echo", { value: 7 })).toBe(7);
    expect(await client.call<number>("echo", { value: 8 })).toBe(8);
    const posts = rpcPosts(seen);
    expect(posts).toHaveLength(2);
    expect(posts[0]?.body).toMatchObject({ jsonrpc: "2.0", method: "echo", params: { value: 7 } });
    expect(Array.isArray(posts[0]?.body)).toBe(false);
  });

  it("splits more than maxItems calls into several batches", async () => {
    const { client, seen } = setup(3);
    const values = [1, 2, 3, 4, 5, 6, 7];
    expect(await Promise.all(values.map((value) => client.call<number>("echo", { value })))).toEqual(values);
    const sizes = rpcPosts(seen).map((post) => (Array.isArray(post.body) ? post.body.length : 1));
    expect(sizes).toEqual([3, 3, 1]);
  });

  it("defaults to batches of 100, the server's limit", async () => {
    const { client, seen } = setup();
    const values = Array.from({ length: 150 }, (_, i) => i);
    expect(await Promise.all(values.map((value) => client.call<number>("echo", { value })))).toEqual(values);
    expect(rpcPosts(seen).map((post) => (post.body as unknown[]).length)).toEqual([100, 50]);
  });

  it("types each item's outcome: results, effects and errors side by side", async () => {
    const { client, seen } = setup();
    const owner = unique("batch");
    const [added, stock, missing, invalid, ok] = await Promise.allSettled([
      client.callWithEffects<number>("add_note", { owner, text: "a" }),
      client.call("fail", { kind: "stock" }),
      client.call("fail", { kind: "missing" }),
      client.call("echo", { value: "not a number" }),
      client.call<string>("fail", { kind: "fine" }),
    ]);
    expect(rpcPosts(seen)).toHaveLength(1);
    expect(added).toEqual({
      status: "fulfilled",
      value: { result: 1, invalidate: [{ context: "notes", params: { owner } }], merge: [] },
    });
    expect(ok).toEqual({ status: "fulfilled", value: "fine" });
    const reason = (settled: PromiseSettledResult<unknown> | undefined): TetherError => {
      if (settled?.status !== "rejected") throw new Error("expected a rejection");
      expect(settled.reason).toBeInstanceOf(TetherError);
      return settled.reason as TetherError;
    };
    const outOfStock = reason(stock);
    expect([outOfStock.code, outOfStock.status, outOfStock.message]).toEqual(["OUT_OF_STOCK", 409, "Out of stock"]);
    expect(outOfStock.details).toEqual({ sku: "widget", available: 0 });
    expect(isTetherError(outOfStock, "OUT_OF_STOCK")).toBe(true);
    expect(isTetherError(outOfStock, "NOT_FOUND")).toBe(false);
    const notFound = reason(missing);
    expect([notFound.code, notFound.status, notFound.details]).toEqual(["NOT_FOUND", 404, { kind: "missing" }]);
    const validation = reason(invalid);
    expect([validation.code, validation.status]).toEqual(["VALIDATION_FAILED", 422]);
    expect((validation.details as { loc: unknown[] }[])[0]?.loc).toEqual(["value"]);
  });

  it("rejects every call of a batch the server refuses whole", async () => {
    const { client, seen } = setup(150);
    const calls = Array.from({ length: 101 }, (_, value) => client.call("echo", { value }));
    const settled = await Promise.allSettled(calls);
    expect(rpcPosts(seen)).toHaveLength(1);
    for (const outcome of settled) {
      expect(outcome.status).toBe("rejected");
      const error = (outcome as PromiseRejectedResult).reason as TetherError;
      expect(error).toBeInstanceOf(TetherError);
      expect(error.code).toBe("BATCH_TOO_LARGE");
      expect(error.details).toEqual({ limit: 100, received: 101 });
    }
  });

  it("drops a call aborted before the flush, and rejects one aborted in flight at once", async () => {
    const { client, seen } = setup();
    const early = new AbortController();
    const first = client.call<number>("echo", { value: 1 }, { signal: early.signal });
    const second = client.call<number>("echo", { value: 2 });
    early.abort();
    await expect(first).rejects.toMatchObject({ code: "ABORTED" });
    expect(await second).toBe(2);
    expect(rpcPosts(seen).map((post) => post.body)).toEqual([
      expect.objectContaining({ method: "echo", params: { value: 2 } }),
    ]);

    const late = new AbortController();
    const started = performance.now();
    const slow = client.call<number>("slow", { ms: 800 }, { signal: late.signal });
    const quick = client.call<number>("echo", { value: 3 });
    setTimeout(() => late.abort(), 50);
    await expect(slow).rejects.toSatisfy((e: unknown) => isTetherError(e, "ABORTED"));
    expect(performance.now() - started).toBeLessThan(500);
    expect(await quick).toBe(3);
    expect(rpcPosts(seen)).toHaveLength(2); // the aborted call had gone out with `quick`
  });

  it("rejects with NETWORK_ERROR when the server cannot be reached", async () => {
    const { fetch } = recordingFetch();
    const client = makeClient({ fetch, baseUrl: "http://127.0.0.1:9" });
    clients.push(client);
    const error = await client.call("echo", { value: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TetherError);
    expect([(error as TetherError).code, (error as TetherError).status]).toEqual(["NETWORK_ERROR", 0]);
  });
});
