// The packet loop of the daemon, independent of where packets come from:
// a PacketSource (an NFQUEUE handle, or a fake in tests) fills the core's
// batch region; the engine classifies each batch and hands the verdicts
// back. One core serves every queue; batches never interleave.
//
// Every batch received gets its verdicts, whatever fails on the way: a
// batch the core refuses or throws on is dropped whole, counted as
// undecided (core_refused, core_error); an exception from logging or from
// the canary does not touch the verdicts; one from sending them is logged
// and counted (the source drops what it could not send). A source that
// fails to read is logged and counted and read again on its next wakeup;
// READ_ERROR_LIMIT failures in a row with no good read between end the
// process (onFatal, exit status 1) so that systemd starts it again.
import * as ABI from "../core/abi.js";
import { type Core } from "../core/core.js";
import { reasonName } from "../core/reasons.js";
import { describePacket } from "../packets/describe.js";
import { type TableView } from "../rules/inspect.js";
import { type Logger, RateLimiter } from "./log.js";
import { type Offload } from "./offload.js";
import { type Shadow } from "./shadow.js";

export interface PacketSource {
  readonly name: string;
  // Fills descriptors and data for up to `max` packets; returns how many.
  recv(core: Core, max: number): number;
  // Sends the verdicts of the `count` packets of the last recv; marks[i]
  // (when given) is packet i's offload mark (0: none; daemon/offload.ts).
  verdict(core: Core, count: number, marks?: Uint32Array): void;
  // cb once per wakeup; cb(err) when the source reports an error instead.
  onReadable(cb: (err?: Error) => void): void;
  stats(): Record<string, number>;
  close(): void;
}

// Why a packet was dropped without a verdict of the core's (the daemon's
// `undecided` counters; the metric portcullis_undecided_dropped_total):
//   core_refused  the core refused the batch (classify did not answer its count)
//   core_error    the core threw (a trap) on the batch
//   no_verdict    the source got no verdict for it before its next read or close
//   unparsed      the source could not read the packet's message
//   send_failed   the message carrying its verdict could not be sent
// The first two are counted here, the others by the source (nfq.c).
export const UNDECIDED_CAUSES = ["core_refused", "core_error", "no_verdict", "unparsed", "send_failed"] as const;
export type UndecidedCause = (typeof UNDECIDED_CAUSES)[number];
// The key of each cause in a queue's stats (NfqStats has the last three).
export const UNDECIDED_KEY: Record<UndecidedCause, string> = {
  core_refused: "undecidedCoreRefused", core_error: "undecidedCoreError", no_verdict: "undecidedNoVerdict",
  unparsed: "undecidedUnparsed", send_failed: "undecidedSendFailed",
};

// Failed reads in a row (no good read between) before the daemon gives up.
export const READ_ERROR_LIMIT = 10;

export interface EngineStats {
  batches: number; packets: number; wakeups: number; logged: number; suppressed: number;
  readErrors: number; verdictErrors: number; logErrors: number; shadowErrors: number;
  // traps: trap events, i.e. batches whose classify threw (V8's
  // RuntimeError, wasmtime's ERR_WASM_TRAP: a core bug). Their packets got
  // DROP, never ACCEPT, and are counted once, as undecided core_error.
  traps: number;
}

// What the engine counts per source (merged into the queue's stats).
interface SourceState { undecidedCoreRefused: number; undecidedCoreError: number; readErrors: number; inARow: number }

