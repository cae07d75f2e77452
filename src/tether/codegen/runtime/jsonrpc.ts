/** The JSON-RPC wire: calls made in one tick travel as one batch to `POST {prefix}/jsonrpc`. */
import { TetherError, abortError, networkError } from "./errors.js";
import { apiUrl, postJson, readJson } from "./http.js";
import type { WireContext } from "./http.js";
import { readEffects } from "./wire.js";
import type { Outcome, Params } from "./wire.js";

/** The default largest batch: the server's `max_batch_size`. */
export const DEFAULT_MAX_ITEMS = 100;

interface Pending {
  readonly id: number;
  readonly method: string;
  readonly params: Params;
  readonly signal: AbortSignal | undefined;
  resolve(outcome: Outcome<unknown>): void;
  reject(error: TetherError): void;
  settled: boolean;
}

/** Codes of the specification's own errors, which carry no tether code. */
const SPEC_CODES: Readonly<Record<number, readonly [string, number]>> = {
  [-32700]: ["BAD_REQUEST", 400],
  [-32600]: ["BAD_REQUEST", 400],
  [-32601]: ["NOT_FOUND", 404],
  [-32602]: ["VALIDATION_FAILED", 422],
  [-32603]: ["INTERNAL_ERROR", 500],
};

/** A TetherError from a JSON-RPC error object (`data.code`, `data.details`, the schema's status). */
export function rpcError(
  error: unknown,
  errors: Readonly<Record<string, number>>,
  httpStatus = 200,
): TetherError {
  if (typeof error !== "object" || error === null) {
    return networkError("the JSON-RPC answer holds no valid error", error);
  }
  const e = error as { code?: unknown; message?: unknown; data?: unknown };
  const data =
    typeof e.data === "object" && e.data !== null ? (e.data as { code?: unknown; details?: unknown }) : {};
  const spec = typeof e.code === "number" ? SPEC_CODES[e.code] : undefined;
  const code = typeof data.code === "string" ? data.code : (spec?.[0] ?? "INTERNAL_ERROR");
  const message = typeof e.message === "string" ? e.message : code;
  const status = httpStatus >= 400 ? httpStatus : (errors[code] ?? spec?.[1] ?? 500);
  return new TetherError(code, message, status, data.details ?? null);
}

/** Sends calls over JSON-RPC, gathering the calls of one tick into batches of `maxItems`. */
export class JsonRpcBatcher {
  private readonly ctx: WireContext;
  private readonly maxItems: number;
  private queue: Pending[] = [];
  private nextId = 1;

  constructor(ctx: WireContext, maxItems: number = DEFAULT_MAX_ITEMS) {
    this.ctx = ctx;
    this.maxItems = Math.max(1, Math.floor(maxItems));
  }

  /** Call `method` with `params` (by name): its result and effects. */
  call(method: string, params: Params, signal?: AbortSignal): Promise<Outcome<unknown>> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<Outcome<unknown>>((resolve, reject) => {
      const pending: Pending = {
        id: this.nextId++,
        method,
        params,
        signal,
        settled: false,
        resolve: (outcome) => {
          if (pending.settled) return;
          pending.settled = true;
          signal?.removeEventListener("abort", onAbort);
          resolve(outcome);
        },
        reject: (error) => {
          if (pending.settled) return;
          pending.settled = true;
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      const onAbort = (): void => {
        // An aborted call rejects at once; if it was not sent yet, it never is.
        this.queue = this.queue.filter((item) => item !== pending);
        if (signal !== undefined) pending.reject(abortError(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (this.queue.length === 0) queueMicrotask(() => this.flush());
      this.queue.push(pending);
    });
  }

  private flush(): void {
    const items = this.queue;
    this.queue = [];
    for (let start = 0; start < items.length; start += this.maxItems) {
      void this.send(items.slice(start, start + this.maxItems));
    }
  }

  private async send(items: Pending[]): Promise<void> {
    const messages = items.map((item) => ({
      jsonrpc: "2.0",
      id: item.id,
      method: item.method,
      params: item.params,
    }));
    const body = messages.length === 1 ? messages[0] : messages;
    try {
      const url = apiUrl(this.ctx, "/jsonrpc");
      const response = await postJson(this.ctx, url, body, undefined, { "X-Tether-Effects": "1" });
      const answer = await readJson(response);
      this.settle(items, answer, response.status);
    } catch (error) {
      const failure =
        error instanceof TetherError ? error : networkError("the JSON-RPC request failed", String(error));
      for (const item of items) item.reject(failure);
    }
  }

  private settle(items: Pending[], answer: unknown, status: number): void {
    const responses = Array.isArray(answer) ? (answer as unknown[]) : [answer];
    const byId = new Map<unknown, Record<string, unknown>>();
    let batchError: TetherError | undefined;
    for (const response of responses) {
      if (typeof response !== "object" || response === null) continue;
      const r = response as Record<string, unknown>;
      if (r.id === null || r.id === undefined) {
        batchError = rpcError(r.error, this.ctx.errors, status);
      } else {
        byId.set(r.id, r);
      }
    }
    for (const item of items) {
      const r = byId.get(item.id);
      if (r === undefined) {
        item.reject(
          batchError ?? networkError(`the JSON-RPC answer has no response for call ${item.id}`, answer),
        );
      } else if ("error" in r) {
        item.reject(rpcError(r.error, this.ctx.errors));
      } else {
        item.resolve({ result: r.result, ...readEffects(r.effects) });
      }
    }
  }
}
