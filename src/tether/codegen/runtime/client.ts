/** The tether client: calls, streams, context bundles and live push over the chosen wires. */
import { CacheKernel } from "./cache.js";
import type { Target } from "./cache.js";
import { TetherError, networkError } from "./errors.js";
import { HttpTransport } from "./http.js";
import type { WireContext } from "./http.js";
import { DEFAULT_MAX_ITEMS, JsonRpcBatcher } from "./jsonrpc.js";
import { LiveConnection } from "./live.js";
import type { LiveStatus } from "./live.js";
import { sseStream } from "./sse.js";
import { SocketConnection } from "./websocket.js";
import type { LivePush, OperationMeta, Outcome, Params, SchemaMeta } from "./wire.js";

export type { LiveStatus } from "./live.js";

/** How a client reaches the server. */
export interface ClientOptions {
  /** The origin (and path) before the prefix; default "" (the page's own origin). */
  baseUrl?: string;
  /** The wire of calls; default "jsonrpc". */
  transport?: "jsonrpc" | "http" | "websocket";
  /** The wire of streams; default "sse". */
  streams?: "sse" | "websocket";
  /** The wire of live push, or false for none; default "sse". */
  live?: "sse" | "websocket" | false;
  /** The caller's headers, read for every request and socket message. */
  headers?: () => Record<string, string> | Promise<Record<string, string>>;
  fetch?: typeof fetch;
  WebSocket?: new (url: string) => WebSocket;
  /** JSON-RPC batches: at most `maxItems` calls each (default 100). */
  batch?: { maxItems?: number };
  /** Reconnect backoff of live push: from `initialDelayMs` (250) doubling to `maxDelayMs` (10000). */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  /** How long a response's invalidation of a live-covered name waits for its push (1000 ms). */
  liveGraceMs?: number;
}

/** Options of one call. */
export interface CallOptions {
  signal?: AbortSignal;
  /** Whether the call's effects are applied to `client.cache` (default true). */
  applyEffects?: boolean;
}

/** A client of one tether app. */
export interface TetherClient {
  readonly schema: SchemaMeta;
  readonly cache: CacheKernel;
  call<T>(name: string, input?: Params, options?: CallOptions): Promise<T>;
  callWithEffects<T>(name: string, input?: Params, options?: CallOptions): Promise<Outcome<T>>;
  stream<T>(name: string, input?: Params, options?: CallOptions): AsyncIterable<T>;
  fetchContext<T>(name: string, params?: Params, options?: CallOptions): Promise<T>;
  liveStatus(): LiveStatus;
  onLiveStatus(listener: () => void): () => void;
  /** Listen to every live push the client receives. */
  onLivePush(listener: (push: LivePush) => void): () => void;
  /** Follow `names` over live push too (beside the cache's); the returned function drops them. */
  follow(names: readonly string[]): () => void;
  reset(): void;
  close(): void;
}

/** The wire names of `input`, for an operation whose TypeScript names differ (--camel-case). */
function toWire(meta: { readonly names?: Readonly<Record<string, string>> } | undefined, input: Params): Params {
  const names = meta?.names;
  if (names === undefined) return input;
  const out: Params = {};
  for (const [key, value] of Object.entries(input)) out[names[key] ?? key] = value;
  return out;
}

/** The wire `preferred`, when the operation is on it; else http, else the first it is on. */
function pick(meta: OperationMeta | undefined, preferred: string, order: readonly string[]): string {
  if (meta === undefined || meta.transports.length === 0 || meta.transports.includes(preferred)) {
    return preferred;
  }
  for (const wire of order) if (meta.transports.includes(wire)) return wire;
  return preferred;
}

/** The socket's URL: `baseUrl` (or the page's location) with ws:/wss:, then `{prefix}/ws`. */
function socketUrl(baseUrl: string, prefix: string): string {
  let origin = baseUrl.replace(/\/+$/, "");
  if (!/^[a-z]+:\/\//i.test(origin)) {
    const location = (globalThis as { location?: { protocol: string; host: string } }).location;
    if (location === undefined) throw networkError("a WebSocket needs a baseUrl outside a browser");
    origin = `${location.protocol}//${location.host}${origin}`;
  }
  return `${origin.replace(/^http/i, "ws")}${prefix}/ws`;
}

