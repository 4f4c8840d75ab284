// npm run bench [-- --quick]: the benchmarks, printed as tables. Every
// comparison is taken in the same run, alternating the contenders; each
// figure is the median of repeated runs with min-max beside it.
import { cpus, hostname } from "node:os";
import { join } from "node:path";
import { benchSet } from "./classbench.js";
import { benchEstablished } from "./conntrack.js";
import { fmt } from "./stats.js";

const quick = process.argv.includes("--quick");
const reps = quick ? 3 : 9;
const DIR = join(process.cwd(), "..", "shared", "classbench", "hypersplit");
const SETS = ["acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"];

console.log(`Portcullis benchmarks on ${hostname()} (${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores), node ${process.version}, ${reps} runs each`);
console.log("");
console.log("ClassBench first match, release wasm core (classify_headers) vs plain TypeScript linear scan");
console.log("Mpps: median (min-max). Build: host table compile, ms. Table: compiled bytes.");
console.log("");
const head = ["set", "rules", "headers", "core Mpps", "linear Mpps", "core/linear", "build ms", "table KiB", "agree"];
const rows: string[][] = [];
for (const name of SETS) {
  const f = benchSet(DIR, name, reps);
  rows.push([
    f.set, String(f.rules), String(f.headers), fmt(f.coreMpps), fmt(f.linearMpps, 3),
    `${(f.coreMpps.median / f.linearMpps.median).toFixed(1)}x`, fmt(f.buildMs, 0),
    (f.tableBytes / 1024).toFixed(0), f.agree ? "yes" : "NO",
  ]);
  if (!f.agree) process.exitCode = 1;
}
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
console.log(line(head));
for (const r of rows) console.log(line(r));

console.log("");
console.log("Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)");
const ct = benchEstablished(join(process.cwd(), "host", "policy", "default.yaml"), reps);
for (const b of ct.byBatch) console.log(`  batch ${String(b.batch).padStart(3)}: ${fmt(b.mpps)} Mpps`);
console.log(`  state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`);
