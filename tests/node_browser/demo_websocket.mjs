// Drives the demo's page with `?wire=websocket` (calls, the counter and live push on one
// WebSocket; context bundles on HTTP) in Debian's Chromium, in two browser contexts, and
// records each window's HTTP requests (method, path, Authorization) and the messages it sends
// on its sockets (the envelope dialect: uuid, route, headers, payload).
// Usage: node demo_websocket.mjs <server URL>
// Prints one JSON object: per step, each window's requests and sent messages, what it showed,
// and `failed`/`error`/`pages` when a step never saw what it waited for.
import { chromium } from "playwright-core";

const [base] = process.argv.slice(2);
if (!base) {
  console.error("usage: node demo_websocket.mjs <server URL>");
  process.exit(2);
}

const QUIET_MS = 1600; // longer than the kernel's liveGraceMs (1000)
const WAIT_MS = 15000;

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

async function settle(log) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const last = log.length ? log[log.length - 1].at : 0;
    const quiet = Date.now() - last;
    if (quiet >= QUIET_MS) break;
    if (Date.now() > deadline) throw new Error(`traffic never stopped: ${JSON.stringify(log)}`);
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS - quiet + 10));
  }
  return log.splice(0, log.length).map(({ at, ...entry }) => entry);
}

async function waitFor(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (error) {
    throw new Error(`waiting for ${what}: ${error.message.split("\n")[0]}`);
  }
}

const loaded = (page) =>
  waitFor(
    page,
    "the todos and user contexts, live push and the counter",
    () =>
      document.querySelector('[data-testid="todo-panel"]')?.dataset.status === "success" &&
      document.querySelector('[data-testid="user-panel"]')?.dataset.status === "success" &&
      document.querySelector('[data-testid="live-status"]')?.dataset.status === "ready" &&
      document.querySelector('[data-testid="counter-status"]')?.dataset.status === "open",
  );

const titlesAre = (page, what, want) =>
  waitFor(
    page,
    `${what} (titles ${JSON.stringify(want)})`,
    (expected) =>
      JSON.stringify(
        [...document.querySelectorAll('[data-testid="todo-title"]')].map((e) => e.textContent),
      ) === JSON.stringify(expected),
    want,
  );

const text = (page, testId) => page.getByTestId(testId).first().textContent({ timeout: WAIT_MS });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30000,
});

const result = { steps: {}, failed: null, error: null, pages: {} };
const pages = {};
let step = "launch";
try {
  const windowA = await (await browser.newContext()).newPage();
  const windowB = await (await browser.newContext()).newPage();
  pages.a = windowA;
  pages.b = windowB;
  const logA = record(windowA);
  const logB = record(windowB);
  const errors = [];
  for (const [name, page] of Object.entries(pages)) {
    page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(`${name} console: ${message.text()} (${message.location().url})`);
    });
  }

  step = "load";
  await windowA.goto(`${base}/?name=ada&wire=websocket`);
  await windowB.goto(`${base}/?name=bob&wire=websocket`);
  await loaded(windowA);
  await loaded(windowB);
  result.steps.load = { a: await settle(logA), b: await settle(logB) };

  step = "add";
  await windowA.getByTestId("add-input").fill("milk");
  await windowA.getByTestId("add-submit").click();
  await titlesAre(windowA, "milk in ada's window", ["milk"]);
  await titlesAre(windowB, "milk in bob's window, pushed", ["milk"]);
  result.steps.add = { a: await settle(logA), b: await settle(logB) };

  step = "rename";
  await windowA.getByTestId("rename-input").fill("Ada L.");
  await windowA.getByTestId("rename-submit").click();
  await waitFor(
    windowA,
    "the new display name",
    () => document.querySelector('[data-testid="user-display-name"]')?.textContent === "Ada L.",
  );
  result.steps.rename = {
    a: await settle(logA),
    b: await settle(logB),
    displayNameA: await text(windowA, "user-display-name"),
    displayNameB: await text(windowB, "user-display-name"),
  };

  step = "forbidden";
  await windowB.getByTestId("show-stats").click();
  await windowB.getByTestId("stats-error").waitFor({ timeout: WAIT_MS });
  result.steps.forbidden = { b: await settle(logB), error: await text(windowB, "stats-error") };

  step = "counter";
  result.steps.counter = {
    a: Number(await text(windowA, "counter-value")),
    b: Number(await text(windowB, "counter-value")),
  };
  result.steps.pageErrors = errors;
} catch (error) {
  result.failed = step;
  result.error = String(error && error.stack ? error.stack : error);
  for (const [name, page] of Object.entries(pages)) {
    result.pages[name] = await page
      .locator("body")
      .innerText({ timeout: 2000 })
      .catch((e) => `(unreadable: ${e.message})`);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
