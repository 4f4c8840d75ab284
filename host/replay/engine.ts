// Runs the records of a capture through a core with a rule table loaded, in
// capture order, with each record's timestamp as the batch time, so flows
// open, carry and expire as they would have on the appliance. Batches hold
// consecutive records, at most MAX_REPLAY_BATCH of them, and a new batch
// starts whenever the timestamp moves more than BATCH_WINDOW_NS from the
// batch's first record: a timeout fires within that much of the right packet.
import * as ABI from "../core/abi.js";
import { Batch } from "../core/batch.js";
import { type Core, type PacketMeta } from "../core/core.js";
import { reasonName, reasonText } from "../core/reasons.js";
import { describePacket } from "../packets/describe.js";
import { type PcapRecord } from "../pcap/read.js";
import { type TableView } from "../rules/inspect.js";
import { hookName, type Placement, type RolePlacer, roleName } from "./roles.js";

export const MAX_REPLAY_BATCH = 256;
export const BATCH_WINDOW_NS = 1_000_000n;

// How a packet's rule is related to its verdict.
export type RuleVia = "rule" | "flow" | "fragment";

export interface ReplayPacket {
  index: number; //          1-based, as Wireshark numbers frames
  tsNs: string; //           capture timestamp, nanoseconds since the epoch
  time: number; //           seconds since the first record
  hook: string; //           in | out | fwd
  inRole: string; //         external | internal | none
  outRole: string;
  roleBy: Placement["by"]; // what told the roles
  summary: string;
  verdict: "accept" | "drop";
  reason: string;
  rule: number | null; //    table index of the deciding rule, or of the rule that created the flow
  ruleVia: RuleVia | null; // rule: it matched this packet; flow: it created the flow; fragment: it decided the first fragment
  ruleInfo: string | null;
}

export interface Count { packets: number; bytes: number }

export interface ReplaySummary {
  packets: number;
  batches: number;
  hooks: { in: number; out: number; fwd: number };
  sideUnknown: number; // packets whose side (in_role for in/fwd, out_role for out) could not be told
  verdicts: { accept: Count; drop: Count };
  reasons: Record<string, Count & { description: string }>;
  rules: Array<Count & { index: number; action: string; info: string }>;
  flows: { created: number; live: number; expired: number; evicted: number; refused: number; ended: number };
}

const VIA: Record<string, RuleVia> = {
  rule_allow: "rule", rule_deny: "rule", state_match: "flow", state_related: "flow", frag_follows: "fragment",
};

// What a replay leaves: the summary (counters only: a replay of any length
// holds no per-packet state) and the link types it met.
export interface ReplayResult { summary: ReplaySummary; linkTypes: number[] }

// The IP packet's length on the wire: the frame's, less its link header.
export function wireLength(r: PcapRecord): number {
  return Math.max(r.ip.length, r.wirelen - (r.caplen - r.ip.length));
}

// Replays `records` (consumed as they come: a capture file streams) and hands
// each packet's outcome to `onPacket` as its batch is decided; nothing per
// packet is kept.
// `copyRange` cuts each packet's bytes as the kernel's NFQUEUE copy range
// does (the wire length stays the packet's), so a replay decides what the
// appliance with that range decides; 0 hands the core the whole record.
export function replay(core: Core, table: TableView, records: Iterable<PcapRecord>, placer: RolePlacer,
  onPacket: (p: ReplayPacket) => void = () => {}, copyRange = 0): ReplayResult {
  core.resetCounters();
  let t0: bigint | null = null;
  let index = 0;
  const batch = new Batch(core);
  let pending: Array<{ r: PcapRecord; p: Placement }> = [];
  let batchTs = 0n;
  let batches = 0;
  const hooks = { in: 0, out: 0, fwd: 0 };
  let sideUnknown = 0;
  const linkTypes = new Set<number>();

  const flush = (): void => {
    if (pending.length === 0) return;
    const n = batch.run(batchTs);
    if (n !== pending.length) throw new Error(`the core refused a batch of ${pending.length} packets (status ${-n})`);
    batches++;
    pending.forEach(({ r, p }, i) => {
      const reason = reasonName(core.reason(i));
      const rule = core.rule(i);
      const known = rule !== ABI.RULE_NONE;
      const hook = hookName(p.hook);
      if (hook === "in" || hook === "out" || hook === "fwd") hooks[hook]++;
      if ((hook === "out" ? p.outRole : p.inRole) === ABI.ROLE_NONE) sideUnknown++;
      onPacket({
        index: ++index,
        tsNs: r.ts.toString(),
        time: Number(r.ts - t0!) / 1e9,
        hook,
        inRole: roleName(p.inRole),
        outRole: roleName(p.outRole),
        roleBy: p.by,
        summary: describePacket(r.ip, r.ethertype),
        verdict: core.verdict(i) === ABI.VERDICT_ACCEPT ? "accept" : "drop",
        reason,
        rule: known ? rule : null,
        ruleVia: known ? VIA[reason] ?? "rule" : null,
        ruleInfo: known ? table.rules[rule]?.info ?? `rule ${rule} (not in the table)` : null,
      });
    });
    batch.clear();
    pending = [];
  };

  try {
    for (const r of records) {
      t0 ??= r.ts;
      linkTypes.add(r.linkType);
      const p = placer.place(r);
      const meta: PacketMeta = {
        hook: p.hook, inRole: p.inRole, outRole: p.outRole, hwProto: r.ethertype, tsNs: r.ts, wireLen: wireLength(r),
        packetId: (index + pending.length) >>> 0,
      };
      const gap = r.ts > batchTs ? r.ts - batchTs : batchTs - r.ts;
      if (pending.length > 0 && (pending.length >= MAX_REPLAY_BATCH || gap > BATCH_WINDOW_NS)) flush();
      if (pending.length === 0) batchTs = r.ts;
      const bytes = copyRange > 0 && r.ip.length > copyRange ? r.ip.subarray(0, copyRange) : r.ip;
      if (!batch.add(bytes, meta)) {
        flush();
        batchTs = r.ts;
        if (!batch.add(bytes, meta)) throw new Error(`packet ${index + 1} (${bytes.length} bytes) does not fit in a batch`);
      }
      pending.push({ r, p });
    }
  } catch (e) {
    // The records read before a fault in the capture are still decided.
    try { flush(); } catch { /* the first error is the one to tell */ }
    throw e;
  }
  flush();
  return { summary: summarize(core, table, index, batches, hooks, sideUnknown), linkTypes: [...linkTypes] };
}

function summarize(core: Core, table: TableView, packets: number, batches: number,
  hooks: ReplaySummary["hooks"], sideUnknown: number): ReplaySummary {
  const c = core.counters();
  const count = (x: { packets: bigint; bytes: bigint }): Count => ({ packets: Number(x.packets), bytes: Number(x.bytes) });
  const reasons: ReplaySummary["reasons"] = {};
  for (const r of c.reasons) if (r.packets > 0n) reasons[r.name] = { ...count(r), description: reasonText(r.code) };
  const hits = core.ruleCounters(table.nrules);
  return {
    packets,
    batches,
    hooks,
    sideUnknown,
    verdicts: { accept: count(c.accept), drop: count(c.drop) },
    reasons,
    rules: table.rules.map((r) => ({ index: r.index, action: r.action, info: r.info, ...count(hits[r.index] ?? { packets: 0n, bytes: 0n }) })),
    flows: {
      created: Number(c.flows.created), live: Number(c.flows.live), expired: Number(c.flows.expired),
      evicted: Number(c.flows.evicted), refused: Number(c.flows.refused), ended: Number(c.flows.ended),
    },
  };
}
