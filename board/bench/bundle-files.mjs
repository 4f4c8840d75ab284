// Used by board/bundle.sh (run from the repository root):
//   node board/bench/bundle-files.mjs APP_DIR
// Copies into APP_DIR the compiled files that the benchmarks import:
// dist/bench/run.js, and bench/e2e's main.js and index.js when they are
// built, followed from file to file through their static imports (and
// dynamic imports of relative literal paths), without source maps; files
// under dist/host/ are left out (the bundle ships that tree whole). A static
// import of anything but Node's own modules and the production dependencies
// is an error: the bundle has no development dependencies (vega is imported
// by bench/report.js only when it draws a chart, which the device never does).
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";

const dest = process.argv[2];
if (!dest) throw new Error("usage: bundle-files.mjs APP_DIR");
const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const prod = new Set(Object.keys(pkg.dependencies ?? {}));
const roots = ["dist/bench/run.js", "dist/bench/e2e/main.js", "dist/bench/e2e/index.js"].filter((f) => existsSync(f));
if (!roots.includes("dist/bench/run.js")) throw new Error("dist/bench/run.js missing (npm run build)");
const IMPORT = /(?:^|[;\n])\s*(?:import|export)\s+(?:[^'"`;]*?\sfrom\s+)?["']([^"']+)["']|\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;
const seen = new Set();
const todo = roots.map((f) => resolve(f));
while (todo.length) {
  const f = todo.pop();
  if (seen.has(f)) continue;
  seen.add(f);
  for (const m of readFileSync(f, "utf8").matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    if (spec.startsWith(".")) {
      const t = resolve(dirname(f), spec);
      if (!existsSync(t)) throw new Error(`${relative(".", f)} imports ${spec}: no ${relative(".", t)}`);
      todo.push(t);
      continue;
    }
    const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0];
    if (spec.startsWith("node:") || builtinModules.includes(name) || prod.has(name)) continue;
    throw new Error(`${relative(".", f)} imports ${spec}, not a production dependency: the board bundle cannot ship it`);
  }
}
let n = 0;
for (const f of [...seen].sort()) {
  const rel = relative(process.cwd(), f);
  if (rel.startsWith("dist/host/")) continue; // shipped whole by bundle.sh
  mkdirSync(dirname(join(dest, rel)), { recursive: true });
  cpSync(f, join(dest, rel));
  n++;
}
process.stderr.write(`bundle: ${n} benchmark files (from ${roots.join(", ")})\n`);
