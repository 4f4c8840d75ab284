// Reload latency through the daemon's own transaction (Daemon.reload with the
// real release Core): compile (read + compile the policy, or parse the
// ClassBench filters, + build the table), stage (copy into the core's slot
// and validate), commit (swap the ticket), total (as the daemon records it,
// plus the ClassBench parse/build done outside it). p50 and p99 are
// nearest-rank over `n` reloads after warm-up; with n = 50 (or 20) the p99
// is the slowest or second slowest reload.
// A last section times `reload --recheck` with many tracked flows.
// benchReloadUnderTraffic: a policy with a 1,000,000-prefix set reloaded
// while batches flow, compiled on the packet loop (as before the compile
// worker) and in the worker, alternately: the gaps between batches show how
// long the packet loop stood still.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { compileJob } from "../host/daemon/compiler.js";
import { Daemon, type ReloadRecord } from "../host/daemon/daemon.js";
import { type PacketSource } from "../host/daemon/engine.js";
import { JsonLogger } from "../host/daemon/log.js";
import { ipv4, PROTO_TCP, TCP_ACK, TCP_SYN, tcp } from "../host/packets/build.js";
import { readFilters } from "../host/rules/classbench.js";
import { buildTable } from "../host/rules/build.js";
import { barChart, formatTable, type Section } from "./report.js";
import { figure, type Figure, fmt, nowMs, percentile } from "./stats.js";

export interface Phase { p50: number; p99: number }
export interface ReloadFigures {
  what: string; rules: number; tableBytes: number; n: number;
  compile: Phase; stage: Phase; commit: Phase; total: Phase; recheck?: Phase; flows?: number; ended?: number;
}

const phase = (xs: number[]): Phase => ({ p50: percentile(xs, 50), p99: percentile(xs, 99) });
const quiet = new JsonLogger(() => {});

function figures(what: string, recs: Array<{ rec: ReloadRecord; outside: number }>, tableBytes: number): ReloadFigures {
  for (const { rec } of recs) if (!rec.ok) throw new Error(`${what}: reload failed: ${rec.error}`);
  const f: ReloadFigures = {
    what, rules: Math.max(...recs.map((r) => r.rec.rules ?? 0)), tableBytes, n: recs.length,
    compile: phase(recs.map((r) => r.rec.ms.compile + r.outside)),
    stage: phase(recs.map((r) => r.rec.ms.stage)),
    commit: phase(recs.map((r) => r.rec.ms.commit)),
    total: phase(recs.map((r) => r.rec.ms.total + r.outside)),
  };
  const rc = recs.filter((r) => r.rec.recheck);
  if (rc.length) {
    f.recheck = phase(rc.map((r) => r.rec.recheck!.ms));
    f.ended = rc.reduce((a, r) => a + r.rec.recheck!.ended, 0);
  }
  return f;
}

