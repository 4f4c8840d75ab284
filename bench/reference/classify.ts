// The reference classifier: a batch of packet descriptors and their bytes in,
// one verdict, reason and rule per packet out, with the semantics of the
// core's `classify` (assembly/classify.ts) in plain TypeScript. The tests run
// it beside the release core on the same batches (test/reference.test.ts);
// the benchmarks time it on the same workloads (bench/core.ts).
//
// Batch time: the core keeps nanoseconds as u64; this keeps them as numbers
// relative to the first batch it sees, exact while every batch time plus the
// longest timeout stays within 2^53 ns (104 days) of that first one.
import * as ABI from "../../host/core/abi.js";
import * as R from "./codes.js";
import { Conntrack } from "./conntrack.js";
import { type Limits } from "./limits.js";
import { Decoder } from "./decode.js";
import { RuleTable } from "./rules.js";

export interface RefBatch {
  count: number;
  nowNs: bigint;
  descs: Uint8Array; // count descriptors, DESC_SIZE bytes each (layout: assembly/abi.ts)
  data: Uint8Array; //  the data area the descriptors' offsets point into
}

export interface ReferenceOptions {
  defaultVerdict?: number; //       verdict for well-formed packets while no table is loaded
  timeouts?: readonly number[]; //  seconds by state, slot 0 fragments; 0 or absent: the default
  tcp?: { pickup?: boolean; liberal?: boolean }; // the core's CFG_TCP_PICKUP, CFG_TCP_LIBERAL
}

export class Reference {
  readonly verdicts = new Uint8Array(ABI.MAX_BATCH);
  readonly reasons = new Uint16Array(ABI.MAX_BATCH);
  readonly rules = new Uint32Array(ABI.MAX_BATCH);
  private readonly decoder = new Decoder();
  private conntrack: Conntrack | null = null;
  private epoch: bigint | null = null;

  constructor(readonly options: ReferenceOptions = {}) {}

  // A new rule table; tracked flows stay (as in the core, which re-checks
  // them only when asked).
  loadTable(bytes: Uint8Array): void {
    const table = new RuleTable(bytes);
    const old = this.conntrack;
    this.conntrack = new Conntrack(table, this.options.timeouts, old?.limits, this.options.tcp);
    if (old) for (const [k, f] of old.flows) this.conntrack.flows.set(k, f);
  }

  get flowCount(): number { return this.conntrack?.flows.size ?? 0; }

  // The block lists and sources (limits.ts), for tests; times as the core's.
  get limits(): Limits | null { return this.conntrack?.limits ?? null; }
  // Batch time in the reference's clock (ns since its first batch).
  relNs(nowNs: bigint): bigint { return nowNs - (this.epoch ?? nowNs); }

  // Classifies the batch; returns the number of packets (answers in
  // verdicts/reasons/rules), or -1 for a count above MAX_BATCH.
  classify(batch: RefBatch): number {
    const n = batch.count;
    if (n > ABI.MAX_BATCH) return -1;
    this.epoch ??= batch.nowNs;
    const now = Number(batch.nowNs - this.epoch);
    const d = new DataView(batch.descs.buffer, batch.descs.byteOffset, batch.descs.byteLength);
    for (let i = 0; i < n; i++) {
      const at = i * ABI.DESC_SIZE;
      const off = d.getUint32(at + ABI.D_DATA_OFF, true);
      const cap = d.getUint32(at + ABI.D_CAP_LEN, true);
      const wire = d.getUint32(at + ABI.D_WIRE_LEN, true);
      const inRole = d.getUint8(at + ABI.D_IN_ROLE), outRole = d.getUint8(at + ABI.D_OUT_ROLE), hook = d.getUint8(at + ABI.D_HOOK);
      let verdict = R.DROP, rule = R.RULE_NONE, reason: number;
      if (off + cap > ABI.DATA_CAP || cap > wire || inRole > 2 || outRole > 2 || hook > 4) {
        reason = R.BAD_DESCRIPTOR;
      } else {
        reason = this.decoder.decode(batch.data, off, cap, wire, d.getUint16(at + ABI.D_HW_PROTO, true));
        if (reason === R.NONE) {
          const ct = this.conntrack;
          if (ct) {
            reason = ct.track(this.decoder.p, hook | (inRole << 3) | (outRole << 5), now);
            verdict = ct.verdict;
            rule = ct.rule;
          } else {
            reason = R.NO_TABLE;
            verdict = this.options.defaultVerdict === R.ACCEPT ? R.ACCEPT : R.DROP;
          }
        }
      }
      this.verdicts[i] = verdict;
      this.reasons[i] = reason;
      this.rules[i] = rule;
    }
    this.conntrack?.sweepEnd(now);
    return n;
  }
}
