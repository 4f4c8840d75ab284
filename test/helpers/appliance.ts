// Helpers of the end-to-end appliance tests (test/appliance.test.ts): the
// daemon started as a user (or systemd) would start it, inside the
// topology's appliance namespace; its control socket; a real port scanner
// (nmap) and a packet capture (tcpdump) from the Internet side; the kernel's
// own queue counters; a far client behind a small-MTU router; and the small
// traffic tools of appliance-tools.ts. Every process is started with
// Topology.spawn (tracked: down() ends it by pid, and its pid file lets an
// interrupted run's leftovers be ended) and ended here by its pid.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { request } from "../../host/daemon/control.js";
import { type KernelQueue, parseKernelQueues } from "../../host/daemon/kernel-queue.js";
import { type NsRole } from "../../host/topology/plan.js";
import { type Topology } from "../../host/topology/topology.js";
import { readCaptureFile } from "../../host/pcap/read.js";
import { formatAddr } from "../../host/packets/addr.js";
import { remove } from "../../host/kernel/rules.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const CLI = join(ROOT, "dist", "host", "cli.js");
export const DEFAULT_POLICY = join(ROOT, "host", "policy", "default.yaml");
export const TOOLS = fileURLToPath(new URL("./appliance-tools.js", import.meta.url));
export const SERVE_JS = join(ROOT, "dist", "host", "topology", "serve.js");

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- processes ----------------------------------------------------------------

export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

// Sends a signal to one process by its pid and waits (up to `ms`) until it
// is gone; SIGKILL after that. Nothing when it already is.
export async function endProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM", ms = 3000): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  try { process.kill(pid, "SIGCONT"); process.kill(pid, signal); } catch { return; }
  const t = setTimeout(() => { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }, ms);
  await gone;
  clearTimeout(t);
}

// Waits for FILE to exist, or for the process to exit (an error naming its log).
export async function waitForFile(file: string, child: ChildProcess, what: string, log: string, ms = 10_000): Promise<void> {
  for (let t = 0; t < ms; t += 20) {
    if (existsSync(file)) return;
    if (child.exitCode !== null || child.signalCode !== null) break;
    await sleep(20);
  }
  throw new Error(`${what} did not come up (${child.exitCode !== null ? `exit status ${child.exitCode}` : `not within ${ms} ms`}): ${tail(log)}`);
}

export function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join(" | ");
  } catch {
    return `(no log at ${file})`;
  }
}

// ---- board and policy -----------------------------------------------------------

export interface BoardOptions { extFailOpen?: boolean; intBypass?: boolean; intFailOpen?: boolean; extBypass?: boolean; offload?: "adopt" | "end" }

// A board YAML as an operator writes it: ext0 external, int0 internal, one queue each.
export function writeBoard(t: Topology, name: string, o: BoardOptions = {}): string {
  const file = join(t.dir, name);
  writeFileSync(file, stringify({
    version: 1,
    mode: t.mode,
    external: { dev: "ext0", fail_open: o.extFailOpen ?? false, bypass: o.extBypass ?? false },
    internal: { dev: "int0", fail_open: o.intFailOpen ?? false, bypass: o.intBypass ?? false },
    queues: { first: 0, count: 1 },
    ...(o.offload ? { offload: { enabled: true, on_start: o.offload } } : {}),
  }));
  return file;
}

export const UDP_SINK_PORT = 9999;
export const BULK_PORT = 8443;

// The default policy and two rows of the test's own: UDP to a sink on the
// listener (for queue pressure) and TCP 8443 to the listener (a server that
// sends and takes bulk data, for path MTU discovery).
export function writeTestPolicy(t: Topology): string {
  const file = join(t.dir, "test-policy.yaml");
  const extra = [
    "",
    "  # ---- rows of the appliance test ----",
    "  - name: test-udp-sink",
    "    action: allow",
    "    interface: external",
    "    direction: in",
    "    proto: udp",
    "    dst: listener",
    `    dport: ${UDP_SINK_PORT}`,
    "  - name: test-bulk",
    "    action: allow",
    "    interface: external",
    "    direction: in",
    "    proto: tcp",
    "    dst: listener",
    `    dport: ${BULK_PORT}`,
    "",
  ].join("\n");
  writeFileSync(file, readFileSync(DEFAULT_POLICY, "utf8").trimEnd() + "\n" + extra);
  return file;
}

