// What demo_page.mjs and demo_websocket.mjs share: two windows (two browser contexts, two users,
// no shared state) on the demo's page, each with a log of what it sends, and waits on the page.
import { basename } from "node:path";
import { withBrowser } from "./chromium.mjs";

// The kernel waits up to liveGraceMs (1000) for a push before refetching on its own: a window
// is settled once it has sent nothing for longer than that.
export const QUIET_MS = 1600;
export const WAIT_MS = 15000;

// Waits until `log` has had no new entry for QUIET_MS, then returns (and forgets) them.
export async function settle(log) {
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

export async function waitFor(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (error) {
    throw new Error(`waiting for ${what}: ${error.message.split("\n")[0]}`);
  }
}

// The page has loaded its todos and user contexts, follows live push and counts.
export const loaded = (page) =>
  waitFor(
    page,
    "the todos and user contexts, live push and the counter",
    () =>
      document.querySelector('[data-testid="todo-panel"]')?.dataset.status === "success" &&
      document.querySelector('[data-testid="user-panel"]')?.dataset.status === "success" &&
      document.querySelector('[data-testid="live-status"]')?.dataset.status === "ready" &&
      document.querySelector('[data-testid="counter-status"]')?.dataset.status === "open",
  );

// Waits until the page lists exactly the todo titles `want`, in order.
export const titlesAre = (page, what, want) =>
  waitFor(
    page,
    `${what} (titles ${JSON.stringify(want)})`,
    (expected) =>
      JSON.stringify(
        [...document.querySelectorAll('[data-testid="todo-title"]')].map((e) => e.textContent),
      ) === JSON.stringify(expected),
    want,
  );

// Adds a todo titled `title` with the page's form.
export async function addTodo(page, title) {
  await page.getByTestId("add-input").fill(title);
  await page.getByTestId("add-submit").click();
}

// Renames the page's user to `name` with its form, and waits until the page shows the new name.
export async function rename(page, name) {
  await page.getByTestId("rename-input").fill(name);
  await page.getByTestId("rename-submit").click();
  await waitFor(
    page,
    "the new display name",
    (want) => document.querySelector('[data-testid="user-display-name"]')?.textContent === want,
    name,
  );
}

export const text = (page, testId) => page.getByTestId(testId).first().textContent({ timeout: WAIT_MS });

export const titles = (page) => page.getByTestId("todo-title").allTextContents();

// Runs `scenario({ base, windowA, windowB, logA, logB, steps, step })` against the server URL
// given on the command line, each window's log kept by `record(page)`; `step(name)` names the
// step under way. Prints one JSON object: `steps` (with `pageErrors`, each window's errors), and
// when a step fails, `failed` (its name), `error` and `pages` (what each window showed).
export async function runTwoWindows(record, scenario) {
  const [base] = process.argv.slice(2);
  if (!base) {
    console.error(`usage: node ${basename(process.argv[1])} <server URL>`);
    process.exit(2);
  }
  const result = { steps: {}, failed: null, error: null, pages: {} };
  let current = "launch";
  await withBrowser(async (browser) => {
    const pages = {};
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
      const step = (name) => {
        current = name;
      };
      await scenario({ base, windowA, windowB, logA, logB, steps: result.steps, step });
      result.steps.pageErrors = errors;
    } catch (error) {
      result.failed = current;
      result.error = String(error && error.stack ? error.stack : error);
      for (const [name, page] of Object.entries(pages)) {
        result.pages[name] = await page
          .locator("body")
          .innerText({ timeout: 2000 })
          .catch((e) => `(unreadable: ${e.message})`);
      }
    }
  });
  console.log(JSON.stringify(result));
}
