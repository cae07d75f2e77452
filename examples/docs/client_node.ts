// file: examples/docs/client_node.ts
import { WebSocket } from "ws";
import { createApi, isTetherError } from "./api/index.js";

// Node 20 has fetch but no WebSocket: pass the `ws` package's (its types differ from the DOM's).
const api = createApi({
  baseUrl: process.env.API_URL ?? "http://127.0.0.1:8000",
  transport: "websocket", // calls,
  streams: "websocket", // streams
  live: "websocket", // and live push share one socket
  WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  headers: () => ({ Authorization: "Bearer bob" }), // sent in every message's headers
});

const todo = await api.addTodo({ title: "socks", priority: "high" });
console.log(`#${todo.id} ${todo.title} by ${todo.owner}`);
const counted: number[] = [];
for await (const n of api.countdown({ start: 5 })) {
  counted.push(n);
  if (n === 3) break; // sends CANCEL: the server stops the stream
}
console.log(`counted ${counted.join(" ")}`);
await api.getTodo({ id: 7 }).catch((error: unknown) => {
  if (isTetherError(error)) console.log(`${error.status} ${error.code}`);
});
api.client.close();
