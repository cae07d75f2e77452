// Builds the demo page (src/main.tsx and the client `tether generate` wrote to src/api/) into
// one minified ES module, src/tether/demo/static/app.js, which the demo serves at /app.js.
// Deterministic: the same sources give a byte-identical file (no source map, no timestamps,
// no absolute paths), so the committed bundle can be checked against a fresh build.
// Usage: node web/build.mjs [--out DIR]   (default DIR: src/tether/demo/static)
import { build } from "esbuild";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let out = join(here, "..", "src", "tether", "demo", "static");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--out" && i + 1 < args.length) {
    out = resolve(args[++i]);
  } else {
    console.error("usage: node web/build.mjs [--out DIR]");
    process.exit(2);
  }
}

await build({
  absWorkingDir: here,
  entryPoints: ["src/main.tsx"],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
});
