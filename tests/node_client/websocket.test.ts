// The WebSocket wire (envelope dialect): calls, effects, typed errors, streams, cancel, drops.
import { afterEach, describe, expect, it } from "vitest";
import { TetherError } from "../../src/tether/codegen/runtime/errors.js";
import type { TetherClient } from "../../src/tether/codegen/runtime/client.js";
import { SocketConnection } from "../../src/tether/codegen/runtime/websocket.js";
import {
  Proxy,
  WebSocket,
  cancelledAfter,
  cancelledStreams,
  drain,
  makeClient,
  recordingFetch,
  sleep,
  takeFirst,
  unique,
  until,
} from "./runtime-fixtures.js";

const clients: TetherClient[] = [];
const proxies: Proxy[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const proxy of proxies.splice(0)) await proxy.close();
});

/** A WebSocket class that counts the sockets it opens and records what they send. */
function countingWebSocket(): { opened: string[]; sent: unknown[]; WebSocket: new (url: string) => globalThis.WebSocket } {
  const opened: string[] = [];
  const sent: unknown[] = [];
  class Counting extends (WebSocket as unknown as new (url: string) => globalThis.WebSocket) {
    constructor(url: string) {
      super(url);
      opened.push(url);
    }
    override send(data: string): void {
      sent.push(JSON.parse(data) as unknown);
      super.send(data);
    }
  }
  return { opened, sent, WebSocket: Counting };
}

function setup(baseUrl?: string) {
  const socket = countingWebSocket();
  const { fetch, seen } = recordingFetch();
  const client = makeClient({
    transport: "websocket",
    streams: "websocket",
    WebSocket: socket.WebSocket,
    fetch,
    headers: () => ({ "x-user": "ada" }),
    ...(baseUrl === undefined ? {} : { baseUrl }),
  });
  clients.push(client);
  return { client, seen, ...socket };
}

describe("WebSocket calls", () => {
  it("calls over one lazily opened socket, with the headers in every message", async () => {
    const { client, opened, sent, seen } = setup();
    expect(opened).toEqual([]);
    const owner = unique("ws");
    const [echoed, me, added] = await Promise.all([
      client.call<number>("echo", { value: 5 }),
      client.call<string>("whoami"),
      client.callWithEffects<number>("add_note", { owner, text: "x" }),
    ]);
    expect([echoed, me]).toEqual([5, "ada"]);
    expect(added).toEqual({ result: 1, invalidate: [{ context: "notes", params: { owner } }], merge: [] });
    const merged = await client.callWithEffects<string>("set_title", { owner, title: "W" });
    expect(merged.merge).toEqual([{ context: "notes", slot: "title", params: { owner }, value: "W" }]);
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/api\/ws$/);
    expect(seen).toEqual([]); // nothing went over HTTP
    expect(sent).toHaveLength(4);
    for (const message of sent) expect(message).toMatchObject({ headers: { "x-user": "ada" } });
    expect(sent[0]).toMatchObject({ route: "echo", payload: { value: 5 } });
    expect(new Set(sent.map((m) => (m as { uuid: string }).uuid)).size).toBe(4);
  });

  it("answers errors with the envelope's code, status and details", async () => {
    const { client } = setup();
    const stock = await client.call("fail", { kind: "stock" }).catch((e: unknown) => e);
    expect(stock).toBeInstanceOf(TetherError);
    expect(stock).toMatchObject({ code: "OUT_OF_STOCK", status: 409, details: { sku: "widget", available: 0 } });
    await expect(client.call("echo", { value: "x" })).rejects.toMatchObject({ code: "VALIDATION_FAILED", status: 422 });
    await expect(client.call("nope")).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 });
  });

  it("rejects an aborted call at once and ignores its reply", async () => {
    const { client } = setup();
    const controller = new AbortController();
    const started = performance.now();
    const slow = client.call("slow", { ms: 600 }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 30);
    await expect(slow).rejects.toMatchObject({ code: "ABORTED" });
    expect(performance.now() - started).toBeLessThan(400);
    expect(await client.call("echo", { value: 1 })).toBe(1);
  });

  it("fails calls in flight with NETWORK_ERROR when the socket drops, then reconnects", async () => {
    const proxy = await Proxy.start();
    proxies.push(proxy);
    const { client, opened } = setup(proxy.url);
    expect(await client.call("echo", { value: 1 })).toBe(1);
    const inFlight = client.call("slow", { ms: 2000 });
    await until(() => proxy.open === 1, 2000, "the socket");
    setTimeout(() => proxy.cut(), 50);
    const error = (await inFlight.catch((e: unknown) => e)) as TetherError;
    expect(error).toBeInstanceOf(TetherError);
    expect([error.code, error.status]).toEqual(["NETWORK_ERROR", 0]);
    expect(error.message).toContain("may or may not have run");
    expect(await client.call("echo", { value: 2 })).toBe(2);
    expect(opened).toHaveLength(2);
  });
});

