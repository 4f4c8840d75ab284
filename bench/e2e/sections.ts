// The end-to-end figures as report sections (bench/report.ts's Section:
// table, notes, a bar chart, raw data) and the target lines of issue 8.
import { barChart, type Section } from "../report.js";
import { type Figure, figure, fmt } from "../stats.js";
import { type Kind } from "./contenders.js";
import { type BulkRun, type ConnRun, type RrRun, type UdpRun } from "./loads.js";
import { type RevokeRun } from "./revoke.js";

export interface Results {
  contenders: Array<{ id: string; kind: Kind; label: string }>;
  runs: Record<string, Array<{ udp: UdpRun; conn: ConnRun; bulk?: BulkRun; rr?: RrRun }>>;
  fw1Contenders: Array<{ id: string; kind: Kind; label: string }>;
  fw1: Record<string, UdpRun[]>;
  queues: Record<string, unknown>;
  revoke?: RevokeRun[];
}
export type Fw1Info = { total: number; kept: number; excluded: string[] } | { missing: string };
interface Setup { quick: boolean; reps: number; secs: number; rrCount: number }

type Row = { id: string; label: string; fig: Figure };

function figs(res: Results, pick: (s: Results["runs"][string][number]) => number | undefined): Row[] {
  return res.contenders.flatMap((c) => {
    const xs = res.runs[c.id]!.map(pick).filter((x): x is number => x !== undefined);
    return xs.length ? [{ id: c.id, label: c.label, fig: figure(xs) }] : [];
  });
}

const get = (rows: Row[], id: string): Figure | undefined => rows.find((r) => r.id === id)?.fig;
const pct = (a: Figure, b: Figure): number => (100 * a.median) / b.median;

// Contender `a` against `b` on each load they both ran: whether `a` did at
// least as well (higher or, for latencies, lower) and the figures as text.
type Load = [name: string, rows: Row[], digits: number, unit: string, higherIsBetter: boolean];
function versus(loads: Load[], a: string, b: string): Array<{ name: string; ok: boolean; text: string }> {
  return loads.flatMap(([name, rows, digits, unit, higher]) => {
    const x = get(rows, a), y = get(rows, b);
    if (!x || !y) return [];
    const ok = higher ? x.median >= y.median : x.median <= y.median;
    return [{ name, ok, text: `${name} ${fmt(x, digits)} vs ${fmt(y, digits)} ${unit} (${(x.median / y.median).toFixed(2)}x)` }];
  });
}

function chart(title: string, yTitle: string, groups: Array<{ load: string; rows: Row[] }>): Section["chart"] {
  return barChart({
    title, yTitle, x: "contender", series: "contender", y: "v", facet: groups.length > 1 ? "load" : undefined, columns: 2,
    values: groups.flatMap((g) => g.rows.map((r) => ({ load: g.load, contender: r.label, v: r.fig.median, vMin: r.fig.min, vMax: r.fig.max }))),
  });
}

// One target line: Portcullis (d or d-gso) against the C consumer with the
// same GSO flag and against the two kernel filters.
function targetLine(what: string, rows: Row[], gso: boolean, digits: number, unit: string, delivered?: (id: string) => number): string {
  const d = get(rows, gso ? "d-gso" : "d"), c = get(rows, gso ? "c-gso" : "c"), ipt = get(rows, "b-ipt"), nft = get(rows, "b-nft");
  if (!d || !c || !ipt || !nft) return `${what}, GSO ${gso ? "on" : "off"}: not measured`;
  const vs = (x: Figure, name: string, target: number): string => `${pct(d, x).toFixed(0)}% of ${name} ${fmt(x, digits)} (>= ${target}%: ${pct(d, x) >= target ? "met" : "MISSED"})`;
  const cd = delivered?.(gso ? "c-gso" : "c");
  const bound = cd !== undefined && cd >= 0.99
    ? ` [C accept-all delivered ${(100 * cd).toFixed(1)}% of what was sent: its figure is the generator's limit, not the queue's, so the first ratio overstates Portcullis]` : "";
  return `${what}, GSO ${gso ? "on" : "off"}: Portcullis ${fmt(d, digits)} ${unit}: ${vs(c, "C accept-all", 90)}; ${vs(ipt, "iptables-legacy", 50)}; ${vs(nft, "nftables", 50)}${bound}`;
}

