// Correct uses of the generated clients: tsc must accept every line (test_tsc.py).
import { createElement, type ReactElement } from "react";
import { QueryClient, useMutation, useQuery } from "@tanstack/react-query";
import {
  TetherError,
  TetherProvider,
  createApi,
  isTetherError,
  schema,
  useAddTodo,
  useCounter,
  useDeleteTodo,
  useGetTodo,
  useRenameUser,
  useStats,
  useTodos,
  useUser,
  type AddTodoErrorCode,
  type ContextResult,
  type Profile,
  type Todo,
  type TodosData,
} from "./gen/demo/index.js";
import { addTodoMutationOptions, statsQueryOptions, todosQueryOptions } from "./gen/demo/tanstack.js";
import * as plain from "./gen/plain/index.js";
import * as fid from "./gen/fidelity/index.js";
import { itemsQueryOptions, shapesMutationOptions } from "./gen/fidelity/tanstack.js";
import * as camel from "./gen/camel/index.js";

const api = createApi({ headers: () => ({ Authorization: "Bearer ada" }), transport: "jsonrpc" });

export async function demo(): Promise<number> {
  const todo: Todo = await api.addTodo({ title: "milk" });
  const id: number = todo.id;
  await api.toggleTodo({ id });
  const removed: null = await api.deleteTodo({ id }, { signal: new AbortController().signal });
  let total = 0;
  for await (const n of api.counter({ every_ms: 500, count: 3 })) total += n;
  for await (const n of api.counter()) total += n;
  const data: TodosData = await api.contexts.todos({ done: false });
  const first = data.list_todos[0]; // Todo | undefined: noUncheckedIndexedAccess
  if (first !== undefined) total += first.title.length;
  const user = await api.contexts.user();
  const profile: Profile = user.current_user;
  const stats = await api.stats();
  total += stats.open + (profile.is_staff ? 1 : 0);
  try {
    await api.addTodo({ title: "milk" });
  } catch (error) {
    if (isTetherError<AddTodoErrorCode>(error, "CONFLICT")) {
      const code: AddTodoErrorCode = error.code;
      const status: number = error.status;
      const details: unknown = error.details;
      total += code.length + status + (details === undefined ? 0 : 1);
    }
    if (error instanceof TetherError) total += error.status;
  }
  const operations = schema.operations;
  total += operations["add_todo"]?.params.length ?? 0;
  api.client.reset();
  api.client.close();
  return total + (removed === null ? 0 : 1);
}

export async function withoutReact(): Promise<plain.Todo[]> {
  const other = plain.createApi({ baseUrl: "http://127.0.0.1:8000", transport: "http" });
  return other.listTodos({ done: null });
}

export function TodoList(): ReactElement {
  const todos: ContextResult<TodosData> = useTodos({ done: false });
  const titles: string[] = todos.data?.list_todos.map((t) => t.title) ?? [];
  const user = useUser();
  const shown: string | undefined = user.data?.current_user.display_name;
  const stats = useStats();
  const open: number | undefined = stats.data?.open;
  const add = useAddTodo();
  const rename = useRenameUser();
  const remove = useDeleteTodo();
  const one = useGetTodo({ id: 1 });
  const counter = useCounter({ every_ms: 100 });
  const latest: number | undefined = counter.latest;
  void add.mutate({ title: "x" }).then((t: Todo) => t.id);
  void rename.mutate({ display_name: "Ada" }).then((p: Profile) => p.display_name);
  void remove.mutate({ id: 1 });
  void todos.refetch();
  const pending: boolean = add.isPending || todos.status === "loading" || one.isFetching;
  const failed: string | undefined = add.error?.code;
  return createElement(
    TetherProvider,
    { client: api },
    createElement("p", null, titles.join(), shown, open, latest, String(pending), failed),
  );
}

export function WithTanstack(): ReactElement {
  const queryClient = new QueryClient();
  const todos = useQuery(todosQueryOptions(api.client, { done: true }));
  const stats = useQuery(statsQueryOptions(api.client));
  const add = useMutation(addTodoMutationOptions(api.client, queryClient));
  add.mutate({ title: "y" });
  const other = fid.createApi();
  const items = useQuery(itemsQueryOptions(other.client, { owner_id: 1 }));
  const shapes = useMutation(shapesMutationOptions(other.client, queryClient));
  const count: number | undefined = items.data?.item_count;
  const first: Todo | undefined = todos.data?.list_todos[0];
  return createElement("p", null, first?.title, stats.data?.total, count, shapes.isPending);
}

function area(shape: fid.Circle | fid.Square): number {
  switch (shape.kind) {
    case "circle":
      return Math.PI * shape.radius ** 2; // narrowed to Circle
    case "square":
      return shape.side ** 2; // narrowed to Square
  }
}

