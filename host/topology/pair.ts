// Two appliances as one (issue 17): the pair topology of plan.ts (pairPlan)
// with, in each appliance namespace, the kernel queue rules, the Portcullis
// daemon (gateway mode, its queues bound: a hot standby) and keepalived
// holding the virtual addresses (and conntrackd with offload on), each
// appliance's board with its ha: half and keepalived's and conntrackd's
// files as `portcullis ha --apply` writes them from it; a node failed as a
// dead box fails (its ports on the segments down, then kill -9 of its
// daemon, keepalived and anything else in it), and brought back as a
// rebooted one (no addresses or conntrack entries left over); where the
// virtual addresses are and how long they took to move; paced streams
// through them (stream-load.ts). Used by the failover test,
// `portcullis demo --ha` and the bench's failover part.
//
//   const p = await Pair.up({ prefix: "pct-ha123-", vrrp: { version: 3, advertMs: 100 } });
//   try { await p.fail("a"); await p.waitForVirtual("b") } finally { await p.down() }
//
// Every process is started with Topology.spawn (tracked, ended by pid by
// down(), its pid file read by clearLeftovers after a crash); what else
// runs in an appliance (keepalived's VRRP child, a conntrackd a hook
// started) is ended by its pid from `ip netns pids`.
import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { request } from "../daemon/control.js";
import { findTool } from "../kernel/detect.js";
import { CONNTRACKD_FILE, KEEPALIVED_FILE } from "../ha/files.js";
import { readBoardFile } from "../kernel/board.js";
import { apply } from "../kernel/rules.js";
import { LISTENER, PAIR_ADDRS, PAIR_NODES, PAIR_ROLE, type PairNode, VIRTUAL } from "./plan.js";
import type { LoadResult } from "./stream-load.js";
import { type Topology, up } from "./topology.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const CLI = join(ROOT, "dist", "host", "cli.js");
export const DEFAULT_POLICY = join(ROOT, "host", "policy", "default.yaml");
export const STREAM_LOAD = fileURLToPath(new URL("./stream-load.js", import.meta.url));

export interface Vrrp { version: 2 | 3; advertMs: number }
export interface PairOptions {
  prefix: string;
  vrrp: Vrrp;
  preempt?: boolean; //  the old master takes the addresses back when it returns (default true)
  pickup?: boolean; //   the daemons pick up mid-stream flows (default true)
  policy?: string; //    default: host/policy/default.yaml
  offload?: boolean; //  the board's offload on (and the kernel rules' offload chain), conntrackd
}

export interface LoadOptions {
  streams?: number; // long-lived streams to 443 (default 50)
  paceMs?: number; //  a 64-byte message on each every PACE ms, echoed (default 100)
  newMs?: number; //   a new connection to 80 every NEW ms (default 100)
  seconds?: number; // at most (default 60); stop() ends it sooner
}

// A running stream-load client in inet: streams to the listener's 443, new
// connections to its 80, through the virtual gateway.
export interface Load {
  stop(): Promise<LoadResult>; // ends it now (SIGUSR1) and reads its result
  result: Promise<LoadResult>;
}

interface NodeProcs { daemon: ChildProcess | null; keepalived: ChildProcess | null; conntrackd: ChildProcess | null }
const NO_PROCS = (): NodeProcs => ({ daemon: null, keepalived: null, conntrackd: null });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tool(name: string): string {
  const p = findTool(name);
  if (p === null) throw new Error(`${name} is not installed (Debian: ${name}; bash host/setup/ensure.sh test installs it)`);
  return p;
}
const keepalivedBinary = (): string => tool("keepalived");
const conntrackdBinary = (): string => tool("conntrackd");

export class Pair {
  private readonly procs: Record<PairNode, NodeProcs> = { a: NO_PROCS(), b: NO_PROCS() };
  private loads = 0;

  private constructor(readonly t: Topology, readonly o: Required<PairOptions>) {}

  static async up(o: PairOptions): Promise<Pair> {
    const t = await up({ mode: "gateway", pair: true, prefix: o.prefix, proxy: false, services: false });
    const p = new Pair(t, { preempt: true, pickup: true, policy: DEFAULT_POLICY, offload: false, ...o });
    try {
      await p.startServers();
      for (const n of PAIR_NODES) {
        p.applyRules(n);
        await p.startDaemon(n);
      }
      // a first: it becomes the master (the higher priority, and first).
      await p.startKeepalived("a");
      await p.waitForVirtual("a", 10_000);
      await p.startKeepalived("b");
      await sleep(4 * p.o.vrrp.advertMs);
    } catch (e) {
      await p.down().catch(() => undefined);
      throw e;
    }
    return p;
  }

