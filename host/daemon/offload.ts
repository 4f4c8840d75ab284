// The daemon's side of offload (the core's is assembly/conntrack/offload.ts,
// the kernel rules' host/kernel/offload.ts):
//  - marks: the verdicts of a batch that carry VF_OFFLOAD get the offload
//    mark of this generation and the flow's ctx; the addon sends them as
//    NF_REPEAT with that mark, and the kernel rules save it as the connmark;
//  - following the kernel: destroy events of marked conntrack entries end
//    the core's entries at once; a poll of the marked entries (a kernel-side
//    filtered dump, every POLL_MS) renews the leases of those the kernel
//    still carries, ends those the kernel is closing (FIN or RST seen: the
//    kernel's state is past ESTABLISHED), counts their bytes, and removes a
//    marked entry the core does not track (fail closed: nothing passes that
//    the core has not decided);
//  - revocation: the next generation into the offload chain (one commit per
//    family), after a re-check took an offloaded flow back, or on demand;
//  - start: the marked entries an earlier daemon left are adopted (decided
//    again by the live table; kept, offloaded or inspected, when allowed,
//    removed when not) or ended (removed), per the board's on_start;
//  - an HA pair (host/daemon/ha.ts): while standing by (backup) untracked
//    marked entries are left alone; the transition to master adopts them.
import * as ABI from "../core/abi.js";
import { type Core, type FlowTuple } from "../core/core.js";
import { type Conntrack, type CtEntry } from "../native/ct.js";
import * as OFF from "../kernel/offload.js";
import { type OffloadStart } from "../kernel/board.js";
import { type Logger } from "./log.js";

export const POLL_MS = 1000;
// The lease (s) an offloaded flow lives in the core without news from the
// kernel: many polls, so a slow poll does not end a flow the kernel carries.
export const LEASE_S = 30;
// Kernel TCP states of a closing flow: the core's entry may end.
const CLOSING = new Set(["FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"]);
const ANY_OFFLOAD = { mark: OFF.OFFLOAD_BIT, mask: OFF.OFFLOAD_BIT };

// What an adoption of the kernel's marked entries did (TCP entries only).
export interface AdoptCounts { found: number; adopted: number; known: number; refused: number }

export interface OffloadOptions {
  onStart: OffloadStart;
  conntrack: Conntrack; // opened with events
  clock?: () => bigint; // batch time (ns), as the engine's
  pollMs?: number; //     0: no timer (tests call poll())
  netns?: string; //      where the kernel rules are (default: this namespace)
}

export interface OffloadStats {
  generation: number;
  backend: "nft" | "iptables";
  revocations: number;
  lastRevocation: string | null;
  lastRevocationMs: number | null;
  adopted: number; //       at start: flows kept (offloaded or inspected)
  adoptRefused: number; //  at start: flows the live table refused, removed
  endedAtStart: number; //  at start (on_start: end): marked flows removed
  removedUntracked: number; // marked kernel entries the core did not track, removed
  leftReplicated: number; //   ... left alone while standing by (a backup: they are the master's), per poll
  destroyEvents: number;
  polls: number;
  pollErrors: number;
  bytes: number; //         bytes the kernel carried for offloaded flows (live + ended; nf_conntrack_acct)
  packets: number;
}

export class Offload {
  private gen = 0;
  private readonly backend: "nft" | "iptables";
  private readonly marksBuf = new Uint32Array(ABI.MAX_BATCH);
  private readonly ct: Conntrack;
  private readonly clock: () => bigint;
  private timer: NodeJS.Timeout | null = null;
  // The backup of an HA pair (host/daemon/ha.ts): marked kernel entries the
  // core does not track are the master's (replicated), left alone.
  standby = false;
  private liveBytes = 0;
  private livePackets = 0;
  private endedBytes = 0;
  private endedPackets = 0;
  readonly totals = {
    revocations: 0, lastRevocation: null as string | null, lastRevocationMs: null as number | null,
    adopted: 0, adoptRefused: 0, endedAtStart: 0, removedUntracked: 0, leftReplicated: 0, destroyEvents: 0, polls: 0, pollErrors: 0,
  };

