// Core throughput on one workload at one batch size, four contenders on the
// very same batches, alternating, in one process run:
//  - V8: the release wasm core in this Node process (class Core);
//  - wasmtime: the same module compiled by Cranelift in this process (class
//    Core with engine "wasmtime", host/native/wasmtime.c), driven the same way;
//  - reference: the plain TypeScript implementation (bench/reference/);
//  - wasm2c: the same release.wasm translated to C and compiled with gcc -O2
//    (test/wasm2c/harness.ts, test/wasm2c/driver.c), timed by the driver.
// Each contender does what the driver's --repeat does: per batch, copy the
// batch in once (untimed), then classify it `repeat` times (timed). Every
// run starts from fresh state with the table committed; setup batches (the
// handshakes of the mix) are run the same way but not timed. The verdict
// records after each batch's last repeat must be identical across the three.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import * as ABI from "../host/core/abi.js";
import { type Core } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { encodeVectors, packBatch, runWasm2cVectors, type VectorBatch } from "../test/wasm2c/harness.js";
import { Reference, type RefBatch } from "./reference/classify.js";
import { type Figure, figure } from "./stats.js";
import { type Workload } from "./workloads.js";

export interface CoreCell {
  workload: string;
  batch: number;
  packets: number; //    measured packets per pass
  repeat: number; //     classify calls per batch
  v8: Figure; //         Mpps
  wasmtime: Figure | null; // null: the wasmtime engine is not installed (CoreBench.wasmtime says why)
  wasmtimeOverV8: Figure | null; //    per-run ratios, as below
  wasmtimeOverWasm2c: Figure | null;
  reference: Figure;
  wasm2c: Figure | null; //   null: wasm2c was not available (CoreBench.wasm2c says why)
  v8OverWasm2c: Figure | null; // per-run ratios (V8 and wasm2c of the same run), median (min-max)
  v8OverReference: Figure;
  agree: boolean;
  disagreement: string | null;
  reasons: Record<string, number>; // share of the measured packets, by reason (last repeat)
}

export interface CoreBenchOptions {
  reps: number;
  repeat: number;
  binary: string | null; //  the wasm2c driver; null: leave wasm2c out
  wasmtime: Core | null; //  a wasmtime Core initialised like the V8 one (same CONFIG); null: leave it out
  tmpDir: string;
}

const T0 = 1_000_000_000n;

// A full collection before each timed run, and a pause for the collector's
// background threads to finish sweeping, so that no contender is timed while
// they clean up after the one before (the reference allocates, the workloads
// fill the heap, and this machine has two cores).
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const pause = new Int32Array(new SharedArrayBuffer(4));
function collect(): void {
  gc();
  Atomics.wait(pause, 0, 0, 30);
}

interface Prepared {
  batches: VectorBatch[];
  ref: RefBatch[];
  counts: number[];
  measuredFrom: number;
  packets: number;
}

function prepare(w: Workload, size: number): Prepared {
  const batches: VectorBatch[] = [];
  w.setup.forEach((b, i) => batches.push(packBatch(b, { nowNs: T0 + BigInt(i) * 1000n })));
  for (let s = 0; s < w.warm.length; s += size) {
    batches.push(packBatch(w.warm.slice(s, s + size), { nowNs: T0 + 1_000_000_000n + BigInt(s) * 100n }));
  }
  const measuredFrom = batches.length;
  for (let s = 0; s < w.packets.length; s += size) {
    batches.push(packBatch(w.packets.slice(s, s + size), { nowNs: T0 + 2_000_000_000n + BigInt(s) * 100n }));
  }
  const counts = batches.map((b) => new DataView(b.header.buffer).getUint32(ABI.BH_COUNT, true));
  const ref = batches.map((b, i) => ({
    count: counts[i]!, nowNs: new DataView(b.header.buffer).getBigUint64(ABI.BH_NOW, true), descs: b.descs, data: b.data,
  }));
  return { batches, ref, counts, measuredFrom, packets: w.packets.length };
}

interface Run { ns: number; verdicts: Uint8Array[] | null }

// V8 or wasmtime: the same calls through class Core's exports.
function runV8(core: Core, table: Uint8Array, p: Prepared, repeat: number, keep: boolean): Run {
  const x = core.x;
  if (x.init() !== 0) throw new Error("core init failed");
  core.loadTable(table);
  let ns = 0n;
  const verdicts: Uint8Array[] = [];
  p.batches.forEach((b, i) => {
    core.u8.set(b.header, core.batchPtr);
    core.u8.set(b.descs, core.descsPtr);
    core.u8.set(b.data, core.dataPtr);
    let ret = 0;
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < repeat; r++) ret = x.classify();
    const t1 = process.hrtime.bigint();
    if (ret !== p.counts[i]) throw new Error(`${core.engine} core classified ${ret} of ${p.counts[i]}`);
    if (i >= p.measuredFrom) ns += t1 - t0;
    if (keep) verdicts.push(core.u8.slice(core.verdictsPtr, core.verdictsPtr + ret * ABI.VERDICT_SIZE));
  });
  return { ns: Number(ns), verdicts: keep ? verdicts : null };
}

