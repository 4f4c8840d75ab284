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
  byBatch: Array<{ batch: number; mpps: Figure }>;
  flowBytes: number;
  tableBytes65536: number;
}

export function benchEstablished(policy: string, reps: number): ConntrackFigures {
  const core = new Core("release");
  core.loadTable(buildTable(compilePolicyFile(policy, { mode: "host" }).spec).bytes);
  const FLOWS = 1000;
  const b = new Batch(core);
  const pkts: Array<{ bytes: Uint8Array; meta: typeof IN }> = [];
  for (let i = 0; i < FLOWS; i++) {
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
    // each round (retransmission-like: in window, no state change).
    pkts.push({ bytes: mk(true, TCP_ACK | TCP_PSH, 101, 901, 64), meta: IN });
    pkts.push({ bytes: mk(false, TCP_ACK | TCP_PSH, 901, 165, 64), meta: OUT });
  }
  const byBatch: ConntrackFigures["byBatch"] = [];
  for (const size of [1, 32, 256]) {
    // Fill the batch region once with `size` packets; each run classifies it.
    const rounds = Math.max(1, Math.floor(200_000 / size));
    const samples: number[] = [];
    for (let r = 0; r < reps; r++) {
      let packets = 0;
      let ms = 0;
      for (let start = 0; start + size <= pkts.length && packets < 200_000;) {
        b.clear();
        for (let k = 0; k < size; k++) b.add(pkts[(start + k) % pkts.length]!.bytes, pkts[(start + k) % pkts.length]!.meta);
        const t0 = nowMs();
        for (let i = 0; i < Math.max(1, Math.floor(rounds / 50)); i++) {
          const n = core.classify(size, 1_000_000n);
          if (n !== size) throw new Error(`classify returned ${n}`);
          packets += size;
        }
        ms += nowMs() - t0;
        start = (start + size) % pkts.length;
      }
      samples.push(packets / (ms * 1000));
    }
    for (let k = 0; k < size; k++) {
      if (core.reason(k) !== core.reason(0) || core.verdict(k) !== ABI.VERDICT_ACCEPT) throw new Error("fast path packet not accepted on state");
    }
    byBatch.push({ batch: size, mpps: figure(samples) });
  }
  const flowBytes = core.x.flow_size();
  return { flows: FLOWS, byBatch, flowBytes, tableBytes65536: flowBytes * 65536 };
}

// The established part of the report.
export function establishedSection(ct: ConntrackFigures): Section {
  return {
    id: "established", title: "Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)", notes: [],
    table: { head: ["batch", "Mpps"], rows: ct.byBatch.map((b) => [String(b.batch), fmt(b.mpps)]) },
    lines: [`state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`],
    chart: barChart({
      title: "Established-flow fast path: Mpps", x: "batch", series: "core", y: "mpps", yTitle: "Mpps", sortX: ["1", "32", "256"],
      values: ct.byBatch.map((b) => ({ batch: String(b.batch), core: "V8 (release wasm)", mpps: b.mpps.median, mppsMin: b.mpps.min, mppsMax: b.mpps.max })),
    }),
    data: ct,
  };
}
