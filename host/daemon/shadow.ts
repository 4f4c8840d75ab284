// The canary (shadow) table: a candidate table runs beside the live one on
// the same packets without deciding any of them. It lives in a second core
// that starts with a copy of the live state table (same layout, same hash
// seed), so flows already open are known to it too; after each live batch
// the batch region is copied across and classified there, and every packet
// whose verdict would differ is counted and the first ones kept as samples.
// `promote` makes the candidate live through the usual transaction;
// `discard` throws it away. Control path: costs a second classification per
// batch only while a candidate runs.
import * as ABI from "../core/abi.js";
import { Core } from "../core/core.js";
import { type CoreConfig } from "../core/load.js";
import { reasonName } from "../core/reasons.js";
import { describePacket } from "../packets/describe.js";
import { TableView } from "../rules/inspect.js";

export const MAX_SAMPLES = 50;

export interface ShadowSample {
  at: string;
  packet: string;
  live: { verdict: string; reason: string; rule: string | null };
  candidate: { verdict: string; reason: string; rule: string | null };
}

export interface ShadowReport {
  path: string;
  since: string;
  packets: number; //     packets both tables saw
  differ: number; //      of which the verdicts differ
  liveAcceptCandidateDrop: number;
  liveDropCandidateAccept: number;
  byReasons: Record<string, number>; // "live reason -> candidate reason": packets
  samples: ShadowSample[];
}

const verdictName = (v: number): string => (v === ABI.VERDICT_ACCEPT ? "accept" : "drop");

export class Shadow {
  readonly core: Core;
  readonly table: TableView;
  readonly since = new Date();
  private packets = 0;
  private differ = 0;
  private aToD = 0;
  private dToA = 0;
  private readonly byReasons = new Map<string, number>();
  private readonly samples: ShadowSample[] = [];

  constructor(readonly path: string, readonly bytes: Uint8Array, private readonly live: Core, liveTable: TableView | null, config: CoreConfig) {
    const seed = live.view.getBigUint64(live.configPtr + ABI.CFG_HASH_SEED, true);
    this.core = new Core("release", undefined, { ...config, hashSeed: seed });
    // The same timeouts as the live core (the host may have changed them).
    new Uint8Array(this.core.memory.buffer, this.core.configPtr + ABI.CFG_TIMEOUTS, 64)
      .set(new Uint8Array(live.memory.buffer, live.configPtr + ABI.CFG_TIMEOUTS, 64));
    if (this.core.x.flows_ptr() !== live.x.flows_ptr() || this.core.x.arena_end() !== live.x.arena_end()) {
      throw new Error("the candidate's core is laid out differently from the live one");
    }
    this.core.loadTable(bytes);
    // The live state table (flows and fragments) as it is now.
    const from = live.x.flows_ptr(), to = live.x.arena_end();
    this.core.u8.set(live.u8.subarray(from, to), from);
    this.table = new TableView(bytes);
    this.liveTable = liveTable;
  }

  private liveTable: TableView | null;
  setLiveTable(t: TableView | null): void { this.liveTable = t; }

  // The live core has just classified `n` packets: run the same batch here.
  observe(n: number, nowNs: bigint): void {
    const L = this.live, C = this.core;
    let end = 0;
    for (let i = 0; i < n; i++) {
      const d = L.descsPtr + i * ABI.DESC_SIZE;
      end = Math.max(end, L.view.getUint32(d + ABI.D_DATA_OFF, true) + L.view.getUint32(d + ABI.D_CAP_LEN, true));
    }
    C.u8.set(L.u8.subarray(L.descsPtr, L.descsPtr + n * ABI.DESC_SIZE), C.descsPtr);
    C.u8.set(L.u8.subarray(L.dataPtr, L.dataPtr + Math.min(end, ABI.DATA_CAP)), C.dataPtr);
    if (C.classify(n, nowNs) !== n) return;
    this.packets += n;
    for (let i = 0; i < n; i++) {
      const lv = L.verdict(i), cv = C.verdict(i);
      if (lv === cv) continue;
      this.differ++;
      if (lv === ABI.VERDICT_ACCEPT) this.aToD++; else this.dToA++;
      const key = `${reasonName(L.reason(i))} -> ${reasonName(C.reason(i))}`;
      this.byReasons.set(key, (this.byReasons.get(key) ?? 0) + 1);
      if (this.samples.length < MAX_SAMPLES) {
        const d = L.descsPtr + i * ABI.DESC_SIZE;
        const off = L.view.getUint32(d + ABI.D_DATA_OFF, true), cap = L.view.getUint32(d + ABI.D_CAP_LEN, true);
        const ruleText = (core: Core, t: TableView | null): string | null => {
          const r = core.rule(i);
          return r === ABI.RULE_NONE ? null : t?.rules[r]?.info ?? `rule ${r}`;
        };
        this.samples.push({
          at: new Date().toISOString(),
          packet: describePacket(L.u8.subarray(L.dataPtr + off, L.dataPtr + off + cap), L.view.getUint16(d + ABI.D_HW_PROTO, true)),
          live: { verdict: verdictName(lv), reason: reasonName(L.reason(i)), rule: ruleText(L, this.liveTable) },
          candidate: { verdict: verdictName(cv), reason: reasonName(C.reason(i)), rule: ruleText(C, this.table) },
        });
      }
    }
  }

  report(): ShadowReport {
    return {
      path: this.path, since: this.since.toISOString(), packets: this.packets, differ: this.differ,
      liveAcceptCandidateDrop: this.aToD, liveDropCandidateAccept: this.dToA,
      byReasons: Object.fromEntries(this.byReasons), samples: this.samples,
    };
  }
}