describe("WebSocket streams", () => {
  it("yields a subscription's items, then ends", async () => {
    const { client } = setup();
    const items: number[] = [];
    for await (const item of client.stream<number>("ticks", { n: 5 })) items.push(item);
    expect(items).toEqual([1, 2, 3, 4, 5]);
  });

  it("throws the stream's error after its items", async () => {
    const { client } = setup();
    const { items, error } = await drain(client.stream<number>("ticks_then_fail", { n: 2 }));
    expect(items).toEqual([1, 2]);
    expect(error).toBeInstanceOf(TetherError);
    expect(error).toMatchObject({ code: "NOT_FOUND", status: 404, details: { after: 2 } });
    const refused = (async () => {
      for await (const item of client.stream("ticks", { n: "x" })) void item;
    })();
    await expect(refused).rejects.toMatchObject({ code: "VALIDATION_FAILED", status: 422 });
  });

  it("sends CANCEL when the loop is left early, and the server's generator stops", async () => {
    const { client, sent } = setup();
    const before = await cancelledStreams();
    expect(await takeFirst(client.stream<number>("forever", { ms: 5 }), 3)).toEqual([1, 2, 3]);
    const subscription = sent.find((m) => (m as { route: string }).route === "forever") as { uuid: string };
    expect(sent).toContainEqual({ uuid: subscription.uuid, route: "CANCEL" });
    expect(await cancelledAfter(before)).toBe(before + 1);
    expect(await client.call("echo", { value: 9 })).toBe(9); // the socket is still fine
  });

  it("ends an open stream with NETWORK_ERROR when the socket drops", async () => {
    const proxy = await Proxy.start();
    proxies.push(proxy);
    const { client } = setup(proxy.url);
    const { items, error } = await drain(client.stream<number>("forever", { ms: 20 }), (seen) => {
      if (seen.length === 2) proxy.cut();
    });
    expect(items.length).toBeGreaterThanOrEqual(2);
    expect(error).toBeInstanceOf(TetherError);
    expect(error).toMatchObject({ code: "NETWORK_ERROR", status: 0 });
  });
});

describe("WebSocket heartbeat", () => {
  it("pings an idle socket, and drops one whose PING goes unanswered", async () => {
    const proxy = await Proxy.start();
    proxies.push(proxy);
    const counting = countingWebSocket();
    const socket = new SocketConnection({
      url: `${proxy.url.replace(/^http/, "ws")}/api/ws`,
      WebSocket: counting.WebSocket,
      headers: () => Promise.resolve({}),
      pingIntervalMs: 100,
      pongTimeoutMs: 150,
    });
    try {
      expect(await socket.call("echo", { value: 1 })).toMatchObject({ result: 1 });
      await sleep(450); // idle: PINGs go out, PONGs come back, the socket stays
      const pings = counting.sent.filter((m) => (m as { route: string }).route === "PING");
      expect(pings.length).toBeGreaterThanOrEqual(2);
      expect(counting.opened).toHaveLength(1);
      expect(await socket.call("echo", { value: 2 })).toMatchObject({ result: 2 });

      proxy.stall = true; // the connection goes silent (no close, no error)
      const started = performance.now();
      const error = (await socket.call("echo", { value: 3 }).catch((e: unknown) => e)) as TetherError;
      expect(error).toMatchObject({ code: "NETWORK_ERROR", status: 0 });
      expect(error.message).toContain("heartbeat");
      expect(performance.now() - started).toBeLessThan(1000);
      proxy.stall = false;
      expect(await socket.call("echo", { value: 4 })).toMatchObject({ result: 4 });
      expect(counting.opened).toHaveLength(2);
    } finally {
      socket.close();
    }
  });
});
