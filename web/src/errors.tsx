// How the page shows a TetherError: "403 FORBIDDEN: message", in a role="alert" box.
import { isTetherError, TetherError } from "./api/index.js";

/** The error's status, code and message, as one line. */
export function describe(error: TetherError): string {
  return `${error.status} ${error.code}: ${error.message}`;
}

/** `caught` as a TetherError (the client rejects with nothing else; a bug becomes CLIENT_ERROR). */
export function asTetherError(caught: unknown): TetherError {
  if (isTetherError(caught)) return caught;
  return new TetherError("CLIENT_ERROR", String(caught), 0);
}

/** The error, or nothing when there is none. */
export function ErrorLine({ error, testId }: { error: TetherError | undefined; testId: string }) {
  if (error === undefined) return null;
  return (
    <p className="error" role="alert" data-testid={testId} data-code={error.code}>
      {describe(error)}
    </p>
  );
}
