// ClassBench sets: the release wasm core's classification rate (in V8 and,
// where installed, in wasmtime), table build time and table size, next to a
// plain TypeScript linear scan of the same rules, in the same run,
// alternating them.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Core } from "../host/core/core.js";
import { type EngineName } from "../host/core/load.js";
import { buildTable } from "../host/rules/build.js";
import { readFilters, readTrace } from "../host/rules/classbench.js";
import { HEADER_SIZE } from "../host/rules/format.js";
import { LinearScan } from "./linear.js";
import { barChart, type Section } from "./report.js";
import { type Figure, figure, fmt, nowMs } from "./stats.js";

export interface ClassBenchFigures {
  set: string;
  rules: number;
  headers: number;
  buildMs: Figure;
  tableBytes: number;
  coreMpps: Figure; //     V8
  wasmtimeMpps: Figure | null; // null: wasmtime not installed
  linearMpps: Figure;
  agree: boolean;
}

export function benchSet(dir: string, name: string, reps: number): ClassBenchFigures {
  const spec = readFilters(join(dir, `${name}.rules`));
  const traceFile = existsSync(join(dir, `${name}.trace`)) ? `${name}.trace` : `${name}.trace.gz`;
  const trace = readTrace(join(dir, traceFile));
  const builds: number[] = [];
  let bytes: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < Math.max(3, reps); i++) {
    const t0 = nowMs();
    bytes = buildTable(spec).bytes;
    builds.push(nowMs() - t0);
  }
  const n = trace.length;
  // The headers go into each core's data area once; each core run is one call.
  const load = (engine: EngineName): Core => {
    const core = new Core("release", undefined, { engine });
    core.loadTable(bytes);
    const v = core.view;
    trace.forEach((h, i) => {
      const at = core.dataPtr + i * HEADER_SIZE;
      v.setUint32(at, h.src, true); v.setUint32(at + 4, h.dst, true);
      v.setUint16(at + 8, h.sport, true); v.setUint16(at + 10, h.dport, true); v.setUint8(at + 12, h.proto);
    });
    return core;
  };
  const core = load("v8");
  let wt: Core | null = null;
  try { wt = load("wasmtime"); } catch { wt = null; } // not installed: the report says n/a
  const linear = new LinearScan(spec.rules);
  const linOut = new Int32Array(n);
  const coreRuns: number[] = [], wtRuns: number[] = [], linRuns: number[] = [];
  const timeCore = (c: Core, runs: number[]): void => {
    const t0 = nowMs();
    const got = c.x.classify_headers(n, 0);
    runs.push(n / ((nowMs() - t0) * 1000));
    if (got !== n) throw new Error(`classify_headers (${c.engine}) returned ${got}`);
  };
  // Warm each up once, then alternate.
  core.x.classify_headers(n, 0);
  wt?.x.classify_headers(n, 0);
  linear.classify(trace, linOut);
  for (let r = 0; r < reps; r++) {
    timeCore(core, coreRuns);
    if (wt) timeCore(wt, wtRuns);
    const t0 = nowMs();
    linear.classify(trace, linOut);
    linRuns.push(n / ((nowMs() - t0) * 1000));
  }
  const outOf = (c: Core): Int32Array => new Int32Array(c.memory.buffer, c.dataPtr + n * HEADER_SIZE, n);
  const coreOut = outOf(core), wtOut = wt ? outOf(wt) : null;
  let agree = true;
  for (let i = 0; i < n; i++) {
    if (coreOut[i] !== linOut[i] || coreOut[i]! + 1 !== trace[i]!.expected || (wtOut && wtOut[i] !== coreOut[i])) { agree = false; break; }
  }
  return {
    set: name, rules: spec.rules.length, headers: n, buildMs: figure(builds), tableBytes: bytes.length,
    coreMpps: figure(coreRuns), wasmtimeMpps: wt ? figure(wtRuns) : null, linearMpps: figure(linRuns), agree,
  };
}

// The classbench part of the report: one row per set, in the order benched.
export function classbenchSection(figs: ClassBenchFigures[]): Section {
  const head = ["set", "rules", "headers", "core Mpps", "wasmtime Mpps", "wt/V8", "linear Mpps", "core/linear", "build ms", "table KiB", "agree"];
  const rows = figs.map((f) => [
    f.set, String(f.rules), String(f.headers), fmt(f.coreMpps), f.wasmtimeMpps ? fmt(f.wasmtimeMpps) : "n/a",
    f.wasmtimeMpps ? `${(f.wasmtimeMpps.median / f.coreMpps.median).toFixed(2)}` : "n/a", fmt(f.linearMpps, 3),
    `${(f.coreMpps.median / f.linearMpps.median).toFixed(1)}x`, fmt(f.buildMs, 0),
    (f.tableBytes / 1024).toFixed(0), f.agree ? "yes" : "NO",
  ]);
  return {
    id: "classbench-headers", title: "ClassBench first match, release wasm core (classify_headers) vs plain TypeScript linear scan",
    notes: ["Mpps: median (min-max). Build: host table compile, ms. Table: compiled bytes."], table: { head, rows }, lines: [],
    chart: barChart({
      title: "ClassBench headers: Mpps (symmetric log scale)", x: "set", series: "classifier", y: "mpps", yTitle: "Mpps", log: true, sortX: figs.map((f) => f.set),
      values: figs.flatMap((f) => ([["core (wasm, V8)", f.coreMpps], ...(f.wasmtimeMpps ? [["core (wasm, wasmtime)", f.wasmtimeMpps] as const] : []), ["linear scan (TypeScript)", f.linearMpps]] as const)
        .map(([who, m]) => ({ set: f.set, classifier: who, mpps: m.median, mppsMin: m.min, mppsMax: m.max }))),
    }),
    data: figs,
  };
}
