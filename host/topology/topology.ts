// Builds the reference topology (plan.ts) out of network namespaces and veth
// pairs, starts its servers and its proxy, and takes it all down again.
//
//   const topo = await up({ mode: "host", prefix: "pct123-" });
//   try { topo.curl("inet", "203.0.113.1", 80) } finally { await topo.down() }
//
// Namespaces are named PREFIX + role (inet, appliance, lan; gateway mode adds
// proxy); the default prefix "" gives exactly those names, for the demo.
// Processes run inside a namespace with `ip netns exec`, which execs the
// command, so the pid of the child is the pid of the server: each is killed
// by that pid. Their pid files, the nginx config and the logs are in a state
// directory named after the prefix, which clearLeftovers() reads after an
// interrupted run.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findTool, type RunResult } from "../kernel/detect.js";
import { type BoardConfig } from "../kernel/board.js";
import { type Mode } from "../policy/compile.js";
import { nginxBinary, nginxConfig } from "./nginx.js";
import { NS_ROLES, type NsRole, type Plan, pairPlan, plan } from "./plan.js";

export interface TopologyOptions {
  mode?: Mode; //       default host
  pair?: boolean; //    two appliances on shared segments (plan.ts pairPlan; gateway mode only)
  prefix?: string; //   namespace name prefix, default "" (tests: a unique one, e.g. `pct${process.pid}-`)
  proxy?: boolean; //   start nginx (default true)
  services?: boolean; // start the lan servers (default true)
  detach?: boolean; //  let the servers outlive this process (a command line `up`); down() or clearLeftovers() ends them
}

const PREFIX_RE = /^[A-Za-z0-9_.-]{0,20}$/;
const SERVE_JS = fileURLToPath(new URL("./serve.js", import.meta.url));

export function stateDir(prefix: string): string {
  return join(tmpdir(), `portcullis-topology-${prefix || "default"}`);
}

function ip(): string {
  const p = findTool("ip");
  if (p === null) throw new Error("ip is not installed (Debian: iproute2)");
  return p;
}

function sh(argv: readonly string[], input = ""): RunResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: "utf8", timeout: 30_000 });
  if (r.error) throw new Error(`${argv.join(" ")}: ${r.error.message}`);
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

