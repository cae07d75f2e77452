// file: examples/docs/client_plain.mjs
// Calling tether from JavaScript without the generator: fetch, and the npm package json-rpc-2.0.
import { JSONRPCClient, JSONRPCErrorException } from "json-rpc-2.0";

const base = process.env.API_URL ?? "http://127.0.0.1:8000";
const headers = { "Content-Type": "application/json", Authorization: "Bearer ada" };

// HTTP: POST {prefix}/call/{name}, a JSON object; answers {"result"} or {"error": {code, message}}.
async function call(name, params = {}) {
  const response = await fetch(`${base}/api/call/${name}`, {
    method: "POST",
    headers,
    body: JSON.stringify(params),
  });
  const body = await response.json();
  const { error } = body;
  if (error) throw Object.assign(new Error(error.message), error, { status: response.status });
  return body; // a command's answer also holds "invalidate" and "merge"
}

const added = await call("add_todo", { title: "milk" });
console.log("http", added.result.title, JSON.stringify(added.invalidate));
try {
  await call("get_todo", { id: 99 });
} catch (error) {
  console.log("http error", error.status, error.code);
}

// JSON-RPC: POST {prefix}/jsonrpc; X-Tether-Effects: 1 asks for each answer's "effects".
const rpc = new JSONRPCClient(async (request) => {
  const response = await fetch(`${base}/api/jsonrpc`, {
    method: "POST",
    headers: { ...headers, "X-Tether-Effects": "1" },
    body: JSON.stringify(request),
  });
  if (response.status === 200) rpc.receive(await response.json());
});

const tea = await rpc.request("add_todo", { title: "tea", priority: "high" });
console.log("jsonrpc", tea.title, tea.priority);
const [one, bundle] = await rpc.requestAdvanced([
  { jsonrpc: "2.0", id: 1, method: "get_todo", params: { id: 1 } },
  { jsonrpc: "2.0", id: 2, method: "get_todo", params: { id: 99 } },
]);
console.log("batch", one.result.title, bundle.error.data.code);
try {
  await rpc.request("open_count", {});
} catch (error) {
  if (!(error instanceof JSONRPCErrorException)) throw error;
  console.log("jsonrpc error", error.code, error.data.code);
}

// A context bundle: POST {prefix}/context/{name} with its params.
const todos = await fetch(`${base}/api/context/todos`, { method: "POST", headers, body: "{}" });
console.log("bundle", (await todos.json()).result.list_todos.items.map((todo) => todo.title));
