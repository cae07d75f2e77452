// The TanStack Query helpers with a real QueryClient, a real TetherClient and the real server.
import { MutationObserver, QueryClient, QueryObserver } from "@tanstack/react-query";
import { describe, expect, it } from "vitest";
import type { ClientOptions, TetherClient } from "../../src/tether/codegen/runtime/client.js";
import { TetherError } from "../../src/tether/codegen/runtime/errors.js";
import {
  commandMutationOptions,
  contextQueryOptions,
  followLive,
  queryQueryOptions,
  tetherQueryKey,
} from "../../src/tether/codegen/runtime/tanstack.js";
import type { Outcome } from "../../src/tether/codegen/runtime/wire.js";
import { cleanupAfterEach, direct, recordingClient, sleep, unique, until, type Notes } from "./runtime-fixtures.js";

const onCleanup = cleanupAfterEach();

function setup(options: ClientOptions = {}) {
  const recorded = recordingClient(options);
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: 60_000 } } });
  onCleanup(() => recorded.client.close(), () => queryClient.clear());
  return { ...recorded, queryClient };
}

/** Mounts `options` as an active query (as useQuery would) and waits for its data. */
async function observe<T>(queryClient: QueryClient, options: ReturnType<typeof contextQueryOptions<T>>) {
  const observer = new QueryObserver(queryClient, options);
  const unsubscribe = observer.subscribe(() => undefined);
  onCleanup(unsubscribe);
  await until(() => observer.getCurrentResult().status === "success", 5000, "the first load");
  return observer;
}

/** Runs command `name` as useMutation would, with the helper's options. */
function mutate<I, O>(client: TetherClient, queryClient: QueryClient, name: string, input: I): Promise<Outcome<O>> {
  return new MutationObserver(queryClient, commandMutationOptions<I, O>(client, queryClient, name)).mutate(input);
}

describe("query keys and options", () => {
  it("keys are [tether, kind, name, params] without undefined members", () => {
    expect(tetherQueryKey({ kind: "context", name: "notes", params: { owner: "a", x: undefined } })).toEqual([
      "tether",
      "context",
      "notes",
      { owner: "a" },
    ]);
    const { client } = setup();
    const key = contextQueryOptions(client, "notes", { owner: "a" }).queryKey;
    expect(key).toEqual(["tether", "context", "notes", { owner: "a" }]);
    expect(queryQueryOptions(client, "echo", { value: 1 }).queryKey).toEqual(["tether", "query", "echo", { value: 1 }]);
  });

  it("load bundles and query results", async () => {
    const { client, queryClient, calls } = setup();
    const owner = unique("tq");
    await direct("add_note", { owner, text: "milk" });
    expect(await queryClient.fetchQuery(contextQueryOptions<Notes>(client, "notes", { owner }))).toEqual({
      notes: ["milk"],
      title: "",
    });
    expect(await queryClient.fetchQuery(queryQueryOptions<number>(client, "echo", { value: 7 }))).toBe(7);
    expect(calls()).toEqual(["/api/context/notes", "/api/call/echo"]);
  });
});

