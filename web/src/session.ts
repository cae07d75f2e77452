// Who the page calls as, and the one typed client every component uses.
import { type ClientOptions, createApi } from "./api/index.js";

const query = new URLSearchParams(location.search);
let name = query.get("name") ?? "ada";

/** The name the page signs in with (sent as `Authorization: Bearer <name>`). */
export function currentName(): string {
  return name;
}

// `?wire=websocket` makes calls, the counter and live push share one WebSocket (context
// bundles stay on HTTP); by default calls go by JSON-RPC, streams and live push by SSE.
const wires: ClientOptions =
  query.get("wire") === "websocket"
    ? { transport: "websocket", streams: "websocket", live: "websocket" }
    : {};

/** The generated client: read per request, the headers always carry the current name. */
export const api = createApi({ ...wires, headers: () => ({ Authorization: "Bearer " + name }) });

/** Sign in as `next`: the cache is cleared and live push reconnects with the new headers. */
export function signInAs(next: string): void {
  name = next;
  api.client.reset();
}
