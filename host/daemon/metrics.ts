// The Prometheus endpoint of `run --metrics ADDR:PORT` (off by default):
// GET /metrics answers the daemon's figures in the Prometheus text format
// (version 0.0.4), the same figures as `portcullis stats`.
//
// It listens only on a loopback address or on an address of the internal
// interface: the counters tell which rules carry traffic, which is nothing
// to hand to the Internet side. 0.0.0.0 and :: (every interface) are refused.
//
// The text is written here rather than with prom-client: every figure is an
// absolute value owned by the wasm core (64-bit counters, read as bigint) or
// by the daemon, read at scrape time, while prom-client's Counter only goes
// up by inc() and would need a reset-and-inc per series in a collect()
// callback, its label sets for rules would outlive a reload that removed
// them, and it would turn 64-bit counters into doubles. The format is small
// (escaping of label values, HELP/TYPE lines) and tested line by line.
import { createServer, type Server } from "node:http";
import { isIP, type AddressInfo } from "node:net";
import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";
import { type Core } from "../core/core.js";
import { type ReloadRecord } from "./daemon.js";
import { UNDECIDED_CAUSES, UNDECIDED_KEY } from "./engine.js";
import { HA_ROLES, type HaStats } from "./ha.js";
import { type Logger } from "./log.js";

// What the endpoint reads (Daemon has it).
export interface MetricsSource {
  readonly core: Core;
  stats(): Record<string, unknown>;
}

interface Count { packets: bigint | number; bytes: bigint | number }
interface StatsShape {
  verdicts: { accept: Count; drop: Count };
  rules: Array<{ rule: number; info: string } & Count>;
  flows: Record<string, bigint | number> & { capacity: number };
  queues: Array<Record<string, number | string>>;
  batches: bigint | number;
  packets: bigint | number;
  engine?: { traps: number };
  coreEngine?: string;
  reloads: ReloadRecord[];
  reloadTotals?: { ok: number; error: number; rechecks: number; recheckEnded: number };
  shadow?: { packets: number; differ: number; liveAcceptCandidateDrop: number; liveDropCandidateAccept: number } | null;
  offload?: { live: number; total: number; ended: number; revoked: number; revocations: number; lastRevocation: string | null; bytes: number; packets: number } | null;
  started: string;
  ha?: HaStats | null;
  limits?: Record<string, bigint | number>;
  blockLists?: Array<{ list: string; entries: number }>;
  tcp?: { pickup?: boolean; liberal?: boolean; pickedUp: bigint | number };
}

const num = (v: bigint | number | undefined): string =>
  v === undefined ? "0" : typeof v === "bigint" ? v.toString()
    : Number.isNaN(v) ? "NaN" : v === Infinity ? "+Inf" : v === -Infinity ? "-Inf" : String(v);

export const escapeLabel = (v: string): string => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

class Text {
  private readonly out: string[] = [];
  family(name: string, type: "counter" | "gauge", help: string): this {
    this.out.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
    return this;
  }
  sample(name: string, labels: Record<string, string>, v: bigint | number | undefined): this {
    const ls = Object.entries(labels).map(([k, x]) => `${k}="${escapeLabel(x)}"`).join(",");
    this.out.push(`${name}${ls ? `{${ls}}` : ""} ${num(v)}`);
    return this;
  }
  toString(): string { return `${this.out.join("\n")}\n`; }
}

const queueLabel = (name: string): string => /^queue\d+$/.test(name) ? name.slice(5) : name;

