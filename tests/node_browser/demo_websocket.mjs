// Drives the demo's page with `?wire=websocket` (calls, the counter and live push on one
// WebSocket; context bundles on HTTP) in Debian's Chromium, in two browser contexts, and
// records each window's HTTP requests (method, path, Authorization) and the messages it sends
// on its sockets (the envelope dialect: uuid, route, headers, payload).
// Usage: node demo_websocket.mjs <server URL>
// Prints one JSON object: per step, each window's requests and sent messages, what it showed,
// and `failed`/`error`/`pages` when a step never saw what it waited for.
import { addTodo, loaded, rename, runTwoWindows, settle, text, titlesAre, WAIT_MS } from "./demo_harness.mjs";

// Every HTTP request and socket message of `page`, in order, each with the time it was seen.
function record(page) {
  const log = [];
  page.on("request", (request) => {
    if (request.resourceType() === "websocket") return; // recorded as a socket below
    const url = new URL(request.url());
    log.push({
      kind: "http",
      method: request.method(),
      path: url.pathname + url.search,
      auth: request.headers()["authorization"] ?? null,
      at: Date.now(),
    });
  });
  page.on("websocket", (socket) => {
    log.push({ kind: "open", path: new URL(socket.url()).pathname, at: Date.now() });
    socket.on("framesent", ({ payload }) => {
      let message;
      try {
        message = JSON.parse(String(payload));
      } catch {
        message = String(payload);
      }
      if (message && (message.route === "PING" || message.route === "PONG")) return;
      log.push({ kind: "sent", message, at: Date.now() });
    });
  });
  return log;
}

await runTwoWindows(record, async ({ base, windowA, windowB, logA, logB, steps, step }) => {
  step("load");
  await windowA.goto(`${base}/?name=ada&wire=websocket`);
  await windowB.goto(`${base}/?name=bob&wire=websocket`);
  await loaded(windowA);
  await loaded(windowB);
  steps.load = { a: await settle(logA), b: await settle(logB) };

  step("add");
  await addTodo(windowA, "milk");
  await titlesAre(windowA, "milk in ada's window", ["milk"]);
  await titlesAre(windowB, "milk in bob's window, pushed", ["milk"]);
  steps.add = { a: await settle(logA), b: await settle(logB) };

  step("rename");
  await rename(windowA, "Ada L.");
  steps.rename = {
    a: await settle(logA),
    b: await settle(logB),
    displayNameA: await text(windowA, "user-display-name"),
    displayNameB: await text(windowB, "user-display-name"),
  };

  step("forbidden");
  await windowB.getByTestId("show-stats").click();
  await windowB.getByTestId("stats-error").waitFor({ timeout: WAIT_MS });
  steps.forbidden = { b: await settle(logB), error: await text(windowB, "stats-error") };

  step("counter");
  steps.counter = {
    a: Number(await text(windowA, "counter-value")),
    b: Number(await text(windowB, "counter-value")),
  };
});
