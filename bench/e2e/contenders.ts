// The contenders of the end-to-end benchmark, all set up once in the
// filter namespace and switched by rules only, so that they can alternate
// run by run (a, b, c, d, a, b, c, d, ...):
//
//   (a) forward       no rules: the kernel forwards
//   (b) iptables      the kernel's stateful filter, generated from the same
//       nftables      compiled policy (kernel-filter.ts); a jump from FORWARD
//                     (iptables-legacy) or from an nft base chain turns it on
//   (c) C accept-all  pcb-nfq-accept bound to its own queues (GSO off, on),
//                     with the daemon's copy range (and whole packets, GSO on)
//   (d) Portcullis    `portcullis run --board` (the real daemon), each
//                     variant on its own queues: GSO off/on, 1 or 2 queues
//                     per side, the core in V8 or in wasmtime (--engine),
//                     header-only copies (the default copy range) or whole
//                     packets (--copy-range 65535); its kernel queue rules are the ones
//                     `portcullis rules --apply` loads (host/kernel/rules.ts,
//                     iptables-legacy: this kernel has no nft queue); and
//                     with offload on (its board's offload chain, a policy
//                     whose allow rules offload: offload.after 10)
//
// Every consumer stays bound all the time (an idle one only waits in
// poll), so switching costs a few rule changes and no process start. A
// daemon with offload on is also stopped (SIGSTOP) while it is off: it
// follows the kernel's conntrack table, which the contenders share, and
// would remove the marked entries of another offload daemon's flows.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { request } from "../../host/daemon/control.js";
import { type KernelQueue, parseKernelQueues } from "../../host/daemon/kernel-queue.js";
import { type BoardConfig } from "../../host/kernel/board.js";
import { DEFAULT_COPY_RANGE } from "../../host/kernel/copy-range.js";
import { type EngineName } from "../../host/core/load.js";
import { run, runOk } from "../../host/kernel/detect.js";
import { iptablesRestore } from "../../host/kernel/rules.js";
import { type TableSpec } from "../../host/rules/model.js";
import { iptablesRestoreText, kernelRules, nftTableText } from "./kernel-filter.js";
import { type BenchNet, DEVS, type Proc, sleep } from "./net.js";
import { type Tools } from "./tools.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const CLI = join(ROOT, "dist", "host", "cli.js");
export const DEFAULT_POLICY = join(ROOT, "host", "policy", "default.yaml");
export const UDP_PORT = 9000; //   the bench's UDP flow (allowed by the bench policy)
export const UDP_SPORT = 40000; // its source port (fixed: the fw1_10K run needs the flow known)
export const DENIED_UDP_PORT = 9001; // a flow every policy here denies
export const ECHO_PORT = 443; //   connection rate and round trips (default policy: ext-https-443)
export const BULK_PORT = 80; //    bulk TCP (default policy: ext-http-80)

export type Kind = "a" | "b" | "c" | "d";
export interface Contender { id: string; kind: Kind; label: string; on(): void; off(): void }

// The default policy and one row of the bench's own: its UDP flow to the
// listener (the default policy denies UDP). TCP 443 and 80 are the
// default policy's own rows.
export function writeBenchPolicy(dir: string): string {
  const file = join(dir, "bench-policy.yaml");
  const extra = ["", "  # ---- the end-to-end bench's UDP flow ----", "  - name: bench-udp", "    action: allow",
    "    interface: external", "    direction: in", "    proto: udp", "    dst: listener", `    dport: ${UDP_PORT}`, ""];
  writeFileSync(file, readFileSync(DEFAULT_POLICY, "utf8").trimEnd() + "\n" + extra.join("\n"));
  return file;
}

export function board(first: number, count: number): BoardConfig {
  return { mode: "gateway", external: { dev: DEVS.external }, internal: { dev: DEVS.internal }, queues: { first, count } };
}

// The bench policy with every allow rule offloading (after 10 packets).
export function writeOffloadPolicy(dir: string, policy: string): string {
  const file = join(dir, "bench-offload-policy.yaml");
  writeFileSync(file, `${readFileSync(policy, "utf8").trimEnd()}\noffload:\n  all: true\n  after: 10\n`);
  return file;
}

function writeBoard(dir: string, name: string, b: BoardConfig): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify({ version: 1, mode: b.mode, external: { dev: b.external.dev }, internal: { dev: b.internal.dev }, queues: b.queues,
    ...(b.offload?.enabled ? { offload: { enabled: true, on_start: b.offload.onStart } } : {}) }));
  return file;
}