export function renderMetrics(src: MetricsSource): string {
  const s = src.stats() as unknown as StatsShape;
  const c = src.core.counters();
  const t = new Text();
  t.family("portcullis_packets_total", "counter", "Packets decided, by verdict.")
    .sample("portcullis_packets_total", { verdict: "accept" }, s.verdicts.accept.packets)
    .sample("portcullis_packets_total", { verdict: "drop" }, s.verdicts.drop.packets);
  t.family("portcullis_bytes_total", "counter", "Bytes of the packets decided, by verdict.")
    .sample("portcullis_bytes_total", { verdict: "accept" }, s.verdicts.accept.bytes)
    .sample("portcullis_bytes_total", { verdict: "drop" }, s.verdicts.drop.bytes);
  // Every reason, zero or not, so that rate() has a series from the start.
  t.family("portcullis_reason_packets_total", "counter", "Packets by the reason of their verdict.");
  for (const r of c.reasons) if (r.name !== "none") t.sample("portcullis_reason_packets_total", { reason: r.name }, r.packets);
  t.family("portcullis_reason_bytes_total", "counter", "Bytes by the reason of their verdict.");
  for (const r of c.reasons) if (r.name !== "none") t.sample("portcullis_reason_bytes_total", { reason: r.name }, r.bytes);
  t.family("portcullis_rule_packets_total", "counter", "Packets decided by each rule of the live table (a reload starts them again).");
  for (const r of s.rules) t.sample("portcullis_rule_packets_total", { rule: String(r.rule), name: r.info }, r.packets);
  t.family("portcullis_rule_bytes_total", "counter", "Bytes decided by each rule of the live table.");
  for (const r of s.rules) t.sample("portcullis_rule_bytes_total", { rule: String(r.rule), name: r.info }, r.bytes);
  t.family("portcullis_table_rules", "gauge", "Rules in the live table.").sample("portcullis_table_rules", {}, s.rules.length);

  const f = s.flows;
  t.family("portcullis_flows", "gauge", "Tracked flows.").sample("portcullis_flows", { state: "live" }, f.live);
  t.family("portcullis_flows_capacity", "gauge", "Capacity of the state table.").sample("portcullis_flows_capacity", {}, f.capacity);
  for (const [k, help] of [
    ["created", "Flows created."], ["expired", "Flows that timed out."], ["evicted", "Flows evicted to make room."],
    ["refused", "New flows refused because the state table was full."], ["ended", "Flows ended by a reload's re-check, an overload's flush, or a RST answering a picked-up segment (pickup_reset)."],
  ] as const) {
    t.family(`portcullis_flows_${k}_total`, "counter", help).sample(`portcullis_flows_${k}_total`, {}, f[k]);
  }
  if (s.tcp) {
    t.family("portcullis_tcp_pickup", "gauge", "1 when TCP pickup is on: a mid-stream segment of an allowed 5-tuple creates its flow.")
      .sample("portcullis_tcp_pickup", {}, s.tcp.pickup ? 1 : 0);
    t.family("portcullis_flows_picked_up_total", "counter", "TCP flows created mid-stream by pickup.").sample("portcullis_flows_picked_up_total", {}, s.tcp.pickedUp);
    t.family("portcullis_tcp_window_tracking", "gauge", "1 when every TCP segment is checked against both windows (0: tcp.liberal).")
      .sample("portcullis_tcp_window_tracking", {}, s.tcp.liberal ? 0 : 1);
  }
  const off = s.offload;
  if (off) {
    t.family("portcullis_offload_flows", "gauge", "Flows the kernel carries now (offload).").sample("portcullis_offload_flows", {}, off.live);
    for (const [k, help] of [
      ["total", "Flows handed to the kernel."], ["ended", "Offloaded flows ended with the kernel's conntrack entry."],
      ["revoked", "Offloaded flows a re-check took back from the kernel."], ["revocations", "Offload generations replaced (revocations)."],
      ["bytes", "Bytes the kernel carried for offloaded flows (nf_conntrack_acct)."], ["packets", "Packets the kernel carried for offloaded flows."],
    ] as const) {
      const name = k === "total" ? "portcullis_offload_flows_total" : `portcullis_offload_${k}_total`;
      t.family(name, "counter", help).sample(name, {}, off[k]);
    }
    t.family("portcullis_offload_last_revocation_timestamp_seconds", "gauge", "When offloaded flows were last revoked (0: never).")
      .sample("portcullis_offload_last_revocation_timestamp_seconds", {}, off.lastRevocation ? Date.parse(off.lastRevocation) / 1000 : 0);
  }
  const ha = s.ha;
  if (ha) {
    // One series per role, 1 for the current one (all 0 before keepalived's first notify).
    t.family("portcullis_ha_role", "gauge", "The VRRP role keepalived last told the daemon (1: this one).");
    for (const r of HA_ROLES) t.sample("portcullis_ha_role", { role: r }, ha.role === r ? 1 : 0);
    t.family("portcullis_ha_last_transition_timestamp_seconds", "gauge", "When the role last changed (0: never).")
      .sample("portcullis_ha_last_transition_timestamp_seconds", {}, ha.since ? Date.parse(ha.since) / 1000 : 0);
    t.family("portcullis_ha_transitions_total", "counter", "Role changes since the daemon started.").sample("portcullis_ha_transitions_total", {}, ha.transitions);
    t.family("portcullis_ha_adopted_total", "counter", "Offloaded flows adopted at transitions to master.").sample("portcullis_ha_adopted_total", {}, ha.adopted);
    t.family("portcullis_ha_adopt_refused_total", "counter", "Offloaded flows the live table refused at transitions to master (removed).")
      .sample("portcullis_ha_adopt_refused_total", {}, ha.adoptRefused);
  }
  t.family("portcullis_fragments", "gauge", "Fragmented datagrams being tracked.").sample("portcullis_fragments", { state: "live" }, f.fragsLive);
  t.family("portcullis_fragments_expired_total", "counter", "Fragmented datagrams that timed out.").sample("portcullis_fragments_expired_total", {}, f.fragsExpired);
  t.family("portcullis_batches_total", "counter", "Batches classified by the core.").sample("portcullis_batches_total", {}, s.batches);
  if (s.limits) {
    const l = s.limits;
    t.family("portcullis_sources", "gauge", "Entries of the source table (per-source limits).").sample("portcullis_sources", {}, l.sourcesLive);
    t.family("portcullis_sources_capacity", "gauge", "Capacity of the source table.").sample("portcullis_sources_capacity", {}, l.sourceCapacity);
    t.family("portcullis_sources_evicted_total", "counter", "Source entries without live flows reused while their bucket still held state.")
      .sample("portcullis_sources_evicted_total", {}, l.sourcesEvicted);
    t.family("portcullis_sources_refused_total", "counter", "New sources refused: every candidate entry held live flows (source_table_full).")
      .sample("portcullis_sources_refused_total", {}, l.sourcesRefused);
    t.family("portcullis_blocks_capacity", "gauge", "Capacity of the block lists, all lists together.").sample("portcullis_blocks_capacity", {}, l.blockCapacity);
    t.family("portcullis_blocks_refused_total", "counter", "Block-list additions refused for want of room.").sample("portcullis_blocks_refused_total", {}, l.blocksRefused);
    t.family("portcullis_blocks_expired_total", "counter", "Block-list entries that expired.").sample("portcullis_blocks_expired_total", {}, l.blocksExpired);
  }
  if (s.blockLists) {
    t.family("portcullis_block_list_entries", "gauge", "Live entries of each block list of the live table.");
    for (const b of s.blockLists) t.sample("portcullis_block_list_entries", { list: b.list }, b.entries);
  }
  const eng = { engine: s.coreEngine ?? "v8" };
  t.family("portcullis_core_traps_total", "counter",
    "Trap events: batches whose classify trapped in the core's engine (a core bug; the batch was dropped, its packets counted in portcullis_undecided_dropped_total{cause=\"core_error\"}).")
    .sample("portcullis_core_traps_total", eng, s.engine?.traps);

  const qs = s.queues.map((q) => ({ label: queueLabel(String(q.name)), q }));
  for (const [key, name, help] of [
    ["packets", "portcullis_queue_packets_total", "Packets received from each NFQUEUE queue."],
    ["bytes", "portcullis_queue_bytes_total", "Bytes received from each queue."],
    ["enobufs", "portcullis_queue_enobufs_total", "Times the kernel could not deliver to a queue's socket (ENOBUFS): packets it dropped or, fail-open, accepted uninspected."],
    ["recvErrors", "portcullis_queue_recv_errors_total", "Receive errors on a queue's socket."],
    ["truncated", "portcullis_queue_truncated_total", "Packets the kernel copied only in part (copy range)."],
    ["readErrors", "portcullis_queue_read_errors_total", "Failed reads or socket errors of each queue the daemon saw (it reads on; too many in a row and it exits to be restarted)."],
    ["sendErrors", "portcullis_queue_verdict_send_errors_total", "Verdict messages that could not be sent (their packets are dropped)."],
    ["kernelQueueDropped", "portcullis_queue_kernel_full_total", "Packets the kernel did not queue because the queue was full (dropped, or accepted uninspected with fail-open); the daemon never saw them."],
    ["kernelUserDropped", "portcullis_queue_kernel_undelivered_total", "Packets the kernel could not deliver to the queue's socket (receive buffer full)."],
  ] as const) {
    // packets and enobufs always; the others when the source counts them.
    const have = qs.filter((x) => typeof x.q[key] === "number");
    if (key !== "packets" && key !== "enobufs" && have.length === 0) continue;
    t.family(name, "counter", help);
    for (const x of qs) t.sample(name, { queue: x.label }, typeof x.q[key] === "number" ? x.q[key] : 0);
  }
  // Every queue and cause, zero or not: a packet the daemon could not decide is dropped and counted here.
  t.family("portcullis_undecided_dropped_total", "counter",
    "Packets dropped without a verdict of the core's, by queue and cause (core_refused, core_error, no_verdict, unparsed, send_failed).");
  for (const x of qs) {
    for (const c of UNDECIDED_CAUSES) t.sample("portcullis_undecided_dropped_total", { queue: x.label, cause: c }, typeof x.q[UNDECIDED_KEY[c]] === "number" ? x.q[UNDECIDED_KEY[c]] as number : 0);
  }
  const waiting = qs.filter((x) => typeof x.q.kernelWaiting === "number");
  if (waiting.length) {
    t.family("portcullis_queue_kernel_waiting", "gauge", "Packets waiting in each kernel queue for a verdict.");
    for (const x of waiting) t.sample("portcullis_queue_kernel_waiting", { queue: x.label }, x.q.kernelWaiting as number);
  }
  const ranged = qs.filter((x) => typeof x.q.kernelCopyRange === "number");
  if (ranged.length) {
    t.family("portcullis_queue_copy_range_bytes", "gauge", "Bytes of each packet the kernel copies to the daemon (the copy range; the headers by default).");
    for (const x of ranged) t.sample("portcullis_queue_copy_range_bytes", { queue: x.label }, x.q.kernelCopyRange as number);
  }

  const tot = s.reloadTotals ?? { ok: 0, error: 0, rechecks: 0, recheckEnded: 0 };
  t.family("portcullis_reloads_total", "counter", "Reloads since start, by result (an error leaves the live table as it was).")
    .sample("portcullis_reloads_total", { result: "ok" }, tot.ok)
    .sample("portcullis_reloads_total", { result: "error" }, tot.error);
  t.family("portcullis_recheck_flows_ended_total", "counter", "Flows ended by the re-checks of reloads (--recheck).")
    .sample("portcullis_recheck_flows_ended_total", {}, tot.recheckEnded);
  const last = s.reloads[s.reloads.length - 1];
  if (last) {
    t.family("portcullis_reload_duration_seconds", "gauge", "Duration of the last reload, by phase.");
    for (const ph of ["compile", "stage", "commit", "total"] as const) {
      t.sample("portcullis_reload_duration_seconds", { phase: ph }, last.ms[ph] / 1000);
    }
    t.family("portcullis_reload_success", "gauge", "1 when the last reload committed, 0 when it was refused.")
      .sample("portcullis_reload_success", {}, last.ok ? 1 : 0);
    t.family("portcullis_reload_timestamp_seconds", "gauge", "Time of the last reload (Unix seconds).")
      .sample("portcullis_reload_timestamp_seconds", {}, Date.parse(last.at) / 1000);
  }
  const lastOk = [...s.reloads].reverse().find((r) => r.ok);
  if (lastOk) {
    t.family("portcullis_table_ticket", "gauge", "Ticket of the live table.").sample("portcullis_table_ticket", {}, lastOk.ticket ?? 0);
    t.family("portcullis_table_last_good", "gauge", "1 when the live table is the last good table from disk (the policy did not load at start).")
      .sample("portcullis_table_last_good", {}, lastOk.from ? 1 : 0);
  }
  t.family("portcullis_shadow_running", "gauge", "1 while a candidate (shadow) table runs.")
    .sample("portcullis_shadow_running", {}, s.shadow ? 1 : 0);
  if (s.shadow) {
    t.family("portcullis_shadow_packets_total", "counter", "Packets the candidate table saw (since it started).")
      .sample("portcullis_shadow_packets_total", {}, s.shadow.packets);
    t.family("portcullis_shadow_differ_total", "counter", "Packets on which the candidate's verdict differs from the live one.")
      .sample("portcullis_shadow_differ_total", { live: "accept", candidate: "drop" }, s.shadow.liveAcceptCandidateDrop)
      .sample("portcullis_shadow_differ_total", { live: "drop", candidate: "accept" }, s.shadow.liveDropCandidateAccept);
  }
  t.family("portcullis_start_time_seconds", "gauge", "Start time of the daemon (Unix seconds).")
    .sample("portcullis_start_time_seconds", {}, Date.parse(s.started) / 1000);
  return t.toString();
}

