// Debian's Chromium, driven by playwright-core (no browser download), on a fresh temporary
// profile: nothing from an earlier run leaks in. Shared by the browser scripts here.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const LAUNCH = {
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
};

// Runs `use(page)` in one page of a new browser profile, then closes it and deletes the profile.
export async function withPage(use) {
  const profile = mkdtempSync(join(tmpdir(), "tether-chromium-"));
  const context = await chromium.launchPersistentContext(profile, LAUNCH);
  try {
    return await use(await context.newPage());
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

// Runs `use(browser)` in a new browser (each of its `newContext()`s starts empty), then closes it.
export async function withBrowser(use) {
  const browser = await chromium.launch(LAUNCH);
  try {
    return await use(browser);
  } finally {
    await browser.close();
  }
}
