// Shared by the runtime's vitest files: the server's URL, its schema table, a recording fetch and
// client, `ws` as the WebSocket class, direct HTTP calls, cleanups after each test, streams' cancel
// count, and a TCP proxy that can cut and refuse connections.
import net from "node:net";
import { afterEach } from "vitest";
import WebSocketImpl from "ws";
import { createTetherClient } from "../../src/tether/codegen/runtime/client.js";
import type { ClientOptions, TetherClient } from "../../src/tether/codegen/runtime/client.js";
import type { OperationMeta, SchemaMeta } from "../../src/tether/codegen/runtime/wire.js";

const url = process.env.TETHER_TEST_URL;
if (url === undefined || url === "") {
  throw new Error("TETHER_TEST_URL is not set: run these tests through tests/codegen/test_runtime_vitest.py");
}
/** The server running tests/codegen/runtime_app.py. */
export const SERVER_URL: string = url;

const CALL = ["http", "jsonrpc", "websocket"] as const;
const STREAM = ["sse", "websocket"] as const;
const op = (kind: OperationMeta["kind"], params: string[], extra: Partial<OperationMeta> = {}): OperationMeta => ({
  kind,
  transports: kind === "stream" ? STREAM : CALL,
  params,
  ...extra,
});

/** The schema table of runtime_app (what the generator would write for it). */
export const SCHEMA: SchemaMeta = {
  prefix: "/api",
  operations: {
    echo: op("query", ["value"]),
    slow: op("query", ["ms"]),
    fail: op("command", ["kind"]),
    whoami: op("query", []),
    notes: op("query", ["owner"], { context: "notes" }),
    title: op("query", ["owner"], { context: "notes" }),
    add_note: op("command", ["owner", "text"]),
    set_title: op("command", ["owner", "title"]),
    note_log: op("query", []),
    secret: op("query", [], { context: "secret" }),
    ticks: op("stream", ["n", "ms"]),
    ticks_then_fail: op("stream", ["n"]),
    forever: op("stream", ["ms"]),
    stream_state: op("query", []),
  },
  contexts: {
    notes: { slots: ["notes", "title"], params: ["owner"], rev: null, perUser: false },
    secret: { slots: ["secret"], params: [], rev: null, perUser: true },
  },
  errors: {
    BAD_REQUEST: 400,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    OUT_OF_STOCK: 409,
    VALIDATION_FAILED: 422,
    INTERNAL_ERROR: 500,
  },
};

/** runtime_app's `notes` context bundle. */
export type Notes = { notes: string[]; title: string };

/** The `ws` package's WebSocket, typed as the DOM's (node 20 has no global WebSocket). */
export const WebSocket = WebSocketImpl as unknown as new (url: string) => globalThis.WebSocket;

/** One request a RecordingFetch saw. */
export interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: unknown;
}

/** A real fetch that records each request (method, path, headers, parsed JSON body) first. */
export function recordingFetch(): { fetch: typeof fetch; seen: Seen[] } {
  const seen: Seen[] = [];
  const recorder: typeof fetch = async (input, init) => {
    const target = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const text = typeof init?.body === "string" ? init.body : undefined;
    seen.push({
      method: init?.method ?? "GET",
      path: target.pathname + target.search,
      headers,
      body: text === undefined ? undefined : (JSON.parse(text) as unknown),
    });
    return fetch(input, init);
  };
  return { fetch: recorder, seen };
}

/** A client of the test server (or of `baseUrl`), with `ws` for sockets; close it after the test. */
export function makeClient(options: ClientOptions = {}): TetherClient {
  return createTetherClient(SCHEMA, { baseUrl: SERVER_URL, WebSocket, live: false, ...options });
}

/** A client of the test server on HTTP whose fetch records each request; `calls()` lists the paths
 * requested, but the live subscription's. Close the client after the test. */