/** A client of the app described by `schema`. */
export function createTetherClient(schema: SchemaMeta, options: ClientOptions = {}): TetherClient {
  const readHeaders = options.headers;
  const ctx: WireContext = {
    baseUrl: options.baseUrl ?? "",
    prefix: schema.prefix,
    fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    headers: async () => (readHeaders === undefined ? {} : { ...(await readHeaders()) }),
    errors: schema.errors,
  };
  const http = new HttpTransport(ctx);
  const rpc = new JsonRpcBatcher(ctx, options.batch?.maxItems ?? DEFAULT_MAX_ITEMS);
  let socket: SocketConnection | undefined;
  const getSocket = (): SocketConnection => {
    if (socket === undefined) {
      const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
      if (WebSocketClass === undefined) throw networkError("no WebSocket class: pass options.WebSocket");
      socket = new SocketConnection({
        url: socketUrl(ctx.baseUrl, schema.prefix),
        WebSocket: WebSocketClass,
        headers: ctx.headers,
      });
    }
    return socket;
  };
  const callWire = options.transport ?? "jsonrpc";
  const streamWire = options.streams ?? "sse";

  const rawCall = (name: string, input: Params, signal: AbortSignal | undefined): Promise<Outcome<unknown>> => {
    const meta = schema.operations[name];
    const params = toWire(meta, input);
    const wire = pick(meta, callWire, ["http", "jsonrpc", "websocket"]);
    try {
      if (wire === "websocket") return getSocket().call(name, params, signal);
      if (wire === "http") return http.call(name, params, signal);
      return rpc.call(name, params, signal);
    } catch (error) {
      return Promise.reject(error instanceof TetherError ? error : networkError(String(error)));
    }
  };

  const load = async (target: Target): Promise<unknown> => {
    if (target.kind === "context") return http.fetchContext(target.name, target.params);
    return (await rawCall(target.name, target.params, undefined)).result;
  };
  const rev = (target: Target): string | null =>
    target.kind === "context" ? (schema.contexts[target.name]?.rev ?? null) : null;
  const cache = new CacheKernel(
    load,
    options.liveGraceMs === undefined ? { rev } : { rev, liveGraceMs: options.liveGraceMs },
  );

  const live =
    options.live === false
      ? undefined
      : new LiveConnection({
          mode: options.live ?? "sse",
          ctx,
          socket: getSocket,
          ...(options.reconnect === undefined ? {} : { reconnect: options.reconnect }),
        });
  let cacheNames: ReadonlySet<string> = new Set();
  const extra = new Map<string, number>();
  const refollow = (): void => live?.follow([...cacheNames, ...extra.keys()]);
  const unsubscribers: (() => void)[] = [];
  if (live !== undefined) {
    unsubscribers.push(
      cache.onTopics((names) => {
        cacheNames = names;
        refollow();
      }),
      live.onPush((push) => cache.applyPush(push)),
      live.onCoverage((names) => cache.setLive(names)),
    );
  }

  const callWithEffects = async <T>(name: string, input: Params = {}, opts: CallOptions = {}): Promise<Outcome<T>> => {
    const outcome = (await rawCall(name, input, opts.signal)) as Outcome<T>;
    if (opts.applyEffects !== false && (outcome.invalidate.length > 0 || outcome.merge.length > 0)) {
      cache.applyResponse(outcome);
    }
    return outcome;
  };

  const client: TetherClient = {
    schema,
    cache,
    async call<T>(name: string, input: Params = {}, opts: CallOptions = {}): Promise<T> {
      return (await callWithEffects<T>(name, input, opts)).result;
    },
    callWithEffects,
    stream<T>(name: string, input: Params = {}, opts: CallOptions = {}): AsyncIterable<T> {
      const meta = schema.operations[name];
      const params = toWire(meta, input);
      const wire = meta?.kind === "stream" ? pick(meta, streamWire, ["sse", "websocket"]) : streamWire;
      if (wire === "websocket") return getSocket().stream(name, params, opts.signal) as AsyncIterable<T>;
      return sseStream(ctx, name, params, opts.signal) as AsyncIterable<T>;
    },
    async fetchContext<T>(name: string, params: Params = {}, opts: CallOptions = {}): Promise<T> {
      return (await http.fetchContext(name, toWire(schema.contexts[name], params), opts.signal)) as T;
    },
    liveStatus: () => live?.status ?? "off",
    onLiveStatus: (listener) => live?.onStatus(listener) ?? (() => undefined),
    onLivePush: (listener) => live?.onPush(listener) ?? (() => undefined),
    follow(names: readonly string[]): () => void {
      for (const name of names) extra.set(name, (extra.get(name) ?? 0) + 1);
      refollow();
      let dropped = false;
      return () => {
        if (dropped) return;
        dropped = true;
        for (const name of names) {
          const count = (extra.get(name) ?? 1) - 1;
          if (count <= 0) extra.delete(name);
          else extra.set(name, count);
        }
        refollow();
      };
    },
    reset(): void {
      socket?.restart();
      cache.clear();
      live?.restart();
    },
    close(): void {
      for (const unsubscribe of unsubscribers) unsubscribe();
      live?.close();
      socket?.close();
    },
  };
  return client;
}
