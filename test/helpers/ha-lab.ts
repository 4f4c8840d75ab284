// Namespaces for the HA tests (test/ha-config.test.ts, test/ha.test.ts,
// test/ha-v6.test.ts): <base><pid>-<tag>-<name> (base pch unless given),
// veth pairs, a bridge in a namespace of its own standing for a shared
// segment, and processes started inside them, each tracked by its pid and
// ended by it. down() ends every tracked process, then any other process
// still inside the lab's namespaces (by pid, from `ip netns pids`), then
// deletes the namespaces and the lab's directory; clearStale() does the
// same for the namespaces of dead test processes (an interrupted run).
//
// The pair tests' appliances (node()): a namespace with a 0700 directory
// for its board, keepalived's files and the daemon's socket; bringUp() (its
// board, kernel rules, daemon and `portcullis ha --apply`), startDaemon(),
// applyHa(), startKeepalived() in it; role() from
// the daemon's stats, until() a condition holds (or fail with both roles
// and keepalived's logs).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "../../host/daemon/control.js";
import { readBoardFile } from "../../host/kernel/board.js";
import { apply } from "../../host/kernel/rules.js";
import { CLI, DEFAULT_POLICY, sleep, waitForControl } from "./appliance.js";

const ROOT = process.cwd();

function alive(pid: number): boolean {
  try { return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, "utf8")); } catch { return false; }
}

async function killPid(pid: number, ms = 2000): Promise<void> {
  for (const sig of ["SIGTERM", "SIGKILL"] as const) {
    if (!alive(pid)) return;
    try { process.kill(pid, sig); } catch { return; }
    for (let t = 0; t < ms && alive(pid); t += 20) await sleep(20);
  }
}

export interface Run { status: number; stdout: string; stderr: string }

function sh(argv: string[], check = true): Run {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 30_000 });
  const out = { status: r.status ?? 1, stdout: r.stdout ?? "", stderr: r.stderr ?? (r.error ? String(r.error) : "") };
  if (check && out.status !== 0) throw new Error(`${argv.join(" ")}: exit ${out.status}: ${out.stderr.trim()}`);
  return out;
}

async function removeNamespace(ns: string): Promise<void> {
  const pids = sh(["ip", "netns", "pids", ns], false).stdout.split("\n").map(Number).filter((n) => Number.isInteger(n) && n > 1);
  for (const pid of pids) await killPid(pid);
  sh(["ip", "netns", "del", ns], false);
}

export interface HaSt { role: string; since: string | null; transitions: number }
export interface HaNode {
  name: "a" | "b"; ns: string; priority: number; sock: string; dir: string;
  daemon?: ChildProcess; keepalived?: ChildProcess; conntrackd?: ChildProcess;
}

export class HaLab {
  readonly prefix: string;
  readonly dir: string;
  readonly nodes: HaNode[] = [];
  private keepalivedStarted = 0;
  private readonly base: string;
  private readonly namespaces: string[] = [];
  private readonly procs: ChildProcess[] = [];

