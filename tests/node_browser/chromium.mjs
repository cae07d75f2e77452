// Debian's Chromium, driven by playwright-core (no browser download), on a fresh temporary
// profile: nothing from an earlier run leaks in. Shared by the browser scripts here.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

// Runs `use(page)` in one page of a new browser profile, then closes it and deletes the profile.
export async function withPage(use) {
  const profile = mkdtempSync(join(tmpdir(), "tether-chromium-"));
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
    return await use(await context.newPage());
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
