// A core (release unless a test asks for the debug one) and the TypeScript
// reference (bench/reference/) side by side on the same batches: the
// reference reads the very descriptors and bytes the core just classified
// (the core's own DESCS and DATA regions) and every packet's verdict, reason
// and rule are compared.
import * as ABI from "../../host/core/abi.js";
import { type Core, type PacketMeta } from "../../host/core/core.js";
import { type Build, type CoreConfig } from "../../host/core/load.js";
import { reasonName } from "../../host/core/reasons.js";
import * as F from "../../host/rules/format.js";
import { type TableSpec } from "../../host/rules/model.js";
import { Reference } from "../../bench/reference/classify.js";
import { Harness } from "./conn.js";

// The core's state names in order; index 0 is the fragment timeout's slot.
export const TIMEOUT_SLOTS = [
  "fragment", "syn_sent", "syn_sent2", "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
  "time_wait", "close", "udp_unreplied", "udp_replied", "icmp_query", "icmp_replied", "other_unreplied", "other_replied",
];

export function timeoutArray(t: CoreConfig["timeouts"] = {}): number[] {
  return TIMEOUT_SLOTS.map((name) => t[name] ?? 0);
}

// The bytes of the core's live rule table.
export function liveTable(core: Core): Uint8Array {
  const at = core.x.table_live_ptr();
  if (at === 0) throw new Error("no live table");
  return core.u8.slice(at, at + core.view.getUint32(at + F.T_TOTAL_LEN, true));
}

export interface Answer { verdict: number; reason: string; rule: number }

export interface Mismatch {
  packet: number; //  running index over everything compared
  core: Answer;
  ref: Answer;
  meta: string;
  hex: string;
}

function answer(v: number, reason: number, rule: number): Answer {
  return { verdict: v, reason: reasonName(reason), rule: rule === ABI.RULE_NONE ? -1 : rule };
}

export function formatMismatch(m: Mismatch): string {
  const a = (x: Answer): string => `${x.verdict ? "accept" : "drop"} ${x.reason} rule ${x.rule}`;
  return `packet ${m.packet} (${m.meta}): core ${a(m.core)}, reference ${a(m.ref)}\n  ${m.hex}`;
}

// Compares the core's verdicts of the `count` packets it just classified at
// `nowNs` with the reference's on the same memory.
export class Comparer {
  compared = 0;
  readonly mismatches: Mismatch[] = [];
  readonly reasons = new Map<string, number>();

  constructor(readonly core: Core, readonly ref: Reference) {}

  check(count: number, nowNs: bigint): void {
    const c = this.core;
    const n = this.ref.classify({
      count, nowNs,
      descs: c.u8.subarray(c.descsPtr, c.descsPtr + count * ABI.DESC_SIZE),
      data: c.u8.subarray(c.dataPtr, c.dataPtr + ABI.DATA_CAP),
    });
    if (n !== count) throw new Error(`reference classified ${n} of ${count}`);
    for (let i = 0; i < count; i++) {
      const core = answer(c.verdict(i), c.reason(i), c.rule(i));
      const ref = answer(this.ref.verdicts[i]!, this.ref.reasons[i]!, this.ref.rules[i]!);
      this.reasons.set(core.reason, (this.reasons.get(core.reason) ?? 0) + 1);
      if (core.verdict !== ref.verdict || core.reason !== ref.reason || core.rule !== ref.rule) {
        if (this.mismatches.length < 20) this.mismatches.push({ packet: this.compared + i, core, ref, ...this.describe(i) });
      }
    }
    this.compared += count;
  }

  private describe(i: number): { meta: string; hex: string } {
    const c = this.core, v = c.view, d = c.descsPtr + i * ABI.DESC_SIZE;
    const off = v.getUint32(d + ABI.D_DATA_OFF, true), cap = v.getUint32(d + ABI.D_CAP_LEN, true);
    const meta = `off ${off} cap ${cap} wire ${v.getUint32(d + ABI.D_WIRE_LEN, true)} hw 0x${v.getUint16(d + ABI.D_HW_PROTO, true).toString(16)}` +
      ` hook ${c.u8[d + ABI.D_HOOK]} in ${c.u8[d + ABI.D_IN_ROLE]} out ${c.u8[d + ABI.D_OUT_ROLE]}`;
    const end = Math.min(off + cap, ABI.DATA_CAP);
    const hex = Buffer.from(c.u8.subarray(c.dataPtr + off, c.dataPtr + Math.max(off, end))).toString("hex");
    return { meta, hex };
  }

  report(): string {
    return this.mismatches.map(formatMismatch).join("\n");
  }
}

// conn.ts's Harness with the reference beside it: every packet sent is
// classified by both and compared (the answer returned is the core's).
export class TwinHarness extends Harness {
  readonly ref: Reference;
  readonly cmp: Comparer;

  constructor(spec?: TableSpec, config: CoreConfig = {}, build: Build = "release") {
    super(spec, config, build);
    this.ref = new Reference({ timeouts: timeoutArray(config.timeouts), ...(config.tcp ? { tcp: config.tcp } : {}) });
    this.ref.loadTable(liveTable(this.core));
    this.cmp = new Comparer(this.core, this.ref);
  }

  override send(pkt: Uint8Array, meta: PacketMeta, t: number): string {
    const r = super.send(pkt, meta, t);
    this.cmp.check(1, BigInt(Math.round(t * 1e9)));
    return r;
  }
}
