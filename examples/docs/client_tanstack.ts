// file: examples/docs/client_tanstack.ts
import { QueryClient, QueryClientProvider, useMutation, useQuery } from "@tanstack/react-query";
import { createElement as h, useEffect, type ReactElement } from "react";
import { createApi } from "./api/index.js";
import { addTodoMutationOptions, followLive, todosQueryOptions } from "./api/tanstack.js";

// TanStack Query holds the data; the client makes the calls and follows live push.
const api = createApi({ headers: () => ({ Authorization: "Bearer ada" }) });
const queryClient = new QueryClient();

function Todos(): ReactElement {
  // Pushes for todos: invalidateQueries and setQueryData, as a command's own effects.
  useEffect(() => followLive(api.client, queryClient, ["todos"]), []);
  // queryKey: ["tether", "context", "todos", { done: false }]
  const todos = useQuery(todosQueryOptions(api.client, { done: false }));
  const add = useMutation(addTodoMutationOptions(api.client, queryClient)); // onSuccess: effects
  const items = todos.data?.list_todos.items ?? [];
  return h(
    "section",
    null,
    h("ul", null, ...items.map((todo) => h("li", { key: todo.id }, todo.title))),
    h("button", { onClick: () => add.mutate({ title: "milk" }) }, "Add"),
    add.error && h("p", null, `${add.error.status} ${add.error.code}`),
  );
}

export function App(): ReactElement {
  return h(QueryClientProvider, { client: queryClient }, h(Todos));
}
