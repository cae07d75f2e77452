// SSE: the fetch-based event reader, and streams over POST {prefix}/stream/{name}.
import { afterEach, describe, expect, it } from "vitest";
import { TetherError } from "../../src/tether/codegen/runtime/errors.js";
import type { TetherClient } from "../../src/tether/codegen/runtime/client.js";
import { readEvents } from "../../src/tether/codegen/runtime/sse.js";
import type { SseEvent } from "../../src/tether/codegen/runtime/sse.js";
import { cancelledAfter, cancelledStreams, drain, makeClient, recordingFetch, takeFirst } from "./runtime-fixtures.js";

const clients: TetherClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

function setup() {
  const { fetch, seen } = recordingFetch();
  const client = makeClient({ fetch, headers: () => ({ "x-user": "ada" }) });
  clients.push(client);
  return { client, seen };
}

/** A body made of these chunks, split exactly there. */
function body(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

async function collect(chunks: string[]): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of readEvents(body(chunks))) events.push(event);
  return events;
}

describe("readEvents", () => {
  it("reads LF, CRLF and CR line ends, comments, multi-line data and ids", async () => {
    const text =
      ": a comment\n" +
      "id: 1\nevent: data\ndata: 1\n\n" +
      "id: 2\r\nevent: data\r\ndata: {\"a\":\r\ndata: 2}\r\n\r\n" +
      "data:no space\r\r" +
      ": ping\n\n" +
      "event: end\ndata: null\n\n";
    const expected = [
      { event: "data", data: "1", id: "1" },
      { event: "data", data: '{"a":\n2}', id: "2" },
      { event: "message", data: "no space", id: "2" },
      { event: "end", data: "null", id: "2" },
    ];
    expect(await collect([text])).toEqual(expected);
    // The same bytes, one character per chunk (a CRLF split between two chunks included).
    expect(await collect([...text])).toEqual(expected);
    // Multi-byte characters split across chunks.
    const bytes = new TextEncoder().encode('data: "héllo ✓"\n\n');
    const split = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
        controller.close();
      },
    });
    const events: SseEvent[] = [];
    for await (const event of readEvents(split)) events.push(event);
    expect(events).toEqual([{ event: "message", data: '"héllo ✓"', id: "" }]);
  });

  it("drops an event the body ends inside", async () => {
    expect(await collect(["data: 1\n\ndata: 2\n"])).toEqual([{ event: "message", data: "1", id: "" }]);
  });
});

describe("SSE streams", () => {
  it("yields the items of POST {prefix}/stream/{name}", async () => {
    const { client, seen } = setup();
    const items: number[] = [];
    for await (const item of client.stream<number>("ticks", { n: 4, ms: 5 })) items.push(item);
    expect(items).toEqual([1, 2, 3, 4]);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: "POST",
      path: "/api/stream/ticks",
      body: { n: 4, ms: 5 },
      headers: { "x-user": "ada", "content-type": "application/json" },
    });
  });

  it("throws an error event as a TetherError, after the items", async () => {
    const { client } = setup();
    const { items, error } = await drain(client.stream<number>("ticks_then_fail", { n: 3 }));
    expect(items).toEqual([1, 2, 3]);
    expect(error).toBeInstanceOf(TetherError);
    expect(error).toMatchObject({ code: "NOT_FOUND", status: 404, message: "no more ticks", details: { after: 3 } });
  });

  it("throws a refusal before the stream with its status", async () => {
    const { client } = setup();
    const consume = async (name: string, input: Record<string, unknown>) => {
      for await (const item of client.stream(name, input)) void item;
    };
    await expect(consume("ticks", { n: "many" })).rejects.toMatchObject({ code: "VALIDATION_FAILED", status: 422 });
    await expect(consume("echo", { value: 1 })).rejects.toMatchObject({ code: "BAD_REQUEST", status: 400 });
    await expect(consume("nope", {})).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 });
  });

  it("cancels the server's generator when the loop is left early", async () => {
    const { client } = setup();
    const before = await cancelledStreams();
    expect(await takeFirst(client.stream<number>("forever", { ms: 5 }), 3)).toEqual([1, 2, 3]);
    expect(await cancelledAfter(before)).toBe(before + 1);
  });

  it("stops at once when its signal aborts", async () => {
    const { client } = setup();
    const controller = new AbortController();
    const { items, error } = await drain(client.stream<number>("forever", { ms: 5 }, { signal: controller.signal }), (seen) => {
      if (seen.length === 2) controller.abort();
    });
    expect(items).toEqual([1, 2]);
    expect(error).toMatchObject({ code: "ABORTED" });
  });
});
