// The packet loop of the daemon, independent of where packets come from:
// a PacketSource (an NFQUEUE handle, or a fake in tests) fills the core's
// batch region; the engine classifies each batch and hands the verdicts
// back. One core serves every queue; batches never interleave.
import * as ABI from "../core/abi.js";
import { type Core } from "../core/core.js";
import { reasonName } from "../core/reasons.js";
import { describePacket } from "../packets/describe.js";
import { type TableView } from "../rules/inspect.js";
import { type Logger, RateLimiter } from "./log.js";
import { type Shadow } from "./shadow.js";

export interface PacketSource {
  readonly name: string;
  // Fills descriptors and data for up to `max` packets; returns how many.
  recv(core: Core, max: number): number;
  // Sends the verdicts of the `count` packets of the last recv.
  verdict(core: Core, count: number): void;
  onReadable(cb: () => void): void;
  stats(): Record<string, number>;
  close(): void;
}

// traps: batches whose classify trapped (a core bug: the engine's error);
// their packets (trapDropped) got DROP, never ACCEPT.
export interface EngineStats { batches: number; packets: number; wakeups: number; logged: number; suppressed: number; traps: number; trapDropped: number }

export class Engine {
  readonly stats: EngineStats = { batches: 0, packets: 0, wakeups: 0, logged: 0, suppressed: 0, traps: 0, trapDropped: 0 };
  private readonly limiter = new RateLimiter();
  private table: TableView | null = null;
  private stopping = false;
  // A candidate table watching the same packets (shadow.ts), or null.
  shadow: Shadow | null = null;

  constructor(readonly core: Core, private readonly log: Logger, private readonly maxBatch = 256,
    private readonly clock: () => bigint = () => process.hrtime.bigint()) {}

  setTable(view: TableView | null): void { this.table = view; }

  // Drains a source: batches until it has nothing more. Returns packets.
  drain(src: PacketSource): number {
    this.stats.wakeups++;
    let total = 0;
    for (;;) {
      const n = src.recv(this.core, this.maxBatch);
      if (n <= 0) break;
      const now = this.clock();
      let r: number;
      try {
        r = this.core.classify(n, now);
      } catch (e) {
        // The core trapped (V8's RuntimeError, wasmtime's ERR_WASM_TRAP):
        // the batch's verdict records are not its answer. Fail closed: every
        // packet of the batch is dropped, counted, and the loop carries on.
        this.dropBatch(src, n, e);
        total += n;
        if (n < this.maxBatch) break;
        continue;
      }
      if (r !== n) {
        // Cannot happen with a count the source produced; verdict nothing
        // rather than something wrong, and say so.
        this.log.log("error", "core refused a batch", { source: src.name, count: n, status: -r });
        break;
      }
      this.logDrops(src, n);
      this.shadow?.observe(n, now);
      src.verdict(this.core, n);
      this.stats.batches++;
      this.stats.packets += n;
      total += n;
      if (n < this.maxBatch) break;
    }
    return total;
  }

  private dropBatch(src: PacketSource, n: number, e: unknown): void {
    for (let i = 0; i < n; i++) {
      const v = this.core.verdictsPtr + i * ABI.VERDICT_SIZE;
      this.core.u8[v + ABI.V_VERDICT] = ABI.VERDICT_DROP;
      this.core.view.setUint32(v + ABI.V_RULE, ABI.RULE_NONE, true);
    }
    src.verdict(this.core, n);
    this.stats.traps++;
    this.stats.trapDropped += n;
    const take = this.limiter.take(-1, Date.now());
    if (take.ok) {
      const err = e as Error & { trap?: string };
      this.log.log("error", "the core trapped; the batch's packets are dropped", {
        source: src.name, engine: this.core.engine, count: n, error: err?.message ?? String(e),
        ...(err?.trap ? { trap: err.trap } : {}), traps: this.stats.traps, ...(take.suppressed ? { suppressed: take.suppressed } : {}),
      });
    }
  }

  attach(src: PacketSource): void {
    src.onReadable(() => { if (!this.stopping) this.drain(src); });
  }

  // Stop taking wakeups; the caller drains once more, then closes sources.
  stop(): void { this.stopping = true; }

  private logDrops(src: PacketSource, n: number): void {
    const t = this.table;
    if (!t) return;
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const rule = this.core.rule(i);
      if (rule === ABI.RULE_NONE || rule >= t.rules.length || !t.rules[rule]!.log) continue;
      // Only the packet a rule decided, not every packet of its flows.
      const reason = this.core.reason(i);
      const name = reasonName(reason);
      if (name !== "rule_deny" && name !== "rule_allow") continue;
      const take = this.limiter.take(rule, now);
      if (!take.ok) { this.stats.suppressed++; continue; }
      const d = this.core.descsPtr + i * ABI.DESC_SIZE;
      const off = this.core.view.getUint32(d + ABI.D_DATA_OFF, true);
      const cap = this.core.view.getUint32(d + ABI.D_CAP_LEN, true);
      const bytes = this.core.u8.subarray(this.core.dataPtr + off, this.core.dataPtr + off + cap);
      this.log.log("info", name === "rule_deny" ? "drop" : "accept", {
        source: src.name, rule, info: t.rules[rule]!.info, reason: name,
        packet: describePacket(bytes, this.core.view.getUint16(d + ABI.D_HW_PROTO, true)),
        ...(take.suppressed ? { suppressed: take.suppressed } : {}),
      });
      this.stats.logged++;
    }
  }
}
