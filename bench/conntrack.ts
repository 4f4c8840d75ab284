// The established-flow fast path: packets of already tracked TCP flows
// (decode, state lookup, state machine, no rule lookup) through the release
// core, at batch sizes 1, 32 and 256; and what a flow costs in memory.
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { Core } from "../host/core/core.js";
import { ipv4, PROTO_TCP, TCP_ACK, TCP_PSH, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { barChart, type Section } from "./report.js";
import { type Figure, figure, fmt, nowMs } from "./stats.js";

const IN = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
const OUT = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };

export interface ConntrackFigures {
  flows: number;
  // mpps: window tracking on (the default); liberal: tcp.liberal (conntrack's
  // be_liberal=1: only RST and FIN checked, the behaviour before window
  // tracking); ratio: mpps / liberal, medians, in the same run, alternating.
  byBatch: Array<{ batch: number; mpps: Figure; liberal?: Figure; ratio?: number }>;
  flowBytes: number;
  tableBytes65536: number;
}

// A core with 1,000 established flows and their steady-state segments.
function trackedCore(policy: string, liberal: boolean, flows: number): { core: Core; b: Batch; pkts: Array<{ bytes: Uint8Array; meta: typeof IN }> } {
  const core = new Core("release", undefined, { tcp: { liberal } });
  core.loadTable(buildTable(compilePolicyFile(policy, { mode: "host" }).spec).bytes);
  const b = new Batch(core);
  const pkts: Array<{ bytes: Uint8Array; meta: typeof IN }> = [];
  for (let i = 0; i < flows; i++) {
    const client = `192.0.2.${1 + (i % 200)}`;
    const cport = 20000 + i;
    const mk = (fromClient: boolean, flags: number, seq: number, ack: number, len = 0): Uint8Array => ipv4({
      src: fromClient ? client : "203.0.113.1", dst: fromClient ? "203.0.113.1" : client, proto: PROTO_TCP,
      payload: tcp({ sport: fromClient ? cport : 443, dport: fromClient ? 443 : cport, flags, seq, ack, payload: new Uint8Array(len) }),
    });
    for (const [p, m] of [[mk(true, TCP_SYN, 100, 0), IN], [mk(false, TCP_SYN | TCP_ACK, 900, 101), OUT], [mk(true, TCP_ACK, 101, 901), IN]] as const) {
      b.clear(); b.add(p, m); b.run(0n);
    }
    // The steady state: ACKs of data both ways, the same sequence numbers
    // each round (retransmission-like: in window, no state change; every
    // bound is computed for each of them).
    pkts.push({ bytes: mk(true, TCP_ACK | TCP_PSH, 101, 901, 64), meta: IN });
    pkts.push({ bytes: mk(false, TCP_ACK | TCP_PSH, 901, 165, 64), meta: OUT });
  }
  return { core, b, pkts };
}

// Mpps of one timed pass over the batch region filled with `size` packets.
function pass(t: ReturnType<typeof trackedCore>, size: number): number {
  const rounds = Math.max(1, Math.floor(200_000 / size));
  let packets = 0;
  let ms = 0;
  for (let start = 0; start + size <= t.pkts.length && packets < 200_000;) {
    t.b.clear();
    for (let k = 0; k < size; k++) t.b.add(t.pkts[(start + k) % t.pkts.length]!.bytes, t.pkts[(start + k) % t.pkts.length]!.meta);
    const t0 = nowMs();
    for (let i = 0; i < Math.max(1, Math.floor(rounds / 50)); i++) {
      const n = t.core.classify(size, 1_000_000n);
      if (n !== size) throw new Error(`classify returned ${n}`);
      packets += size;
    }
    ms += nowMs() - t0;
    start = (start + size) % t.pkts.length;
  }
  for (let k = 0; k < size; k++) {
    if (t.core.reason(k) !== t.core.reason(0) || t.core.verdict(k) !== ABI.VERDICT_ACCEPT) throw new Error("fast path packet not accepted on state");
  }
  return packets / (ms * 1000);
}

// Window tracking on and off (tcp.liberal), two cores, the same packets,
// their runs alternating so both see the same machine.
export function benchEstablished(policy: string, reps: number): ConntrackFigures {
  const FLOWS = 1000;
  const strict = trackedCore(policy, false, FLOWS), liberal = trackedCore(policy, true, FLOWS);
  const byBatch: ConntrackFigures["byBatch"] = [];
  for (const size of [1, 32, 256]) {
    const a: number[] = [], b: number[] = [];
    for (let r = 0; r < reps; r++) {
      a.push(pass(strict, size));
      b.push(pass(liberal, size));
    }
    const mpps = figure(a), lib = figure(b);
    byBatch.push({ batch: size, mpps, liberal: lib, ratio: mpps.median / lib.median });
  }
  const flowBytes = strict.core.x.flow_size();
  return { flows: FLOWS, byBatch, flowBytes, tableBytes65536: flowBytes * 65536 };
}

// The established part of the report.
export function establishedSection(ct: ConntrackFigures): Section {
  const sideBySide = ct.byBatch.every((b) => b.liberal !== undefined);
  return {
    id: "established", title: "Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)",
    notes: sideBySide ? ["window tracking: every segment meets the four bounds (the default); tcp.liberal: only RST and FIN are checked " +
      "(the behaviour before window tracking); the same packets through two cores, runs alternating; ratio: medians"] : [],
    table: sideBySide
      ? { head: ["batch", "Mpps", "Mpps tcp.liberal", "window tracking / liberal"],
        rows: ct.byBatch.map((b) => [String(b.batch), fmt(b.mpps), fmt(b.liberal!), b.ratio!.toFixed(2)]) }
      : { head: ["batch", "Mpps"], rows: ct.byBatch.map((b) => [String(b.batch), fmt(b.mpps)]) },
    lines: [`state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`],
    chart: barChart({
      title: "Established-flow fast path: Mpps", x: "batch", series: "core", y: "mpps", yTitle: "Mpps", sortX: ["1", "32", "256"],
      values: ct.byBatch.flatMap((b) => [
        { batch: String(b.batch), core: "V8 (release wasm)", mpps: b.mpps.median, mppsMin: b.mpps.min, mppsMax: b.mpps.max },
        ...(b.liberal ? [{ batch: String(b.batch), core: "V8, tcp.liberal", mpps: b.liberal.median, mppsMin: b.liberal.min, mppsMax: b.liberal.max }] : []),
      ]),
    }),
    data: ct,
  };
}