const queueList = (b: BoardConfig): number[] => Array.from({ length: 2 * b.queues!.count }, (_, i) => b.queues!.first + i);

export class Contenders {
  private current: Contender | null = null;
  readonly daemons = new Map<string, { proc: Proc; sock: string }>();
  readonly consumers = new Map<string, Proc>();

  constructor(readonly net: BenchNet, readonly tools: Tools) {}

  private get netns(): string { return this.net.ns("appliance"); }

  switchTo(c: Contender): void {
    if (this.current === c) return;
    this.current?.off();
    this.current = null;
    c.on();
    this.current = c;
  }

  off(): void {
    this.current?.off();
    this.current = null;
  }

  forward(): Contender {
    return { id: "a", kind: "a", label: "(a) forward, no filter", on: () => undefined, off: () => undefined };
  }

  // Loads a table as kernel rules (iptables chain `chain` in both families,
  // nft table `table`), dormant; returns the two contenders that turn them on.
  kernel(spec: TableSpec, o: { stateful: boolean; chain: string; nftFamily: "inet" | "ip"; nftTable: string; id: string; label: string }): Contender[] {
    const k = kernelRules(spec, { stateful: o.stateful, devs: DEVS });
    const fams = o.nftFamily === "ip" ? [["iptables-legacy", k.v4]] as const : [["iptables-legacy", k.v4], ["ip6tables-legacy", k.v6]] as const;
    for (const [ipt, rules] of fams) runOk([`${ipt}-restore`, "-w", "--noflush"], { netns: this.netns, input: iptablesRestoreText(o.chain, rules) });
    runOk(["nft", "-f", "-"], { netns: this.netns, input: nftTableText(o.nftFamily, o.nftTable, k.nft) });
    return [
      {
        id: `${o.id}-ipt`, kind: "b", label: `(b) ${o.label}, iptables-legacy`,
        on: () => { for (const [ipt] of fams) runOk([ipt, "-w", "-I", "FORWARD", "1", "-j", o.chain], { netns: this.netns }); },
        off: () => { for (const [ipt] of fams) runOk([ipt, "-w", "-D", "FORWARD", "-j", o.chain], { netns: this.netns }); },
      },
      {
        id: `${o.id}-nft`, kind: "b", label: `(b) ${o.label}, nftables`,
        on: () => { runOk(["nft", "add", "rule", o.nftFamily, o.nftTable, "pcbhook", "jump", "rules"], { netns: this.netns }); },
        off: () => { runOk(["nft", "flush", "chain", o.nftFamily, o.nftTable, "pcbhook"], { netns: this.netns }); },
      },
    ];
  }

  // Removes a kernel table loaded by kernel() (its jumps must be off).
  dropKernel(chain: string, nftFamily: string, nftTable: string): void {
    for (const ipt of ["iptables-legacy", "ip6tables-legacy"]) {
      run([ipt, "-w", "-F", chain], { netns: this.netns });
      run([ipt, "-w", "-X", chain], { netns: this.netns });
    }
    run(["nft", "delete", "table", nftFamily, nftTable], { netns: this.netns });
  }

  // The queue rules of a board: the iptables-legacy-restore text that
  // `portcullis rules --apply` loads (host/kernel/rules.ts iptablesRestore,
  // chains and their jumps from INPUT/FORWARD/OUTPUT), loaded and taken out
  // here with two restores per switch. apply() itself first reads the whole
  // table back with iptables-legacy-save, which with the fw1_10K chains
  // loaded overflows the 1 MiB that detect.ts's run() reads (ENOBUFS).
  private queued(id: string, kind: Kind, label: string, b: BoardConfig): Contender {
    const on = iptablesRestore(b);
    const lines = on.split("\n");
    const off = ["*filter",
      ...lines.flatMap((l) => { const m = /^-I (\S+) 1 -j (\S+)$/.exec(l); return m ? [`-D ${m[1]} -j ${m[2]}`] : []; }),
      // Every flush before any delete: the chains jump to the offload chain.
      ...lines.flatMap((l) => { const m = /^:(\S+) /.exec(l); return m ? [`-F ${m[1]}`] : []; }),
      ...lines.flatMap((l) => { const m = /^:(\S+) /.exec(l); return m ? [`-X ${m[1]}`] : []; }),
      "COMMIT", ""].join("\n");
    const load = (text: string): void => {
      for (const ipt of ["iptables-legacy", "ip6tables-legacy"]) runOk([`${ipt}-restore`, "-w", "--noflush"], { netns: this.netns, input: text });
    };
    return { id, kind, label, on: () => load(on), off: () => load(off) };
  }

