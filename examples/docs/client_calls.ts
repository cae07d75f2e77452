// file: examples/docs/client_calls.ts
import { createApi, isTetherError, type Todo } from "./api/index.js";

const api = createApi({
  baseUrl: process.env.API_URL ?? "http://127.0.0.1:8000", // "" (same origin) in a browser
  headers: () => ({ Authorization: "Bearer ada" }), // asked before every request
});

// One function per operation: its input and its result are typed.
const milk: Todo = await api.addTodo({ title: "milk", attachment: { kind: "note", text: "2 l" } });
console.log(`added #${milk.id} ${milk.title} (${milk.priority}, done: ${milk.done})`);

// Calls made in the same tick travel together, as one JSON-RPC batch.
const [tea, me] = await Promise.all([
  api.addTodo({ title: "tea", priority: "high" }),
  api.currentUser(),
]);
console.log(`${me} added #${tea.id} ${tea.title} (${tea.priority})`);

// A context's fetcher returns its bundle: { slot: value }.
const { list_todos } = await api.contexts.todos({ done: false });
console.log(`open: ${list_todos.items.map((todo) => todo.title).join(", ")}`);

// A stream is an AsyncIterable; leaving the loop early cancels it on the server.
for await (const n of api.countdown({ start: 3 })) console.log(`countdown ${n}`);

// A failed call throws a TetherError: its code, HTTP status and details.
for (const attempt of [() => api.getTodo({ id: 99 }), () => api.openCount()]) {
  try {
    await attempt();
  } catch (error) {
    if (!isTetherError(error)) throw error;
    console.log(`${error.status} ${error.code}: ${error.message}`);
  }
}

// An aborted call rejects at once (this one, aborted in its tick, is never sent).
const controller = new AbortController();
const pending = api.getTodo({ id: 1 }, { signal: controller.signal });
controller.abort();
await pending.catch((error: unknown) => {
  if (isTetherError(error, "ABORTED")) console.log(error.message);
});

api.client.close(); // the live connection and any socket