// Keys of the error-log rate limiter (rule numbers are >= 0).
const LOG_READ = -1, LOG_CORE = -2, LOG_VERDICT = -3, LOG_LOGGING = -4, LOG_SHADOW = -5;

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export class Engine {
  readonly stats: EngineStats = {
    batches: 0, packets: 0, wakeups: 0, logged: 0, suppressed: 0, readErrors: 0, verdictErrors: 0, logErrors: 0, shadowErrors: 0,
    traps: 0,
  };
  private readonly limiter = new RateLimiter();
  private readonly perSource = new Map<PacketSource, SourceState>();
  private table: TableView | null = null;
  private stopping = false;
  // A candidate table watching the same packets (shadow.ts), or null.
  shadow: Shadow | null = null;
  // Kernel offload (offload.ts), when the board has it on.
  offload: Offload | null = null;
  // Reading a source has failed for good: by default log and exit with
  // status 1 (systemd's Restart=on-failure starts the daemon again).
  onFatal: (src: PacketSource, err: unknown) => void = () => process.exit(1);

  constructor(readonly core: Core, private readonly log: Logger, private readonly maxBatch = 256,
    private readonly clock: () => bigint = () => process.hrtime.bigint()) {}

  setTable(view: TableView | null): void { this.table = view; }

  // Drains a source: batches until it has nothing more. Returns packets.
  drain(src: PacketSource): number {
    this.stats.wakeups++;
    let total = 0;
    for (;;) {
      let n: number;
      try {
        n = src.recv(this.core, this.maxBatch);
      } catch (e) {
        this.readError(src, e);
        break;
      }
      this.sourceState(src).inARow = 0;
      // Until the source is empty: one that returned less than asked may
      // still hold a packet that did not fit (the addon keeps it), and no
      // wakeup would come for it.
      if (n <= 0) break;
      this.decide(src, n);
      total += n;
    }
    return total;
  }

  attach(src: PacketSource): void {
    this.sourceState(src);
    src.onReadable((err) => {
      if (err) this.readError(src, err);
      if (!this.stopping) this.drain(src);
    });
  }

  // Stop taking wakeups; the caller drains once more, then closes sources.
  stop(): void { this.stopping = true; }

  // What the engine counted for one source (see UNDECIDED_CAUSES).
  sourceStats(src: PacketSource): Record<string, number> {
    const s = this.sourceState(src);
    return { undecidedCoreRefused: s.undecidedCoreRefused, undecidedCoreError: s.undecidedCoreError, readErrors: s.readErrors };
  }

  // One batch of `n` packets: classified, logged, shown to the canary, and
  // verdicted, whatever of that fails.
  private decide(src: PacketSource, n: number): void {
    const now = this.clock();
    let cause: UndecidedCause | null = null;
    try {
      const r = this.core.classify(n, now);
      if (r !== n) {
        cause = "core_refused";
        this.reportError(LOG_CORE, "core refused a batch; its packets are dropped", { source: src.name, count: n, status: -r });
      }
    } catch (e) {
      cause = "core_error";
      this.stats.traps++;
      const trap = (e as { trap?: unknown } | null)?.trap;
      this.reportError(LOG_CORE, "the core trapped; the batch's packets are dropped", {
        source: src.name, engine: this.core.engine, count: n, error: errText(e), ...(trap ? { trap } : {}), traps: this.stats.traps,
      });
    }
    if (cause) {
      this.dropAll(n);
      this.sourceState(src)[UNDECIDED_KEY[cause] as "undecidedCoreRefused" | "undecidedCoreError"] += n;
    } else {
      try {
        this.logRuleDecisions(src, n);
      } catch (e) {
        this.stats.logErrors++;
        this.reportError(LOG_LOGGING, "logging a batch failed; its verdicts stand", { source: src.name, error: errText(e) });
      }
      const shadow = this.shadow;
      if (shadow) {
        try {
          shadow.observe(n, now);
        } catch (e) {
          this.stats.shadowErrors++;
          if (this.shadow === shadow) this.shadow = null;
          this.reportError(LOG_SHADOW, "the candidate table failed and was discarded; live verdicts are unchanged", { path: shadow.path, error: errText(e) });
        }
      }
    }
    try {
      // A batch dropped whole has no offload verdicts (dropAll cleared them).
      src.verdict(this.core, n, cause ? undefined : this.offload?.marks(n));
    } catch (e) {
      this.stats.verdictErrors++;
      this.reportError(LOG_VERDICT, "sending verdicts failed; the source drops what it could not send", { source: src.name, count: n, error: errText(e) });
    }
    this.stats.batches++;
    this.stats.packets += n;
  }

  // Every packet of the batch: DROP, no reason, no rule.
  private dropAll(n: number): void {
    const { u8, view, verdictsPtr } = this.core;
    for (let i = 0; i < n; i++) {
      const v = verdictsPtr + i * ABI.VERDICT_SIZE;
      u8[v + ABI.V_VERDICT] = ABI.VERDICT_DROP;
      u8[v + ABI.V_FLAGS] = 0;
      view.setUint16(v + ABI.V_REASON, 0, true);
      view.setUint32(v + ABI.V_RULE, ABI.RULE_NONE, true);
    }
  }

  private readError(src: PacketSource, e: unknown): void {
    const s = this.sourceState(src);
    s.readErrors++;
    s.inARow++;
    this.stats.readErrors++;
    const stopped = (e as { pollStopped?: boolean } | null)?.pollStopped === true;
    const fatal = stopped || s.inARow >= READ_ERROR_LIMIT;
    this.reportError(fatal ? null : LOG_READ, fatal ? "reading a queue failed for good; exiting so that the service is restarted" : "reading a queue failed; reading goes on",
      { source: src.name, error: errText(e), code: (e as { code?: string } | null)?.code, inARow: s.inARow });
    if (fatal) {
      this.stopping = true;
      this.onFatal(src, e);
    }
  }

  private sourceState(src: PacketSource): SourceState {
    let s = this.perSource.get(src);
    if (!s) this.perSource.set(src, (s = { undecidedCoreRefused: 0, undecidedCoreError: 0, readErrors: 0, inARow: 0 }));
    return s;
  }

  // An error log line, rate-limited per kind (key null: always), that
  // never throws into the packet loop.
  private reportError(key: number | null, msg: string, fields: Record<string, unknown>): void {
    try {
      if (key !== null) {
        const take = this.limiter.take(key, Date.now());
        if (!take.ok) return;
        if (take.suppressed) fields = { ...fields, suppressed: take.suppressed };
      }
      this.log.log("error", msg, fields);
    } catch { /* a logger that fails must not stop verdicts */ }
  }

  // The packets of the batch that a rule with `log: true` decided (accepted
  // or dropped), rate-limited per rule.
  private logRuleDecisions(src: PacketSource, n: number): void {
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