  // (c): the accept-all consumer on the board's queues.
  // Its copy range is the daemon's (header-only by default), so the ratio
  // of the two stays honest.
  async acceptAll(id: string, label: string, b: BoardConfig, gso: boolean, copyRange = DEFAULT_COPY_RANGE): Promise<Contender> {
    const p = this.net.start("appliance", [this.tools.nfqAccept, "--gso", gso ? "1" : "0", "--copy", String(copyRange), "--queues", queueList(b).join(",")], id);
    await p.waitFor(/^ready$/m);
    this.consumers.set(id, p);
    return this.queued(id, "c", label, b);
  }

  // (d): the daemon with `policy` (YAML or compiled table) on the board's
  // queues. With the board's offload on, its rules are loaded while it starts
  // (it reads the offload chain's generation) and it is stopped while off.
  async portcullis(id: string, label: string, b: BoardConfig, policy: string, gso: boolean, engine: EngineName = "v8",
    copyRange = DEFAULT_COPY_RANGE): Promise<Contender> {
    const rules = this.queued(id, "d", label, b);
    const offload = b.offload?.enabled === true;
    if (offload) rules.on();
    const dir = join(this.net.dir, id);
    mkdirSync(dir, { recursive: true });
    const sock = join(dir, "control.sock");
    const argv = [process.execPath, CLI, "run", "--policy", policy, "--board", writeBoard(dir, "board", b), "--control", sock,
      "--state-dir", join(dir, "state"), "--no-watch", "--max-flows", "262144", "--engine", engine, "--copy-range", String(copyRange), ...(gso ? ["--gso"] : [])];
    const proc = this.net.start("appliance", argv, id);
    for (let t = 0; ; t += 50) {
      if (!proc.running) throw new Error(`the daemon ${id} exited: ${proc.out.trim().slice(-600)} ${proc.err.trim().slice(-600)}`);
      if (existsSync(sock)) {
        try {
          if ((await request(sock, { cmd: "stats" }, 1000)).ok === true) break;
        } catch { /* not yet */ }
      }
      if (t > 30_000) throw new Error(`the daemon ${id} did not answer on ${sock} within 30 s: ${proc.out.trim().slice(-600)}`);
      await sleep(50);
    }
    this.daemons.set(id, { proc, sock });
    if (!offload) return rules;
    rules.off();
    proc.child.kill("SIGSTOP");
    return {
      ...rules,
      on: () => { proc.child.kill("SIGCONT"); rules.on(); },
      off: () => { rules.off(); proc.child.kill("SIGSTOP"); },
    };
  }

  // Ends a daemon (by its pid) and forgets it.
  async stopDaemon(id: string): Promise<void> {
    const d = this.daemons.get(id);
    if (!d) return;
    d.proc.child.kill("SIGCONT");
    await d.proc.stop(5000);
    this.daemons.delete(id);
  }

  // A daemon's control socket request (the daemon must be running: on).
  async control(id: string, req: Record<string, unknown>, ms = 30_000): Promise<Record<string, unknown>> {
    const d = this.daemons.get(id);
    if (!d) throw new Error(`no daemon ${id}`);
    d.proc.child.kill("SIGCONT");
    return request(d.sock, req, ms);
  }

  // The daemon's resident memory now (VmRSS, MiB).
  daemonRssMiB(id: string): number {
    const d = this.daemons.get(id);
    const pid = d?.proc.child.pid;
    if (pid === undefined) throw new Error(`no daemon ${id}`);
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    if (!m) throw new Error(`no VmRSS for ${id} (pid ${pid})`);
    return Math.round((Number(m[1]) / 1024) * 10) / 10;
  }

  async daemonStats(id: string): Promise<Record<string, unknown>> {
    const r = await this.control(id, { cmd: "stats" }, 5000);
    if (r.ok !== true) throw new Error(`stats of ${id}: ${String(r.error)}`);
    return r.stats as Record<string, unknown>;
  }

  // The kernel's counters of each bound queue (nfnetlink_queue): packets
  // dropped because the queue was full, or because the consumer's socket was.
  queueDrops(): Map<number, KernelQueue> {
    return parseKernelQueues(this.net.execOk("appliance", ["cat", "/proc/net/netfilter/nfnetlink_queue"]));
  }
}

export { queueList };