  // BASE: the namespaces' prefix before the pid (letters and digits), so
  // that suites running at once on one machine clear only their own.
  constructor(tag: string, base = "pch") {
    if (!/^[a-z][a-z0-9]*$/.test(base)) throw new Error(`HaLab: bad namespace base ${JSON.stringify(base)}`);
    this.base = base;
    this.prefix = `${base}${process.pid}-${tag}-`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}`));
    chmodSync(this.dir, 0o700); // keepalived's script security: nothing above the hook writable by others
  }

  // Namespaces <base><pid>- of test processes that are gone.
  async clearStale(): Promise<string[]> {
    const gone: string[] = [];
    const re = new RegExp(`^(${this.base}(\\d+)-\\S+)`);
    for (const line of sh(["ip", "netns", "list"], false).stdout.split("\n")) {
      const m = re.exec(line);
      if (!m || Number(m[2]) === process.pid || alive(Number(m[2]))) continue;
      await removeNamespace(m[1]!);
      gone.push(m[1]!);
    }
    return gone;
  }

  namespace(name: string): string {
    const ns = `${this.prefix}${name}`;
    sh(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  // A veth pair, one end in each namespace, both up.
  veth(nsA: string, a: string, nsB: string, b: string): void {
    sh(["ip", "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB]);
    sh(["ip", "-n", nsA, "link", "set", a, "up"]);
    sh(["ip", "-n", nsB, "link", "set", b, "up"]);
  }

  // A bridge in namespace NS (the segment) with the given ports.
  bridge(ns: string, name: string, ports: string[]): void {
    sh(["ip", "-n", ns, "link", "add", name, "type", "bridge"]);
    for (const p of ports) sh(["ip", "-n", ns, "link", "set", p, "master", name]);
    sh(["ip", "-n", ns, "link", "set", name, "up"]);
  }

  run(ns: string, argv: string[], check = true): Run {
    return sh(["ip", "netns", "exec", ns, ...argv], check);
  }

  // A process in NS (ip netns exec execs it: the pid is the program's),
  // its output in DIR/NAME.log.
  spawn(ns: string, argv: string[], name: string): ChildProcess {
    const fd = openSync(join(this.dir, `${name}.log`), "a");
    const c = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    c.on("error", () => { /* reported by the caller's checks */ });
    this.procs.push(c);
    return c;
  }

  log(name: string): string {
    try { return readFileSync(join(this.dir, `${name}.log`), "utf8").trim().split("\n").slice(-8).join(" | "); } catch { return "(no log)"; }
  }

  // Ends one process by its pid (SIGNAL, then SIGKILL after 3 s).
  async end(c: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const pid = c.pid;
    if (pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once("exit", () => r()));
    try { process.kill(pid, signal); } catch { return; }
    const t = setTimeout(() => { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }, 3000);
    await gone;
    clearTimeout(t);
  }

  // An appliance of a pair: its namespace and its 0700 directory.
  node(name: "a" | "b", priority: number): HaNode {
    const ns = this.namespace(name);
    const dir = join(this.dir, name);
    this.run(ns, ["mkdir", "-m", "0700", dir]);
    const n: HaNode = { name, ns, priority, sock: join(dir, "control.sock"), dir };
    this.nodes.push(n);
    return n;
  }

  // `portcullis run` with DIR/board.yaml and the default policy.
  async startDaemon(n: HaNode, extra: string[] = []): Promise<void> {
    n.daemon = this.spawn(n.ns, [process.execPath, CLI, "run", "--policy", DEFAULT_POLICY, "--board", join(n.dir, "board.yaml"), "--control", n.sock,
      "--state-dir", join(n.dir, "state"), "--no-watch", ...extra], `daemon-${n.name}`);
    await waitForControl({ child: n.daemon, pid: n.daemon.pid!, sock: n.sock, log: join(this.dir, `daemon-${n.name}.log`) });
  }

  // `portcullis ha --apply` of DIR/board.yaml into DIR: what it printed.
  applyHa(n: HaNode): string {
    return this.run(n.ns, [process.execPath, CLI, "ha", "--config", join(n.dir, "board.yaml"), "--dir", n.dir, "--run-dir", join(n.dir, "run"),
      "--control", n.sock, "--portcullis", `${process.execPath} ${join(ROOT, "bin", "portcullis.js")}`, "--apply"]).stdout;
  }

  // DIR/board.yaml with BOARD, its kernel rules (apply(): everything but what
  // ha: lets through queued), the daemon, `ha --apply`: what that printed.
  async bringUp(n: HaNode, board: string, daemonArgs: string[] = []): Promise<string> {
    const file = join(n.dir, "board.yaml");
    writeFileSync(file, board);
    apply(readBoardFile(file), { backend: "auto", netns: n.ns });
    await this.startDaemon(n, daemonArgs);
    return this.applyHa(n);
  }

  // keepalived in the foreground (tracked by its pid; its VRRP child's pid in DIR/vrrp.pid).
  startKeepalived(n: HaNode): void {
    const p = (f: string): string => join(n.dir, f);
    n.keepalived = this.spawn(n.ns, ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
      "-f", p("keepalived.conf"), "-p", p("keepalived.pid"), "-r", p("vrrp.pid"), "-c", p("checkers.pid"), "-b", p("bfd.pid")], `keepalived-${n.name}`);
    this.keepalivedStarted = Date.now();
  }

  async role(n: HaNode): Promise<HaSt> {
    const r = await request(n.sock, { cmd: "stats" }, 3000);
    if (r.ok !== true) throw new Error(String(r.error));
    return (r.stats as { ha: HaSt }).ha;
  }

  // Polls OK every 20 ms; after MS, fails with every node's role and keepalived's logs.
  async until(what: string, ok: () => Promise<boolean> | boolean, ms: number): Promise<number> {
    const t0 = Date.now();
    for (; Date.now() - t0 < ms; await sleep(20)) if (await ok()) return Date.now() - t0;
    const st = await Promise.all(this.nodes.map(async (n) => `${n.name}: ${JSON.stringify(await this.role(n).catch((e: Error) => e.message))}`));
    const logs = this.nodes.map((n) => `keepalived ${n.name}: ${this.log(`keepalived-${n.name}`)}`);
    throw new Error(`timed out after ${ms} ms waiting for: ${what} (${st.join("; ")}; ${logs.join("; ")})`);
  }

  // keepalived on every node, one after the other (startKeepalived).
  startKeepaliveds(): void {
    for (const n of this.nodes) this.startKeepalived(n);
  }

  // Until A (the first node) is master and B backup in their daemons' stats:
  // ms since the last keepalived started.
  async untilRoles(ms: number): Promise<number> {
    const [a, b] = this.nodes as [HaNode, HaNode];
    await this.until("a master, b backup", async () => (await this.role(a)).role === "master" && (await this.role(b)).role === "backup", ms);
    return Date.now() - this.keepalivedStarted;
  }

  // What keepalived of N complained about: its log's warnings and errors,
  // unsafe scripts, and its notes on IPv6 addresses that should be link local.
  keepalivedComplaints(n: HaNode): string[] {
    return readFileSync(join(this.dir, `keepalived-${n.name}.log`), "utf8").split("\n").filter((l) => /warning|unsafe|error|link local/i.test(l));
  }

  // Whether NS has ADDR (without its length) on DEV.
  hasAddr(ns: string, dev: string, addr: string): boolean {
    return this.run(ns, ["ip", "-o", "addr", "show", "dev", dev], false).stdout.includes(` ${addr}/`);
  }

  async down(): Promise<void> {
    for (const c of this.procs) await this.end(c);
    for (const ns of this.namespaces.reverse()) await removeNamespace(ns);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
