/** The WebSocket wire (envelope dialect): calls, stream subscriptions and live push on one socket. */
import { TetherError, abortError, fromEnvelope, networkError } from "./errors.js";
import { readEffects } from "./wire.js";
import type { LivePush, Outcome, Params } from "./wire.js";

/** The WebSocket constructor the client uses (the browser's, or `ws` in node). */
export type WebSocketClass = new (url: string) => WebSocket;

/** How a SocketConnection reaches the server. */
export interface SocketOptions {
  readonly url: string;
  readonly WebSocket: WebSocketClass;
  headers(): Promise<Record<string, string>>;
  /** Idle time before a PING (ms); default 25 s. */
  readonly pingIntervalMs?: number;
  /** Time a PING may go unanswered before the socket is dropped (ms); default 10 s. */
  readonly pongTimeoutMs?: number;
}

/** What a live subscription on the socket reports. */
export interface LiveHandlers {
  ready(id: string): void;
  push(push: LivePush): void;
  /** The subscription ended: refused (`error` with a status), or the socket or server went away. */
  closed(error: TetherError): void;
}

interface Envelope {
  uuid?: unknown;
  route?: unknown;
  status?: unknown;
  headers?: unknown;
  payload?: unknown;
}

type Handler = (message: Envelope) => void;

