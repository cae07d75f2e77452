// Drives the demo's React page (tether.demo.app: `/` and the bundle `/app.js`) in Debian's
// Chromium, in two browser contexts (two users, two windows, no shared state), and records every
// request each window makes: method, path (with the query string), Authorization, JSON body.
// Usage: node demo_page.mjs <server URL>
// Prints one JSON object: per step, what each window requested and what it showed. A step that
// fails (its page never showed what it waited for) ends the run with `failed` and `error` set,
// and the page's text, so the Python test can say what it saw.
import { chromium } from "playwright-core";

const [base] = process.argv.slice(2);
if (!base) {
  console.error("usage: node demo_page.mjs <server URL>");
  process.exit(2);
}

// The kernel waits up to liveGraceMs (1000) for a push before refetching on its own: a window
// is settled once it has made no request for longer than that.
const QUIET_MS = 1600;
const WAIT_MS = 15000;

function record(page) {
  const log = [];
  page.on("request", (request) => {
    const url = new URL(request.url());
    const raw = request.postData();
    let body = null;
    if (raw !== null) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    log.push({
      method: request.method(),
      path: url.pathname + url.search,
      auth: request.headers()["authorization"] ?? null,
      body,
      at: Date.now(),
    });
  });
  return log;
}

// Waits until `log` has had no new request for QUIET_MS, then returns (and forgets) them.
async function settle(log) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const last = log.length ? log[log.length - 1].at : 0;
    const quiet = Date.now() - last;
    if (quiet >= QUIET_MS) break;
    if (Date.now() > deadline) throw new Error(`requests never stopped: ${JSON.stringify(log)}`);
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS - quiet + 10));
  }
  return take(log);
}

function take(log) {
  return log.splice(0, log.length).map(({ at, ...request }) => request);
}

const text = (page, testId) => page.getByTestId(testId).first().textContent({ timeout: WAIT_MS });

async function titles(page) {
  return await page.getByTestId("todo-title").allTextContents();
}

async function waitFor(page, what, predicate) {
  try {
    await page.waitForFunction(predicate, null, { timeout: WAIT_MS, polling: 50 });
  } catch (error) {
    throw new Error(`waiting for ${what}: ${error.message.split("\n")[0]}`);
  }
}