export function buildSections(res: Results, fw1: Fw1Info, s: Setup): { sections: Section[]; targets: string[] } {
  const udp = figs(res, (r) => r.udp.kpps), conn = figs(res, (r) => r.conn.perSec), bulk = figs(res, (r) => r.bulk?.gbps);
  const p50 = figs(res, (r) => r.rr?.p50us), p99 = figs(res, (r) => r.rr?.p99us);
  const delivered = (id: string): number => {
    const rs = res.runs[id]!;
    return rs.reduce((a, r) => a + r.udp.delivered, 0) / rs.reduce((a, r) => a + r.udp.sent, 0);
  };
  const loss = (id: string): string => `${(100 * delivered(id)).toFixed(1)}%`;
  const failed = (id: string): number => res.runs[id]!.reduce((a, r) => a + r.conn.failed, 0);
  const runNote = `${s.reps} rounds, each visiting every contender in turn (a, b, c, d, a, b, c, d, ...); median (min-max) of the rounds; ${s.secs} s per load per contender.`;
  const topo = "Reference topology in gateway mode (host/topology): generator `inet` (203.0.113.50-53) -> filter `appliance` (ext0, int0; forwarding) -> sink `proxy` (203.0.113.1), veth pairs in network namespaces.";
  const policy = "Policy: the default policy (host/policy/default.yaml) plus one bench row allowing UDP to the listener's port 9000 (the default denies UDP); TCP uses its rows for 443 (connections, round trips) and 80 (bulk). (b) is generated from the same compiled policy: conntrack ESTABLISHED,RELATED accept, INVALID drop, the rules in order, default drop (bench/e2e/kernel-filter.ts).";
  const generatorBound = res.contenders.filter((c) => res.runs[c.id]!.every((r) => r.udp.delivered === r.udp.sent)).map((c) => c.id);
  const small: Section = {
    id: "e2e-small", title: "End to end, small packets: UDP 64-byte datagrams and new TCP connections",
    notes: [topo, policy, runNote,
      "UDP: four source addresses, sendmmsg as fast as the generator's core goes, for the whole run; kpps = what reaches the sink from its first datagram to its last. TCP: 32 connects in flight, each reset once established (no TIME_WAIT).",
      generatorBound.length ? `Every datagram sent arrived with ${generatorBound.join(", ")}: there the generator (one core of two), not the filter, was the limit.` : "No contender delivered every datagram sent.",
      "On two cores the generator and the kernel's forwarding share one core: a queue that keeps up makes the generator pay for queueing every datagram, while a queue that is full drops the excess cheaply and lets the generator send more, so a slower consumer can show a higher delivered rate than a faster one. UDP delivered (the share of datagrams sent that arrived) tells the two cases apart."],
    table: { head: ["contender", "UDP kpps", "UDP delivered", "TCP conn/s", "conn failed"], rows: res.contenders.map((c) => [c.label, fmt(get(udp, c.id)!, 1), loss(c.id), fmt(get(conn, c.id)!, 0), String(failed(c.id))]) },
    lines: [], chart: chart("End to end, small packets", "rate", [{ load: "UDP 64 B, kpps", rows: udp }, { load: "TCP new connections/s", rows: conn }]),
    data: { udp, conn, runs: res.runs },
  };
  const bulkSec: Section = {
    id: "e2e-bulk", title: "End to end, bulk TCP (one connection, 128 KiB writes), Gbit/s",
    notes: [runNote, "GSO on: the queue takes unsegmented GSO packets (NFQA_CFG_F_GSO); off: the kernel segments them before queueing."],
    table: { head: ["contender", "Gbit/s"], rows: bulk.map((r) => [r.label, fmt(r.fig, 2)]) }, lines: [],
    chart: chart("End to end, bulk TCP", "Gbit/s", [{ load: "bulk", rows: bulk }]), data: bulk,
  };
  const a50 = get(p50, "a"), a99 = get(p99, "a");
  const lat: Section = {
    id: "e2e-latency", title: `End to end, TCP round trips (64 bytes each way, ${s.rrCount} per run), µs`,
    notes: [runNote, "Added: the contender's median minus forwarding's (a), for p50 and p99. (c) is there to show what the queue path alone adds (two queue traversals per round trip: the request and the reply are both forwarded); Portcullis's own share is its figure minus (c)'s."],
    table: {
      head: ["contender", "p50 µs", "p99 µs", "added p50", "added p99"],
      rows: p50.map((r) => {
        const r99 = get(p99, r.id)!;
        return [r.label, fmt(r.fig, 1), fmt(r99, 1), a50 ? (r.fig.median - a50.median).toFixed(1) : "-", a99 ? (r99.median - a99.median).toFixed(1) : "-"];
      }),
    },
    lines: [], chart: chart("End to end, TCP round trips", "µs", [{ load: "p50", rows: p50 }, { load: "p99", rows: p99 }]), data: { p50, p99 },
  };
  const q1 = [get(udp, "d"), get(conn, "d")], q2 = [get(udp, "d-2q"), get(conn, "d-2q")];
  const queues: Section = {
    id: "e2e-queues", title: "Portcullis with 1 and 2 queues per side (GSO off)",
    notes: ["One daemon process binds every queue (one core, one state table); the kernel spreads flows over a side's queues by a hash of the addresses (four sources here)."],
    table: {
      head: ["load", "1 queue", "2 queues", "2 / 1"],
      rows: [["UDP kpps", 0, 1], ["TCP conn/s", 1, 0]].map(([name, i, dg]) => [String(name), fmt(q1[i as number]!, dg as number), fmt(q2[i as number]!, dg as number), `${(q2[i as number]!.median / q1[i as number]!.median).toFixed(2)}x`]),
    },
    lines: [], chart: null, data: { q1, q2 },
  };
  const fwRows: Row[] = res.fw1Contenders.map((c) => ({ id: c.id, label: c.label, fig: figure(res.fw1[c.id]!.map((r) => r.kpps)) }));
  const fw1Sec: Section = "missing" in fw1 ? {
    id: "e2e-fw1", title: "End to end with ClassBench fw1_10K", notes: [], table: null,
    lines: [`not measured: no ClassBench data at ${fw1.missing}`], chart: null, data: { missing: fw1.missing },
  } : {
    id: "e2e-fw1", title: `End to end with ClassBench fw1_10K: UDP 64-byte kpps (${fw1.kept} rules the flow traverses without matching)`,
    notes: [runNote,
      `fw1_10K has ${fw1.total} rules; the ${fw1.excluded.length} that can match the bench flow (UDP from 203.0.113.50-53 port 40000 to 203.0.113.1 port 9000) are left out (${fw1.excluded.join("; ")}), then one rule accepts the flow and the default denies. The same table is loaded into the kernel (linear iptables-legacy and nftables rules in FORWARD, stateless: every packet traverses them${s.quick ? "" : "; and the same after conntrack's ESTABLISHED,RELATED accept, which this one-way flow never reaches: conntrack calls a UDP flow ESTABLISHED only once a reply was seen, so every datagram stays NEW and still traverses the rules"}) and into Portcullis (compiled table; the flow's first packet is classified, the rest follow its state). That the kept rules match none of the flow is checked by a range test and by the release core's classifier (bench/e2e/fw1.ts).`],
    table: { head: ["contender", "UDP kpps", "delivered"], rows: res.fw1Contenders.map((c, i) => {
      const rs = res.fw1[c.id]!;
      return [c.label, fmt(fwRows[i]!.fig, 1), `${((100 * rs.reduce((x, r) => x + r.delivered, 0)) / rs.reduce((x, r) => x + r.sent, 0)).toFixed(1)}%`];
    }) },
    lines: [], chart: chart("fw1_10K, UDP 64 B", "kpps", [{ load: "fw1_10K", rows: fwRows }]), data: { rows: fwRows, runs: res.fw1, excluded: fw1.excluded },
  };
  const targets: string[] = [];
  for (const gso of [false, true]) {
    targets.push(targetLine("E2E UDP 64 B", udp, gso, 1, "kpps", delivered), targetLine("E2E TCP new connections", conn, gso, 0, "conn/s"), targetLine("E2E bulk TCP", bulk, gso, 2, "Gbit/s"));
  }
  // Issue 15, step 1: header-only copies (the default copy range) against whole packets, GSO on.
  // Against the faster of the two kernel filters.
  const hb = get(bulk, "d-gso"), wb = get(bulk, "d-whole-gso");
  const [kid, kb] = (["b-nft", "b-ipt"] as const).map((id) => [id, get(bulk, id)] as const)
    .filter(([, f]) => f).sort((x, y) => y[1]!.median - x[1]!.median)[0] ?? ["", undefined];
  if (hb && wb && kb) {
    const p = pct(hb, kb);
    targets.push(`E2E bulk TCP with the header-only copy range, GSO on: Portcullis ${fmt(hb, 2)} Gbit/s = ${p.toFixed(0)}% of the kernel's stateful filter ` +
      `(${kid === "b-nft" ? "nftables" : "iptables-legacy"}, the faster) ` +
      `${fmt(kb, 2)} (>= 50%: ${p >= 50 ? "met" : "MISSED"}); whole packets ${fmt(wb, 2)} Gbit/s (${(hb.median / wb.median).toFixed(2)}x)`);
    const small = versus([["UDP 64 B", udp, 1, "kpps", true], ["TCP new connections", conn, 0, "conn/s", true]], "d-gso", "d-whole-gso");
    targets.push(`E2E small packets and new connections, header-only vs whole packets (GSO on), no worse: ${small.every((x) => x.ok) ? "MET" : "MISSED"} ` +
      `(${small.map((x) => x.text).join("; ")})`);
  } else targets.push("E2E bulk TCP with the header-only copy range: NOT MEASURED");
  // The daemon with wasmtime against the same daemon with V8 (both GSO off, one queue per side).
  const dv = "d", dw = "d-wt";
  const cmp = versus([
    ["UDP 64 B", udp, 1, "kpps", true], ["TCP new connections", conn, 0, "conn/s", true], ["bulk TCP", bulk, 2, "Gbit/s", true],
    ["round trip p50", p50, 1, "µs", false], ["round trip p99", p99, 1, "µs", false],
  ], dw, dv);
  if (cmp.length) {
    const missed = cmp.filter((x) => !x.ok);
    targets.push(`E2E daemon with wasmtime at least as fast as with V8 on every load: ${missed.length ? "MISSED" : "MET"} (wasmtime vs V8: ${cmp.map((x) => x.text).join("; ")}` +
      (missed.length ? `; slower on ${missed.map((x) => x.name).join(", ")}` : "") + ")");
  } else targets.push("E2E daemon with wasmtime at least as fast as with V8: NOT MEASURED");
  const rss = (id: string): number | undefined => (res.queues[id] as { daemon?: { rssMiB?: number } } | undefined)?.daemon?.rssMiB;
  if (rss(dv) !== undefined && rss(dw) !== undefined) {
    targets.push(`E2E daemon resident memory after the runs (262,144-flow table): V8 ${rss(dv)} MiB, wasmtime ${rss(dw)} MiB`);
  }
  const dF = get(fwRows, "d-fw1");
  if ("missing" in fw1) targets.push(`E2E fw1_10K UDP: NOT MEASURED (no ClassBench data at ${fw1.missing})`);
  for (const k of ["b-fw1-ipt", "b-fw1-nft"]) {
    const kf = get(fwRows, k);
    if (dF && kf) {
      const x = dF.median / kf.median;
      targets.push(`E2E fw1_10K UDP: Portcullis ${fmt(dF, 1)} kpps = ${x.toFixed(1)}x ${k.endsWith("ipt") ? "iptables-legacy" : "nftables"} (stateless linear, ${fmt(kf, 1)} kpps) (>= 3x: ${x >= 3 ? "met" : "MISSED"})`);
    }
  }
  // Issue 15, step 2: offload, against the faster kernel filter on each load.
  const kernelBest = (rows: Row[], higher: boolean): [string, Figure] | null => {
    const ks = (["b-ipt", "b-nft"] as const).flatMap((id) => { const f = get(rows, id); return f ? [[id, f] as [string, Figure]] : []; });
    ks.sort((x, y) => (higher ? y[1].median - x[1].median : x[1].median - y[1].median));
    return ks[0] ?? null;
  };
  const kname = (id: string): string => (id === "b-nft" ? "nftables" : "iptables-legacy");
  const kb2 = kernelBest(bulk, true);
  for (const [id, gso] of [["d-off", false], ["d-off-gso", true]] as const) {
    const x = get(bulk, id);
    if (!x || !kb2) { targets.push(`E2E bulk TCP with offload, GSO ${gso ? "on" : "off"}: NOT MEASURED`); continue; }
    const p = pct(x, kb2[1]);
    targets.push(`E2E bulk TCP with offload, GSO ${gso ? "on" : "off"}: Portcullis ${fmt(x, 2)} Gbit/s = ${p.toFixed(0)}% of the kernel's stateful filter ` +
      `(${kname(kb2[0])}, the faster) ${fmt(kb2[1], 2)} (>= 90%: ${p >= 90 ? "met" : "MISSED"})`);
  }
  const offSmall = [...versus([["UDP 64 B", udp, 1, "kpps", true], ["TCP new connections", conn, 0, "conn/s", true]], "d-off", "d"),
    ...versus([["UDP 64 B (GSO on)", udp, 1, "kpps", true], ["TCP new connections (GSO on)", conn, 0, "conn/s", true]], "d-off-gso", "d-gso")];
  if (offSmall.length) {
    targets.push(`E2E small packets and new connections with offload on, no worse than without: ${offSmall.every((x) => x.ok) ? "MET" : "MISSED"} (${offSmall.map((x) => x.text).join("; ")})`);
  }
  const o50 = get(p50, "d-off"), k50 = kernelBest(p50, false);
  if (o50 && k50) {
    const r = o50.median / k50[1].median;
    targets.push(`E2E round trip p50 of an offloaded flow: ${fmt(o50, 1)} µs = ${r.toFixed(2)}x the kernel's stateful filter (${kname(k50[0])}, the faster) ${fmt(k50[1], 1)} µs (within 10%: ${r <= 1.1 ? "met" : "MISSED"})`);
  } else targets.push("E2E round trip p50 of an offloaded flow: NOT MEASURED");
  const rv = res.revoke ?? [];
  let revokeSec: Section | null = null;
  if (rv.length) {
    const ms = figure(rv.map((x) => x.recheckMs)), km = figure(rv.map((x) => x.kernelMs)), rq = figure(rv.map((x) => x.requestMs)), cn = figure(rv.map((x) => x.ctnetlinkMs));
    // Every created flow adopted and revoked (a few more when the bench's own
    // offload contenders left marked flows behind: those are adopted too).
    const all = rv.every((x) => x.revoked >= x.flows && x.adopted >= x.flows && x.revoked === x.adopted);
    targets.push(`E2E revocation of ${rv[0]!.flows} offloaded flows (reload --recheck refusing them): ${fmt(ms, 1)} ms in the daemon, of which the kernel rules ${fmt(km, 1)} ms ` +
      `(< 200 ms: ${ms.median < 200 && all ? "met" : "MISSED"}${all ? "" : "; not every flow was adopted and revoked"}); ctnetlink deletion of the same entries ${fmt(cn, 1)} ms`);
    revokeSec = {
      id: "e2e-revoke", title: `Revoking ${rv[0]!.flows} offloaded flows, ms`,
      notes: ["Each round: 10,000 established TCP entries with this generation's offload mark in the filter's conntrack table, adopted by a starting daemon (on_start: adopt), then a reload with --recheck of a policy that refuses them all. Daemon: the re-check of every flow plus the generation switch (the offload chain replaced, one iptables-legacy-restore per family). Request: the control socket's round trip. ctnetlink: deleting the same entries one by one through libnetfilter_conntrack (the alternative the issue measured at 30 ms per 1,000)."],
      table: { head: ["", "ms"], rows: [["daemon (re-check + kernel rules)", fmt(ms, 1)], ["kernel rules (generation switch)", fmt(km, 1)], ["request round trip", fmt(rq, 1)], ["ctnetlink deletion, 10,000 entries", fmt(cn, 1)]] },
      lines: [], chart: null, data: rv,
    };
  }
  const data = { setup: s, queues: res.queues };
  return { sections: [small, bulkSec, lat, queues, ...(revokeSec ? [revokeSec] : []), { ...fw1Sec, data: { ...(fw1Sec.data as object), ...data } }], targets };
}
