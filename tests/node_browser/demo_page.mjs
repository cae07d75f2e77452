// Drives the demo's React page (tether.demo.app: `/` and the bundle `/app.js`) in Debian's
// Chromium, in two browser contexts (two users, two windows, no shared state), and records every
// request each window makes: method, path (with the query string), Authorization, JSON body.
// Usage: node demo_page.mjs <server URL>
// Prints one JSON object: per step, what each window requested and what it showed. A step that
// fails (its page never showed what it waited for) ends the run with `failed` and `error` set,
// and the page's text, so the Python test can say what it saw.
import {
  addTodo,
  loaded,
  rename,
  runTwoWindows,
  settle,
  text,
  titles,
  titlesAre,
  waitFor,
  WAIT_MS,
} from "./demo_harness.mjs";

// Every request of `page`, in order, each with the time it was seen.
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

await runTwoWindows(record, async ({ base, windowA, windowB, logA, logB, steps, step }) => {
  // 1. ada's first load: one request per mounted context, no call.
  step("firstLoad");
  await windowA.goto(`${base}/?name=ada`);
  await loaded(windowA);
  steps.firstLoad = {
    requests: await settle(logA),
    displayName: await text(windowA, "user-display-name"),
    staff: await windowA.getByTestId("staff-badge").count(),
    titles: await titles(windowA),
    live: await text(windowA, "live-status"),
  };

  // 2. rename merges: the name changes with the rename call as the only request.
  step("rename");
  await rename(windowA, "Ada Lovelace");
  steps.rename = {
    requests: await settle(logA),
    displayName: await text(windowA, "user-display-name"),
  };

  // 3. add affects todos: the call, then one refetch of the todos bundle.
  step("add");
  await addTodo(windowA, "milk");
  await titlesAre(windowA, "milk in ada's list", ["milk"]);
  steps.add = { requests: await settle(logA), titles: await titles(windowA) };

  // 4. A second window (bob), then ada's add reaches it by live push alone.
  step("secondWindow");
  await windowB.goto(`${base}/?name=bob`);
  await loaded(windowB);
  steps.secondWindow = {
    requests: await settle(logB),
    titles: await titles(windowB),
    displayName: await text(windowB, "user-display-name"),
  };
  step("push");
  const urlB = windowB.url();
  await addTodo(windowA, "eggs");
  await titlesAre(windowB, "eggs in bob's window, pushed", ["milk", "eggs"]);
  steps.push = {
    requestsA: await settle(logA),
    requestsB: await settle(logB),
    titlesA: await titles(windowA),
    titlesB: await titles(windowB),
    reloadedB: windowB.url() !== urlB,
    // A rename is per user: bob's window still shows bob.
    displayNameB: await text(windowB, "user-display-name"),
  };

  // 5. bob is not staff: asking for stats shows the typed 403.
  step("forbidden");
  await windowB.getByTestId("show-stats").click();
  await windowB.getByTestId("stats-error").waitFor({ timeout: WAIT_MS });
  steps.forbidden = {
    requests: await settle(logB),
    error: await text(windowB, "stats-error"),
    code: await windowB.getByTestId("stats-error").getAttribute("data-code"),
    stats: await windowB.getByTestId("stats").count(),
  };

  // 6. Clear done: ada marks both done, then one click deletes both in one tick.
  step("toggle");
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
  steps.toggle = { requestsA: await settle(logA), requestsB: await settle(logB) };
  step("clearDone");
  await windowA.getByTestId("clear-done").click();
  await titlesAre(windowA, "an empty list in ada's window", []);
  await titlesAre(windowB, "an empty list in bob's window, pushed", []);
  steps.clearDone = {
    requestsA: await settle(logA),
    requestsB: await settle(logB),
    titlesA: await titles(windowA),
    titlesB: await titles(windowB),
  };

  // 7. bob signs in as admin in the same window: the cache is cleared, staff see the stats.
  step("staff");
  await windowB.getByTestId("name-input").fill("admin");
  await windowB.getByTestId("name-submit").click();
  await windowB.getByTestId("staff-badge").waitFor({ timeout: WAIT_MS });
  await windowB.getByTestId("stats").waitFor({ timeout: WAIT_MS });
  await loaded(windowB);
  steps.staff = {
    requests: await settle(logB),
    displayName: await text(windowB, "user-display-name"),
    stats: await text(windowB, "stats"),
    errors: await windowB.locator('[role="alert"]').allTextContents(),
  };

  // 8. The counter kept counting, one number a second, in both windows.
  step("counter");
  steps.counter = {
    a: Number(await text(windowA, "counter-value")),
    b: Number(await text(windowB, "counter-value")),
    statusA: await windowA.getByTestId("counter-status").getAttribute("data-status"),
  };
});
