// file: examples/docs/client_types.ts
import type { DateOnly, Link, Note, Page, Priority, Todo } from "./api/index.js";

// Output types: every field is present (defaults are filled in by the server).
export function describe(todo: Todo): string {
  const priority: Priority = todo.priority; // "low" | "high"
  const due: DateOnly | null = todo.due; // a named alias of string, or null
  const [x, y] = todo.position; // a tuple: [number, number]
  const labels = Object.keys(todo.labels).join(" "); // a map: { [key: string]: number }
  const where = `${todo.title} at ${x},${y} (${priority}, due ${due ?? "never"}) ${labels}`;
  const attachment = todo.attachment; // Note | Link | null
  if (attachment === null) return where;
  switch (attachment.kind) {
    case "note": // narrowed to Note
      return `${where}: ${attachment.text}`;
    case "link": // narrowed to Link
      return `${where}: ${attachment.url}`;
  }
}

// Input types: a field with a default may be left out. Note.Input is Note as an input.
export const note: Note.Input = { text: "2 l" };
export const link: Link = { kind: "link", url: "https://example.com" }; // output: kind required

// Generic models keep their parameter.
export function titles(page: Page<Todo>): string[] {
  return page.items.map((todo) => todo.title);
}
