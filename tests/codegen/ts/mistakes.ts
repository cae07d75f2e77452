// Deliberate mistakes: each marked line must fail with exactly the codes it names (test_tsc.py).
import { createApi, useAddTodo, useTodos, useUser, type Todo } from "./gen/demo/index.js";
import * as fid from "./gen/fidelity/index.js";
import * as camel from "./gen/camel/index.js";

const api = createApi();
const other = fid.createApi();

export async function params(): Promise<void> {
  await api.addTodo({ title: 1 }); // @expect TS2322
  await api.addTodo({ titel: "milk" }); // @expect TS2561
  await api.addTodo({ title: "milk", extra: true }); // @expect TS2353
  await api.addTodo({}); // @expect TS2345
  await api.addTodo(); // @expect TS2554
  await api.getTodo({ id: "1" }); // @expect TS2322
  await api.stats({ anything: 1 }); // @expect TS2322
  await api.contexts.todos({ done: "yes" }); // @expect TS2322
  await api.contexts.todos({ dnoe: true }); // @expect TS2353
  await api.counter({ every_ms: "fast" }); // @expect TS2322
  await api.renameUser({ displayName: "Ada" }); // @expect TS2561
  await other.listItems({}); // @expect TS2345
  await other.contexts.items(); // @expect TS2554
  await other.mathSum({ numbers: ["1"] }); // @expect TS2322
  await camel.createApi().listItems({ owner_id: 1 }); // @expect TS2561
  await other.putPage({ page: { items: [{ side: 1 }] } }); // @expect TS2353
  await other.putPage({ page: { items: [] }, pairs: { a: { key: 3, value: { x: 1 } } } }); // @expect TS2322
}

export async function outputs(): Promise<void> {
  const todo = await api.getTodo({ id: 1 });
  const misspelled = todo.titel; // @expect TS2551
  const missing = todo.owner_name; // @expect TS2339
  const wrong: string = todo.id; // @expect TS2322
  const data = await api.contexts.todos();
  const list: Todo = data.list_todos; // @expect TS2739
  const first: Todo = data.list_todos[0]; // @expect TS2322
  const item = await other.addItem({ item: {} as fid.Item.Input });
  const note: string = item.note; // @expect TS2322
  const third = item.position[2]; // @expect TS2493
  item.label = "relabel"; // @expect TS2540
  const color: fid.Color = "blue"; // @expect TS2322
  const level: fid.Level = 3; // @expect TS2322
  const nick = item.nick; // @expect TS2339
  const step: number = item.limits?.step ?? undefined; // @expect TS2322
  const page: fid.Page<fid.Item> = await other.getPair({ key: "k" }); // @expect TS2739
  void [misspelled, missing, wrong, list, first, note, third, color, level, nick, step, page];
}

export function inputs(shape: fid.Circle | fid.Square): void {
  if (shape.kind === "circle") {
    const side = shape.side; // @expect TS2339
    void side;
  }
  const sent = {} as fid.Item.Input;
  // A computed field is output only: `label` is not in Item.Input.
  const literal: fid.Item.Input = { ...sent, label: "x" }; // @expect TS2561
  const tagless: fid.ShapesInput = { shape: { radius: 1 }, pairs: [] }; // @expect TS2322
  // Item.Input lacks the output-only fields (computed `label`, `nickName`): not an Item.
  const output: fid.Item = sent; // @expect TS2739
  void [literal, tagless, output];
}

export function hooks(): void {
  const todos = useTodos();
  const titles = todos.data.list_todos; // @expect TS18048
  const user = useUser({ name: "ada" }); // @expect TS2322
  const add = useAddTodo();
  void add.mutate({ title: 2 }); // @expect TS2322
  void add.mutate(); // @expect TS2554
  const stats = fid.useStats({ x: 1 }); // @expect TS2322
  const items = fid.useItems(); // @expect TS2554
  const ticks = fid.useTicks({ every_ms: true }); // @expect TS2322
  void [titles, user, stats, items, ticks];
}
