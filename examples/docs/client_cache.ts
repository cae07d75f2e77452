// file: examples/docs/client_cache.ts
import { createApi, type TodosData, type UserData } from "./api/index.js";

const baseUrl = process.env.API_URL ?? "http://127.0.0.1:8000";
const sent: string[] = []; // the requests ada's client makes, but live push's own
const ada = createApi({
  baseUrl,
  headers: () => ({ Authorization: "Bearer ada" }),
  fetch: (input, init) => {
    const path = new URL(String(input)).pathname;
    if (path !== "/api/live") sent.push(path);
    return fetch(input, init);
  },
});
const bob = createApi({ baseUrl, headers: () => ({ Authorization: "Bearer bob" }), live: false });
const { cache } = ada.client;
const todos = { kind: "context", name: "todos", params: {} } as const;
const user = { kind: "context", name: "user", params: {} } as const;
const titles = (): string =>
  cache.getSnapshot<TodosData>(todos).data?.list_todos.items.map((t) => t.title).join(", ") ?? "";
const requests = (): string => sent.splice(0).join(" ") || "nothing";
const until = async (check: () => boolean): Promise<void> => {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10));
};

// Mounting loads each context once (two subscribers of todos share one entry); live push follows.
const unmount = [todos, todos, user].map((target) => cache.subscribe(target, () => {}));
await until(() => cache.isLive("todos") && cache.isLive("user"));
console.log(`mounted; sent: ${requests()}`);

// Another client's command: its push makes ada refetch the context it affects, once.
await bob.addTodo({ title: "milk" });
await until(() => titles() === "milk");
console.log(`bob added milk; sent: ${requests()}`);

// A merge patches the slot from the answer: no request but the call.
await ada.renameUser({ display_name: "Ada L." });
const renamed = cache.getSnapshot<UserData>(user).data?.current_user;
console.log(`renamed to ${renamed}; sent: ${requests()}`);

// Ada's own command: its answer's invalidation waits for its push, so todos is refetched once.
await ada.addTodo({ title: "tea" });
await until(() => titles() === "milk, tea");
await new Promise((resolve) => setTimeout(resolve, 1200)); // past liveGraceMs: nothing more
console.log(`ada added tea; sent: ${requests()}`);

// Unmounted entries are only marked stale, and loaded when next read.
for (const stop of unmount) stop();
const pushed = new Promise<void>((resolve) => {
  const stop = ada.client.onLivePush(() => (stop(), resolve()));
});
await bob.addTodo({ title: "eggs" });
await pushed;
console.log(`bob added eggs, nothing mounted; sent: ${requests()}`);
const bundle = await cache.ensure<TodosData>(todos);
console.log(`${bundle.list_todos.items.length} todos; sent: ${requests()}`);

ada.client.close();
bob.client.close();
