// Opens a page of a tether server in Debian's Chromium and reads SSE streams with the
// browser's own EventSource, from the page's origin.
// Usage: node eventsource.mjs <page URL> <stream URL>...
// Prints one JSON array: per stream URL, what the page's EventSource received.
import { withPage } from "./chromium.mjs";

const [page_url, ...streams] = process.argv.slice(2);
if (!page_url || streams.length === 0) {
  console.error("usage: node eventsource.mjs <page URL> <stream URL>...");
  process.exit(2);
}

const results = await withPage(async (page) => {
  await page.goto(page_url);
  const read = [];
  for (const url of streams) {
    // `readEvents` is defined by the page the server serves.
    read.push(await page.evaluate((url) => window.readEvents(url), url));
  }
  return read;
});
console.log(JSON.stringify(results));
