/**
 * The cache kernel: context bundles and queries of no context, keyed by kind, name, params and
 * rev, kept fresh by the effects of responses and live pushes.
 *
 * - `invalidate` entries match a cached target of their kind and name whose params agree on every
 *   param both give (canonical JSON); mounted matches are refetched, once per tick however many
 *   entries name them (a refetch asked for during a load runs once after it); the others go stale.
 * - `merge` entries replace one slot of the matching bundles in a new object: no request.
 * - While live push covers a name, a response's invalidation of a mounted target of it waits up
 *   to `liveGraceMs` for the push of the same call (which every window gets), so the caller makes
 *   one refetch too; a refetch started meanwhile (or a push-driven one that began at most
 *   `liveGraceMs` before the response: the push won the race) settles it.
 * - Snapshots are frozen and replaced on change, as `useSyncExternalStore` needs.
 */
import { TetherError } from "./errors.js";
import type { Effects, InvalidateEntry, LivePush, MergeEntry, Params, SchemaMeta } from "./wire.js";

/** What the kernel caches: a context bundle or a query of no context, with its params (wire names). */
export type Target = { kind: "context" | "query"; name: string; params: Params };

/** Where a target's data stands. */
export type Status = "idle" | "loading" | "success" | "error";

/** A target's state; the same object until something about it changes. */
export interface Snapshot<T> {
  status: Status;
  data: T | undefined;
  error: TetherError | undefined;
  isFetching: boolean;
}

/** Options of a CacheKernel. */
export interface CacheKernelOptions {
  /** How long a response's invalidation of a live-covered name waits for its push (ms, default 1000). */
  liveGraceMs?: number;
  /** The rev a target's entries are keyed by (a context's `rev` from the schema), if any. */
  rev?: (target: Target) => string | null | undefined;
  /** How long an entry nothing mounts is kept (ms, default 300000); then it is dropped. */
  gcMs?: number;
}

/** JSON with object keys sorted and `undefined` members dropped: equal values, equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)) ?? "null";
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : sortKeys(item)));
  if (typeof value !== "object" || value === null) return value;
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item !== undefined) out[key] = sortKeys(item);
  }
  return out;
}

/** `params` without its `undefined` members (a fresh object). */
export function cleanParams(params: Params | undefined): Params {
  const out: Params = {};
  if (params === undefined) return out;
  for (const key of Object.keys(params).sort()) {
    if (params[key] !== undefined) out[key] = params[key];
  }
  return out;
}

/** `params` by wire name, without `undefined` members (a query's camelCase names mapped by the schema). */
export function wireParams(schema: SchemaMeta, kind: Target["kind"], name: string, params: Params | undefined): Params {
  const clean = cleanParams(params);
  const names = kind === "query" ? schema.operations[name]?.names : schema.contexts[name]?.names;
  if (names === undefined) return clean;
  const out: Params = {};
  for (const [key, value] of Object.entries(clean)) out[names[key] ?? key] = value;
  return out;
}

/** Whether an effect entry scoped by `given` covers a target with `params`. */
export function paramsMatch(given: Params | undefined, params: Params): boolean {
  if (given === undefined) return true;
  for (const [key, value] of Object.entries(given)) {
    if (value === undefined || !(key in params) || params[key] === undefined) continue;
    if (canonicalJson(params[key]) !== canonicalJson(value)) return false;
  }
  return true;
}

/** Whether an `invalidate` entry covers the target `kind`/`name`/`params`. */
export function invalidates(entry: InvalidateEntry, kind: Target["kind"], name: string, params: Params): boolean {
  const named = kind === "context" ? entry.context : entry.query;
  return named === name && paramsMatch(entry.params, params);
}

/** Whether a `merge` entry patches the context bundle `name`/`params`. */
export function merges(entry: MergeEntry, kind: Target["kind"], name: string, params: Params): boolean {
  return kind === "context" && entry.context === name && paramsMatch(entry.params, params);
}

/** `data` (a bundle) with `slot` replaced by `value`: a new object; anything else is left as it is. */
export function spliceSlot(data: unknown, slot: string, value: unknown): unknown {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return data;
  return { ...(data as Record<string, unknown>), [slot]: value };
}

/** `error` as a TetherError (fetch's TypeError is NETWORK_ERROR; anything else INTERNAL_ERROR). */
export function asTetherError(error: unknown): TetherError {
  if (error instanceof TetherError) return error;
  if (error instanceof TypeError) return new TetherError("NETWORK_ERROR", error.message, 0, error);
  const message = error instanceof Error ? error.message : String(error);
  return new TetherError("INTERNAL_ERROR", message, 0, error);
}