function runReference(table: Uint8Array, p: Prepared, repeat: number, keep: boolean): Run {
  const ref = new Reference();
  ref.loadTable(table);
  let ns = 0n;
  const verdicts: Uint8Array[] = [];
  p.ref.forEach((b, i) => {
    let ret = 0;
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < repeat; r++) ret = ref.classify(b);
    const t1 = process.hrtime.bigint();
    if (ret !== b.count) throw new Error(`reference classified ${ret} of ${b.count}`);
    if (i >= p.measuredFrom) ns += t1 - t0;
    if (keep) {
      // As the core's verdict records: verdict, flags, reason u16, rule u32.
      const out = new Uint8Array(ret * ABI.VERDICT_SIZE);
      const v = new DataView(out.buffer);
      for (let k = 0; k < ret; k++) {
        out[k * ABI.VERDICT_SIZE + ABI.V_VERDICT] = ref.verdicts[k]!;
        v.setUint16(k * ABI.VERDICT_SIZE + ABI.V_REASON, ref.reasons[k]!, true);
        v.setUint32(k * ABI.VERDICT_SIZE + ABI.V_RULE, ref.rules[k]!, true);
      }
      verdicts.push(out);
    }
  });
  return { ns: Number(ns), verdicts: keep ? verdicts : null };
}

function runNative(vectorsPath: string, tablePath: string, p: Prepared, repeat: number, binary: string): Run {
  const res = runWasm2cVectors(new Uint8Array(0), { binary, repeat, table: tablePath, vectorFile: vectorsPath });
  let ns = 0n;
  res.timings.forEach((t) => {
    if (t.count !== p.counts[t.batch]) throw new Error(`wasm2c core classified ${t.count} of ${p.counts[t.batch]}`);
    if (t.batch >= p.measuredFrom) ns += t.ns;
  });
  return { ns: Number(ns), verdicts: res.batches.map((b) => b.verdicts) };
}

function describe(rec: Uint8Array | undefined, k: number): string {
  if (!rec || rec.length < (k + 1) * ABI.VERDICT_SIZE) return "nothing";
  const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const at = k * ABI.VERDICT_SIZE;
  const rule = v.getUint32(at + ABI.V_RULE, true);
  return `${rec[at] ? "accept" : "drop"} ${reasonName(v.getUint16(at + ABI.V_REASON, true))} rule ${rule === ABI.RULE_NONE ? "-" : rule}`;
}

// The first packet whose verdict records differ, described; null when none.
function firstDifference(p: Prepared, a: Uint8Array[], b: Uint8Array[], an: string, bn: string): string | null {
  for (let i = 0; i < p.batches.length; i++) {
    const x = a[i], y = b[i];
    const n = p.counts[i]!;
    for (let k = 0; k < n; k++) {
      const at = k * ABI.VERDICT_SIZE;
      let same = x !== undefined && y !== undefined && x.length === y.length;
      for (let j = 0; same && j < ABI.VERDICT_SIZE; j++) if (j !== ABI.V_FLAGS && x![at + j] !== y![at + j]) same = false;
      if (!same) {
        const d = new DataView(p.batches[i]!.descs.buffer);
        const off = d.getUint32(k * ABI.DESC_SIZE + ABI.D_DATA_OFF, true), cap = d.getUint32(k * ABI.DESC_SIZE + ABI.D_CAP_LEN, true);
        const hex = Buffer.from(p.batches[i]!.data.subarray(off, off + cap)).toString("hex");
        return `batch ${i} packet ${k}: ${an} ${describe(x, k)}, ${bn} ${describe(y, k)}; packet ${hex}`;
      }
    }
  }
  return null;
}