// The default policy and rows that let the lan ping the proxy's internal
// address (ICMP and ICMPv6 echo requests, by icmp_type).
export function writePingPolicy(t: Topology): string {
  const file = join(t.dir, "ping-policy.yaml");
  const rows = (proto: string): string[] => [
    `  - name: lan-ping-${proto}`, "    action: allow", "    interface: internal", "    direction: in",
    `    proto: ${proto}`, "    dst: proxy_internal", "    icmp_type: [echo-request]",
  ];
  writeFileSync(file, `${readFileSync(DEFAULT_POLICY, "utf8").trimEnd()}\n\n  # ---- rows of the ping test ----\n${[...rows("icmp"), ...rows("icmpv6")].join("\n")}\n`);
  return file;
}

// `ping -c COUNT` from a namespace: how many echo replies came back.
export function pingFrom(t: Topology, from: NsRole, addr: string, count = 3): number {
  const r = t.exec(from, ["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "1", addr]);
  const m = / (\d+) received/.exec(r.stdout);
  if (!m) throw new Error(`ping ${addr} from ${from}: no summary (exit ${r.status}): ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

// ---- the daemon -------------------------------------------------------------------

export interface Daemon { child: ChildProcess; pid: number; sock: string; log: string }

// The end of a kernel suite: `kill` ended with SIGKILL and `stop` with
// SIGTERM, each by its pid; the kernel rules removed from the appliance
// namespace and the namespaces deleted; every failure reported at once.
export async function tearDown(t: Topology | null, o: { kill?: ChildProcess[]; stop?: Array<ChildProcess | null | undefined> }): Promise<void> {
  const errors: string[] = [];
  for (const c of o.kill ?? []) await endProcess(c, "SIGKILL");
  for (const c of o.stop ?? []) if (c) await endProcess(c);
  if (t !== null) {
    try { remove({ netns: t.ns("appliance") }); } catch (e) { errors.push(String(e)); }
    try { await t.down(); } catch (e) { errors.push(String(e)); }
  }
  if (errors.length) throw new Error(errors.join("; "));
}

// `portcullis run` in the appliance namespace, as systemd would start it.
export async function startDaemon(t: Topology, o: { policy: string; board: string; extra?: string[] }): Promise<Daemon> {
  const sock = join(t.dir, "control.sock");
  const log = join(t.dir, "daemon.log");
  const child = t.spawn("appliance", [process.execPath, CLI, "run", "--policy", o.policy, "--board", o.board, "--control", sock,
    "--state-dir", join(t.dir, "state"), ...(o.extra ?? [])],
    { name: "daemon", log });
  if (child.pid === undefined) throw new Error("the daemon did not start");
  const d = { child, pid: child.pid, sock, log };
  await waitForControl(d);
  return d;
}

export async function waitForControl(d: Daemon, ms = 15_000): Promise<void> {
  for (let t = 0; t < ms; t += 50) {
    if (d.child.exitCode !== null || d.child.signalCode !== null) break;
    if (existsSync(d.sock)) {
      try {
        const r = await request(d.sock, { cmd: "stats" }, 1000);
        if (r.ok === true && (r.stats as { started?: string }).started) {
          // A socket left by a daemon that died answers nothing; this is ours
          // when it answers at all (the old one's file is replaced at bind).
          return;
        }
      } catch { /* not yet */ }
    }
    await sleep(50);
  }
  throw new Error(`the daemon (pid ${d.pid}) did not answer on ${d.sock}: ${tail(d.log)}`);
}

export interface Stats {
  verdicts: { accept: { packets: number }; drop: { packets: number } };
  reasons: Array<{ reason: string; packets: number }>;
  rules: Array<{ rule: number; info: string; packets: number }>;
  queues: Array<{ name: string; packets: number; accepted: number; dropped: number; enobufs: number }>;
  packets: number;
}

export async function stats(sock: string): Promise<Stats> {
  const r = await request(sock, { cmd: "stats" }, 3000);
  if (r.ok !== true) throw new Error(`stats: ${String(r.error)}`);
  return r.stats as Stats;
}

export function reason(s: Stats, name: string): number {
  return Number(s.reasons.find((r) => r.reason === name)?.packets ?? 0);
}

export async function reload(sock: string, path: string): Promise<void> {
  const r = await request(sock, { cmd: "reload", path }, 5000);
  if (r.ok !== true) throw new Error(`reload ${path}: ${String(r.error)}`);
}

// The kernel's view of the queues in the appliance namespace (kernel-queue.ts).
export function kernelQueues(t: Topology): Map<number, KernelQueue> {
  return parseKernelQueues(t.exec("appliance", ["cat", "/proc/net/netfilter/nfnetlink_queue"]).stdout);
}

// ---- clients ------------------------------------------------------------------------

export interface CurlResult { ok: boolean; body: string; exit: number; err: string; ms: number }

// curl from a namespace without blocking the event loop (so many run at once).
export function curlAsync(t: Topology, from: NsRole, host: string, port: number, timeoutMs = 2000, extra: string[] = []): Promise<CurlResult> {
  const h = host.includes(":") ? `[${host}]` : host;
  const s = String(timeoutMs / 1000);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const c = spawn("ip", ["netns", "exec", t.ns(from), "curl", "-sS", "-g", "--connect-timeout", s, "--max-time", s, ...extra, `http://${h}:${port}/`],
      { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    c.stderr.on("data", (d: Buffer) => { err += d.toString(); });
    c.on("close", (code) => resolve({ ok: code === 0, body: out.trim(), exit: code ?? -1, err: err.trim(), ms: Date.now() - t0 }));
  });
}

// The answer's body, or "curl exit N" (28: timed out; 7: refused/unreachable).
export async function getAsync(t: Topology, from: NsRole, host: string, port: number, timeoutMs = 2000, extra: string[] = []): Promise<string> {
  const r = await curlAsync(t, from, host, port, timeoutMs, extra);
  return r.ok ? r.body : `curl exit ${r.exit}`;
}

// Polls until a GET answers (or `ms` pass); the time it took, or null.
export async function firstAnswer(t: Topology, from: NsRole, host: string, port: number, ms: number): Promise<number | null> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    const r = await curlAsync(t, from, host, port, 500);
    if (r.ok) return Date.now() - t0;
    await sleep(100);
  }
  return null;
}