const IDLE: Snapshot<never> = Object.freeze({
  status: "idle",
  data: undefined,
  error: undefined,
  isFetching: false,
}) as Snapshot<never>;

type Listener = () => void;

interface Deferral {
  readonly timer: ReturnType<typeof setTimeout>;
}

interface Entry {
  readonly key: string;
  readonly target: Target;
  snapshot: Snapshot<unknown>;
  readonly listeners: Set<Listener>;
  stale: boolean;
  inflight: boolean;
  /** Another load was asked for while one was in flight: run it after. */
  again: boolean;
  /** Resolved when the load in flight settles. */
  joined: Array<() => void>;
  /** Resolved when the next load to start settles. */
  waiters: Array<() => void>;
  deferral: Deferral | null;
  gc: ReturnType<typeof setTimeout> | null;
  /** When (performance clock) a load started by a push last began, or -Infinity. */
  pushLoadAt: number;
  /** Merges that arrived while a load was in flight: spliced again into what it returns. */
  mergedDuringLoad: MergeEntry[];
}

/** The longest a change of topics waits for mounted entries' first loads (ms). */
const TOPICS_HOLD_MS = 250;

function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

/** The cache of a client: entries, their loads, and the effects that keep them fresh. */
export class CacheKernel {
  /** How long a response's invalidation of a live-covered name waits for its push (ms). */
  readonly liveGraceMs: number;
  private readonly gcMs: number;
  private readonly load: (target: Target) => Promise<unknown>;
  private readonly revOf: (target: Target) => string | null | undefined;
  private entries = new Map<string, Entry>();
  private pending = new Map<Entry, boolean>();
  private flushQueued = false;
  private live: ReadonlySet<string> | null = null;
  private topicListeners = new Set<(names: ReadonlySet<string>) => void>();
  private topics: ReadonlySet<string> = new Set();
  private topicsQueued = false;
  /** Since when (performance clock) a change of topics waits for first loads, or null. */
  private topicsHeldSince: number | null = null;
  private topicsTimer: ReturnType<typeof setTimeout> | null = null;
  private generation = 0;

  /** A kernel that loads what it caches with `load` (a bundle for a context, a call for a query). */
  constructor(load: (target: Target) => Promise<unknown>, options: CacheKernelOptions = {}) {
    this.load = load;
    this.liveGraceMs = options.liveGraceMs ?? 1000;
    this.gcMs = options.gcMs ?? 300_000;
    this.revOf = options.rev ?? (() => null);
  }

  /** Mounts `listener` on `target` (loading it when idle or stale); returns the unmount. */
  subscribe(target: Target, listener: () => void): () => void {
    const entry = this.entry(target);
    entry.listeners.add(listener);
    if (entry.gc !== null) clearTimeout(entry.gc);
    entry.gc = null;
    const { status } = entry.snapshot;
    if (!entry.inflight && (status === "idle" || status === "error" || entry.stale)) this.start(entry);
    return () => {
      entry.listeners.delete(listener);
      const current = this.entries.get(entry.key);
      current?.listeners.delete(listener);
      if (current !== undefined) this.collectLater(current);
    };
  }

  /** The state of `target` (the same object until it changes). */
  getSnapshot<T>(target: Target): Snapshot<T> {
    const entry = this.entries.get(this.keyOf(target));
    return (entry?.snapshot ?? IDLE) as Snapshot<T>;
  }

  /** The data of `target`: cached when fresh, loaded otherwise (without mounting it). */
  async ensure<T>(target: Target): Promise<T> {
    const entry = this.entry(target);
    if (!(entry.snapshot.status === "success" && !entry.stale)) {
      await this.request(entry, !entry.inflight || entry.stale || entry.again);
      if (this.entries.get(entry.key) !== entry) return this.ensure(target); // cleared meanwhile
    }
    const { snapshot } = entry;
    if (snapshot.status === "error" && snapshot.error !== undefined) throw snapshot.error;
    return snapshot.data as T;
  }

  /** Loads `target` again (once more after a load in flight); resolves when that load settled. */
  refetch(target: Target): Promise<void> {
    return this.request(this.entry(target), true);
  }

  /** Applies the effects of a call's response (merges at once; invalidations of live names wait). */
  applyResponse(effects: Partial<Effects>): void {
    for (const merge of effects.merge ?? []) this.merge(merge);
    for (const entry of this.entries.values()) {
      if (!(effects.invalidate ?? []).some((item) => this.covers(item, entry))) continue;
      if (!this.isLive(entry.target.name) || entry.listeners.size === 0) {
        this.invalidate(entry, false);
        continue;
      }
      // A push-driven load that began within the grace window before this response
      // already reads the call's effect (the push came first): nothing to wait for.
      if (now() - entry.pushLoadAt <= this.liveGraceMs) continue;
      if (entry.deferral !== null) continue;
      entry.deferral = {
        timer: setTimeout(() => {
          entry.deferral = null;
          if (this.entries.get(entry.key) === entry) this.invalidate(entry, false);
        }, this.liveGraceMs),
      };
    }
  }