  // Throws a one-line Error when the kernel rules have no offload chain.
  constructor(private readonly core: Core, private readonly log: Logger, private readonly o: OffloadOptions) {
    const found = OFF.readGeneration(o.netns);
    if (found === null) {
      throw new Error("offload is on, but the kernel rules have no offload chain: load them with `portcullis rules apply --board BOARD` (offload: { enabled: true })");
    }
    this.backend = found.backend;
    this.gen = found.gen;
    this.ct = o.conntrack;
    this.clock = o.clock ?? (() => process.hrtime.bigint());
  }

  get generation(): number { return this.gen; }

  // After the first table is live: the flows an earlier daemon offloaded,
  // then the core's offload on, events and the poll.
  start(): void {
    const now = this.clock();
    this.core.setOffload(true, LEASE_S);
    const left = this.ct.dump(ANY_OFFLOAD);
    if (this.o.onStart === "end") {
      this.totals.endedAtStart = this.ct.removeMarked(ANY_OFFLOAD).removed;
      if (left.length) this.revoke("start: on_start end");
    } else {
      const a = this.adoptEntries(left, now);
      this.totals.adopted += a.adopted + a.known;
      this.totals.adoptRefused += a.refused;
    }
    this.log.log("info", "offload on", {
      backend: this.backend, generation: this.gen, onStart: this.o.onStart, found: left.length,
      adopted: this.totals.adopted, refused: this.totals.adoptRefused, ended: this.totals.endedAtStart,
    });
    // Lost events (the socket overflowed): the next poll settles what they said.
    this.ct.onDestroy(ANY_OFFLOAD, (ended, overflowed) => { this.destroyed(ended); if (overflowed) this.poll(); });
    const ms = this.o.pollMs ?? POLL_MS;
    if (ms > 0) {
      this.timer = setInterval(() => this.poll(), ms);
      this.timer.unref();
    }
  }

  // Decides the marked entries again by the live table: kept (re-marked to
  // this generation when offloaded, unmarked when inspected) or removed.
  // An entry the core already tracks keeps its state; one of a foreign
  // generation goes back to the queue (unmarked), which decides it again.
  private adoptEntries(entries: CtEntry[], now: bigint): AdoptCounts {
    const n: AdoptCounts = { found: 0, adopted: 0, known: 0, refused: 0 };
    for (const e of entries) {
      if (e.proto !== 6) continue; // only TCP flows are offloaded
      n.found++;
      const r = this.core.offloadAdopt(e, OFF.markCtx(e.mark), now);
      if (r === ABI.ADOPT_REFUSED) {
        try { this.ct.remove(e); } catch { /* ended meanwhile */ }
        n.refused++;
      } else if (r === ABI.ADOPT_KNOWN) {
        n.known++;
        if (OFF.markGeneration(e.mark) !== this.gen) this.setMark(e, 0);
      } else {
        n.adopted++;
        // Carried on under this generation, or back to the queue.
        if (r === ABI.ADOPT_OFFLOADED && OFF.markGeneration(e.mark) !== this.gen) this.setMark(e, OFF.offloadMark(this.gen, OFF.markCtx(e.mark)));
        if (r === ABI.ADOPT_INSPECTED) this.setMark(e, 0);
      }
    }
    return n;
  }

  // The HA pair's transition to master (host/daemon/ha.ts): the kernel's
  // marked entries, the other appliance's replicated by conntrackd and
  // committed by the hook, adopted as at a start with on_start: adopt
  // (whatever on_start says: these flows were never this daemon's). Ends
  // the standby. One line in the log.
  adoptMarked(why: string): AdoptCounts {
    this.standby = false;
    let entries: CtEntry[];
    try {
      entries = this.ct.dump(ANY_OFFLOAD);
    } catch (e) {
      this.totals.pollErrors++;
      this.log.log("error", "reading the kernel's conntrack table failed; nothing adopted", { why, error: (e as Error).message });
      return { found: 0, adopted: 0, known: 0, refused: 0 };
    }
    const n = this.adoptEntries(entries, this.clock());
    this.log.log("info", "offloaded flows adopted", { why, generation: this.gen, ...n });
    return n;
  }