describe("commandMutationOptions", () => {
  it("onSuccess invalidates exactly the matching queries, and the client's own cache is untouched", async () => {
    const { client, queryClient, calls } = setup();
    const [a, b] = [unique("ta"), unique("tb")];
    const mine = await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner: a }));
    await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner: b }));
    await observe(queryClient, queryQueryOptions<number>(client, "echo", { value: 1 }));
    // The same bundle mounted in the TetherClient's kernel too: the mutation must not refetch it.
    const kernelTarget = { kind: "context" as const, name: "notes", params: { owner: a } };
    onCleanup(client.cache.subscribe(kernelTarget, () => undefined));
    await until(() => client.cache.getSnapshot(kernelTarget).status === "success");
    expect(calls()).toHaveLength(4);

    const outcome = await mutate<{ owner: string; text: string }, number>(client, queryClient, "add_note", {
      owner: a,
      text: "milk",
    });
    expect(outcome).toEqual({ result: 1, invalidate: [{ context: "notes", params: { owner: a } }], merge: [] });
    // onSuccess returned the refetch: it is done when the mutation resolves.
    expect(mine.getCurrentResult().data).toEqual({ notes: ["milk"], title: "" });
    await sleep(50);
    expect(calls().slice(4)).toEqual(["/api/call/add_note", "/api/context/notes"]);
    expect(client.cache.getSnapshot(kernelTarget).data).toEqual({ notes: [], title: "" });
  });

  it("marks inactive matching queries stale without fetching them", async () => {
    const { client, queryClient, calls } = setup();
    const owner = unique("ti");
    const options = contextQueryOptions<Notes>(client, "notes", { owner });
    await queryClient.fetchQuery(options);
    await mutate(client, queryClient, "add_note", { owner, text: "x" });
    expect(calls()).toEqual(["/api/context/notes", "/api/call/add_note"]);
    expect(queryClient.getQueryState(options.queryKey)?.isInvalidated).toBe(true);
    expect(await queryClient.ensureQueryData({ ...options, revalidateIfStale: true })).toBeDefined();
  });

  it("onSuccess splices a merge with setQueryData, with no request", async () => {
    const { client, queryClient, calls } = setup();
    const [a, b] = [unique("tm"), unique("tn")];
    await direct("add_note", { owner: a, text: "keep" });
    const mine = await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner: a }));
    const other = await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner: b }));
    const before = mine.getCurrentResult().data;
    const otherBefore = other.getCurrentResult().data;

    await mutate(client, queryClient, "set_title", { owner: a, title: "Shopping" });
    const after = queryClient.getQueryData(contextQueryOptions<Notes>(client, "notes", { owner: a }).queryKey);
    expect(after).toEqual({ notes: ["keep"], title: "Shopping" });
    expect(after).not.toBe(before);
    expect(after?.notes).toBe(before?.notes); // the other slot: the same array
    expect(before?.title).toBe(""); // the old object did not change
    expect(other.getCurrentResult().data).toBe(otherBefore);
    await sleep(50);
    expect(calls().slice(2)).toEqual(["/api/call/set_title"]);
  });

  it("rejects with the typed TetherError", async () => {
    const { client, queryClient } = setup();
    const options = commandMutationOptions<{ kind: string }, string>(client, queryClient, "fail");
    const observer = new MutationObserver(queryClient, options);
    const error: unknown = await observer.mutate({ kind: "stock" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TetherError);
    expect(error).toMatchObject({ code: "OUT_OF_STOCK", status: 409, details: { sku: "widget", available: 0 } });
    const state = observer.getCurrentResult();
    expect(state.status).toBe("error");
    const typed: TetherError | null = state.error; // the options' error type is TetherError
    expect(typed?.code).toBe("OUT_OF_STOCK");
  });
});

describe("followLive", () => {
  it("applies another client's pushes: refetches the matching query only", async () => {
    const { client, queryClient, calls } = setup({ live: "sse" });
    const [a, b] = [unique("la"), unique("lb")];
    const mine = await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner: a }));
    await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner: b }));
    onCleanup(followLive(client, queryClient, ["notes"]));
    await until(() => client.cache.isLive("notes"), 5000, "live coverage of notes");
    const base = calls().length;

    await direct("add_note", { owner: a, text: "from elsewhere" });
    await until(() => mine.getCurrentResult().data?.notes.length === 1, 5000, "the pushed refetch");
    await direct("set_title", { owner: b, title: "Merged" });
    await until(
      () => queryClient.getQueryData<Notes>(["tether", "context", "notes", { owner: b }])?.title === "Merged",
      5000,
      "the pushed merge",
    );
    await sleep(50);
    expect(calls().slice(base)).toEqual(["/api/context/notes"]);
  });

  it("makes the caller's response wait for its push: one refetch in total", async () => {
    const { client, queryClient, calls } = setup({ live: "sse", liveGraceMs: 400 });
    const owner = unique("lg");
    const mine = await observe<Notes>(queryClient, contextQueryOptions<Notes>(client, "notes", { owner }));
    onCleanup(followLive(client, queryClient, ["notes"]));
    await until(() => client.cache.isLive("notes"), 5000, "live coverage of notes");
    const base = calls().length;

    await mutate(client, queryClient, "add_note", { owner, text: "once" });
    await until(() => mine.getCurrentResult().data?.notes.length === 1, 5000, "the refetch");
    await sleep(600); // past the grace
    expect(calls().slice(base)).toEqual(["/api/call/add_note", "/api/context/notes"]);
  });

  it("stops following when released", async () => {
    const { client, queryClient, seen } = setup({ live: "sse" });
    const stop = followLive(client, queryClient, ["notes"]);
    await until(() => client.cache.isLive("notes"), 5000, "live coverage of notes");
    expect(seen.some((s) => s.path.startsWith("/api/live") && s.path.includes("notes"))).toBe(true);
    stop();
    await until(() => !client.cache.isLive("notes"), 5000, "live coverage to end");
  });
});
