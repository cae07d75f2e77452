// Drives tether's envelope dialect with the npm `ws` client: node envelope_client.mjs ws://host:port
// Prints one JSON object with what the server answered; the pytest side checks it.
import WebSocket from "ws";

const url = `${process.argv[2]}/api/ws`;
const socket = new WebSocket(url, { headers: { "x-user": "node" } });
const waiting = new Map(); // uuid -> { messages, resolve, until }

socket.on("message", (data, isBinary) => {
  const message = JSON.parse(data.toString());
  const entry = waiting.get(message.uuid);
  if (!entry) throw new Error(`unexpected message ${data}`);
  entry.messages.push(message);
  if (entry.until(message)) {
    waiting.delete(message.uuid);
    entry.resolve(entry.messages);
  }
});

function exchange(request, until = () => true) {
  return new Promise((resolve) => {
    waiting.set(request.uuid ?? request.track_id ?? null, { messages: [], resolve, until });
    socket.send(JSON.stringify(request));
  });
}
const call = async (request) => (await exchange(request))[0];
const streamEnd = (message) => message.headers?.stream !== "item";

await new Promise((resolve, reject) => {
  socket.once("open", resolve);
  socket.once("error", reject);
});

const results = {};
results.sum = await call({ uuid: 1, route: "math/sum", payload: [1, 2, 3, 4] });
results.named = await call({ uuid: "n", route: "math.sum", payload: { values: [5, 5] } });
results.alias = await call({ track_id: 2, path: "math/sum", headers: {}, payload: [7] });
results.who = await call({ uuid: 3, route: "who" });
results.whoOverride = await call({ uuid: 4, route: "who", headers: { "x-user": "message" } });
results.pong = await call({ route: "PING" });
results.unknown = await call({ uuid: 5, route: "math/nope" });
results.invalid = await call({ uuid: 6, route: "math/sum", payload: ["x"] });
// Twenty calls in flight at once, answered by uuid.
const many = await Promise.all(
  Array.from({ length: 20 }, (_, i) => call({ uuid: 100 + i, route: "math/sum", payload: [i, i] })),
);
results.concurrent = many.map((reply) => reply.payload.sum);
results.subscription = await exchange({ uuid: "s", route: "ticks", payload: { n: 3 } }, streamEnd);
const long = exchange({ uuid: "long", route: "ticks", payload: { n: 100000, ms: 5 } }, streamEnd);
await new Promise((resolve) => setTimeout(resolve, 50));
socket.send(JSON.stringify({ uuid: "long", route: "CANCEL" }));
const cancelled = await long;
results.cancelled = cancelled[cancelled.length - 1];
results.cancelledItems = cancelled.length - 1;

socket.close(1000);
await new Promise((resolve) => socket.once("close", resolve));
process.stdout.write(JSON.stringify(results));