  private setMark(t: FlowTuple, mark: number): void {
    try { this.ct.setMark(t, mark); } catch { /* ended meanwhile */ }
  }

  // The marks of the batch's `n` verdicts, or undefined when none offloads.
  marks(n: number): Uint32Array | undefined {
    const { u8, verdictsPtr } = this.core;
    let any = false;
    for (let i = 0; i < n; i++) {
      const v = verdictsPtr + i * ABI.VERDICT_SIZE;
      const f = u8[v + ABI.V_FLAGS]!;
      if ((f & ABI.VF_OFFLOAD) !== 0 && u8[v + ABI.V_VERDICT] === ABI.VERDICT_ACCEPT) {
        this.marksBuf[i] = OFF.offloadMark(this.gen, f & ABI.VF_CTX_MASK);
        any = true;
      } else this.marksBuf[i] = 0;
    }
    return any ? this.marksBuf : undefined;
  }

  private destroyed(ended: CtEntry[]): void {
    const now = this.clock();
    for (const e of ended) {
      if (e.proto !== 6) continue;
      this.totals.destroyEvents++;
      this.core.offloadEnd(e, now);
      this.endedBytes += e.bytes[0] + e.bytes[1];
      this.endedPackets += e.packets[0] + e.packets[1];
    }
  }

  // One look at the kernel's marked entries (see the top of the file).
  poll(): void {
    this.totals.polls++;
    let entries: CtEntry[];
    try {
      entries = this.ct.dump(ANY_OFFLOAD);
    } catch (e) {
      this.totals.pollErrors++;
      this.log.log("error", "reading the kernel's conntrack table failed; offloaded flows keep their leases", { error: (e as Error).message });
      return;
    }
    const now = this.clock();
    let bytes = 0, packets = 0;
    for (const e of entries) {
      // Only TCP flows are offloaded; another marked entry is not ours to
      // follow (the addon cannot name an ICMP entry by its tuple).
      if (e.proto !== 6) continue;
      const current = OFF.markGeneration(e.mark) === this.gen;
      if (current && e.tcpState !== null && CLOSING.has(e.tcpState)) {
        this.core.offloadEnd(e, now);
        continue;
      }
      const r = this.core.offloadTouch(e, now);
      if (r === ABI.TOUCH_NONE) {
        // Not the core's (revoked and ended, or its lease ran out): the
        // kernel must not carry it. A backup's are the master's.
        if (this.standby) { this.totals.leftReplicated++; continue; }
        try { if (this.ct.remove(e)) this.totals.removedUntracked++; } catch { /* ended meanwhile */ }
        continue;
      }
      if (r === ABI.TOUCH_INSPECTED && current) this.setMark(e, 0);
      bytes += e.bytes[0] + e.bytes[1];
      packets += e.packets[0] + e.packets[1];
    }
    this.liveBytes = bytes;
    this.livePackets = packets;
  }

  // Every offloaded flow back to the queue, decided again by the core.
  // Returns the milliseconds the kernel rules took.
  revoke(why: string): number {
    const next = (this.gen + 1) % OFF.GENERATIONS;
    const ms = OFF.setGeneration(this.backend, next, this.o.netns);
    this.gen = next;
    this.totals.revocations++;
    this.totals.lastRevocation = new Date().toISOString();
    this.totals.lastRevocationMs = ms;
    this.log.log("info", "offloaded flows revoked: the kernel queues them again", { why, generation: next, ms: Math.round(ms * 100) / 100 });
    return ms;
  }

  stats(): OffloadStats & { live: number; total: number; ended: number; revoked: number } {
    const c = this.core.counters().offload;
    return {
      generation: this.gen, backend: this.backend, ...this.totals,
      bytes: this.liveBytes + this.endedBytes, packets: this.livePackets + this.endedPackets,
      live: Number(c.live), total: Number(c.total), ended: Number(c.ended), revoked: Number(c.revoked),
    };
  }

  // The kernel keeps carrying what it carries (like its own stateful
  // filter); new flows fail closed once the queue has no daemon.
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try { this.ct.onDestroy(null, null); } catch { /* closed */ }
    try { this.ct.close(); } catch { /* closed */ }
  }
}
