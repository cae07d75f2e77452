// Drives tether's JSON-RPC endpoint with the npm package `json-rpc-2.0` (a client we did not
// write), over Node's own fetch. Usage: node jsonrpc_client.mjs <server base URL>
// Prints one JSON object with what each call returned, for the pytest test to check.
import { JSONRPCClient, JSONRPCErrorException } from "json-rpc-2.0";

const base = process.argv[2];
if (!base) {
  console.error("usage: node jsonrpc_client.mjs <server base URL>");
  process.exit(2);
}
const endpoint = `${base}/api/jsonrpc`;
const statuses = [];

const client = new JSONRPCClient(async (payload, headers) => {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json", ...(headers ?? {}) },
    body: JSON.stringify(payload),
  });
  statuses.push(response.status);
  if (response.status === 200) {
    client.receive(await response.json());
  } else if (response.status !== 204) {
    throw new Error(`HTTP ${response.status}`);
  }
});

async function failure(promise) {
  try {
    return { ok: await promise };
  } catch (error) {
    if (error instanceof JSONRPCErrorException) {
      return { code: error.code, message: error.message, data: error.data };
    }
    throw error;
  }
}

const out = {};
out.positional = await client.request("subtract", [42, 23]);
out.named = await client.request("subtract", { minuend: 42, subtrahend: 23 });
out.echo = await client.request("echo", { text: "héllo" });
out.data = await client.request("get_data");
out.unknown = await failure(client.request("nope", {}));
out.invalid = await failure(client.request("add", { a: "x", b: 1 }));
out.notFound = await failure(client.request("fail", { code: "NOT_FOUND" }));
out.whoami = await client.request("whoami", {}, { authorization: "Bearer alice" });
out.anonymous = await failure(client.request("whoami", {}));
await client.notify("notify_hello", [7]);
out.batch = await client.requestAdvanced([
  { jsonrpc: "2.0", id: 1, method: "add", params: [1, 2] },
  { jsonrpc: "2.0", method: "notify_sum", params: [1, 2, 4] },
  { jsonrpc: "2.0", id: 2, method: "slow", params: { ms: 20 } },
  { jsonrpc: "2.0", id: 3, method: "nope" },
]);
out.statuses = statuses;
console.log(JSON.stringify(out));