// The default policy, alternating two versions (port 80 on and off) so that
// every reload really changes the table.
export async function benchReloadPolicy(policy: string, n: number): Promise<ReloadFigures> {
  const dir = mkdtempSync(join(tmpdir(), "pc-bench-reload-"));
  const text = readFileSync(policy, "utf8");
  const a = join(dir, "a.yaml"), b = join(dir, "b.yaml");
  writeFileSync(a, text);
  writeFileSync(b, text.replace("external_http_80: true", "external_http_80: false"));
  const d = new Daemon({ policy: a, mode: "host" }, quiet);
  try {
    for (let i = 0; i < 5; i++) await d.reload(i % 2 ? b : a);
    const recs: Array<{ rec: ReloadRecord; outside: number }> = [];
    for (let i = 0; i < n; i++) recs.push({ rec: await d.reload(i % 2 ? b : a), outside: 0 });
    return figures("default policy", recs, tableSize(d));
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// The live table's size (the daemon keeps it private; the bench only reads it).
const tableSize = (d: Daemon): number => (d as unknown as { table: { bytes: Uint8Array } | null }).table?.bytes.length ?? 0;

// A ClassBench filter set: parse + build (the "compile"), then the daemon's
// stage and commit of the prepared table.
export async function benchReloadClassBench(rulesFile: string, n: number): Promise<ReloadFigures> {
  const d = new Daemon({ policy: rulesFile, mode: "host" }, quiet);
  try {
    const once = async (): Promise<{ rec: ReloadRecord; outside: number }> => {
      const t0 = nowMs();
      const bytes = buildTable(readFilters(rulesFile)).bytes;
      const outside = nowMs() - t0;
      return { rec: await d.reload(rulesFile, bytes), outside };
    };
    for (let i = 0; i < 2; i++) await once();
    const recs: Array<{ rec: ReloadRecord; outside: number }> = [];
    for (let i = 0; i < n; i++) recs.push(await once());
    const name = rulesFile.split("/").pop()!.replace(/\.rules$/, "");
    return figures(name, recs, tableSize(d));
  } finally {
    await d.stop();
  }
}

// reload --recheck of the default policy with `flows` established TCP flows
// to port 443 (both versions allow them: every flow is re-decided, none ends).
export async function benchRecheck(policy: string, flows: number, n: number): Promise<ReloadFigures> {
  const dir = mkdtempSync(join(tmpdir(), "pc-bench-recheck-"));
  const text = readFileSync(policy, "utf8");
  const a = join(dir, "a.yaml"), b = join(dir, "b.yaml");
  writeFileSync(a, text);
  writeFileSync(b, text.replace("external_http_80: true", "external_http_80: false"));
  const d = new Daemon({ policy: a, mode: "host", core: { maxFlows: Math.max(65536, flows * 2) } }, quiet);
  try {
    if (!(await d.reload()).ok) throw new Error("default policy did not load");
    const IN = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
    const OUT = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };
    const batch = new Batch(d.core);
    const client = (i: number): string => `192.0.2.${1 + (i % 250)}`;
    const cport = (i: number): number => 1024 + Math.floor(i / 250);
    const steps: Array<(i: number) => [Uint8Array, typeof IN]> = [
      (i) => [ipv4({ src: client(i), dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: cport(i), dport: 443, flags: TCP_SYN, seq: 100 }) }), IN],
      (i) => [ipv4({ src: "203.0.113.1", dst: client(i), proto: PROTO_TCP, payload: tcp({ sport: 443, dport: cport(i), flags: TCP_SYN | TCP_ACK, seq: 900, ack: 101 }) }), OUT],
      (i) => [ipv4({ src: client(i), dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: cport(i), dport: 443, flags: TCP_ACK, seq: 101, ack: 901 }) }), IN],
    ];
    for (const step of steps) {
      for (let i = 0; i < flows; i += 256) {
        batch.clear();
        for (let k = i; k < Math.min(flows, i + 256); k++) { const [p, m] = step(k); batch.add(p, m); }
        batch.run(process.hrtime.bigint());
      }
    }
    const live = Number(d.core.counters().flows.live);
    if (live !== flows) throw new Error(`expected ${flows} tracked flows, have ${live}`);
    const recs: Array<{ rec: ReloadRecord; outside: number }> = [];
    for (let i = 0; i < n; i++) recs.push({ rec: await d.reload(i % 2 ? a : b, undefined, { recheck: true }), outside: 0 });
    const f = figures(`default policy + recheck of ${flows} flows`, recs, tableSize(d));
    f.flows = flows;
    return f;
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// The reload part of the report (its table as lines, as the report has
// always carried it).
export function reloadSection(reloads: ReloadFigures[]): Section {
  const ms = (p: Phase): string => `${p.p50.toFixed(2)} / ${p.p99.toFixed(2)}`;
  const head = ["table", "rules", "KiB", "n", "compile", "stage", "commit", "recheck", "total"];
  const rows = reloads.map((r) => [
    r.what, String(r.rules), (r.tableBytes / 1024).toFixed(0), String(r.n),
    ms(r.compile), ms(r.stage), ms(r.commit), r.recheck ? ms(r.recheck) : "-", ms(r.total),
  ]);
  return {
    id: "reload", title: "Reload latency: the daemon's transaction (Daemon.reload, release core), ms p50 / p99 (nearest rank; n reloads after warm-up)",
    notes: ["compile: read + compile the policy (ClassBench: parse the filters) + build the table; stage: copy + validate; commit: swap."],
    table: null, lines: formatTable({ head, rows }),
    chart: barChart({
      title: "Reload total, ms (bar p50, rule p50-p99)", x: "table", series: "phase", y: "ms", yTitle: "ms",
      values: reloads.map((r) => ({ table: r.what, phase: "total", ms: r.total.p50, msMin: r.total.p50, msMax: r.total.p99 })),
    }),
    data: reloads,
  };
}

export interface TrafficFigures {
  how: "on the packet loop" | "in the worker";
  prefixes: number; n: number;
  reloadMs: Figure; //   the reload, asked to committed
  batches: Figure; //    batches of 256 run meanwhile
  gapP99: Figure; //     between two batches during the reload, ms
  gapMax: Figure;
}

