/** Server-sent events read with `fetch` (headers and POST bodies, unlike EventSource). */
import { TetherError, abortError, fromEnvelope, networkError } from "./errors.js";
import { apiUrl, describeError, opPath, postJson, send } from "./http.js";
import type { WireContext } from "./http.js";
import type { LivePush, Params } from "./wire.js";

/** One event of a text/event-stream. */
export interface SseEvent {
  readonly event: string;
  readonly data: string;
  /** The stream's last event id as of this event ("" when none was sent yet). */
  readonly id: string;
}

/** The events of an SSE body: `\n`, `\r\n` and `\r` line ends, comments, multi-line data, ids. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let lastId = "";
  let sawField = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (;;) {
        const match = /\r\n|\n|\r/.exec(buffer);
        // A lone "\r" at the end may be the first half of "\r\n": wait for more.
        if (match === null || (match[0] === "\r" && match.index === buffer.length - 1 && !done)) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (sawField && (data.length > 0 || event !== "")) {
            yield { event: event === "" ? "message" : event, data: data.join("\n"), id: lastId };
          }
          event = "";
          data = [];
          sawField = false;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        sawField = true;
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) lastId = value;
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** The error an SSE endpoint answered before its stream (the status and the `error` event). */
export async function refusal(response: Response): Promise<TetherError> {
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    return networkError(`the answer could not be read: ${describeError(error)}`);
  }
  const match = /^data: ?(.*)$/m.exec(text);
  let body: unknown = text;
  try {
    body = JSON.parse(match === null ? text : (match[1] ?? "")) as unknown;
  } catch {
    // not JSON: fromEnvelope makes it a NETWORK_ERROR
  }
  return fromEnvelope(body, response.status);
}

/** The items of stream `name` over SSE (`POST {prefix}/stream/{name}`); leaving the loop cancels it. */
export async function* sseStream(
  ctx: WireContext,
  name: string,
  params: Params,
  signal?: AbortSignal,
): AsyncGenerator<unknown> {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal?.reason);
  if (signal?.aborted) throw abortError(signal);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const url = apiUrl(ctx, `/stream/${opPath(name)}`);
    let response: Response;
    try {
      response = await postJson(ctx, url, params, controller.signal, { Accept: "text/event-stream" });
    } catch (error) {
      if (signal?.aborted) throw abortError(signal);
      throw error;
    }
    if (!response.ok || response.body === null) throw await refusal(response);
    try {
      for await (const event of readEvents(response.body)) {
        if (event.event === "data") {
          yield JSON.parse(event.data) as unknown;
        } else if (event.event === "end") {
          return;
        } else if (event.event === "error") {
          const envelope = JSON.parse(event.data) as unknown;
          const error = fromEnvelope(envelope, 500);
          throw new TetherError(error.code, error.message, ctx.errors[error.code] ?? 500, error.details);
        }
      }
    } catch (error) {
      if (error instanceof TetherError) throw error;
      if (signal?.aborted) throw abortError(signal);
      throw networkError(`the stream '${name}' failed: ${describeError(error)}`);
    }
    throw networkError(`the stream '${name}' ended early (no end event)`);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    controller.abort(); // leaving early (break, return, error) closes the request: the server cancels
  }
}

/** What a live subscription over SSE reports. */
export interface SseLiveHandlers {
  ready(id: string): void;
  push(push: LivePush): void;
  /** The subscription ended: refused (`error` with a status), or the connection went away. */
  closed(error: TetherError): void;
}

/** Follow `contexts` over `GET {prefix}/live`, resuming after `since`; the returned function stops. */
export function sseLive(
  ctx: WireContext,
  contexts: readonly string[],
  since: string | null,
  handlers: SseLiveHandlers,
): () => void {
  const controller = new AbortController();
  let active = true;
  const finish = (error: TetherError): void => {
    if (!active) return;
    active = false;
    handlers.closed(error);
  };
  const run = async (): Promise<void> => {
    const query = new URLSearchParams({ contexts: contexts.join(",") });
    const headers: Record<string, string> = { ...(await ctx.headers()), Accept: "text/event-stream" };
    if (since !== null) headers["Last-Event-ID"] = since;
    const url = apiUrl(ctx, `/live?${query.toString()}`);
    const response = await send(ctx, url, { method: "GET", headers }, controller.signal);
    if (!response.ok || response.body === null) {
      finish(await refusal(response));
      return;
    }
    for await (const event of readEvents(response.body)) {
      if (!active) return;
      if (event.event === "error") {
        const error = fromEnvelope(JSON.parse(event.data) as unknown, 500);
        finish(new TetherError(error.code, error.message, ctx.errors[error.code] ?? 500, error.details));
        return;
      }
      const message = JSON.parse(event.data) as { id?: unknown };
      if (typeof message.id !== "string") continue;
      if (event.event === "ready") handlers.ready(message.id);
      else if (event.event === "effects" || event.event === "resync") handlers.push(message as LivePush);
    }
    finish(networkError("the live stream ended"));
  };
  run().catch((error: unknown) => {
    finish(error instanceof TetherError ? error : networkError(`the live stream failed: ${describeError(error)}`));
  });
  return () => {
    active = false;
    controller.abort();
  };
}
