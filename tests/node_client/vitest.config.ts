// vitest for tether's TypeScript runtime: the *.test.ts files here, in node, against real servers.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    // The runtime's sources live in src/tether/codegen/runtime, outside this package: resolve its
    // peer imports (react, @tanstack/react-query) to the copies installed here.
    alias: [
      { find: /^react$/, replacement: here("./node_modules/react/index.js") },
      { find: /^@tanstack\/react-query$/, replacement: here("./node_modules/@tanstack/react-query/build/modern/index.js") },
    ],
  },
  test: {
    include: ["*.test.ts"],
    environment: "node",
    // Files that opt into happy-dom (`// @vitest-environment happy-dom`) get the test server as
    // their page's origin: their fetch (happy-dom's, which enforces CORS) is same-origin, as the
    // demo page is in a browser.
    environmentOptions: {
      happyDOM: { url: process.env.TETHER_TEST_URL ?? "http://127.0.0.1/" },
    },
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // One server, shared: files run one after another so request counts stay exact.
    fileParallelism: false,
  },
});
