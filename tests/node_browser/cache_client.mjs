// Runs docs/cache.md's JavaScript client (examples/docs/cache_client.js, served by the test's
// app at /cache_client.js) in Debian's Chromium, against a tether server with the page's
// "todos" context. Usage: node cache_client.mjs <page URL>
// Prints one JSON object: what the cache held at each step.
import { withPage } from "./chromium.mjs";

const [page_url] = process.argv.slice(2);
if (!page_url) {
  console.error("usage: node cache_client.mjs <page URL>");
  process.exit(2);
}

const result = await withPage(async (page) => {
  await page.goto(page_url);
  return await page.evaluate(async () => {
    const { BundleCache } = await import("/cache_client.js");
    const cache = new BundleCache("/api");
    const steps = {};
    steps.before = structuredClone(await cache.get("todos", { owner_id: 5 }));
    await cache.get("todos", { owner_id: 6 });
    let changed;
    const pushed = new Promise((resolve) => (changed = resolve));
    const source = cache.follow(["todos"], { owner_id: 5 }, () => changed());
    await new Promise((resolve) => source.addEventListener("ready", resolve, { once: true }));
    // Another client's change, made without the cache: only the push tells it.
    await fetch("/api/call/add_todo", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ owner_id: 5, title: "milk" }),
    });
    await pushed;
    source.close();
    steps.keptAfterPush = [...cache.bundles.keys()];
    steps.after = structuredClone(await cache.get("todos", { owner_id: 5 }));
    // The cache's own call: its answer's entries apply at once.
    steps.added = await cache.call("add_todo", { owner_id: 6, title: "eggs" });
    steps.keptAfterCall = [...cache.bundles.keys()];
    // A merge patches the slot in place; a resync drops everything.
    cache.apply({ merge: [{ context: "todos", slot: "open_count", params: { owner_id: 5 }, value: 9 }] });
    steps.merged = await cache.get("todos", { owner_id: 5 });
    cache.apply({ id: "99", resync: true });
    steps.keptAfterResync = [...cache.bundles.keys()];
    try {
      await cache.get("nope");
    } catch (error) {
      steps.error = error.message;
    }
    return steps;
  });
});
console.log(JSON.stringify(result));