// ---- nmap -------------------------------------------------------------------------

export interface ScanResult { ports: Map<number, string>; ignored: { state: string; count: number } | null; argv: string[]; raw: string }

// Fast timing: a full TCP SYN scan of 65,535 ports takes a few seconds.
export const NMAP_FAST = ["-n", "-Pn", "-T5", "--max-retries", "1", "--min-rate", "20000", "--initial-rtt-timeout", "100ms", "--max-rtt-timeout", "200ms"];

export function nmap(t: Topology, from: NsRole, target: string, scanArgs: string[]): ScanResult {
  const argv = ["nmap", ...(target.includes(":") ? ["-6"] : []), ...NMAP_FAST, ...scanArgs, "-oG", "-", target];
  const r = t.exec(from, argv);
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: exit ${r.status}: ${r.stderr.trim()}`);
  const host = r.stdout.split("\n").find((l) => l.startsWith("Host: ") && l.includes("\tPorts: "));
  if (!host) throw new Error(`${argv.join(" ")}: no port line in\n${r.stdout}`);
  const ports = new Map<number, string>();
  const pm = /\tPorts: ([^\t]*)/.exec(host);
  for (const p of (pm?.[1] ?? "").split(", ")) {
    const [port, state] = p.split("/");
    if (port) ports.set(Number(port), state!);
  }
  const im = /\tIgnored State: (\S+) \((\d+)\)/.exec(host);
  return { ports, ignored: im ? { state: im[1]!, count: Number(im[2]) } : null, argv, raw: host };
}

// ---- capture ---------------------------------------------------------------------

export interface Capture { child: ChildProcess; file: string; log: string }

// tcpdump on one interface of a namespace: what arrives there (-Q in).
export async function startCapture(t: Topology, role: NsRole, dev: string, name: string): Promise<Capture> {
  const file = join(t.dir, `${name}.pcap`);
  const log = join(t.dir, `${name}.log`);
  writeFileSync(log, "");
  const child = t.spawn(role, ["tcpdump", "-i", dev, "-Q", "in", "-n", "-U", "--immediate-mode", "-s", "256", "-w", file], { name, log });
  for (let i = 0; i < 250; i++) {
    if (/listening on/.test(readFileSync(log, "utf8"))) return { child, file, log };
    if (child.exitCode !== null) break;
    await sleep(20);
  }
  await endProcess(child);
  throw new Error(`tcpdump did not start: ${tail(log)}`);
}

export async function stopCapture(c: Capture): Promise<void> {
  await sleep(200); // the last answers in flight
  await endProcess(c.child, "SIGINT");
}

export interface Seen {
  packets: number;
  synAcks: Set<string>; //  "v4 80" / "v6 443": source ports of SYN-ACKs
  leaks: string[]; //       RSTs, SYN-ACKs from other ports, ICMP errors
  icmpErrors: string[]; //  every ICMP/ICMPv6 error, described
}

const ICMP4_ERRORS = new Set([3, 4, 5, 11, 12]);
const ICMP6_ERRORS = new Set([1, 2, 3, 4]);

// What a capture holds that a filtered port must never produce: a TCP RST,
// a SYN-ACK from a port other than `openPorts`, an ICMP or ICMPv6 error.
export function readSeen(file: string, openPorts: readonly number[]): Seen {
  const seen: Seen = { packets: 0, synAcks: new Set(), leaks: [], icmpErrors: [] };
  for (const rec of readCaptureFile(file)) {
    const ip = rec.ip;
    seen.packets++;
    if (ip.length < 20) continue;
    const v = ip[0]! >> 4;
    let proto: number, off: number, src: string, dst: string;
    if (v === 4) {
      proto = ip[9]!;
      off = (ip[0]! & 15) * 4;
      src = formatAddr(ip.subarray(12, 16), 4);
      dst = formatAddr(ip.subarray(16, 20), 4);
    } else if (v === 6 && ip.length >= 40) {
      proto = ip[6]!;
      off = 40;
      src = formatAddr(ip.subarray(8, 24), 6);
      dst = formatAddr(ip.subarray(24, 40), 6);
      // Hop-by-hop, routing, destination options (MLD reports carry one).
      while ((proto === 0 || proto === 43 || proto === 60) && ip.length >= off + 8) {
        proto = ip[off]!;
        off += (ip[off + 1]! + 1) * 8;
      }
    } else continue;
    const fam = v === 4 ? "v4" : "v6";
    if (proto === 6 && ip.length >= off + 14) {
      const sport = (ip[off]! << 8) | ip[off + 1]!;
      const dport = (ip[off + 2]! << 8) | ip[off + 3]!;
      const flags = ip[off + 13]!;
      const what = `${fam} TCP ${src}.${sport} > ${dst}.${dport} flags 0x${flags.toString(16)}`;
      if (flags & 0x04) seen.leaks.push(`RST: ${what}`);
      if ((flags & 0x12) === 0x12) {
        if (openPorts.includes(sport)) seen.synAcks.add(`${fam} ${sport}`);
        else seen.leaks.push(`SYN-ACK from a filtered port: ${what}`);
      }
    } else if ((proto === 1 && v === 4) || (proto === 58 && v === 6)) {
      if (ip.length < off + 2) continue;
      const type = ip[off]!, code = ip[off + 1]!;
      if ((v === 4 ? ICMP4_ERRORS : ICMP6_ERRORS).has(type)) {
        const what = `${v === 4 ? "ICMP" : "ICMPv6"} error type ${type} code ${code} ${src} > ${dst}`;
        seen.icmpErrors.push(what);
        seen.leaks.push(what);
      }
    }
  }
  return seen;
}

// ---- servers and sinks in the topology ----------------------------------------------

export interface Server { child: ChildProcess; log: string }

export async function startTool(t: Topology, role: NsRole, name: string, args: string[], readyFile: string): Promise<Server> {
  const log = join(t.dir, `${name}.log`);
  const child = t.spawn(role, [process.execPath, TOOLS, ...args], { name, log });
  await waitForFile(`${readyFile}.ready`, child, name, log);
  return { child, log };
}

export interface UdpSink extends Server { file: string; count(): number }

export async function startUdpSink(t: Topology, role: NsRole, name: string, port: number, addrs: string[]): Promise<UdpSink> {
  const file = join(t.dir, `${name}.count`);
  const s = await startTool(t, role, name, ["udp-sink", file, String(port), ...addrs], file);
  return { ...s, file, count: () => Number(readFileSync(file, "utf8").trim()) };
}

// Waits until a sink's count stops moving (no datagram for `quietMs`).
export async function settledCount(sink: UdpSink, quietMs = 300, maxMs = 5000): Promise<number> {
  let last = sink.count(), since = Date.now();
  const t0 = Date.now();
  while (Date.now() - t0 < maxMs) {
    await sleep(50);
    const n = sink.count();
    if (n !== last) { last = n; since = Date.now(); } else if (Date.now() - since >= quietMs) return n;
  }
  return last;
}

export function udpSend(t: Topology, from: NsRole, host: string, port: number, count: number, src?: string): { sent: number; failed: number } {
  const r = t.exec(from, [process.execPath, TOOLS, "udp-send", host, String(port), String(count), "64", ...(src ? [src] : [])]);
  if (r.status !== 0) throw new Error(`udp-send: exit ${r.status}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as { sent: number; failed: number };
}

