// Drives tether's JSON-RPC dialect over the socket with @open-rpc/client-js's WebSocketTransport:
// node jsonrpc_client.mjs ws://host:port. Prints one JSON object; the pytest side checks it.
import { Client, RequestManager, WebSocketTransport } from "@open-rpc/client-js";

const transport = new WebSocketTransport(`${process.argv[2]}/api/ws`);
const client = new Client(new RequestManager([transport]));
const notifications = [];
client.onNotification((message) => notifications.push(message));

const results = {};
results.positional = await client.request({ method: "math.sum", params: [[1, 2, 3]] });
results.named = await client.request({ method: "math.sum", params: { values: [4, 5] } });
try {
  await client.request({ method: "math.nope", params: [] });
  results.unknown = "no error";
} catch (error) {
  results.unknown = { code: error.code, message: error.message };
}
try {
  await client.request({ method: "math.sum", params: { values: "x" } });
  results.invalid = "no error";
} catch (error) {
  results.invalid = { code: error.code, data: error.data };
}
await client.notify({ method: "math.sum", params: [[1]] });
// A subscription: the items arrive as notifications, then the request is answered.
results.subscription = await client.request({ method: "ticks", params: { n: 3 } });
results.notifications = notifications.splice(0);
results.concurrent = await Promise.all(
  Array.from({ length: 10 }, (_, i) => client.request({ method: "math.sum", params: [[i, 1]] })),
);
client.close();
process.stdout.write(JSON.stringify(results));
