// npm run bench [-- --quick]: the benchmarks, printed as tables. Every
// comparison is taken in the same run, alternating the contenders; each
// figure is the median of repeated runs with min-max beside it. At the end
// the same tables go to bench/results/<host>-<date>.json and .md, with SVG
// charts (bench/report.ts).
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, hostname, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Core } from "../host/core/core.js";
import { coreWasmPath } from "../host/core/load.js";
import { buildWasm2cCore } from "../host/native/wasm2c.js";
import { benchSet, type ClassBenchFigures } from "./classbench.js";
import { benchEstablished } from "./conntrack.js";
import { benchCore } from "./core.js";
import { coreSection, coreTargets } from "./core-report.js";
import { barChart, printSection, type Section, writeReport } from "./report.js";
import { classbenchWorkload, mixWorkload } from "./workloads.js";
import { benchRecheck, benchReloadClassBench, benchReloadPolicy, formatReload } from "./reload.js";
import { fmt } from "./stats.js";
import { measureDaemonMemory } from "./memory.js";

const quick = process.argv.includes("--quick");
const reps = quick ? 3 : 9;
const started = Date.now();
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(" ");
const loadStart = load();
const sections: Section[] = [];
const DIR = join(process.cwd(), "..", "shared", "classbench", "hypersplit");
const SETS = ["acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"];

