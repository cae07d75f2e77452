/** Live push: one connection following a set of names, resumed by last id across reconnects. */
import type { TetherError } from "./errors.js";
import type { WireContext } from "./http.js";
import { sseLive } from "./sse.js";
import type { LivePush } from "./wire.js";
import type { SocketConnection } from "./websocket.js";

/** The state of the live connection. */
export type LiveStatus = "off" | "connecting" | "ready" | "error";

/** Statuses of refusals that would fail again: not retried until the names or headers change. */
const REFUSED = new Set([400, 401, 403, 404, 422]);

/** How a LiveConnection reaches the server. */
export interface LiveOptions {
  readonly mode: "sse" | "websocket";
  readonly ctx: WireContext;
  /** The socket, for mode "websocket". */
  readonly socket?: () => SocketConnection;
  readonly reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
}

interface Handlers {
  ready(id: string): void;
  push(push: LivePush): void;
  closed(error: TetherError): void;
}

/** Follows a set of context (and query) names; reports pushes, coverage and its status. */
export class LiveConnection {
  private readonly options: LiveOptions;
  private names: string[] = [];
  private stop: (() => void) | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private state: LiveStatus = "off";
  private last: string | null = null;
  private closed = false;
  private generation = 0;
  private readonly pushListeners = new Set<(push: LivePush) => void>();
  private readonly coverageListeners = new Set<(names: ReadonlySet<string> | null) => void>();
  private readonly statusListeners = new Set<() => void>();
  private readonly retryListeners = new Set<(delayMs: number, error: TetherError) => void>();
  private lastError: TetherError | undefined;

  constructor(options: LiveOptions) {
    this.options = options;
  }

  /** The connection's state. */
  get status(): LiveStatus {
    return this.state;
  }

  /** The id of the last push handled (or of `ready`): where a reconnect resumes. */
  get lastId(): string | null {
    return this.last;
  }

  /** Why the connection last failed, if it did. */
  get error(): TetherError | undefined {
    return this.lastError;
  }

  /** Follow exactly `names` from now on ((re)subscribes only when the set changed). */
  follow(names: Iterable<string>): void {
    const next = [...new Set(names)].sort();
    if (next.length === this.names.length && next.every((name, i) => name === this.names[i])) return;
    this.names = next;
    this.restart();
  }

  /** Connect again now (the headers changed: a refused subscription is tried again). */
  restart(): void {
    if (this.closed) return;
    this.disconnect();
    this.attempt = 0;
    if (this.names.length === 0) {
      this.setCoverage(null);
      this.setStatus("off");
      return;
    }
    this.connect();
  }

  /** Listen to pushes; returns the unsubscribe function. */
  onPush(listener: (push: LivePush) => void): () => void {
    this.pushListeners.add(listener);
    return () => this.pushListeners.delete(listener);
  }

  /** Listen to coverage: the names whose pushes arrive (once `ready`), or null while down. */
  onCoverage(listener: (names: ReadonlySet<string> | null) => void): () => void {
    this.coverageListeners.add(listener);
    return () => this.coverageListeners.delete(listener);
  }

  /** Listen to status changes. */
  onStatus(listener: () => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Listen to scheduled reconnects (the backoff delay, and the failure that caused it). */
  onRetry(listener: (delayMs: number, error: TetherError) => void): () => void {
    this.retryListeners.add(listener);
    return () => this.retryListeners.delete(listener);
  }

  /** Stop following for good. */
  close(): void {
    this.disconnect();
    this.closed = true;
    this.setCoverage(null);
    this.setStatus("off");
  }

  private connect(): void {
    const generation = ++this.generation;
    const names = this.names;
    this.setStatus("connecting");
    const current = (): boolean => generation === this.generation;
    const handlers: Handlers = {
      ready: (id) => {
        if (!current()) return;
        if (this.last === null) this.last = id;
        this.attempt = 0;
        this.lastError = undefined;
        this.setStatus("ready");
        this.setCoverage(new Set(names));
      },
      push: (push) => {
        if (!current()) return;
        this.last = push.id;
        for (const listener of [...this.pushListeners]) listener(push);
      },
      closed: (error) => {
        if (!current()) return;
        this.stop = undefined;
        this.lastError = error;
        this.setCoverage(null);
        if (REFUSED.has(error.status)) {
          this.setStatus("error");
          return;
        }
        this.setStatus("connecting");
        this.scheduleRetry(error);
      },
    };
    if (this.options.mode === "websocket" && this.options.socket !== undefined) {
      this.stop = this.options.socket().live(names, this.last, handlers);
    } else {
      this.stop = sseLive(this.options.ctx, names, this.last, handlers);
    }
  }

  private scheduleRetry(error: TetherError): void {
    const initial = this.options.reconnect?.initialDelayMs ?? 250;
    const max = this.options.reconnect?.maxDelayMs ?? 10_000;
    const base = Math.min(max, initial * 2 ** this.attempt);
    this.attempt += 1;
    // Jitter within [base/2, base]: clients spread out, and each delay is at least the last one.
    const delay = base / 2 + (Math.random() * base) / 2;
    for (const listener of [...this.retryListeners]) listener(delay, error);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed && this.names.length > 0) this.connect();
    }, delay);
  }

  private disconnect(): void {
    this.generation += 1;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const stop = this.stop;
    this.stop = undefined;
    stop?.();
  }

  private setStatus(status: LiveStatus): void {
    if (status === this.state) return;
    this.state = status;
    for (const listener of [...this.statusListeners]) listener();
  }

  private setCoverage(names: ReadonlySet<string> | null): void {
    for (const listener of [...this.coverageListeners]) listener(names);
  }
}