  /** Applies a live push: its merges and invalidations, or, on `resync`, every entry. */
  applyPush(push: LivePush): void {
    if (push.resync === true) {
      for (const entry of this.entries.values()) this.invalidate(entry, true);
      return;
    }
    for (const merge of push.merge ?? []) this.merge(merge);
    for (const entry of this.entries.values()) {
      if ((push.invalidate ?? []).some((item) => this.covers(item, entry))) this.invalidate(entry, true);
    }
  }

  /** Sets the names whose pushes now arrive (`null`: live push is down). */
  setLive(covered: ReadonlySet<string> | null): void {
    this.live = covered;
    if (covered !== null) return;
    for (const entry of this.entries.values()) {
      if (entry.deferral === null) continue;
      clearTimeout(entry.deferral.timer);
      entry.deferral = null;
      this.invalidate(entry, false);
    }
  }

  /** Whether pushes of `name` arrive now. */
  isLive(name: string): boolean {
    return this.live !== null && this.live.has(name);
  }

  /** Calls `listener` with the names to follow whenever they change (at most once a tick). */
  onTopics(listener: (names: ReadonlySet<string>) => void): () => void {
    this.topicListeners.add(listener);
    return () => {
      this.topicListeners.delete(listener);
    };
  }

  /** Drops every entry (loads in flight are ignored); mounted targets load again. */
  clear(): void {
    this.generation += 1;
    const old = [...this.entries.values()];
    this.entries = new Map();
    this.pending = new Map();
    for (const entry of old) {
      if (entry.deferral !== null) clearTimeout(entry.deferral.timer);
      if (entry.gc !== null) clearTimeout(entry.gc);
      for (const resolve of [...entry.joined, ...entry.waiters]) resolve();
      entry.joined = [];
      entry.waiters = [];
    }
    for (const entry of old) {
      if (entry.listeners.size === 0) continue;
      const fresh = this.entry(entry.target);
      for (const listener of entry.listeners) fresh.listeners.add(listener);
      this.start(fresh);
    }
    this.queueTopics();
  }

  private keyOf(target: Target): string {
    const rev = this.revOf(target) ?? "";
    return `${target.kind}\u0000${target.name}\u0000${rev}\u0000${canonicalJson(cleanParams(target.params))}`;
  }