// "127.0.0.1:9464", "[::1]:9464".
export function parseListenAddress(v: string): { host: string; port: number } {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(v) ?? /^([0-9.]+):(\d+)$/.exec(v);
  if (!m) throw new Error(`--metrics ${v}: give ADDR:PORT with a numeric address, e.g. 127.0.0.1:9464 or [::1]:9464`);
  const host = m[1]!, port = Number(m[2]);
  if (isIP(host) === 0) throw new Error(`--metrics ${v}: ${host} is not an IP address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--metrics ${v}: the port must be from 1 to 65535`);
  return { host, port };
}

const isLoopback = (h: string): boolean => (isIP(h) === 4 ? h.startsWith("127.") : normalize6(h) === "0:0:0:0:0:0:0:1");

function normalize6(h: string): string {
  const [head, tail] = h.toLowerCase().split("::") as [string, string | undefined];
  const a = head ? head.split(":") : [];
  const b = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : Array(8 - a.length - b.length).fill("0");
  return [...a, ...fill, ...b].map((x) => x.replace(/^0+(?=.)/, "")).join(":");
}

const same = (a: string, b: string): boolean =>
  isIP(a) === 6 && isIP(b) === 6 ? normalize6(a) === normalize6(b) : a === b;

// Throws with the reason when the endpoint must not listen on `host`: only
// loopback, or an address of the internal interface `internalDev` (as this
// network namespace has it).
export function checkMetricsHost(host: string, internalDev: string | undefined,
  ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): void {
  if (isLoopback(host)) return;
  const bare = host.replace(/%.*$/, "");
  if (bare === "0.0.0.0" || (isIP(bare) === 6 && normalize6(bare) === "0:0:0:0:0:0:0:0")) {
    throw new Error(`--metrics: ${host} listens on every interface, the external one included; give 127.0.0.1, [::1] or an address of the internal interface`);
  }
  const owner = Object.entries(ifaces).find(([, list]) => (list ?? []).some((a) => same(a.address.replace(/%.*$/, ""), bare)))?.[0];
  if (internalDev !== undefined && owner === internalDev) return;
  const internal = internalDev === undefined ? "no internal interface is named (--internal or --board)"
    : `the internal interface is ${internalDev}`;
  if (owner === undefined) throw new Error(`--metrics: ${host} is not an address of this host (in this network namespace); ${internal}`);
  throw new Error(`--metrics: ${host} is an address of ${owner}, not of the internal interface (${internal}); the endpoint listens only on loopback or the internal interface`);
}