async function loaded(page) {
  await waitFor(
    page,
    "the todos and user contexts, live push and the counter",
    () =>
      document.querySelector('[data-testid="todo-panel"]')?.dataset.status === "success" &&
      document.querySelector('[data-testid="user-panel"]')?.dataset.status === "success" &&
      document.querySelector('[data-testid="live-status"]')?.dataset.status === "ready" &&
      document.querySelector('[data-testid="counter-status"]')?.dataset.status === "open",
  );
}

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
  // Two browser contexts: two windows that share nothing but the server.
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
  const waitTitles = async (page, what, want) => {
    try {
      await page.waitForFunction(
        (expected) =>
          JSON.stringify(
            [...document.querySelectorAll('[data-testid="todo-title"]')].map((e) => e.textContent),
          ) === JSON.stringify(expected),
        want,
        { timeout: WAIT_MS, polling: 50 },
      );
    } catch (error) {
      throw new Error(`waiting for ${what} (titles ${JSON.stringify(want)}): ${error.message.split("\n")[0]}`);
    }
  };

  // 1. ada's first load: one request per mounted context, no call.
  step = "firstLoad";
  await windowA.goto(`${base}/?name=ada`);
  await loaded(windowA);
  result.steps.firstLoad = {
    requests: await settle(logA),
    displayName: await text(windowA, "user-display-name"),
    staff: await windowA.getByTestId("staff-badge").count(),
    titles: await titles(windowA),
    live: await text(windowA, "live-status"),
  };

  // 2. rename merges: the name changes with the rename call as the only request.
  step = "rename";
  await windowA.getByTestId("rename-input").fill("Ada Lovelace");
  await windowA.getByTestId("rename-submit").click();
  await waitFor(
    windowA,
    "the new display name",
    () => document.querySelector('[data-testid="user-display-name"]')?.textContent === "Ada Lovelace",
  );
  result.steps.rename = {
    requests: await settle(logA),
    displayName: await text(windowA, "user-display-name"),
  };

  // 3. add affects todos: the call, then one refetch of the todos bundle.
  step = "add";
  await windowA.getByTestId("add-input").fill("milk");
  await windowA.getByTestId("add-submit").click();
  await waitTitles(windowA, "milk in ada's list", ["milk"]);
  result.steps.add = { requests: await settle(logA), titles: await titles(windowA) };

  // 4. A second window (bob), then ada's add reaches it by live push alone.
  step = "secondWindow";
  await windowB.goto(`${base}/?name=bob`);
  await loaded(windowB);
  result.steps.secondWindow = {
    requests: await settle(logB),
    titles: await titles(windowB),
    displayName: await text(windowB, "user-display-name"),
  };
  step = "push";
  const urlB = windowB.url();
  await windowA.getByTestId("add-input").fill("eggs");
  await windowA.getByTestId("add-submit").click();
  await waitTitles(windowB, "eggs in bob's window, pushed", ["milk", "eggs"]);
  result.steps.push = {
    requestsA: await settle(logA),
    requestsB: await settle(logB),
    titlesA: await titles(windowA),
    titlesB: await titles(windowB),
    reloadedB: windowB.url() !== urlB,
    // A rename is per user: bob's window still shows bob.
    displayNameB: await text(windowB, "user-display-name"),
  };

  // 5. bob is not staff: asking for stats shows the typed 403.
  step = "forbidden";
  await windowB.getByTestId("show-stats").click();
  await windowB.getByTestId("stats-error").waitFor({ timeout: WAIT_MS });
  result.steps.forbidden = {
    requests: await settle(logB),
    error: await text(windowB, "stats-error"),
    code: await windowB.getByTestId("stats-error").getAttribute("data-code"),
    stats: await windowB.getByTestId("stats").count(),
  };

  // 6. Clear done: ada marks both done, then one click deletes both in one tick.
  step = "toggle";
  for (const title of ["milk", "eggs"]) {
    const row = windowA.locator("li", { has: windowA.getByText(title, { exact: true }) });
    const toggle = row.locator('[data-testid^="toggle-"]');
    await toggle.click();
    await row.and(windowA.locator('[data-done="true"]')).waitFor({ timeout: WAIT_MS });
  }
  await waitFor(
    windowB,
    "both todos done in bob's window",
    () => document.querySelectorAll('li[data-done="true"]').length === 2,
  );
  result.steps.toggle = { requestsA: await settle(logA), requestsB: await settle(logB) };
  step = "clearDone";
  await windowA.getByTestId("clear-done").click();
  await waitTitles(windowA, "an empty list in ada's window", []);
  await waitTitles(windowB, "an empty list in bob's window, pushed", []);
  result.steps.clearDone = {
    requestsA: await settle(logA),
    requestsB: await settle(logB),
    titlesA: await titles(windowA),
    titlesB: await titles(windowB),
  };

  // 7. bob signs in as admin in the same window: the cache is cleared, staff see the stats.
  step = "staff";
  await windowB.getByTestId("name-input").fill("admin");
  await windowB.getByTestId("name-submit").click();
  await windowB.getByTestId("staff-badge").waitFor({ timeout: WAIT_MS });
  await windowB.getByTestId("stats").waitFor({ timeout: WAIT_MS });
  await loaded(windowB);
  result.steps.staff = {
    requests: await settle(logB),
    displayName: await text(windowB, "user-display-name"),
    stats: await text(windowB, "stats"),
    errors: await windowB.locator('[role="alert"]').allTextContents(),
  };

  // 8. The counter kept counting, one number a second, in both windows.
  step = "counter";
  result.steps.counter = {
    a: Number(await text(windowA, "counter-value")),
    b: Number(await text(windowB, "counter-value")),
    statusA: await windowA.getByTestId("counter-status").getAttribute("data-status"),
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