console.log(`Portcullis benchmarks on ${hostname()} (${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores), node ${process.version}, ${reps} runs each`);
console.log("");
console.log("ClassBench first match, release wasm core (classify_headers) vs plain TypeScript linear scan");
console.log("Mpps: median (min-max). Build: host table compile, ms. Table: compiled bytes.");
console.log("");
const head = ["set", "rules", "headers", "core Mpps", "linear Mpps", "core/linear", "build ms", "table KiB", "agree"];
const rows: string[][] = [];
const headerFigs: ClassBenchFigures[] = [];
for (const name of SETS) {
  const f = benchSet(DIR, name, reps);
  headerFigs.push(f);
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
sections.push({
  id: "classbench-headers", title: "ClassBench first match, release wasm core (classify_headers) vs plain TypeScript linear scan",
  notes: ["Mpps: median (min-max). Build: host table compile, ms. Table: compiled bytes."], table: { head, rows }, lines: [],
  chart: barChart({
    title: "ClassBench headers: Mpps (symmetric log scale)", x: "set", series: "classifier", y: "mpps", yTitle: "Mpps", log: true, sortX: SETS,
    values: headerFigs.flatMap((f) => ([["core (wasm)", f.coreMpps], ["linear scan (TypeScript)", f.linearMpps]] as const)
      .map(([who, m]) => ({ set: f.set, classifier: who, mpps: m.median, mppsMin: m.min, mppsMax: m.max }))),
  }),
  data: headerFigs,
});

console.log("");
console.log("Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)");
const ct = benchEstablished(join(process.cwd(), "host", "policy", "default.yaml"), reps);
for (const b of ct.byBatch) console.log(`  batch ${String(b.batch).padStart(3)}: ${fmt(b.mpps)} Mpps`);
console.log(`  state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`);
sections.push({
  id: "established", title: "Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)", notes: [],
  table: { head: ["batch", "Mpps"], rows: ct.byBatch.map((b) => [String(b.batch), fmt(b.mpps)]) },
  lines: [`state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`],
  chart: barChart({
    title: "Established-flow fast path: Mpps", x: "batch", series: "core", y: "mpps", yTitle: "Mpps", sortX: ["1", "32", "256"],
    values: ct.byBatch.map((b) => ({ batch: String(b.batch), core: "V8 (release wasm)", mpps: b.mpps.median, mppsMin: b.mpps.min, mppsMax: b.mpps.max })),
  }),
  data: ct,
});

console.log("");
const nReload = quick ? 10 : 50, nReload10K = quick ? 5 : 20;
console.log(`Reload latency: the daemon's transaction (Daemon.reload, release core), ms p50 / p99 (nearest rank; n reloads after warm-up)`);
console.log("  compile: read + compile the policy (ClassBench: parse the filters) + build the table; stage: copy + validate; commit: swap");
const reloads = [await benchReloadPolicy(join(process.cwd(), "host", "policy", "default.yaml"), nReload)];
for (const name of ["acl1_10K", "fw1_10K", "ipc1_10K"]) reloads.push(await benchReloadClassBench(join(DIR, `${name}.rules`), nReload10K));
reloads.push(await benchRecheck(join(process.cwd(), "host", "policy", "default.yaml"), 10_000, nReload10K));
for (const l of formatReload(reloads)) console.log(`  ${l}`);
sections.push({
  id: "reload", title: "Reload latency: the daemon's transaction (Daemon.reload, release core), ms p50 / p99 (nearest rank; n reloads after warm-up)",
  notes: ["compile: read + compile the policy (ClassBench: parse the filters) + build the table; stage: copy + validate; commit: swap."],
  table: null, lines: formatReload(reloads),
  chart: barChart({
    title: "Reload total, ms (bar p50, rule p50-p99)", x: "table", series: "phase", y: "ms", yTitle: "ms",
    values: reloads.map((r) => ({ table: r.what, phase: "total", ms: r.total.p50, msMin: r.total.p50, msMax: r.total.p99 })),
  }),
  data: reloads,
});

// ---- daemon memory with a full 65,536-flow state table -------------------
{
  const m = measureDaemonMemory(join(process.cwd(), "host", "policy", "default.yaml"));
  const ok = m.rssFullMiB < 100;
  const section: Section = {
    id: "memory",
    title: "Daemon resident memory (the daemon's objects without the NFQUEUE addon, default policy)",
    notes: [],
    table: { head: ["state table", "flows live", "RSS idle MiB", "RSS full MiB", "target < 100 MiB"], rows: [[String(m.capacity), String(m.flowsLive), String(m.rssIdleMiB), String(m.rssFullMiB), ok ? "met" : "MISSED"]] },
    lines: [],
    chart: null,
    data: m,
  };
  console.log("");
  printSection(section);
  sections.push(section);
}

// ---- core throughput: V8, the TypeScript reference, wasm2c + gcc -O2 -----
const POLICY = join(process.cwd(), "host", "policy", "default.yaml");
const perWorkload = quick ? 4096 : 8192;
const workloads = [mixWorkload(POLICY, perWorkload)];
for (const size of ["100", "1K", "10K"]) {
  for (const family of ["acl1", "fw1", "ipc1"]) workloads.push(classbenchWorkload(DIR, `${family}_${size}`, perWorkload));
}
const tmp = mkdtempSync(join(tmpdir(), "portcullis-bench-"));
try {
  const core = new Core("release", undefined, { hashSeed: 0x5eedn });
  const bench = benchCore(core, workloads, {
    reps, repeat: 16, binary: buildWasm2cCore().binary, tmpDir: tmp, moduleBytes: statSync(coreWasmPath("release")).size,
  });
  const section = coreSection(bench);
  printSection(section);
  sections.push(section);
  if (bench.cells.some((c) => !c.agree)) process.exitCode = 1;
  const targets = coreTargets(bench, headerFigs);
  console.log("");
  console.log("Core targets (issue 8)");
  for (const t of targets) console.log(`  ${t}`);
  const date = new Date().toISOString().slice(0, 10);
  const base = `${hostname()}-${date}`;
  const written = await writeReport(join(process.cwd(), "bench", "results"), base, {
    host: hostname(), date, cpu: cpus()[0]?.model ?? "unknown CPU", cores: cpus().length, node: process.version, quick, reps,
    loadStart, loadEnd: load(), seconds: Math.round((Date.now() - started) / 1000),
  }, sections, targets);
  console.log("");
  console.log(`Report: ${written.markdown}, ${written.json}, ${written.charts.length} SVG charts`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
