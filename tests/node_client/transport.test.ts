// The HTTP transport, context bundles, headers, name mapping and wire routing, on the real server.
import { afterEach, describe, expect, it } from "vitest";
import { TetherError } from "../../src/tether/codegen/runtime/errors.js";
import { createTetherClient } from "../../src/tether/codegen/runtime/client.js";
import type { TetherClient } from "../../src/tether/codegen/runtime/client.js";
import type { SchemaMeta } from "../../src/tether/codegen/runtime/wire.js";
import { SCHEMA, SERVER_URL, WebSocket, makeClient, recordingFetch, unique } from "./runtime-fixtures.js";

const clients: TetherClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

function setup(options: Parameters<typeof makeClient>[0] = {}) {
  const { fetch, seen } = recordingFetch();
  const client = makeClient({ fetch, ...options });
  clients.push(client);
  return { client, seen };
}

describe("HTTP transport", () => {
  it("calls POST {prefix}/call/{name} and returns the result with its effects", async () => {
    const { client, seen } = setup({ transport: "http" });
    const owner = unique("http");
    expect(await client.call<number>("echo", { value: 41 })).toBe(41);
    const added = await client.callWithEffects<number>("add_note", { owner, text: "milk" });
    expect(added).toEqual({ result: 1, invalidate: [{ context: "notes", params: { owner } }], merge: [] });
    const titled = await client.callWithEffects<string>("set_title", { owner, title: "Shopping" });
    expect(titled).toEqual({
      result: "Shopping",
      invalidate: [],
      merge: [{ context: "notes", slot: "title", params: { owner }, value: "Shopping" }],
    });
    expect(seen.map((s) => [s.method, s.path, s.headers["content-type"]])).toEqual([
      ["POST", "/api/call/echo", "application/json"],
      ["POST", "/api/call/add_note", "application/json"],
      ["POST", "/api/call/set_title", "application/json"],
    ]);
    expect(seen[1]?.body).toEqual({ owner, text: "milk" });
  });

  it("answers errors as TetherError with code, status, message and details", async () => {
    const { client } = setup({ transport: "http" });
    const stock = await client.call("fail", { kind: "stock" }).catch((e: unknown) => e);
    expect(stock).toBeInstanceOf(TetherError);
    expect(stock).toMatchObject({ code: "OUT_OF_STOCK", status: 409, message: "Out of stock", details: { sku: "widget", available: 0 } });
    const invalid = await client.call("echo", { value: "x" }).catch((e: unknown) => e);
    expect(invalid).toMatchObject({ code: "VALIDATION_FAILED", status: 422 });
    const unknown = await client.call("no_such_op", {}).catch((e: unknown) => e);
    expect(unknown).toMatchObject({ code: "NOT_FOUND", status: 404 });
  });

  it("turns an unreachable server and a non-JSON answer into NETWORK_ERROR", async () => {
    const { client } = setup({ transport: "http", baseUrl: "http://127.0.0.1:9" });
    await expect(client.call("echo", { value: 1 })).rejects.toMatchObject({ code: "NETWORK_ERROR", status: 0 });
    // The server's root is not tether's: its 404 is not an error envelope.
    const odd: SchemaMeta = { ...SCHEMA, prefix: "/nowhere" };
    const stray = createTetherClient(odd, { baseUrl: SERVER_URL, transport: "http", live: false });
    clients.push(stray);
    await expect(stray.call("echo", { value: 1 })).rejects.toMatchObject({ code: "NETWORK_ERROR", status: 0 });
  });

  it("fetches a context bundle with POST {prefix}/context/{name}", async () => {
    const { client, seen } = setup();
    const owner = unique("ctx");
    await client.call("add_note", { owner, text: "one" });
    await client.call("set_title", { owner, title: "T" });
    expect(await client.fetchContext("notes", { owner })).toEqual({ notes: ["one"], title: "T" });
    expect(seen.at(-1)).toMatchObject({ method: "POST", path: "/api/context/notes", body: { owner } });
    await expect(client.fetchContext("nope", {})).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 });
  });

  it("reads the headers for every request", async () => {
    let user = "ada";
    for (const transport of ["http", "jsonrpc", "websocket"] as const) {
      const { client } = setup({ transport, WebSocket, headers: async () => ({ "x-user": user }) });
      user = "ada";
      expect(await client.call("whoami")).toBe("ada");
      user = "bob";
      expect(await client.call("whoami")).toBe("bob");
    }
  });

  it("maps camelCase names to wire names", async () => {
    const schema: SchemaMeta = {
      ...SCHEMA,
      operations: {
        ...SCHEMA.operations,
        add_note: { kind: "command", transports: ["http", "jsonrpc"], params: ["owner", "text"], names: { noteOwner: "owner", noteText: "text" } },
      },
      contexts: { ...SCHEMA.contexts, notes: { slots: ["notes", "title"], params: ["owner"], rev: null, perUser: false, names: { noteOwner: "owner" } } },
    };
    const { fetch, seen } = recordingFetch();
    const client = createTetherClient(schema, { baseUrl: SERVER_URL, fetch, live: false });
    clients.push(client);
    const owner = unique("camel");
    expect(await client.call("add_note", { noteOwner: owner, noteText: "x" })).toBe(1);
    expect(seen[0]?.body).toMatchObject({ method: "add_note", params: { owner, text: "x" } });
    expect(await client.fetchContext("notes", { noteOwner: owner })).toEqual({ notes: ["x"], title: "" });
    expect(seen[1]?.body).toEqual({ owner });
  });

  it("routes an operation that is not on the chosen wire to HTTP", async () => {
    const schema: SchemaMeta = {
      ...SCHEMA,
      operations: { ...SCHEMA.operations, echo: { kind: "query", transports: ["http"], params: ["value"] } },
    };
    const { fetch, seen } = recordingFetch();
    const client = createTetherClient(schema, { baseUrl: SERVER_URL, fetch, live: false });
    clients.push(client);
    expect(await Promise.all([client.call("echo", { value: 1 }), client.call("whoami")])).toEqual([1, "anonymous"]);
    expect(seen.map((s) => s.path).sort()).toEqual(["/api/call/echo", "/api/jsonrpc"]);
  });

  it("applies a command's effects to the client's cache (unless told not to)", async () => {
    const { client, seen } = setup({ transport: "http" });
    const owner = unique("cache");
    const target = { kind: "context" as const, name: "notes", params: { owner } };
    const stop = client.cache.subscribe(target, () => undefined);
    await client.cache.ensure(target);
    expect(client.cache.getSnapshot(target).data).toEqual({ notes: [], title: "" });
    const before = seen.length;
    await client.call("set_title", { owner, title: "Merged" });
    expect(client.cache.getSnapshot(target).data).toEqual({ notes: [], title: "Merged" });
    expect(seen.length).toBe(before + 1); // the merge made no request
    await client.callWithEffects("set_title", { owner, title: "Untouched" }, { applyEffects: false });
    expect(client.cache.getSnapshot(target).data).toEqual({ notes: [], title: "Merged" });
    stop();
  });
});
