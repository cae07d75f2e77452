/** The HTTP wire: `POST {prefix}/call/{name}` and context bundles at `POST {prefix}/context/{name}`. */
import { TetherError, abortError, fromEnvelope, networkError } from "./errors.js";
import { readEffects } from "./wire.js";
import type { Outcome, Params } from "./wire.js";

/** What every transport needs to reach the server. */
export interface WireContext {
  /** The origin (and path) before the prefix: "" for the page's own origin. */
  readonly baseUrl: string;
  readonly prefix: string;
  readonly fetch: typeof fetch;
  /** The caller's headers, read for each request or message. */
  headers(): Promise<Record<string, string>>;
  /** Error code -> HTTP status, from the schema. */
  readonly errors: Readonly<Record<string, number>>;
}

/** An URL under the app's prefix. */
export function apiUrl(ctx: WireContext, path: string): string {
  return `${ctx.baseUrl.replace(/\/+$/, "")}${ctx.prefix}${path}`;
}

/** The path segment of an operation's name (service operations keep their dots). */
export function opPath(name: string): string {
  return name.split("/").map(encodeURIComponent).join(".");
}

/** A fetch that turns a network failure into NETWORK_ERROR and an abort into the abort's error. */
export async function send(
  ctx: WireContext,
  url: string,
  init: RequestInit,
  signal: AbortSignal | undefined,
): Promise<Response> {
  if (signal?.aborted) throw abortError(signal);
  try {
    return await ctx.fetch(url, signal === undefined ? init : { ...init, signal });
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw networkError(`the request failed: ${describeError(error)}`);
  }
}

/** The JSON body of `response` (NETWORK_ERROR when it is not JSON). */
export async function readJson(response: Response, signal?: AbortSignal): Promise<unknown> {
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw networkError(`the answer could not be read: ${describeError(error)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw networkError(`the answer is not JSON (HTTP ${response.status})`, text.slice(0, 200));
  }
}

/** A POST of `body` as JSON with the caller's headers. */
export async function postJson(
  ctx: WireContext,
  url: string,
  body: unknown,
  signal: AbortSignal | undefined,
  extra: Record<string, string> = {},
): Promise<Response> {
  const headers = { ...(await ctx.headers()), ...extra, "Content-Type": "application/json" };
  return send(ctx, url, { method: "POST", headers, body: JSON.stringify(body) }, signal);
}

/** Calls and context bundles over plain HTTP. */
export class HttpTransport {
  private readonly ctx: WireContext;

  constructor(ctx: WireContext) {
    this.ctx = ctx;
  }

  /** Call operation `name` with `params`: its result and effects. */
  async call(name: string, params: Params, signal?: AbortSignal): Promise<Outcome<unknown>> {
    const url = apiUrl(this.ctx, `/call/${opPath(name)}`);
    const body = await this.answer(await postJson(this.ctx, url, params, signal), signal);
    return { result: body.result, ...readEffects(body) };
  }

  /** The bundle `{slot: value}` of context `name` with `params`. */
  async fetchContext(name: string, params: Params, signal?: AbortSignal): Promise<unknown> {
    const url = apiUrl(this.ctx, `/context/${encodeURIComponent(name)}`);
    const body = await this.answer(await postJson(this.ctx, url, params, signal), signal);
    return body.result;
  }

  private async answer(response: Response, signal?: AbortSignal): Promise<{ result: unknown }> {
    const body = await readJson(response, signal);
    if (response.ok && typeof body === "object" && body !== null && "result" in body) {
      return body as { result: unknown };
    }
    throw fromEnvelope(body, response.status);
  }
}

/** A short text for any thrown value. */
export function describeError(error: unknown): string {
  if (error instanceof TetherError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) {
    const cause: unknown = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}