  ns(n: PairNode): string { return this.t.ns(PAIR_ROLE[n]); }
  sock(n: PairNode): string { return join(this.t.dir, `control-${n}.sock`); }
  log(n: PairNode, what: "daemon" | "keepalived" | "conntrackd"): string { return join(this.t.dir, `${what}-${n}.log`); }
  other(n: PairNode): PairNode { return n === "a" ? "b" : "a"; }

  // The proxy's echo server on the listener's 80 and 443 (long-lived
  // streams need a server that keeps them open: no nginx here).
  private async startServers(): Promise<void> {
    const child = this.t.spawn("proxy", [process.execPath, STREAM_LOAD, "server", LISTENER.v4, "80", "443"], { name: "echo" });
    await waitForLine(join(this.t.dir, "echo.log"), /listening/, child, "the echo server");
  }

  // The board of node n: gateway mode, ext0 and int0, fail closed, pickup
  // (tcp:), and its half of the pair (ha:): a the higher priority;
  // conntrackd over sync0 when offload is on.
  boardFile(n: PairNode): string {
    const file = join(this.t.dir, `board-${n}.yaml`);
    const peer = PAIR_ADDRS[this.other(n)];
    const { version, advertMs } = this.o.vrrp;
    writeFileSync(file, stringify({
      version: 1, mode: "gateway",
      external: { dev: "ext0", fail_open: false, bypass: false }, internal: { dev: "int0", fail_open: false, bypass: false },
      queues: { first: 0, count: 1 },
      tcp: { pickup: this.o.pickup },
      ...(this.o.offload ? { offload: { enabled: true, on_start: "adopt" } } : {}),
      ha: {
        vrid: 17, priority: n === "a" ? 200 : 100, version, advert: advertMs / 1000, preempt: this.o.preempt,
        external: { virtual: [`${VIRTUAL.external}/${VIRTUAL.prefix}`], peer: peer.external },
        internal: { virtual: [`${VIRTUAL.internal}/${VIRTUAL.prefix}`], peer: peer.internal },
        ...(this.o.offload ? { sync: { enabled: true, dev: "sync0", address: PAIR_ADDRS[n].sync, peer: peer.sync } } : {}),
      },
    }));
    return file;
  }

  // The kernel rules of the board: the queues, and VRRP (and the sync) let through.
  applyRules(n: PairNode): void {
    apply(readBoardFile(this.boardFile(n)), { backend: "auto", netns: this.ns(n) });
  }

