// Namespaces for the HA tests (test/ha-config.test.ts, test/ha.test.ts):
// pch<pid>-<tag>-<name>, veth pairs, a bridge in a namespace of its own
// standing for a shared segment, and processes started inside them, each
// tracked by its pid and ended by it. down() ends every tracked process,
// then any other process still inside the lab's namespaces (by pid, from
// `ip netns pids`), then deletes the namespaces and the lab's directory;
// clearStale() does the same for the namespaces of dead test processes
// (an interrupted run).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

export class HaLab {
  readonly prefix: string;
  readonly dir: string;
  private readonly namespaces: string[] = [];
  private readonly procs: ChildProcess[] = [];

  constructor(tag: string) {
    this.prefix = `pch${process.pid}-${tag}-`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}`));
    chmodSync(this.dir, 0o700); // keepalived's script security: nothing above the hook writable by others
  }

  // Namespaces pch<pid>- of test processes that are gone.
  async clearStale(): Promise<string[]> {
    const gone: string[] = [];
    for (const line of sh(["ip", "netns", "list"], false).stdout.split("\n")) {
      const m = /^(pch(\d+)-\S+)/.exec(line);
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

  async down(): Promise<void> {
    for (const c of this.procs) await this.end(c);
    for (const ns of this.namespaces.reverse()) await removeNamespace(ns);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