// Like the control socket's: scrapers at once (more are closed by the server
// at once), and a connection with no request for this long is closed.
export const METRICS_MAX_CONNECTIONS = 16;
export const METRICS_IDLE_MS = 15_000;

export class MetricsServer {
  private server: Server | null = null;
  scrapes = 0;
  constructor(private readonly src: MetricsSource, private readonly log: Logger) {}

  // Listens on host:port (port 0: any free port); returns the port.
  async listen(host: string, port: number): Promise<number> {
    const server = createServer((req, res) => {
      const url = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("only GET\n");
        return;
      }
      if (url !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("Portcullis metrics are at /metrics\n");
        return;
      }
      let body: string;
      try {
        body = renderMetrics(this.src);
      } catch (e) {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`${(e as Error).message}\n`);
        return;
      }
      this.scrapes++;
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(body) });
      res.end(req.method === "HEAD" ? undefined : body);
    });
    server.headersTimeout = 5000;
    server.requestTimeout = 10_000;
    server.maxConnections = METRICS_MAX_CONNECTIONS;
    server.timeout = METRICS_IDLE_MS;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, exclusive: true }, () => { server.off("error", reject); resolve(); });
    });
    this.server = server;
    const got = (server.address() as AddressInfo).port;
    this.log.log("info", "metrics endpoint listening", { address: host, port: got, path: "/metrics" });
    return got;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}
