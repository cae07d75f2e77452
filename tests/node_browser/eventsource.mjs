// Opens a page of a tether server in Debian's Chromium (driven by playwright-core; no browser
// download) and reads SSE streams with the browser's own EventSource, from the page's origin.
// Usage: node eventsource.mjs <page URL> <stream URL>...
// Prints one JSON array: per stream URL, what the page's EventSource received.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [page_url, ...streams] = process.argv.slice(2);
if (!page_url || streams.length === 0) {
  console.error("usage: node eventsource.mjs <page URL> <stream URL>...");
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
  await page.goto(page_url);
  const results = [];
  for (const url of streams) {
    // `readEvents` is defined by the page the server serves.
    results.push(await page.evaluate((url) => window.readEvents(url), url));
  }
  console.log(JSON.stringify(results));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
