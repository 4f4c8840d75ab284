// ClassBench sets: the release wasm core's classification rate, table build
// time and table size, next to a plain TypeScript linear scan of the same
// rules, in the same run, alternating the two.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Core } from "../host/core/core.js";
import { buildTable } from "../host/rules/build.js";
import { readFilters, readTrace } from "../host/rules/classbench.js";
import { HEADER_SIZE } from "../host/rules/format.js";
import { LinearScan } from "./linear.js";
import { type Figure, figure, nowMs } from "./stats.js";

export interface ClassBenchFigures {
  set: string;
  rules: number;
  headers: number;
  buildMs: Figure;
  tableBytes: number;
  coreMpps: Figure;
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
  const core = new Core("release");
  core.loadTable(bytes);
  // The headers go into the core's data area once; each core run is one call.
  const n = trace.length;
  const v = core.view;
  trace.forEach((h, i) => {
    const at = core.dataPtr + i * HEADER_SIZE;
    v.setUint32(at, h.src, true); v.setUint32(at + 4, h.dst, true);
    v.setUint16(at + 8, h.sport, true); v.setUint16(at + 10, h.dport, true); v.setUint8(at + 12, h.proto);
  });
  const linear = new LinearScan(spec.rules);
  const linOut = new Int32Array(n);
  const coreRuns: number[] = [], linRuns: number[] = [];
  // Warm both up once, then alternate.
  core.x.classify_headers(n, 0);
  linear.classify(trace, linOut);
  for (let r = 0; r < reps; r++) {
    let t0 = nowMs();
    const got = core.x.classify_headers(n, 0);
    coreRuns.push(n / ((nowMs() - t0) * 1000));
    if (got !== n) throw new Error(`classify_headers returned ${got}`);
    t0 = nowMs();
    linear.classify(trace, linOut);
    linRuns.push(n / ((nowMs() - t0) * 1000));
  }
  const coreOut = new Int32Array(core.memory.buffer, core.dataPtr + n * HEADER_SIZE, n);
  let agree = true;
  for (let i = 0; i < n; i++) {
    if (coreOut[i] !== linOut[i] || coreOut[i]! + 1 !== trace[i]!.expected) { agree = false; break; }
  }
  return {
    set: name, rules: spec.rules.length, headers: n, buildMs: figure(builds), tableBytes: bytes.length,
    coreMpps: figure(coreRuns), linearMpps: figure(linRuns), agree,
  };
}
