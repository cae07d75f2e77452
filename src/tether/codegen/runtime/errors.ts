/** Typed errors of tether calls: the server's error envelope, or a network failure. */

/** An error answered by the server (or NETWORK_ERROR, status 0, when no answer could be read). */
export class TetherError<C extends string = string> extends Error {
  readonly code: C;
  readonly status: number;
  readonly details: unknown;

  constructor(code: C, message: string, status: number, details?: unknown) {
    super(message);
    this.name = "TetherError";
    this.code = code;
    this.status = status;
    this.details = details ?? null;
  }
}

/** Whether `e` is a TetherError (with the code `code`, when given). */
export function isTetherError<C extends string = string>(e: unknown, code?: C): e is TetherError<C> {
  return e instanceof TetherError && (code === undefined || e.code === code);
}

/** The code of errors with no readable answer: the network failed or the answer was not tether's. */
export const NETWORK_ERROR = "NETWORK_ERROR";

/** A NETWORK_ERROR TetherError with `message`. */
export function networkError(message: string, details?: unknown): TetherError {
  return new TetherError(NETWORK_ERROR, message, 0, details);
}

/** The error of an aborted call. */
export function abortError(signal: AbortSignal): TetherError {
  const reason: unknown = signal.reason;
  if (reason instanceof TetherError) return reason;
  return new TetherError("ABORTED", "the call was aborted", 0, null);
}

/** A TetherError from an error envelope `{"error": {code, message, details}}` (or NETWORK_ERROR). */
export function fromEnvelope(body: unknown, status: number): TetherError {
  if (typeof body === "object" && body !== null && "error" in body) {
    const error: unknown = (body as { error: unknown }).error;
    if (typeof error === "object" && error !== null) {
      const e = error as { code?: unknown; message?: unknown; details?: unknown };
      if (typeof e.code === "string") {
        const message = typeof e.message === "string" ? e.message : e.code;
        return new TetherError(e.code, message, status, e.details);
      }
    }
  }
  return networkError(`unexpected answer (HTTP ${status})`, body);
}