  async startDaemon(n: PairNode): Promise<void> {
    const argv = [process.execPath, CLI, "run", "--policy", this.o.policy, "--board", this.boardFile(n), "--control", this.sock(n),
      "--state-dir", join(this.t.dir, `state-${n}`)];
    const child = this.t.spawn(PAIR_ROLE[n], argv, { name: `daemon-${n}`, log: this.log(n, "daemon") });
    this.procs[n].daemon = child;
    for (let t = 0; t < 15_000; t += 50) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      try {
        const r = await request(this.sock(n), { cmd: "stats" }, 1000);
        if (r.ok === true) return;
      } catch { /* not yet */ }
      await sleep(50);
    }
    throw new Error(`the daemon of appliance ${n} did not come up: ${tail(this.log(n, "daemon"))}`);
  }

  conntrackdConf(n: PairNode): string { return join(this.t.dir, `ha-${n}`, CONNTRACKD_FILE); }

  // keepalived's configuration, its notify hook and conntrackd's, as
  // `portcullis ha --config BOARD --apply` writes them (host/ha/), in the
  // node's own directory, the hook telling this node's daemon.
  private haFiles(n: PairNode): { dir: string; keepalived: string; conntrackd: string } {
    const dir = join(this.t.dir, `ha-${n}`);
    mkdirSync(dir, { recursive: true });
    const r = spawnSync(process.execPath, [CLI, "ha", "--config", this.boardFile(n), "--apply", "--dir", dir, "--run-dir", join(dir, "run"),
      "--control", this.sock(n), "--portcullis", `${process.execPath} ${CLI}`], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`portcullis ha --apply for appliance ${n}: ${(r.stderr ?? "").trim() || `exit ${r.status}`}`);
    return { dir, keepalived: join(dir, KEEPALIVED_FILE), conntrackd: this.conntrackdConf(n) };
  }

  async startKeepalived(n: PairNode): Promise<void> {
    const files = this.haFiles(n);
    if (this.o.offload) await this.startConntrackd(n, files.conntrackd);
    const log = this.log(n, "keepalived");
    rmSync(this.vrrpPidFile(n), { force: true });
    const child = this.t.spawn(PAIR_ROLE[n], [keepalivedBinary(), "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
      "-f", files.keepalived, "-p", join(this.t.dir, `keepalived-${n}.pid`), "-r", this.vrrpPidFile(n)], { name: `keepalived-${n}`, log });
    this.procs[n].keepalived = child;
    for (let t = 0; t < 5000; t += 20) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`keepalived in appliance ${n} exited: ${tail(log)}`);
      if (this.vrrpPid(n) !== null) return;
      await sleep(20);
    }
    throw new Error(`keepalived in appliance ${n} did not start its VRRP process: ${tail(log)}`);
  }

  // conntrackd in the foreground (tracked), before keepalived: its hook
  // finds it running (Debian's primary-backup steps).
  private async startConntrackd(n: PairNode, conf: string): Promise<void> {
    rmSync(join(this.t.dir, `ha-${n}`, "run"), { recursive: true, force: true });
    mkdirSync(join(this.t.dir, `ha-${n}`, "run"), { recursive: true });
    const log = this.log(n, "conntrackd");
    const child = this.t.spawn(PAIR_ROLE[n], [conntrackdBinary(), "-C", conf], { name: `conntrackd-${n}`, log });
    this.procs[n].conntrackd = child;
    for (let t = 0; t < 5000; t += 50) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`conntrackd in appliance ${n} exited: ${tail(log)}`);
      if (this.t.exec(PAIR_ROLE[n], [conntrackdBinary(), "-C", conf, "-s"]).status === 0) return;
      await sleep(50);
    }
    throw new Error(`conntrackd in appliance ${n} did not answer: ${tail(log)}`);
  }

  private vrrpPidFile(n: PairNode): string { return join(this.t.dir, `keepalived-vrrp-${n}.pid`); }
  private vrrpPid(n: PairNode): number | null {
    try {
      const pid = Number(readFileSync(this.vrrpPidFile(n), "utf8").trim());
      return Number.isInteger(pid) && pid > 1 ? pid : null;
    } catch {
      return null;
    }
  }

  // Whether node n holds both virtual addresses.
  holds(n: PairNode): boolean {
    const lines = this.t.exec(PAIR_ROLE[n], ["ip", "-4", "-o", "addr", "show"]).stdout.split("\n");
    const has = (dev: string, addr: string): boolean => lines.some((l) => l.includes(`: ${dev} `) && l.includes(` inet ${addr}/`));
    return has("ext0", VIRTUAL.external) && has("int0", VIRTUAL.internal);
  }

  master(): PairNode | null {
    const m = PAIR_NODES.filter((n) => this.holds(n));
    return m.length === 1 ? m[0]! : null;
  }

  // Polls (every 10 ms) until node n holds both virtual addresses; the ms it took.
  async waitForVirtual(n: PairNode, ms: number, from = Date.now()): Promise<number> {
    while (Date.now() - from < ms) {
      if (this.holds(n)) return Date.now() - from;
      await sleep(10);
    }
    throw new Error(`appliance ${n} did not take the virtual addresses within ${ms} ms: ${tail(this.log(n, "keepalived"))}`);
  }

  // Node n dies: its ports on both segments go down (the cables are cut),
  // then every process in it is killed with SIGKILL: its daemon, keepalived
  // (both processes), conntrackd, a hook that was running. Returns the
  // instant (Date.now()) of the cut.
  async fail(n: PairNode): Promise<number> {
    // Both ports in one command: the instant after it is the cut.
    this.t.exec("seg", ["ip", "-batch", "-"], `link set ${n}-ext down\nlink set ${n}-int down\n`);
    const at = Date.now();
    this.killAll(n);
    for (const c of Object.values(this.procs[n])) if (c) await exited(c);
    this.procs[n] = NO_PROCS();
    return at;
  }

  // Node n boots again: no virtual address or conntrack entry is left from
  // before, its ports come up, its daemon starts, then keepalived.
  async revive(n: PairNode): Promise<void> {
    this.boot(n);
    await this.startDaemon(n);
    await this.startKeepalived(n);
  }

  // What a box has when it comes up: its own addresses only, no conntrack
  // entries, its ports on the segments up.
  private boot(n: PairNode): void {
    for (const [dev, vip] of [["ext0", VIRTUAL.external], ["int0", VIRTUAL.internal]] as const) {
      this.t.exec(PAIR_ROLE[n], ["ip", "addr", "del", `${vip}/${VIRTUAL.prefix}`, "dev", dev]);
    }
    this.t.exec(PAIR_ROLE[n], ["conntrack", "-F"]);
    this.t.exec("seg", ["ip", "-batch", "-"], `link set ${n}-ext up\nlink set ${n}-int up\n`);
  }

  // Stops both keepalived and both daemons (SIGTERM), boots both (a node
  // left dead comes back too) and starts them again with other options
  // (e.g. preemption off; offload on: the kernel rules again, with the
  // offload chain, and conntrackd); a is the master again.
  async restart(o: Partial<Pick<PairOptions, "preempt" | "pickup" | "vrrp" | "offload" | "policy">>): Promise<void> {
    Object.assign(this.o, o);
    for (const n of ["b", "a"] as const) await this.stopNode(n);
    for (const n of PAIR_NODES) {
      this.boot(n);
      this.applyRules(n);
    }
    for (const n of PAIR_NODES) await this.startDaemon(n);
    await this.startKeepalived("a");
    await this.waitForVirtual("a", 10_000);
    await this.startKeepalived("b");
    await sleep(4 * this.o.vrrp.advertMs);
  }

  private async stopNode(n: PairNode): Promise<void> {
    for (const c of [this.procs[n].keepalived, this.procs[n].conntrackd, this.procs[n].daemon]) {
      if (!c || c.exitCode !== null || c.signalCode !== null) continue;
      try { process.kill(c.pid!, "SIGTERM"); } catch { continue; }
      const t = setTimeout(() => { try { process.kill(c.pid!, "SIGKILL"); } catch { /* gone */ } }, 3000);
      await exited(c);
      clearTimeout(t);
    }
    this.procs[n] = NO_PROCS();
  }

  async stats(n: PairNode): Promise<Record<string, unknown>> {
    const r = await request(this.sock(n), { cmd: "stats" }, 3000);
    if (r.ok !== true) throw new Error(`stats of appliance ${n}: ${String(r.error)}`);
    return r.stats as Record<string, unknown>;
  }

  // Starts the load and resolves once every stream is connected.
  async startLoad(o: LoadOptions = {}): Promise<Load> {
    const streams = o.streams ?? 50;
    const name = `load-${++this.loads}`;
    const log = join(this.t.dir, `${name}.log`);
    const child = this.t.spawn("inet", [process.execPath, STREAM_LOAD, "client", LISTENER.v4, "443", String(streams), String(o.seconds ?? 60),
      String(o.paceMs ?? 100), "80", String(o.newMs ?? 100)], { name, log });
    const result = exited(child).then((): LoadResult => {
      const line = readFileSync(log, "utf8").trim().split("\n").reverse().find((l) => l.startsWith("{"));
      if (!line) throw new Error(`the load client ended without a result: ${tail(log)}`);
      return JSON.parse(line) as LoadResult;
    });
    result.catch(() => undefined);
    await waitForLine(log, new RegExp(`^connected ${streams}$`, "m"), child, `${streams} streams through the virtual address`);
    return {
      result,
      stop: () => { try { process.kill(child.pid!, "SIGUSR1"); } catch { /* ended */ } return result; },
    };
  }

  // SIGKILL to every process in node n's namespace, by pid.
  private killAll(n: PairNode): void {
    const r = spawnSync("ip", ["netns", "pids", this.ns(n)], { encoding: "utf8" });
    for (const pid of (r.stdout ?? "").split("\n").map(Number).filter((x) => Number.isInteger(x) && x > 1)) {
      try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
    }
  }

  // Ends every process (by pid: those started here, then any other left in
  // the appliances, such as a conntrackd a hook started) and removes the
  // namespaces.
  async down(): Promise<void> {
    for (const n of PAIR_NODES) await this.stopNode(n);
    for (const n of PAIR_NODES) this.killAll(n);
    await this.t.down();
  }
}

function exited(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => c.once("exit", () => r()));
}

export function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-lines).join(" | ");
  } catch {
    return `(no log at ${file})`;
  }
}

async function waitForLine(file: string, re: RegExp, child: ChildProcess, what: string): Promise<void> {
  for (let t = 0; t < 10_000; t += 20) {
    let text = "";
    try { text = readFileSync(file, "utf8"); } catch { /* not yet */ }
    if (re.test(text)) return;
    if (child.exitCode !== null) break;
    await sleep(20);
  }
  throw new Error(`${what} did not start: ${tail(file)}`);
}