// 256 SYNs to 443 from 192.0.2.0/24 per wakeup (the set drops them); verdicts go nowhere.
class SynSource implements PacketSource {
  readonly name = "bench";
  private readonly pkts = Array.from({ length: 256 }, (_, i) =>
    ipv4({ src: `192.0.2.${1 + (i % 250)}`, dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 1024 + i, dport: 443, flags: TCP_SYN }) }));
  private readonly meta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
  private turn = false; // one batch per wakeup: Engine.drain reads until a short batch
  recv(core: Batch["core"], max: number): number {
    this.turn = !this.turn;
    if (!this.turn) return 0;
    const b = new Batch(core);
    for (let i = 0; i < Math.min(max, this.pkts.length); i++) b.add(this.pkts[i]!, this.meta);
    return b.count;
  }
  verdict(): void {}
  onReadable(): void {}
  stats(): Record<string, number> { return {}; }
  close(): void {}
}

export async function benchReloadUnderTraffic(policy: string, prefixes: number, n: number): Promise<TrafficFigures[]> {
  const dir = mkdtempSync(join(tmpdir(), "pc-bench-traffic-"));
  const lines: string[] = [];
  for (let i = 0; i < prefixes; i++) { const a = 0x0a000000 + i * 2; lines.push(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/32`); }
  lines.push("192.0.2.0/24");
  writeFileSync(join(dir, "big.txt"), `${lines.join("\n")}\n`);
  const text = readFileSync(policy, "utf8").replace("rules:\n", "sets:\n  blocklist: { file: big.txt }\nrules:\n" +
    "  - name: block\n    action: deny\n    interface: external\n    direction: in\n    src: blocklist\n    dst: any\n");
  const a = join(dir, "a.yaml"), b = join(dir, "b.yaml");
  writeFileSync(a, text);
  writeFileSync(b, text.replace("external_http_80: true", "external_http_80: false"));
  const d = new Daemon({ policy: a, mode: "host" }, quiet);
  const src = new SynSource();
  const runs: Record<TrafficFigures["how"], Array<{ ms: number; batches: number; p99: number; max: number }>> = { "on the packet loop": [], "in the worker": [] };
  try {
    if (!(await d.reload(a)).ok) throw new Error("the 1M-prefix policy did not load");
    // One reload with batches flowing as fast as the loop turns; gaps between their ends.
    const once = async (how: TrafficFigures["how"], path: string): Promise<void> => {
      const gaps: number[] = [];
      let done = false, last = nowMs();
      const loop = new Promise<void>((resolve) => {
        const tick = (): void => {
          d.engine.drain(src);
          const t = nowMs();
          gaps.push(t - last);
          last = t;
          if (done) resolve(); else setImmediate(tick);
        };
        setImmediate(tick);
      });
      await new Promise<void>((r) => setTimeout(r, 50)); // the loop is running
      gaps.length = 0;
      const t0 = nowMs();
      const rec = how === "in the worker" ? await d.reload(path)
        : await new Promise<ReloadRecord>((resolve, reject) => setImmediate(() => {
          // What reload did before the worker: compile on the loop, then stage and commit.
          const c = compileJob({ path, mode: "host", switches: {} });
          if (c.ok) resolve(d.reload(path, c.bytes)); else reject(new Error(c.error));
        }));
      const ms = nowMs() - t0;
      done = true;
      await loop;
      if (!rec.ok) throw new Error(`reload failed: ${rec.error}`);
      runs[how].push({ ms, batches: gaps.length, p99: percentile(gaps, 99), max: Math.max(...gaps) });
    };
    for (let i = 0; i < n; i++) {
      await once("on the packet loop", i % 2 ? a : b);
      await once("in the worker", i % 2 ? b : a);
    }
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return (Object.keys(runs) as Array<TrafficFigures["how"]>).map((how) => ({
    how, prefixes, n,
    reloadMs: figure(runs[how].map((r) => r.ms)), batches: figure(runs[how].map((r) => r.batches)),
    gapP99: figure(runs[how].map((r) => r.p99)), gapMax: figure(runs[how].map((r) => r.max)),
  }));
}

// The reload-traffic part of the report.
export function reloadTrafficSection(traffic: TrafficFigures[]): Section {
  return {
    id: "reload-traffic",
    title: "Batches during a reload of a 1,000,000-prefix set policy: compiled on the packet loop vs in the compile worker",
    notes: ["Batches of 256 run back to back on the event loop while the reload runs; a gap is the time between the ends of two batches " +
      "(ms, median of n reloads with min-max; the two ways alternate in the same run). On the loop, the gap max is the whole compile."],
    table: {
      head: ["compile", "prefixes", "n", "reload ms", "batches meanwhile", "gap p99 ms", "gap max ms"],
      rows: traffic.map((r) => [r.how, String(r.prefixes), String(r.n), fmt(r.reloadMs, 0), fmt(r.batches, 0), fmt(r.gapP99, 2), fmt(r.gapMax, 1)]),
    },
    lines: [], chart: null, data: traffic,
  };
}
