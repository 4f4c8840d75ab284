// The end-to-end bench's network: the reference topology of
// host/topology in gateway mode (generator `inet` -> filter `appliance`
// -> sink `proxy`, veth links, documentation addresses only), without
// nginx and the lan servers, with three more source addresses in inet so
// that the kernel can spread flows over several queues (NFQUEUE balances
// by addresses, not ports). Namespaces are named pcb<pid>-<role>; those of
// an earlier run whose process is gone are removed first.
//
// Every process is started here and tracked as a ChildProcess (so a pid is
// never signalled after its process is gone), runs inside a namespace by
// `ip netns exec` (which execs: the pid is the tool's), and is ended by its
// pid in down(); the topology's down() then deletes the namespaces.
// onSignals() runs down() on SIGINT/SIGTERM before exiting.
import { type ChildProcess, spawn } from "node:child_process";
import { INET, LISTENER } from "../../host/topology/plan.js";
import { clearStaleRuns, type Topology, up } from "../../host/topology/topology.js";
import { type NsRole } from "../../host/topology/plan.js";

export const DST = LISTENER.v4; //                the sink's address (proxy namespace)
export const SOURCES = [INET.v4, "203.0.113.51", "203.0.113.52", "203.0.113.53"];
export const DEVS = { external: "ext0", internal: "int0" };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RunOut { status: number; stdout: string; stderr: string }

// A long-running process whose stdout is kept (the last 256 KiB).
export class Proc {
  out = "";
  err = "";
  private readonly exited: Promise<void>;
  constructor(readonly name: string, readonly child: ChildProcess) {
    child.stdout?.on("data", (d: Buffer) => { this.out = (this.out + d.toString()).slice(-262144); });
    child.stderr?.on("data", (d: Buffer) => { this.err = (this.err + d.toString()).slice(-262144); });
    this.exited = new Promise((r) => child.once("close", () => r()));
  }

  get running(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }

  // Waits until stdout has a line matching `re` (or the process ends).
  async waitFor(re: RegExp, ms = 20_000): Promise<void> {
    for (let t = 0; t < ms; t += 20) {
      if (re.test(this.out)) return;
      if (!this.running) break;
      await sleep(20);
    }
    throw new Error(`${this.name} did not come up (${this.running ? `not within ${ms} ms` : `exit ${this.child.exitCode ?? this.child.signalCode}`}): ${this.err.trim().slice(-400)}`);
  }

  async wait(): Promise<void> { await this.exited; }

  // SIGTERM (SIGKILL after `ms`), then the last JSON line it printed.
  async stop(ms = 5000): Promise<Record<string, number> | null> {
    if (this.running && this.child.pid !== undefined) {
      try { process.kill(this.child.pid, "SIGTERM"); } catch { /* gone */ }
      const t = setTimeout(() => { if (this.running) try { process.kill(this.child.pid!, "SIGKILL"); } catch { /* gone */ } }, ms);
      await this.exited;
      clearTimeout(t);
    } else await this.exited;
    const line = this.out.trim().split("\n").reverse().find((l) => l.startsWith("{"));
    return line ? JSON.parse(line) as Record<string, number> : null;
  }
}

export class BenchNet {
  private readonly procs = new Set<Proc>();
  private constructor(readonly topo: Topology) {}

  static async up(prefix = `pcb${process.pid}-`): Promise<BenchNet> {
    await clearStale();
    const topo = await up({ mode: "gateway", prefix, proxy: false, services: false });
    const net = new BenchNet(topo);
    try {
      for (const a of SOURCES.slice(1)) net.execOk("inet", ["ip", "addr", "add", `${a}/24`, "dev", "eth0"]);
    } catch (e) {
      await net.down();
      throw e;
    }
    return net;
  }

  ns(role: NsRole): string { return this.topo.ns(role); }
  get dir(): string { return this.topo.dir; }

  exec(role: NsRole, argv: readonly string[], input = ""): RunOut { return this.topo.exec(role, argv, input); }

  execOk(role: NsRole, argv: readonly string[], input = ""): string {
    const r = this.exec(role, argv, input);
    if (r.status !== 0) throw new Error(`${this.ns(role)}: ${argv.join(" ")}: ${r.stderr.trim() || `exit ${r.status}`}`);
    return r.stdout;
  }

  // Starts a tracked process in a namespace.
  start(role: NsRole, argv: readonly string[], name: string): Proc {
    const child = spawn("ip", ["netns", "exec", this.ns(role), ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    const p = new Proc(name, child);
    this.procs.add(p);
    child.once("close", () => this.procs.delete(p));
    return p;
  }

  // Runs a command to its end (killed after timeoutMs); stdout, stderr, status.
  async run(role: NsRole, argv: readonly string[], timeoutMs: number): Promise<RunOut> {
    const p = this.start(role, argv, argv[0]!.split("/").pop()!);
    const t = setTimeout(() => { void p.stop(500); }, timeoutMs);
    await p.wait();
    clearTimeout(t);
    return { status: p.child.exitCode ?? -1, stdout: p.out, stderr: p.err };
  }

  // A command whose last line is a JSON object: that object, or an error.
  async runJson(role: NsRole, argv: readonly string[], timeoutMs: number): Promise<Record<string, number>> {
    const r = await this.run(role, argv, timeoutMs);
    const line = r.stdout.trim().split("\n").pop() ?? "";
    if (r.status !== 0 || !line.startsWith("{")) {
      throw new Error(`${argv.join(" ")} (in ${this.ns(role)}): exit ${r.status}: ${r.stderr.trim().slice(-400) || line}`);
    }
    return JSON.parse(line) as Record<string, number>;
  }

  // Ends every process still running (by pid), then removes the namespaces.
  async down(): Promise<void> {
    await Promise.all([...this.procs].map((p) => p.stop(2000)));
    await this.topo.down();
  }
}

// Namespaces pcb<pid>- whose process is gone (an interrupted run).
export const clearStale = (): Promise<string[]> => clearStaleRuns("pcb");

// While `fn` runs, SIGINT/SIGTERM tear the network down and exit (130/143).
export async function withCleanup<T>(net: BenchNet, fn: () => Promise<T>): Promise<T> {
  const handler = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: tearing the bench network down`);
    void net.down().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", handler);
  process.once("SIGTERM", handler);
  try {
    return await fn();
  } finally {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
    await net.down();
  }
}
