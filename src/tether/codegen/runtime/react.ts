/** React bindings of the tether client: a provider and hooks on `useSyncExternalStore`. */
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
  useSyncExternalStore,
  type ReactElement,
  type ReactNode,
} from "react";
import {
  CacheKernel,
  asTetherError,
  canonicalJson,
  cleanParams,
  wireParams,
  type Status,
  type Target,
} from "./cache.js";
import type { TetherClient } from "./client.js";
import type { TetherError } from "./errors.js";
import type { Params } from "./wire.js";

const ClientContext = createContext<TetherClient | null>(null);

/** The client `value` is, or holds (a generated api object's `client`). */
function clientOf(value: TetherClient | { client: TetherClient }): TetherClient {
  const cache: unknown = (value as { cache?: unknown }).cache;
  return cache instanceof CacheKernel ? (value as TetherClient) : (value as { client: TetherClient }).client;
}

/** Makes `client` (or a generated api object) what the hooks below it use. */
export function TetherProvider(props: {
  client: TetherClient | { client: TetherClient };
  children?: ReactNode;
}): ReactElement {
  const client = clientOf(props.client);
  return createElement(ClientContext.Provider, { value: client }, props.children);
}

/** The client of the nearest TetherProvider. */
export function useTetherClient(): TetherClient {
  const client = useContext(ClientContext);
  if (client === null) {
    throw new Error("tether: no client here; wrap the component in <TetherProvider client={api}>");
  }
  return client;
}

/** What a context or query hook returns. */
export interface ContextResult<T> {
  data: T | undefined;
  status: Status;
  error: TetherError | undefined;
  isFetching: boolean;
  refetch(): Promise<void>;
}

/** A target that keeps its identity while its params are equal by value. */
function useTarget(client: TetherClient, kind: Target["kind"], name: string, params: Params | undefined): Target {
  const key = canonicalJson(cleanParams(params));
  // The params are read again only when their canonical JSON changes, not on every render.
  return useMemo(
    () => ({ kind, name, params: wireParams(client.schema, kind, name, params) }),
    [client, kind, name, key],
  );
}

function useCached<T>(kind: Target["kind"], name: string, params: Params | undefined): ContextResult<T> {
  const client = useTetherClient();
  const target = useTarget(client, kind, name, params);
  const { cache } = client;
  const subscribe = useCallback((listener: () => void) => cache.subscribe(target, listener), [cache, target]);
  const getSnapshot = useCallback(() => cache.getSnapshot<T>(target), [cache, target]);
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
  const refetch = useCallback(() => cache.refetch(target), [cache, target]);
  return useMemo(() => {
    // A mounted target that was never loaded is about to be: report it as loading.
    const idle = snapshot.status === "idle";
    return {
      data: snapshot.data,
      status: idle ? "loading" : snapshot.status,
      error: snapshot.error,
      isFetching: idle || snapshot.isFetching,
      refetch,
    };
  }, [snapshot, refetch]);
}

/** The bundle of context `name` with `params`, cached, loaded while mounted and kept fresh. */
export function useTetherContext<T>(name: string, params?: Params): ContextResult<T> {
  return useCached<T>("context", name, params);
}

/** The result of query `name` (a query of no context) with `input`, cached and kept fresh. */
export function useTetherQuery<T>(name: string, input?: Params): ContextResult<T> {
  return useCached<T>("query", name, input);
}

/** A tiny external store for a hook's own state. */
class Store<S> {
  private state: S;
  private readonly listeners = new Set<() => void>();

  constructor(state: S) {
    this.state = state;
  }

  readonly get = (): S => this.state;

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  set(patch: Partial<S>): void {
    this.state = { ...this.state, ...patch };
    for (const listener of [...this.listeners]) listener();
  }

  replace(state: S): void {
    this.state = state;
    for (const listener of [...this.listeners]) listener();
  }
}

/** What a mutation hook returns. */
export interface MutationResult<I, O> {
  mutate(input: I): Promise<O>;
  isPending: boolean;
  error: TetherError | undefined;
  data: O | undefined;
  reset(): void;
}

interface MutationState<O> {
  isPending: boolean;
  error: TetherError | undefined;
  data: O | undefined;
}

/** Calls command `name` (its effects applied to the cache); `mutate` rejects with a TetherError. */
export function useTetherMutation<I, O>(name: string): MutationResult<I, O> {
  const client = useTetherClient();
  const [store] = useState(
    () => new Store<MutationState<O>>({ isPending: false, error: undefined, data: undefined }),
  );
  const [counters] = useState(() => ({ pending: 0, latest: 0 }));
  const state = useSyncExternalStore(store.subscribe, store.get, store.get);
  const mutate = useCallback(
    async (input: I): Promise<O> => {
      counters.pending += 1;
      const call = ++counters.latest;
      store.set({ isPending: true, error: undefined });
      try {
        const data = await client.call<O>(name, (input ?? {}) as Params);
        counters.pending -= 1;
        if (call === counters.latest) store.set({ isPending: counters.pending > 0, data, error: undefined });
        else store.set({ isPending: counters.pending > 0 });
        return data;
      } catch (caught) {
        counters.pending -= 1;
        const error = asTetherError(caught);
        if (call === counters.latest) store.set({ isPending: counters.pending > 0, error });
        else store.set({ isPending: counters.pending > 0 });
        throw error;
      }
    },
    [client, name, store, counters],
  );
  const reset = useCallback(() => {
    counters.latest += 1; // answers of calls made before the reset no longer land
    store.replace({ isPending: counters.pending > 0, error: undefined, data: undefined });
  }, [store, counters]);
  return useMemo(() => ({ ...state, mutate, reset }), [state, mutate, reset]);
}

/** What a stream hook returns. */
export interface StreamResult<T> {
  latest: T | undefined;
  count: number;
  status: "connecting" | "open" | "ended" | "error";
  error: TetherError | undefined;
}

const CONNECTING: StreamResult<never> = { latest: undefined, count: 0, status: "connecting", error: undefined };

/** Follows stream `name` with `input` while mounted (cancelled on unmount or when `input` changes). */
export function useTetherStream<T>(name: string, input?: Params): StreamResult<T> {
  const client = useTetherClient();
  const [store] = useState(() => new Store<StreamResult<T>>(CONNECTING));
  const state = useSyncExternalStore(store.subscribe, store.get, store.get);
  const key = canonicalJson(cleanParams(input));
  useEffect(() => {
    const params = JSON.parse(key) as Params;
    const abort = new AbortController();
    let iterator: AsyncIterator<T> | undefined;
    let active = true;
    store.replace(CONNECTING);
    void (async () => {
      try {
        iterator = client.stream<T>(name, params, { signal: abort.signal })[Symbol.asyncIterator]();
        for (;;) {
          const next = await iterator.next();
          if (!active) return;
          if (next.done === true) {
            store.set({ status: "ended" });
            return;
          }
          const { count } = store.get();
          store.set({ latest: next.value, count: count + 1, status: "open" });
        }
      } catch (caught) {
        if (active) store.set({ status: "error", error: asTetherError(caught) });
      }
    })();
    return () => {
      active = false;
      abort.abort();
      void iterator?.return?.()?.catch(() => undefined);
    };
  }, [client, name, key, store]);
  return state;
}
