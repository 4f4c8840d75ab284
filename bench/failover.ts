// The failover gap of a pair (issue 17): the pair topology of
// host/topology/pair.ts (two appliances, keepalived, the daemon with the
// default policy and pickup on in each), 50 long-lived streams (a 64-byte
// message every 100 ms, echoed) and new connections through the virtual
// gateway; the master dies (its links down, kill -9 of its daemon and
// keepalived) and the backup takes over. Per failover: how long the virtual
// addresses took to move (from the cut until the backup holds both, polled
// every 10 ms) and each stream's largest wait for an echo. The dead node
// comes back as the backup (preemption off), so the next failover kills the
// other one. VRRPv2 with 1 s adverts and VRRPv3 with 100 ms adverts, each
// on its own pair; namespaces pcb-ha<pid>-*, those of dead runs cleared first.
import { Pair, type Vrrp } from "../host/topology/pair.js";
import { type PairNode } from "../host/topology/plan.js";
import { clearStaleRuns } from "../host/topology/topology.js";
import { barChart, type Section } from "./report.js";
import { percentile } from "./stats.js";

export const FAILOVER_VRRP: readonly Vrrp[] = [{ version: 2, advertMs: 1000 }, { version: 3, advertMs: 100 }];
// What the issue measured with a prototype (plain kernel filters): address moved, stream gap (ms).
export const PROTOTYPE: Record<string, { moveMs: number; gapMs: number }> = { "2/1000": { moveMs: 2900, gapMs: 3200 }, "3/100": { moveMs: 310, gapMs: 740 } };

export interface FailoverRun { dead: PairNode; moveMs: number; gapsMs: number[]; lost: number; newFail: number; newOk: number }
export interface FailoverFigures { vrrp: Vrrp; streams: number; runs: FailoverRun[] }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function benchFailover(vrrp: Vrrp, failovers: number, log: (l: string) => void = (l) => console.error(l)): Promise<FailoverFigures> {
  await clearStaleRuns("pcb-ha");
  const p = await Pair.up({ prefix: `pcb-ha${process.pid}-`, vrrp, preempt: false, pickup: true });
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: tearing the pair down`);
    void p.down().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const runs: FailoverRun[] = [];
  try {
    for (let i = 0; i < failovers; i++) {
      const dead = p.master();
      if (dead === null) throw new Error("no single master before a failover");
      const load = await p.startLoad({ streams: 50, paceMs: 100, newMs: 100 });
      await sleep(1000);
      const at = await p.fail(dead);
      const moveMs = await p.waitForVirtual(p.other(dead), 30_000, at);
      // Long enough for every stream's retransmission after the move.
      await sleep(Math.max(2500, 2 * moveMs));
      const r = await load.stop();
      const lost = r.streams.filter((s) => s.error !== "" || s.echoed !== s.sent || s.lastEchoMs < r.stoppedMs - 1000).length;
      runs.push({ dead, moveMs, gapsMs: r.streams.map((s) => s.maxGapMs), lost, newFail: r.newFail, newOk: r.newOk });
      log(`failover VRRPv${vrrp.version} ${vrrp.advertMs / 1000} s ${i + 1}/${failovers}: moved in ${moveMs} ms, largest gap ${Math.max(...r.streams.map((s) => s.maxGapMs))} ms, ${lost} streams lost`);
      await p.revive(dead);
      await sleep(5 * vrrp.advertMs);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await p.down();
  }
  return { vrrp, streams: 50, runs };
}

const ms = (x: number): string => (x / 1000).toFixed(2);
const label = (v: Vrrp): string => `VRRPv${v.version}, ${ms(v.advertMs)} s adverts`;

// The target lines: no stream lost in any failover; the gap beside the
// prototype's (which had plain kernel filters in the appliances).
export function failoverTargets(figs: FailoverFigures[]): string[] {
  return figs.map((f) => {
    const lost = f.runs.reduce((a, r) => a + r.lost, 0);
    const gaps = f.runs.flatMap((r) => r.gapsMs);
    const proto = PROTOTYPE[`${f.vrrp.version}/${f.vrrp.advertMs}`];
    return `failover, ${label(f.vrrp)}: ${lost} of ${f.runs.length * f.streams} streams lost in ${f.runs.length} failovers (none lost: ${lost === 0 ? "met" : "MISSED"}); ` +
      `gap p50 ${ms(percentile(gaps, 50))} s, p99 ${ms(percentile(gaps, 99))} s${proto ? ` (the prototype's gap: ${ms(proto.gapMs)} s)` : ""}`;
  });
}

export function failoverSection(figs: FailoverFigures[]): Section {
  const rows = figs.map((f) => {
    const moves = f.runs.map((r) => r.moveMs);
    const gaps = f.runs.flatMap((r) => r.gapsMs);
    const largest = f.runs.map((r) => Math.max(...r.gapsMs));
    const proto = PROTOTYPE[`${f.vrrp.version}/${f.vrrp.advertMs}`];
    return {
      f, moves, gaps, largest,
      cells: [label(f.vrrp), String(f.runs.length),
        ms(percentile(moves, 50)), ms(percentile(moves, 99)), ms(percentile(gaps, 50)), ms(percentile(gaps, 99)), ms(Math.max(...largest)),
        `${f.runs.reduce((a, r) => a + r.lost, 0)} of ${f.runs.length * f.streams}`,
        proto ? `${ms(proto.moveMs)} / ${ms(proto.gapMs)}` : "-"],
    };
  });
  return {
    id: "failover",
    title: "Failover of a pair: how long the virtual addresses take to move, and the streams' gap",
    notes: [
      "Two appliances on shared segments (host/topology/pair.ts, gateway mode; Linux bridges in a namespace of their own), keepalived in each, the daemon with the default policy and pickup on in both (a hot standby).",
      "50 long-lived TCP streams from inet to the listener's 443 through the virtual gateway, a 64-byte message every 100 ms on each, echoed; a new connection to 80 every 100 ms.",
      "Each failover: the master's ports on both segments down, then kill -9 of its daemon and keepalived; it comes back as the backup (preemption off), so failovers alternate between the appliances.",
      "Moved: from the cut until the backup holds both virtual addresses (polled every 10 ms). Gap: each stream's largest wait for an echo (50 per failover); p50/p99 nearest rank, in seconds. Prototype: the issue's figures (plain kernel filters), moved / gap.",
    ],
    table: { head: ["VRRP", "failovers", "moved p50 s", "moved p99 s", "gap p50 s", "gap p99 s", "largest gap s", "streams lost", "prototype moved / gap s"], rows: rows.map((r) => r.cells) },
    lines: [],
    chart: barChart({
      title: "Failover: address move and stream gap (s)", yTitle: "seconds", x: "VRRP", series: "figure", y: "v",
      values: rows.flatMap((r) => [
        { VRRP: r.cells[0]!, figure: "address moved", v: percentile(r.moves, 50) / 1000, vMin: Math.min(...r.moves) / 1000, vMax: Math.max(...r.moves) / 1000 },
        { VRRP: r.cells[0]!, figure: "stream gap", v: percentile(r.gaps, 50) / 1000, vMin: Math.min(...r.gaps) / 1000, vMax: Math.max(...r.gaps) / 1000 },
      ]),
    }),
    data: figs,
  };
}
