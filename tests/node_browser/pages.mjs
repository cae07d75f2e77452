// Visits pages in order in one Debian Chromium profile (driven by playwright-core; no browser
// download), so cookies one page sets ride along on the next pages' requests.
// Usage: node pages.mjs <page URL>...
// Prints one JSON array: per page, what its `window.run()` resolved to (null for a page that
// defines no `run`, such as one that only sets a cookie).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const pages = process.argv.slice(2);
if (pages.length === 0) {
  console.error("usage: node pages.mjs <page URL>...");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "tether-chromium-"));
// A persistent context on a fresh temporary profile: nothing from an earlier run leaks in.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
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
try {
  const page = await context.newPage();
  const results = [];
  for (const url of pages) {
    await page.goto(url);
    results.push(
      await page.evaluate(() => (typeof window.run === "function" ? window.run() : null)),
    );
  }
  console.log(JSON.stringify(results));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
