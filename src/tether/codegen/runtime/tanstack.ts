/**
 * TanStack Query v5 helpers: query and mutation options whose effects (invalidate, merge) and
 * live pushes are applied to a QueryClient, with the same matching as the cache kernel.
 */
import { mutationOptions, queryOptions, type Query, type QueryClient } from "@tanstack/react-query";
import { cleanParams, invalidates, merges, spliceSlot, wireParams, type Target } from "./cache.js";
import type { TetherClient } from "./client.js";
import type { TetherError } from "./errors.js";
import type { Effects, InvalidateEntry, LivePush, MergeEntry, Outcome, Params } from "./wire.js";

/** The query key of a tether target: `["tether", kind, name, params]`. */
export type TetherQueryKey = readonly ["tether", Target["kind"], string, Params];

/** The query key of `target`: `["tether", kind, name, params]` (params without `undefined`). */
export function tetherQueryKey(target: Target): TetherQueryKey {
  return ["tether", target.kind, target.name, cleanParams(target.params)];
}

function keyOf(client: TetherClient, kind: Target["kind"], name: string, params: Params | undefined): TetherQueryKey {
  return ["tether", kind, name, wireParams(client.schema, kind, name, params)];
}

/** The target a query key names, if it is a tether key. */
function targetOf(key: readonly unknown[]): Target | null {
  const [tag, kind, name, params] = key;
  if (tag !== "tether" || (kind !== "context" && kind !== "query") || typeof name !== "string") return null;
  if (typeof params !== "object" || params === null) return null;
  return { kind, name, params: params as Params };
}

/** `queryOptions` for the bundle of context `name` with `params`. */
export function contextQueryOptions<T>(client: TetherClient, name: string, params?: Params) {
  const queryKey = keyOf(client, "context", name, params);
  return queryOptions<T, TetherError, T, TetherQueryKey>({
    queryKey,
    queryFn: ({ signal }) => client.fetchContext<T>(name, queryKey[3], { signal }),
  });
}

/** `queryOptions` for query `name` (a query of no context) with `input`. */
export function queryQueryOptions<T>(client: TetherClient, name: string, input?: Params) {
  const queryKey = keyOf(client, "query", name, input);
  return queryOptions<T, TetherError, T, TetherQueryKey>({
    queryKey,
    queryFn: ({ signal }) => client.call<T>(name, queryKey[3], { signal }),
  });
}

/** When each query was last invalidated by a push (performance clock), per QueryClient. */
const pushedAt = new WeakMap<QueryClient, Map<string, number>>();

function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

function matchesAny(entries: readonly InvalidateEntry[], query: Query): boolean {
  const target = targetOf(query.queryKey);
  if (target === null) return false;
  return entries.some((entry) => invalidates(entry, target.kind, target.name, target.params));
}

function applyMerges(queryClient: QueryClient, entries: readonly MergeEntry[]): void {
  for (const entry of entries) {
    queryClient.setQueriesData<unknown>(
      {
        predicate: (query) => {
          const target = targetOf(query.queryKey);
          return target !== null && merges(entry, target.kind, target.name, target.params);
        },
      },
      (old: unknown) => (old === undefined ? undefined : spliceSlot(old, entry.slot, entry.value)),
    );
  }
}

/** Applies a live push to `queryClient`: merges, invalidations, or (resync) every tether query. */
export function applyPushToQueryClient(queryClient: QueryClient, push: LivePush): Promise<void> {
  if (push.resync === true) return queryClient.invalidateQueries({ queryKey: ["tether"] });
  applyMerges(queryClient, push.merge ?? []);
  const entries = push.invalidate ?? [];
  if (entries.length === 0) return Promise.resolve();
  let times = pushedAt.get(queryClient);
  if (times === undefined) {
    times = new Map();
    pushedAt.set(queryClient, times);
  }
  const stamp = now();
  const seen = times;
  return queryClient.invalidateQueries({
    predicate: (query) => {
      const hit = matchesAny(entries, query);
      if (hit) seen.set(query.queryHash, stamp);
      return hit;
    },
  });
}

/**
 * Applies a response's effects to `queryClient`: merges at once (no request); invalidations at
 * once, except those of names `client`'s live push covers, which wait up to the kernel's
 * `liveGraceMs` for the push of the same call (applied by followLive) and are applied then only
 * to the queries no push refreshed meanwhile. Resolves when the immediate refetches are done.
 */
export function applyEffectsToQueryClient(
  client: TetherClient,
  queryClient: QueryClient,
  effects: Partial<Effects>,
): Promise<void> {
  applyMerges(queryClient, effects.merge ?? []);
  const all = effects.invalidate ?? [];
  const nameOf = (entry: InvalidateEntry): string => entry.context ?? entry.query ?? "";
  const covered = all.filter((entry) => client.cache.isLive(nameOf(entry)));
  const direct = all.filter((entry) => !client.cache.isLive(nameOf(entry)));
  if (covered.length > 0) {
    const grace = client.cache.liveGraceMs;
    const since = now() - grace;
    const timer = setTimeout(() => {
      const times = pushedAt.get(queryClient);
      void queryClient.invalidateQueries({
        predicate: (query) => matchesAny(covered, query) && (times?.get(query.queryHash) ?? -Infinity) < since,
      });
    }, grace);
    (timer as { unref?: () => void }).unref?.(); // never keeps a Node process alive
  }
  if (direct.length === 0) return Promise.resolve();
  return queryClient.invalidateQueries({ predicate: (query) => matchesAny(direct, query) });
}

/** `mutationOptions` for command `name`: its outcome, with effects applied to `queryClient`. */
export function commandMutationOptions<I, O>(client: TetherClient, queryClient: QueryClient, name: string) {
  return mutationOptions<Outcome<O>, TetherError, I>({
    mutationKey: ["tether", "command", name],
    mutationFn: (input: I) => {
      // The outcome goes to the QueryClient; the TetherClient's own cache is left alone.
      return client.callWithEffects<O>(name, (input ?? {}) as Params, { applyEffects: false });
    },
    onSuccess: (outcome) => applyEffectsToQueryClient(client, queryClient, outcome),
  });
}

/** Follows live push of `names` through `client`, applying each push to `queryClient`; returns the stop. */
export function followLive(client: TetherClient, queryClient: QueryClient, names: string[]): () => void {
  const release = client.follow(names);
  const stop = client.onLivePush((push) => {
    void applyPushToQueryClient(queryClient, push);
  });
  return () => {
    stop();
    release();
  };
}
