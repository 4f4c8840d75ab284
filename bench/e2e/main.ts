// node dist/bench/e2e/main.js [--quick] [--json FILE]: the end-to-end
// benchmarks alone (root; network namespaces). Prints the sections and the
// target lines; --json writes them as bench/report.ts's writeJson does (the
// result file `npm run bench -- --compare` reads; no SVG, vega is not loaded).
import { cpus, hostname, loadavg } from "node:os";
import { basename, dirname, resolve } from "node:path";
import { printSection, writeJson } from "../report.js";
import { e2eSections } from "./index.js";

function usage(msg: string): never {
  console.error(`${msg}\nusage: node dist/bench/e2e/main.js [--quick] [--json FILE]`);
  process.exit(2);
}

const args = process.argv.slice(2);
let quick = false, json: string | null = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--quick") quick = true;
  else if (args[i] === "--json") {
    if (args[i + 1] === undefined || args[i + 1]!.startsWith("--")) usage("--json needs a file name");
    json = resolve(args[++i]!);
    if (!json.endsWith(".json")) usage("--json FILE: the file name must end in .json");
  } else usage(`unknown argument "${args[i]}"`);
}
if (process.getuid?.() !== 0) usage("the end-to-end benchmarks need root (network namespaces, NFQUEUE)");

const reps = quick ? 3 : 5;
const started = Date.now();
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(" ");
const loadStart = load();
console.log(`Portcullis end-to-end benchmarks on ${hostname()} (${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores), node ${process.version}, ${quick ? "quick" : "full"}, ${reps} rounds`);
try {
  const { sections, targets } = await e2eSections({ quick, reps });
  for (const s of sections) printSection(s);
  console.log("");
  console.log("End-to-end targets (issue 8)");
  for (const t of targets) console.log(`  ${t}`);
  console.log(`(${Math.round((Date.now() - started) / 1000)} s)`);
  if (json) {
    const written = writeJson(dirname(json), basename(json, ".json"), {
      host: hostname(), date: new Date().toISOString().slice(0, 10), cpu: cpus()[0]?.model ?? "unknown CPU", cores: cpus().length,
      node: process.version, quick, reps, loadStart, loadEnd: load(), seconds: Math.round((Date.now() - started) / 1000), parts: ["e2e"],
    }, sections, targets);
    console.log(`JSON: ${written}`);
  }
} catch (e) {
  console.error(`e2e benchmark failed: ${(e as Error).message}`);
  process.exitCode = 1;
}