/** A queue read as an AsyncIterable: items pushed, then an end or a failure. */
export class Channel<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiting: ((result: IteratorResult<T>) => void) | undefined;
  private failWaiting: ((error: unknown) => void) | undefined;
  private done = false;
  private error: unknown = undefined;
  private readonly onReturn: () => void;

  constructor(onReturn: () => void) {
    this.onReturn = onReturn;
  }

  /** Add an item. */
  push(item: T): void {
    if (this.done) return;
    if (this.waiting !== undefined) {
      const wake = this.waiting;
      this.clearWaiting();
      wake({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  /** End, after the queued items (with `error`, the next read throws it). */
  finish(error?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    if (this.waiting !== undefined && this.failWaiting !== undefined) {
      const wake = this.waiting;
      const fail = this.failWaiting;
      this.clearWaiting();
      if (error === undefined) wake({ value: undefined, done: true });
      else fail(error);
      this.error = undefined;
    }
  }

  /** Whether the channel ended. */
  get finished(): boolean {
    return this.done;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) {
      return Promise.resolve({ value: this.items.shift() as T, done: false });
    }
    if (this.done) {
      const error = this.error;
      this.error = undefined;
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    return new Promise<IteratorResult<T>>((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  return(): Promise<IteratorResult<T>> {
    if (!this.done) {
      this.done = true;
      this.items.length = 0;
      this.onReturn();
    }
    if (this.waiting !== undefined) {
      const wake = this.waiting;
      this.clearWaiting();
      wake({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  private clearWaiting(): void {
    this.waiting = undefined;
    this.failWaiting = undefined;
  }
}

const DROPPED = "the WebSocket connection was lost";

/** One lazily opened socket: envelope calls, stream subscriptions, LIVE, heartbeat. */
export class SocketConnection {
  private readonly options: SocketOptions;
  private socket: WebSocket | undefined;
  private opened = false;
  private outbox: string[] = [];
  private readonly handlers = new Map<string, Handler>();
  private readonly dropHandlers = new Map<string, (error: TetherError) => void>();
  private nextId = 1;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private pongTimer: ReturnType<typeof setTimeout> | undefined;
  private closedForGood = false;

  constructor(options: SocketOptions) {
    this.options = options;
  }

  /** Call `route` with `params`: its result and the effects in the reply's headers. */
  call(route: string, params: Params, signal?: AbortSignal): Promise<Outcome<unknown>> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const uuid = `c${this.nextId++}`;
    return new Promise<Outcome<unknown>>((resolve, reject) => {
      const done = (): void => {
        this.handlers.delete(uuid);
        this.dropHandlers.delete(uuid);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = (): void => {
        done();
        if (signal !== undefined) reject(abortError(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.handlers.set(uuid, (message) => {
        done();
        const status = typeof message.status === "number" ? message.status : 0;
        if (status >= 200 && status < 300) {
          resolve({ result: message.payload, ...readEffects(message.headers) });
        } else {
          reject(fromEnvelope(message.payload, status));
        }
      });
      this.dropHandlers.set(uuid, (error) => {
        done();
        reject(
          networkError(
            `${error.message} while '${route}' was in flight: a command may or may not have run`,
          ),
        );
      });
      void this.send(uuid, route, params);
    });
  }

  /** Subscribe to stream `route`: its items; `return()` (or `break`) sends CANCEL. */
  stream(route: string, params: Params, signal?: AbortSignal): AsyncIterableIterator<unknown> {
    const uuid = `s${this.nextId++}`;
    const channel: Channel<unknown> = new Channel<unknown>(() => {
      done();
      this.sendRaw({ uuid, route: "CANCEL" });
    });
    const done = (): void => {
      this.handlers.delete(uuid);
      this.dropHandlers.delete(uuid);
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = (): void => {
      if (!channel.finished) this.sendRaw({ uuid, route: "CANCEL" });
      done();
      if (signal !== undefined) channel.finish(abortError(signal));
    };
    if (signal?.aborted) {
      channel.finish(abortError(signal));
      return channel;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    this.handlers.set(uuid, (message) => {
      const kind = streamKind(message);
      const status = typeof message.status === "number" ? message.status : 0;
      if (kind === "item") {
        channel.push(message.payload);
      } else if (kind === "end" || kind === "cancelled") {
        done();
        channel.finish();
      } else if (kind === undefined && status >= 200 && status < 300) {
        done();
        channel.finish(new TetherError("BAD_REQUEST", `'${route}' is not a stream`, 400, null));
      } else {
        done();
        channel.finish(fromEnvelope(message.payload, status));
      }
    });
    this.dropHandlers.set(uuid, (error) => {
      done();
      channel.finish(networkError(`${error.message}: the stream '${route}' ended early`));
    });
    void this.send(uuid, route, params);
    return channel;
  }

  /** Subscribe to live push for `contexts` from `since`; the returned function cancels. */
  live(contexts: readonly string[], since: string | null, handlers: LiveHandlers): () => void {
    const uuid = `l${this.nextId++}`;
    let active = true;
    const done = (): void => {
      active = false;
      this.handlers.delete(uuid);
      this.dropHandlers.delete(uuid);
    };
    this.handlers.set(uuid, (message) => {
      const kind = streamKind(message);
      const status = typeof message.status === "number" ? message.status : 0;
      const payload = message.payload as { id?: unknown } | null;
      if (kind === "ready" && payload !== null && typeof payload.id === "string") {
        handlers.ready(payload.id);
      } else if (kind === "item" && payload !== null && typeof payload.id === "string") {
        handlers.push(payload as LivePush);
      } else if (kind === "end" || kind === "cancelled") {
        done();
        handlers.closed(networkError("the server ended the live subscription"));
      } else {
        done();
        handlers.closed(fromEnvelope(message.payload, status));
      }
    });
    this.dropHandlers.set(uuid, (error) => {
      done();
      handlers.closed(error);
    });
    const payload: Record<string, unknown> = { contexts: [...contexts] };
    if (since !== null) payload.since = since;
    void this.send(uuid, "LIVE", payload);
    return () => {
      if (!active) return;
      done();
      this.sendRaw({ uuid, route: "CANCEL" });
    };
  }

  /** Close the socket: everything in flight fails with NETWORK_ERROR. */
  close(): void {
    this.closedForGood = true;
    this.drop("the client was closed");
  }

  /** Close this socket (a new one opens on the next use). */
  restart(): void {
    this.drop("the client was reset");
  }

  private async send(uuid: string, route: string, payload: unknown): Promise<void> {
    let headers: Record<string, string>;
    try {
      headers = await this.options.headers();
    } catch (error) {
      const fail = this.dropHandlers.get(uuid);
      fail?.(networkError(`the headers could not be read: ${String(error)}`));
      return;
    }
    if (!this.handlers.has(uuid)) return; // aborted meanwhile
    this.sendRaw({ uuid, route, headers, payload });
  }

  private sendRaw(message: Record<string, unknown>): void {
    if (this.closedForGood) {
      const uuid = typeof message.uuid === "string" ? message.uuid : "";
      this.dropHandlers.get(uuid)?.(networkError("the client is closed"));
      return;
    }
    const text = JSON.stringify(message);
    const socket = this.open();
    if (this.opened) socket.send(text);
    else this.outbox.push(text);
  }

  private open(): WebSocket {
    if (this.socket !== undefined) return this.socket;
    const socket = new this.options.WebSocket(this.options.url);
    this.socket = socket;
    this.opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.opened = true;
      const outbox = this.outbox;
      this.outbox = [];
      for (const text of outbox) socket.send(text);
      this.armIdle();
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket !== socket) return;
      this.armIdle();
      this.receive(event.data);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.drop(DROPPED);
    };
    socket.onerror = () => {
      if (this.socket === socket) this.drop(DROPPED);
    };
    return socket;
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    let message: Envelope;
    try {
      message = JSON.parse(data) as Envelope;
    } catch {
      return;
    }
    if (typeof message !== "object" || message === null || message.route === "PONG") return;
    if (typeof message.uuid !== "string") return;
    this.handlers.get(message.uuid)?.(message);
  }

  /** Forget the socket; every call, stream and live subscription on it learns it is gone. */
  private drop(reason: string): void {
    const socket = this.socket;
    this.socket = undefined;
    this.opened = false;
    this.outbox = [];
    this.clearTimers();
    if (socket !== undefined) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      socket.onerror = null;
      try {
        socket.close();
      } catch {
        // already closing
      }
    }
    const drops = [...this.dropHandlers.values()];
    this.handlers.clear();
    this.dropHandlers.clear();
    const error = networkError(reason);
    for (const fail of drops) fail(error);
  }

  private armIdle(): void {
    this.clearTimers();
    this.idleTimer = setTimeout(() => {
      const socket = this.socket;
      if (socket === undefined || !this.opened) return;
      socket.send(JSON.stringify({ uuid: `p${this.nextId++}`, route: "PING" }));
      this.pongTimer = setTimeout(
        () => this.drop("the WebSocket heartbeat went unanswered"),
        this.options.pongTimeoutMs ?? 10_000,
      );
    }, this.options.pingIntervalMs ?? 25_000);
  }

  private clearTimers(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.pongTimer !== undefined) clearTimeout(this.pongTimer);
    this.idleTimer = undefined;
    this.pongTimer = undefined;
  }
}

function streamKind(message: Envelope): string | undefined {
  const headers = message.headers;
  if (typeof headers !== "object" || headers === null) return undefined;
  const kind: unknown = (headers as { stream?: unknown }).stream;
  return typeof kind === "string" ? kind : undefined;
}