function reasonShares(p: Prepared, verdicts: Uint8Array[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (let i = p.measuredFrom; i < verdicts.length; i++) {
    const rec = verdicts[i]!;
    const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    for (let at = 0; at < rec.length; at += ABI.VERDICT_SIZE) {
      const name = reasonName(v.getUint16(at + ABI.V_REASON, true));
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
  }
  const out: Record<string, number> = {};
  for (const [k, n] of [...counts].sort((a, b) => b[1] - a[1])) out[k] = n / p.packets;
  return out;
}

const mpps = (packets: number, ns: number): number => (packets * 1000) / ns;

export function benchCell(core: Core, w: Workload, size: number, opts: CoreBenchOptions): CoreCell {
  const p = prepare(w, size);
  const initConfig = core.u8.slice(core.configPtr, core.configPtr + ABI.CONFIG_SIZE);
  const tablePath = join(opts.tmpDir, `${w.name}.table`);
  const vectorsPath = join(opts.tmpDir, `${w.name}-${size}.vec`);
  writeFileSync(tablePath, w.table);
  if (opts.binary !== null) writeFileSync(vectorsPath, encodeVectors(p.batches, { initConfig }));
  const work = p.packets * opts.repeat;

  // A first, untimed round of V8 and the reference warms their code; its
  // verdicts (and the first wasm2c run's) are compared.
  const v8Check = runV8(core, w.table, p, opts.repeat, true).verdicts!;
  const refCheck = runReference(w.table, p, opts.repeat, true).verdicts!;
  const samples = { v8: [] as number[], reference: [] as number[], wasm2c: [] as number[], wasmtime: [] as number[] };
  const wt = opts.wasmtime;
  const wtCheck = wt ? runV8(wt, w.table, p, opts.repeat, true).verdicts! : null;
  let nativeCheck: Uint8Array[] | null = null;
  const binary = opts.binary;
  const contenders: Array<() => void> = [
    () => { samples.v8.push(mpps(work, runV8(core, w.table, p, opts.repeat, false).ns)); },
    () => { samples.reference.push(mpps(work, runReference(w.table, p, opts.repeat, false).ns)); },
  ];
  if (wt) contenders.push(() => { samples.wasmtime.push(mpps(work, runV8(wt, w.table, p, opts.repeat, false).ns)); });
  if (binary !== null) {
    contenders.push(() => {
      const r = runNative(vectorsPath, tablePath, p, opts.repeat, binary);
      nativeCheck ??= r.verdicts;
      samples.wasm2c.push(mpps(work, r.ns));
    });
  }
  for (let rep = 0; rep < opts.reps; rep++) {
    for (let k = 0; k < contenders.length; k++) {
      collect();
      contenders[(rep + k) % contenders.length]!();
    }
  }
  const disagreement = firstDifference(p, v8Check, refCheck, "V8", "reference") ??
    (binary !== null ? firstDifference(p, v8Check, nativeCheck!, "V8", "wasm2c") : null) ??
    (wtCheck ? firstDifference(p, v8Check, wtCheck, "V8", "wasmtime") : null);
  const v8 = figure(samples.v8), reference = figure(samples.reference), wasm2c = binary !== null ? figure(samples.wasm2c) : null;
  const perRun = (a: number[], b: number[]): Figure => figure(a.map((x, i) => x / b[i]!));
  return {
    workload: w.name, batch: size, packets: p.packets, repeat: opts.repeat, v8, reference, wasm2c,
    wasmtime: wt ? figure(samples.wasmtime) : null,
    wasmtimeOverV8: wt ? perRun(samples.wasmtime, samples.v8) : null,
    wasmtimeOverWasm2c: wt && binary !== null ? perRun(samples.wasmtime, samples.wasm2c) : null,
    v8OverWasm2c: binary !== null ? figure(samples.v8.map((x, i) => x / samples.wasm2c[i]!)) : null,
    v8OverReference: figure(samples.v8.map((x, i) => x / samples.reference[i]!)),
    agree: disagreement === null, disagreement, reasons: reasonShares(p, v8Check),
  };
}

export interface CoreBench {
  repeat: number;
  packetsPerWorkload: number;
  moduleBytes: number;
  wasm2c: string; //  "gcc -O2" when it ran, else "not available: why"
  wasmtime: string; // "Cranelift" when it ran, else "not available: why"
  workloads: Array<{ name: string; rules: number; packets: number; what: string }>;
  cells: CoreCell[];
}

export const BATCH_SIZES = [1, 32, 256];

// Every workload at every batch size; `log` hears of each cell as it is done.
export function benchCore(core: Core, workloads: Workload[], opts: CoreBenchOptions & { moduleBytes: number; wasm2cWhy?: string; wasmtimeWhy?: string }, log: (c: CoreCell) => void = () => {}): CoreBench {
  const cells: CoreCell[] = [];
  for (const w of workloads) {
    for (const size of BATCH_SIZES) {
      const c = benchCell(core, w, size, opts);
      cells.push(c);
      log(c);
    }
  }
  return {
    repeat: opts.repeat, packetsPerWorkload: Math.max(...workloads.map((w) => w.packets.length)), moduleBytes: opts.moduleBytes,
    wasm2c: opts.binary !== null ? "gcc -O2" : `not available: ${opts.wasm2cWhy ?? "no driver binary"}`,
    wasmtime: opts.wasmtime ? "Cranelift" : `not available: ${opts.wasmtimeWhy ?? "no engine"}`,
    workloads: workloads.map((w) => ({ name: w.name, rules: w.rules, packets: w.packets.length, what: w.what })), cells,
  };
}

const RULE_REASONS = ["rule_allow", "rule_deny", "default_allow", "default_deny"];

// The share of a cell's packets that the rules decided (the rest: state, decoders).
export function ruleShare(c: CoreCell): number {
  return RULE_REASONS.reduce((s, r) => s + (c.reasons[r] ?? 0), 0);
}