// serve.js of the topology in another namespace (e.g. servers in inet).
export async function startServe(t: Topology, role: NsRole, name: string, services: Array<{ name: string; addr: string; port: number }>): Promise<Server> {
  const dir = join(t.dir, name);
  mkdirSync(dir, { recursive: true });
  const log = join(t.dir, `${name}.log`);
  const child = t.spawn(role, [process.execPath, SERVE_JS, dir, JSON.stringify(services)], { name, log });
  await waitForFile(join(dir, "serve.ready"), child, name, log);
  return { child, log };
}

// ---- a far client behind a router with a small MTU ----------------------------------
//
//   far                      inet (routes)                  appliance ...
//   eth0 203.0.113.200/26 -- far0 203.0.113.193/26 MTU 1280  eth0 203.0.113.50 -- ext0
//        2001:db8:3::200/64      2001:db8:3::1/64
//
// The far client's SYN says MSS 1460 (its own link is 1500), so the server
// sends full-size segments; inet cannot forward them over far0 and answers
// with its own ICMP "fragmentation needed" / ICMPv6 "packet too big",
// which crosses the appliance's external NIC toward the server: a real
// related ICMP error that the daemon must pass. The appliance (and in
// gateway mode the proxy) route the far prefixes over it.

export const FAR = { v4: "203.0.113.200", v6: "2001:db8:3::200", net4: "203.0.113.192/26", net6: "2001:db8:3::/64" };
const FAR_ROUTER = { v4: "203.0.113.193", v6: "2001:db8:3::1" };
export const FAR_ROLE = "far";