export async function fidelity(): Promise<number> {
  const client = fid.createApi();
  const input: fid.Item.Input = {
    id: "8a3c1e2e-0000-4000-8000-000000000000",
    title: "a",
    position: [1, 2],
    shape: { kind: "circle", radius: 1 },
    price: "1.50",
    created_at: "2026-01-31T12:00:00Z",
    ownerId: 7,
    "content-type": "text/plain",
    nick: "sent as `nick`, read back as `nickName`",
  };
  const item: fid.Item = await client.addItem({ item: input, where: { x: 1 } });
  const label: string = item.label; // computed: in the output, read-only
  const nick: string = item.nickName; // serialization_alias: its output name
  const note: string | null = item.note; // a field with a default: present in the output
  const [x, y] = item.position;
  const empty: [] = item.empty;
  const count: number | undefined = item.labels["a"];
  const color: fid.Color = item.color;
  const level: fid.Level = item.level === 1 ? 2 : 1;
  const mode: "a" | "b" | 3 | true = item.mode;
  const id: fid.UUID = item.id;
  const price: fid.Decimal = item.price;
  const at: fid.DateTime_ = item.created_at;
  const due: fid.DateOnly | null = item.due;
  const time: fid.Time | null = item.at;
  const every: fid.Duration | null = item.every;
  const stamp: fid.Date_ | null = item.stamp;
  const iso: fid.DateTime | null = item.iso;
  const extra: unknown = item.extra;
  const step: number | undefined = item.limits?.step; // a TypedDict's NotRequired key
  const page: fid.Page<fid.Item> = await client.listItems({ owner_id: 1, color: "green" });
  const next: string | null = page.next;
  const pair: fid.Pair<string, fid.Tree> = await client.getPair({ key: "k" });
  const children: fid.Tree[] = pair.value.children;
  const stats: { [key: string]: number } = await client.stats();
  const shapes = await client.shapes({
    shape: { kind: "square", side: 2 },
    pairs: [{ key: 1, value: { kind: "circle", radius: 3 } }],
  });
  let total = shapes.reduce((sum, shape) => sum + area(shape), 0);
  const tuple: [number, string] = await client.client_({
    plain: { a: 1, b: [] },
    limits: { low: 1, high: 2 },
    when: "2026-01-31T12:00:00Z",
  });
  const sum: number = await client.mathSum({ numbers: [1, 2] });
  const sentPage: fid.Page.Input<fid.Circle.Input> = { items: [{ radius: 1 }] }; // `next` left out
  total += await client.putPage({ page: sentPage, pairs: { a: { key: 2, value: { x: 1 } } } });
  const pi: fid.Decimal = (await client.contexts.math())["math.pi"];
  await client.oldAdd({ title: "old" }); // deprecated, still callable
  for await (const tick of client.ticks({ every_ms: 10 })) {
    if (tick !== null && tick.kind === "circle") total += tick.radius;
  }
  const items: fid.ItemsData = await client.contexts.items({ owner_id: 1, limit: 5 });
  const summary: fid.Plain = (await client.contexts.stats()).stats_summary;
  total += items.item_count + summary.a + x + y + (count ?? 0) + level + sum + tuple[0];
  total += [label, nick, note, empty, color, mode, id, price, at, due, time, every, stamp, iso].length;
  total += [extra, step, next, children, stats, pi].length;
  return total;
}

export function FidelityHooks(): ReactElement {
  const items = fid.useItems({ owner_id: 1 });
  const stats = fid.useStats(); // the query `stats`
  const summary = fid.useStatsContext(); // the context `stats`: its hook yields the name
  const sum = fid.useMathSum({ numbers: [1] });
  const math = fid.useMath();
  const ticks = fid.useTicks();
  const add = fid.useAddItem();
  const old = fid.useOldAdd();
  const latest: fid.Circle | fid.Square | null | undefined = ticks.latest;
  const a: number | undefined = summary.data?.stats_summary.a;
  const first: fid.Item | undefined = items.data?.list_items.items[0];
  return createElement(
    "p",
    null,
    first?.label,
    stats.data?.["open"],
    a,
    sum.data,
    math.data?.["math.pi"],
    String(latest),
    String(add.isPending || old.isPending),
  );
}

export async function camelCase(): Promise<number> {
  const client = camel.createApi();
  const page: camel.Page<camel.Item> = await client.listItems({ ownerId: 1, color: null });
  const items = await client.contexts.items({ ownerId: 1 });
  for await (const tick of client.ticks({ everyMs: 5 })) if (tick === null) break;
  const hook = camel.useItems; // a hook, not called here
  const names = camel.schema.operations["list_items"]?.names;
  // Output fields keep their wire names: only params are camelCase.
  return page.items.length + items.item_count + (names?.["ownerId"] === "owner_id" ? 1 : 0) + hook.length;
}
