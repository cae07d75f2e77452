// Bundles driver.ts with the generated tether client (the folder `tether generate` wrote) into one file.
// Run: node build.mjs API_DIR OUTFILE   (API_DIR holds index.ts; `import ... from "tether-api"` resolves to it)
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const [apiDir, outfile] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const tetherApi = {
  name: "tether-api",
  setup(build) {
    build.onResolve({ filter: /^tether-api$/ }, () => ({ path: path.resolve(apiDir, "index.ts") }));
  },
};
await esbuild.build({
  entryPoints: [path.join(here, "driver.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  nodePaths: [path.join(here, "node_modules")],
  // ws requires its optional native helpers inside try/catch: leave them out, and give the
  // ESM bundle a `require` for them to fail on.
  external: ["bufferutil", "utf-8-validate"],
  banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' },
  plugins: [tetherApi],
  logLevel: "warning",
});