  private entry(target: Target): Entry {
    const key = this.keyOf(target);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = {
        key,
        target: { kind: target.kind, name: target.name, params: cleanParams(target.params) },
        snapshot: IDLE,
        listeners: new Set(),
        stale: false,
        inflight: false,
        again: false,
        joined: [],
        waiters: [],
        deferral: null,
        gc: null,
        pushLoadAt: -Infinity,
        mergedDuringLoad: [],
      };
      this.entries.set(key, entry);
    }
    return entry;
  }

  private covers(item: InvalidateEntry, entry: Entry): boolean {
    const { kind, name, params } = entry.target;
    return invalidates(item, kind, name, params);
  }

  private merge(item: MergeEntry): void {
    for (const entry of this.entries.values()) {
      const { kind, name, params } = entry.target;
      if (!merges(item, kind, name, params)) continue;
      // A load in flight may have read before the merge's command committed: the merge is
      // spliced into its answer too (a later merge or invalidation corrects a newer read).
      if (entry.inflight) entry.mergedDuringLoad.push(item);
      if (entry.snapshot.data === undefined) continue;
      const data = spliceSlot(entry.snapshot.data, item.slot, item.value);
      if (data === entry.snapshot.data) continue;
      this.set(entry, { ...entry.snapshot, data });
    }
  }

  /** Mounted: a refetch at the next flush; unmounted: stale (loaded on next mount or ensure). */
  private invalidate(entry: Entry, byPush: boolean): void {
    if (entry.listeners.size === 0) {
      entry.stale = true;
      return;
    }
    entry.stale = true;
    const queued = this.pending.get(entry);
    this.pending.set(entry, byPush || queued === true);
    this.queueFlush();
  }

  private request(entry: Entry, fresh: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      if (!entry.inflight) {
        this.start(entry);
        entry.joined.push(resolve);
      } else if (fresh) {
        entry.again = true;
        entry.waiters.push(resolve);
      } else {
        entry.joined.push(resolve);
      }
    });
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      const pending = [...this.pending];
      this.pending.clear();
      for (const [entry, byPush] of pending) {
        if (this.entries.get(entry.key) !== entry) continue;
        if (byPush) entry.pushLoadAt = now();
        if (entry.inflight) entry.again = true;
        else this.start(entry);
      }
    });
  }

  private start(entry: Entry): void {
    const generation = this.generation;
    const waiters = [...entry.joined, ...entry.waiters];
    entry.joined = waiters;
    entry.waiters = [];
    entry.inflight = true;
    entry.again = false;
    entry.stale = false;
    entry.mergedDuringLoad = [];
    if (entry.deferral !== null) {
      clearTimeout(entry.deferral.timer);
      entry.deferral = null;
    }
    const previous = entry.snapshot;
    this.set(entry, {
      status: previous.status === "idle" ? "loading" : previous.status,
      data: previous.data,
      error: previous.error,
      isFetching: true,
    });
    let loading: Promise<unknown>;
    try {
      loading = this.load(entry.target);
    } catch (error) {
      loading = Promise.reject(error);
    }
    loading.then(
      (loaded) => {
        let data = loaded;
        for (const item of entry.mergedDuringLoad) data = spliceSlot(data, item.slot, item.value);
        entry.mergedDuringLoad = [];
        this.settle(entry, generation, { status: "success", data, error: undefined });
      },
      (error: unknown) =>
        this.settle(entry, generation, {
          status: "error",
          data: entry.snapshot.data,
          error: asTetherError(error),
        }),
    );
  }

  private settle(entry: Entry, generation: number, outcome: Omit<Snapshot<unknown>, "isFetching">): void {
    const waiters = entry.joined;
    entry.joined = [];
    entry.inflight = false;
    if (generation === this.generation) {
      const again = entry.again;
      this.set(entry, { ...outcome, isFetching: again });
      if (again) this.start(entry);
      else this.collectLater(entry);
      this.queueTopics();
    }
    for (const resolve of waiters) resolve();
  }

  /** Drops `entry` after gcMs unless something mounts it, loads it or waits for it meanwhile. */
  private collectLater(entry: Entry): void {
    if (entry.listeners.size > 0 || entry.gc !== null) return;
    const timer = setTimeout(() => {
      entry.gc = null;
      if (entry.listeners.size > 0 || entry.inflight || this.entries.get(entry.key) !== entry) return;
      if (entry.deferral !== null) clearTimeout(entry.deferral.timer);
      this.entries.delete(entry.key);
      this.pending.delete(entry);
      this.queueTopics();
    }, this.gcMs);
    // A cache's timers never keep a Node process alive.
    (timer as { unref?: () => void }).unref?.();
    entry.gc = timer;
  }

  private set(entry: Entry, snapshot: Snapshot<unknown>): void {
    entry.snapshot = Object.freeze(snapshot);
    for (const listener of [...entry.listeners]) listener();
  }

  private queueTopics(): void {
    if (this.topicsQueued) return;
    this.topicsQueued = true;
    queueMicrotask(() => {
      this.topicsQueued = false;
      this.emitTopics();
    });
  }

  /**
   * Tells the topic listeners the names of loaded entries, if they changed. While a mounted entry
   * is loading for the first time (a page's first load: its bundles land a tick apart), the change
   * waits for it, up to TOPICS_HOLD_MS, so live push subscribes once rather than once per bundle.
   */
  private emitTopics(): void {
    const names = new Set<string>();
    let firstLoads = false;
    for (const entry of this.entries.values()) {
      if (entry.snapshot.status === "success") names.add(entry.target.name);
      else if (entry.inflight && entry.listeners.size > 0 && entry.snapshot.data === undefined) firstLoads = true;
    }
    const same = names.size === this.topics.size && [...names].every((name) => this.topics.has(name));
    if (same) {
      this.topicsHeldSince = null;
      return;
    }
    if (firstLoads) {
      const held = (this.topicsHeldSince ??= now());
      const left = TOPICS_HOLD_MS - (now() - held);
      if (left > 0) {
        // Settling loads queue this again; the timer bounds the wait for a slow one.
        if (this.topicsTimer === null) {
          this.topicsTimer = setTimeout(() => {
            this.topicsTimer = null;
            this.queueTopics();
          }, left);
          (this.topicsTimer as { unref?: () => void }).unref?.();
        }
        return;
      }
    }
    this.topicsHeldSince = null;
    if (this.topicsTimer !== null) clearTimeout(this.topicsTimer);
    this.topicsTimer = null;
    this.topics = names;
    for (const listener of [...this.topicListeners]) listener(names);
  }
}