export function farNs(t: Topology): string {
  return `${t.prefix}${FAR_ROLE}`;
}

function ipOk(argv: string[]): void {
  const r = spawnSync("ip", argv, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${argv.join(" ")}: ${r.stderr.trim()}`);
}

function nsExec(ns: string, argv: string[]): void {
  const r = spawnSync("ip", ["netns", "exec", ns, ...argv], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${ns}: ${argv.join(" ")}: ${r.stderr.trim()}`);
}

export function addFarClient(t: Topology): void {
  const far = farNs(t), inet = t.ns("inet");
  ipOk(["netns", "add", far]);
  nsExec(far, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
  ipOk(["-n", far, "link", "set", "lo", "up"]);
  ipOk(["-n", inet, "link", "add", "far0", "type", "veth", "peer", "name", "eth0", "netns", far]);
  ipOk(["-n", inet, "addr", "add", `${FAR_ROUTER.v4}/26`, "dev", "far0"]);
  ipOk(["-n", inet, "addr", "add", `${FAR_ROUTER.v6}/64`, "dev", "far0", "nodad"]);
  ipOk(["-n", far, "addr", "add", `${FAR.v4}/26`, "dev", "eth0"]);
  ipOk(["-n", far, "addr", "add", `${FAR.v6}/64`, "dev", "eth0", "nodad"]);
  ipOk(["-n", inet, "link", "set", "far0", "mtu", "1280", "up"]);
  ipOk(["-n", far, "link", "set", "eth0", "up"]);
  ipOk(["-n", far, "route", "add", "default", "via", FAR_ROUTER.v4]);
  ipOk(["-n", far, "-6", "route", "add", "default", "via", FAR_ROUTER.v6]);
  nsExec(inet, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  ipOk(["-n", t.ns("appliance"), "route", "add", FAR.net4, "via", "203.0.113.50"]);
  ipOk(["-n", t.ns("appliance"), "-6", "route", "add", FAR.net6, "via", "2001:db8:1::50"]);
  if (t.mode === "gateway") ipOk(["-n", t.ns("proxy"), "-6", "route", "add", FAR.net6, "via", "2001:db8:ff::1"]);
}

// A command in the far client's namespace.
export function farExec(t: Topology, argv: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync("ip", ["netns", "exec", farNs(t), ...argv], { encoding: "utf8", timeout: 30_000 });
  return { status: r.status ?? 1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

// Undoes addFarClient (what of it exists); the far namespace goes last.
export function removeFarClient(t: Topology): void {
  const quiet = (argv: string[]): void => { spawnSync("ip", argv, { encoding: "utf8" }); };
  quiet(["-n", t.ns("appliance"), "route", "del", FAR.net4]);
  quiet(["-n", t.ns("appliance"), "-6", "route", "del", FAR.net6]);
  if (t.mode === "gateway") quiet(["-n", t.ns("proxy"), "-6", "route", "del", FAR.net6]);
  spawnSync("ip", ["netns", "exec", t.ns("inet"), "sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"]);
  quiet(["-n", t.ns("inet"), "link", "del", "far0"]);
  deleteNamespace(farNs(t));
}

function namespaces(): string[] {
  return (spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "").split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);
}

function deleteNamespace(ns: string): void {
  if (!namespaces().includes(ns)) return;
  const pids = (spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout ?? "").split("\n").map(Number).filter((n) => Number.isInteger(n) && n > 1);
  for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
  spawnSync("ip", ["netns", "del", ns]);
}

// Far namespaces of test processes that no longer exist (and our own): the
// topology's clearLeftovers knows only inet, appliance, proxy and lan.
export function clearStaleFar(): string[] {
  const removed: string[] = [];
  for (const ns of namespaces()) {
    const m = new RegExp(`^pct(\\d+)-${FAR_ROLE}$`).exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    let live = true;
    try { process.kill(pid, 0); } catch { live = false; }
    if (live && pid !== process.pid) continue;
    deleteNamespace(ns);
    removed.push(ns);
  }
  return removed;
}

// The path MTU a namespace has learned toward an address (from its route
// cache), or null when it has learned none.
export function learnedMtu(t: Topology, role: NsRole, to: string): number | null {
  const r = t.exec(role, ["ip", ...(to.includes(":") ? ["-6"] : []), "route", "get", to]);
  const m = /\bmtu (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : null;
}

export function flushRouteCache(t: Topology, role: NsRole): void {
  t.exec(role, ["ip", "route", "flush", "cache"]);
  t.exec(role, ["ip", "-6", "route", "flush", "cache"]);
}