function shOk(argv: readonly string[]): string {
  const r = sh(argv);
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed: ${r.stderr.trim() || `exit status ${r.status}`}`);
  return r.stdout;
}

export function namespaceExists(name: string): boolean {
  return sh([ip(), "netns", "list"]).stdout.split("\n").some((l) => l.split(" ")[0] === name);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

// SIGTERM, then SIGKILL after 2 s; resolves when the process is gone.
async function kill(pid: number): Promise<void> {
  for (const [sig, wait] of [["SIGTERM", 2000], ["SIGKILL", 2000]] as const) {
    if (!alive(pid)) return;
    try { process.kill(pid, sig); } catch { return; }
    for (let t = 0; t < wait && alive(pid); t += 20) await sleep(20);
  }
}

interface Proc { name: string; pid: number; child: ChildProcess }

export class Topology {
  readonly plan: Plan;
  readonly dir: string;
  private readonly created: string[] = [];
  private readonly procs: Proc[] = [];
  private ownsDir = false;

  constructor(readonly mode: Mode, readonly prefix: string, private readonly detach: boolean, pair = false) {
    this.plan = pair ? pairPlan() : plan(mode);
    this.dir = stateDir(prefix);
  }

  // The namespace of a role.
  ns(role: NsRole): string {
    return `${this.prefix}${role}`;
  }

  // The board configuration of this topology's appliance.
  get board(): BoardConfig {
    return { mode: this.mode, external: { dev: "ext0" }, internal: { dev: "int0" }, queues: { first: 0, count: 1 } };
  }

  // Runs a command inside a namespace and waits for it.
  exec(role: NsRole, argv: readonly string[], input = ""): RunResult {
    return sh([ip(), "netns", "exec", this.ns(role), ...argv], input);
  }

  // Starts a command inside a namespace. A tracked process is ended by
  // down(); its pid file lets clearLeftovers() end it after a crash.
  spawn(role: NsRole, argv: readonly string[], opts: { name?: string; track?: boolean; log?: string } = {}): ChildProcess {
    const name = opts.name ?? `${role}-${argv[0]!.split("/").pop()}`;
    const log = opts.log ?? join(this.dir, `${name}.log`);
    const out = openSync(log, "a");
    let child: ChildProcess;
    try {
      child = spawn(ip(), ["netns", "exec", this.ns(role), ...argv], { stdio: ["ignore", out, out], detached: this.detach });
    } finally {
      closeSync(out);
    }
    if (this.detach) child.unref();
    if (child.pid !== undefined && opts.track !== false) {
      this.procs.push({ name, pid: child.pid, child });
      writeFileSync(join(this.dir, `proc-${name}.pid`), `${child.pid}\n`);
    }
    return child;
  }

  // An HTTP GET with curl from a namespace: ok is true when a response came.
  curl(from: NsRole, host: string, port: number, timeoutMs = 2000): { ok: boolean; body: string; exit: number; err: string } {
    const h = host.includes(":") ? `[${host}]` : host;
    const s = String(timeoutMs / 1000);
    const r = this.exec(from, ["curl", "-sS", "-g", "--connect-timeout", s, "--max-time", s, `http://${h}:${port}/`]);
    return { ok: r.status === 0, body: r.stdout.trim(), exit: r.status, err: r.stderr.trim() };
  }

  async build(opts: TopologyOptions): Promise<void> {
    const p = this.plan;
    for (const role of p.namespaces) {
      if (namespaceExists(this.ns(role))) {
        throw new Error(`network namespace ${this.ns(role)} exists: a topology with prefix "${this.prefix}" is up, ` +
          "or an earlier run was interrupted (clearLeftovers, or: node dist/host/topology/main.js down)");
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    this.ownsDir = true;
    const IP = ip();
    for (const role of p.namespaces) {
      shOk([IP, "netns", "add", this.ns(role)]);
      this.created.push(this.ns(role));
      // No duplicate address detection: addresses are usable at once.
      const sysctls = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"];
      if (p.forwarding.includes(role)) sysctls.push("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
      const r = this.exec(role, ["sysctl", "-q", "-w", ...sysctls]);
      if (r.status !== 0) throw new Error(`sysctl in ${this.ns(role)}: ${r.stderr.trim()}`);
      shOk([IP, "-n", this.ns(role), "link", "set", "lo", "up"]);
    }
    // Plain learning bridges: no STP (no forwarding delay), no multicast
    // snooping (VRRP's multicast reaches every port without IGMP).
    for (const b of p.bridges) {
      shOk([IP, "-n", this.ns(b.ns), "link", "add", b.dev, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"]);
      shOk([IP, "-n", this.ns(b.ns), "link", "set", b.dev, "up"]);
    }
    for (const l of p.links) {
      shOk([IP, "-n", this.ns(l.a), "link", "add", l.aDev, "type", "veth", "peer", "name", l.bDev, "netns", this.ns(l.b)]);
      if (l.bBridge) shOk([IP, "-n", this.ns(l.b), "link", "set", l.bDev, "master", l.bBridge]);
    }
    for (const a of p.addrs) {
      shOk([IP, "-n", this.ns(a.ns), "addr", "add", a.cidr, "dev", a.dev, ...(a.cidr.includes(":") ? ["nodad"] : [])]);
    }
    for (const l of p.links) {
      shOk([IP, "-n", this.ns(l.a), "link", "set", l.aDev, "up"]);
      shOk([IP, "-n", this.ns(l.b), "link", "set", l.bDev, "up"]);
    }
    for (const r of p.routes) shOk([IP, "-n", this.ns(r.ns), "route", "add", r.to, "via", r.via]);

    if (opts.services !== false) {
      const child = this.spawn("lan", [process.execPath, SERVE_JS, this.dir, JSON.stringify(p.services)], { name: "serve" });
      await this.waitFor(join(this.dir, "serve.ready"), child, "the lan servers");
    }
    if (opts.proxy !== false) {
      const conf = join(this.dir, "nginx.conf");
      writeFileSync(conf, nginxConfig(this.dir));
      const child = this.spawn(p.proxyNs, [nginxBinary(), "-p", this.dir, "-e", join(this.dir, "nginx-error.log"), "-c", conf], { name: "nginx" });
      // nginx writes its pid file once its listeners are bound.
      await this.waitFor(join(this.dir, "nginx.pid"), child, "nginx");
    }
  }

  private async waitFor(file: string, child: ChildProcess, what: string): Promise<void> {
    let exited: number | null = null;
    child.once("exit", (code) => { exited = code ?? -1; });
    for (let t = 0; t < 10_000; t += 20) {
      if (existsSync(file)) return;
      if (exited !== null) break;
      await sleep(20);
    }
    const logs = readdirSync(this.dir).filter((f) => f.endsWith(".log"))
      .map((f) => `${f}: ${readFileSync(join(this.dir, f), "utf8").trim().split("\n").slice(-3).join(" | ")}`);
    throw new Error(`${what} did not start${exited !== null ? ` (exit status ${exited})` : " within 10 s"}; ${logs.join("; ")}`);
  }

  // Ends every tracked process by its pid, deletes every namespace this
  // topology created (their veths go with them) and the state directory.
  // Safe after a partial failure and when called again.
  async down(): Promise<void> {
    const errors: string[] = [];
    for (const p of this.procs.splice(0).reverse()) await kill(p.pid);
    for (const name of this.created.splice(0).reverse()) {
      const r = sh([ip(), "netns", "del", name]);
      if (r.status !== 0 && namespaceExists(name)) errors.push(`ip netns del ${name}: ${r.stderr.trim()}`);
    }
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
    this.ownsDir = false;
    if (errors.length) throw new Error(`topology down: ${errors.join("; ")}`);
  }
}

export async function up(opts: TopologyOptions = {}): Promise<Topology> {
  const prefix = opts.prefix ?? "";
  if (!PREFIX_RE.test(prefix)) throw new Error(`topology prefix "${prefix}": up to 20 letters, digits, _ . -`);
  if (opts.pair && opts.mode !== "gateway") throw new Error("a pair of appliances is a gateway-mode topology (mode: gateway)");
  const t = new Topology(opts.mode ?? "host", prefix, opts.detach ?? false, opts.pair ?? false);
  try {
    await t.build(opts);
  } catch (e) {
    await t.down().catch(() => undefined);
    throw e;
  }
  return t;
}

// After an interrupted run: ends the processes whose pid files are in the
// prefix's state directory (when they still are ours: their command line
// names that directory) and any process left inside the prefix's
// namespaces, then deletes those namespaces and the directory. Returns what
// it removed.
export async function clearLeftovers(prefix = ""): Promise<string[]> {
  if (!PREFIX_RE.test(prefix)) throw new Error(`topology prefix "${prefix}": up to 20 letters, digits, _ . -`);
  const dir = stateDir(prefix);
  const removed: string[] = [];
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((x) => x.startsWith("proc-") && x.endsWith(".pid"))) {
      const pid = Number(readFileSync(join(dir, f), "utf8").trim());
      if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) continue;
      let cmd = "";
      try { cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8"); } catch { continue; }
      if (!cmd.includes(dir)) continue;
      await kill(pid);
      removed.push(`process ${pid} (${f})`);
    }
  }
  for (const role of NS_ROLES) {
    const name = `${prefix}${role}`;
    if (!namespaceExists(name)) continue;
    const pids = sh([ip(), "netns", "pids", name]).stdout.split("\n").map(Number).filter((n) => Number.isInteger(n) && n > 1);
    for (const pid of pids) {
      await kill(pid);
      removed.push(`process ${pid} (in ${name})`);
    }
    shOk([ip(), "netns", "del", name]);
    removed.push(`namespace ${name}`);
  }
  rmSync(dir, { recursive: true, force: true });
  return removed;
}

// The topologies of runs that name theirs TAG<pid>- (the tests: pct, the
// pair's tests: pct-ha, the end-to-end bench: pcb, its failover part: pcb-ha) whose process is gone, or that this process left
// behind: each cleared with clearLeftovers. Returns what it removed.
export async function clearStaleRuns(tag: string): Promise<string[]> {
  if (!/^[a-z][a-z-]{0,7}$/.test(tag)) throw new Error(`run tag "${tag}": 1 to 8 of a-z and -`);
  const re = new RegExp(`^(${tag}(\\d+)-)`);
  const prefixes = new Set<string>();
  for (const line of sh([ip(), "netns", "list"]).stdout.split("\n")) {
    const m = re.exec(line);
    if (m && (Number(m[2]) === process.pid || !alive(Number(m[2])))) prefixes.add(m[1]!);
  }
  const removed: string[] = [];
  for (const p of prefixes) removed.push(...await clearLeftovers(p));
  return removed;
}
