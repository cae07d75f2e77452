// Visits pages in order in one Debian Chromium profile, so cookies one page sets ride along
// on the next pages' requests.
// Usage: node pages.mjs <page URL>...
// Prints one JSON array: per page, what its `window.run()` resolved to (null for a page that
// defines no `run`, such as one that only sets a cookie).
import { withPage } from "./chromium.mjs";

const pages = process.argv.slice(2);
if (pages.length === 0) {
  console.error("usage: node pages.mjs <page URL>...");
  process.exit(2);
}

const results = await withPage(async (page) => {
  const ran = [];
  for (const url of pages) {
    await page.goto(url);
    ran.push(await page.evaluate(() => (typeof window.run === "function" ? window.run() : null)));
  }
  return ran;
});
console.log(JSON.stringify(results));