export function recordingClient(options: ClientOptions = {}): {
  client: TetherClient;
  seen: Seen[];
  calls: () => string[];
} {
  const { fetch, seen } = recordingFetch();
  const client = makeClient({ fetch, transport: "http", ...options });
  const calls = (): string[] => seen.filter((s) => !s.path.startsWith("/api/live")).map((s) => s.path);
  return { client, seen, calls };
}

/** Registers, in the calling test file, an afterEach that runs the cleanups given to the returned
 * function during the test, last first. */
export function cleanupAfterEach(): (...cleanups: (() => void)[]) => void {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  });
  return (...more) => {
    cleanups.push(...more);
  };
}

/** Call `name` directly over HTTP (not through the runtime): the body's result. */
export async function direct(name: string, params: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<unknown> {
  const response = await fetch(`${SERVER_URL}/api/call/${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(params),
  });
  const body = (await response.json()) as { result?: unknown; error?: unknown };
  if (!response.ok) throw new Error(`${name} failed: ${JSON.stringify(body)}`);
  return body.result;
}

/** How many stream generators the server has cancelled so far (runtime_app's stream_state). */
export async function cancelledStreams(): Promise<number> {
  return ((await direct("stream_state")) as { cancelled: number }).cancelled;
}

/** Polls the cancelled count until it moves past `before` or `timeoutMs` passes: the last count. */
export async function cancelledAfter(before: number, timeoutMs = 3000): Promise<number> {
  let count = before;
  const deadline = Date.now() + timeoutMs;
  while (count === before && Date.now() < deadline) count = await cancelledStreams();
  return count;
}

/** The first `n` items of `stream`, leaving its loop early once it has them. */
export async function takeFirst<T>(stream: AsyncIterable<T>, n: number): Promise<T[]> {
  const items: T[] = [];
  for await (const item of stream) {
    items.push(item);
    if (items.length === n) break;
  }
  return items;
}

/** Every item of `stream` and the error that ended it (undefined when it ended well);
 * `onItem(items)` runs after each item. */
export async function drain<T>(
  stream: AsyncIterable<T>,
  onItem: (items: T[]) => void = () => undefined,
): Promise<{ items: T[]; error: unknown }> {
  const items: T[] = [];
  try {
    for await (const item of stream) {
      items.push(item);
      onItem(items);
    }
  } catch (error) {
    return { items, error };
  }
  return { items, error: undefined };
}

/** Resolve once `check()` holds (polling every 10 ms), or fail after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Wait `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A unique name for this run (owners, notes). */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A TCP proxy in front of the server: `cut()` drops every connection, `refuse` rejects new ones. */
export class Proxy {
  readonly server: net.Server;
  /** When each connection attempt arrived (ms, performance.now()), refused ones included. */
  readonly attempts: number[] = [];
  refuse = false;
  stall = false;
  private readonly sockets = new Set<net.Socket>();
  private port = 0;

  private constructor(target: URL) {
    this.server = net.createServer((client) => {
      this.attempts.push(performance.now());
      if (this.refuse) {
        client.destroy();
        return;
      }
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.sockets.add(a);
        a.on("error", () => b.destroy());
        a.on("close", () => {
          this.sockets.delete(a);
          b.destroy();
        });
        // While `stall` is set, what the server sends is swallowed (a connection that went silent).
        a.on("data", (chunk: Buffer) => {
          if (!(this.stall && a === upstream)) b.write(chunk);
        });
      }
    });
  }

  /** A proxy of the test server on a free loopback port. */
  static async start(): Promise<Proxy> {
    const proxy = new Proxy(new URL(SERVER_URL));
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    const address = proxy.server.address();
    if (address === null || typeof address === "string") throw new Error("no proxy port");
    proxy.port = address.port;
    return proxy;
  }

  /** The proxy's base URL. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Connections open through the proxy (each counts its two sockets once). */
  get open(): number {
    return this.sockets.size / 2;
  }

  /** Drop every open connection (both directions). */
  cut(): void {
    for (const socket of [...this.sockets]) socket.destroy();
  }

  /** Cut everything and stop listening. */
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
