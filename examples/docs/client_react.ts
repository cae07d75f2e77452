// file: examples/docs/client_react.ts
import { createElement as h, useState, type ReactElement } from "react";
import {
  createApi,
  TetherProvider,
  useAddTodo,
  useCountdown,
  useOpenCount,
  useRenameUser,
  useTodos,
  useUser,
} from "./api/index.js";

export const api = createApi({ headers: () => ({ Authorization: "Bearer ada" }) });

function Todos(): ReactElement {
  const todos = useTodos({ done: false }); // { data, status, error, isFetching, refetch }
  const add = useAddTodo(); // { mutate, isPending, error, data, reset }
  const [title, setTitle] = useState("");
  if (todos.status === "error") return h("p", null, `${todos.error?.code}`);
  const items = todos.data?.list_todos.items ?? [];
  return h(
    "section",
    null,
    h("ul", null, ...items.map((todo) => h("li", { key: todo.id }, todo.title))),
    h("input", { value: title, onChange: (e: { target: HTMLInputElement }) => setTitle(e.target.value) }),
    h(
      "button",
      // mutate refetches todos; if it fails, add.error says why (and its promise rejects)
      { disabled: add.isPending, onClick: () => add.mutate({ title }).catch(() => {}) },
      "Add",
    ),
    add.error && h("p", { role: "alert" }, add.error.message),
  );
}

function Header(): ReactElement {
  const user = useUser(); // the "user" context
  const rename = useRenameUser(); // merges the new name into it: no refetch
  const count = useCountdown({ start: 10 }); // { latest, count, status, error }
  const open = useOpenCount(); // a query of no context; staff only: error.status 403 for others
  return h(
    "header",
    null,
    h("b", null, user.data?.current_user ?? "…"),
    h("button", { onClick: () => rename.mutate({ display_name: "Ada" }).catch(() => {}) }, "Rename"),
    h("span", null, ` ${count.latest ?? ""} `),
    h("span", null, open.error ? `${open.error.status} ${open.error.code}` : `${open.data} open`),
  );
}

export function App(): ReactElement {
  return h(TetherProvider, { client: api }, h(Header), h(Todos));
}
