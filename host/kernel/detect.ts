// What the kernel (of one network namespace) can queue with: nftables' `queue`
// statement needs nft_queue (CONFIG_NFT_QUEUE), which Pi kernels have and
// some development kernels lack; iptables-legacy's NFQUEUE target needs
// xt_NFQUEUE. Each is tried for real, without touching traffic: a throwaway
// table or chain that no hook reaches is loaded with a queue rule and deleted.
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export interface RunResult { status: number; stdout: string; stderr: string }

// A tool by name on PATH or in the sbin directories (which a non-login root
// shell may not have on PATH); null when it is not installed.
export function findTool(name: string): string | null {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

export class KernelError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "KernelError";
  }
}

function tool(name: string): string {
  const p = findTool(name);
  if (p === null) throw new KernelError("tool_missing", `${name} is not installed (Debian: ${name === "nft" ? "nftables" : name === "ip" ? "iproute2" : "iptables"})`);
  return p;
}

// Runs a tool, inside `netns` when given (ip netns exec). Never throws for a
// non-zero status; the caller reads it.
export function run(argv: readonly string[], opts: { netns?: string; input?: string } = {}): RunResult {
  const [cmd, ...args] = argv;
  const full = opts.netns ? [tool("ip"), "netns", "exec", opts.netns, tool(cmd!), ...args] : [tool(cmd!), ...args];
  // maxBuffer: a box with an operator's big ruleset lists megabytes in
  // iptables-legacy-save (spawnSync's default 1 MiB ends in ENOBUFS).
  const r = spawnSync(full[0]!, full.slice(1), { input: opts.input ?? "", encoding: "utf8", timeout: 30_000, maxBuffer: 256 << 20 });
  if (r.error) throw new KernelError("spawn_failed", `${argv.join(" ")}: ${r.error.message}`);
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

// Runs a tool and throws with its stderr on failure.
export function runOk(argv: readonly string[], opts: { netns?: string; input?: string } = {}): string {
  const r = run(argv, opts);
  if (r.status !== 0) {
    const where = opts.netns ? ` (netns ${opts.netns})` : "";
    throw new KernelError("command_failed", `${argv.join(" ")}${where} failed: ${r.stderr.trim() || `exit status ${r.status}`}`);
  }
  return r.stdout;
}

export interface Support { ok: boolean; why: string }
export interface Detection { nftQueue: Support; iptablesLegacy: Support }

const PROBE_TABLE = `portcullis_probe_${process.pid}`;

// nftables with the queue statement: a table holding one regular chain (no
// hook, so no packet ever sees it) with a queue rule; the kernel refuses the
// rule with ENOENT when nft_queue is missing.
export function detectNftQueue(netns?: string): Support {
  if (findTool("nft") === null) return { ok: false, why: "nft is not installed (Debian: nftables)" };
  const probe = `table inet ${PROBE_TABLE} {\n\tchain probe {\n\t\tqueue num 0 bypass\n\t}\n}\n`;
  const r = run(["nft", "-f", "-"], { netns, input: probe });
  if (r.status !== 0) {
    run(["nft", "delete", "table", "inet", PROBE_TABLE], { netns });
    const msg = r.stderr.split("\n").find((l) => l.includes("Error:"))?.replace(/^.*Error:\s*/, "") ?? `exit status ${r.status}`;
    const hint = /No such file or directory/.test(r.stderr) ? " (the kernel has no nft_queue: CONFIG_NFT_QUEUE)" : "";
    return { ok: false, why: `the kernel refused an nftables queue rule: ${msg}${hint}` };
  }
  const d = run(["nft", "delete", "table", "inet", PROBE_TABLE], { netns });
  if (d.status !== 0) return { ok: false, why: `could not delete the probe table inet ${PROBE_TABLE}: ${d.stderr.trim()}` };
  return { ok: true, why: "nftables loaded and deleted a queue rule" };
}

// iptables-legacy and ip6tables-legacy with the NFQUEUE target: a new chain
// that nothing jumps to, one NFQUEUE rule, then the chain is deleted.
export function detectIptablesLegacy(netns?: string): Support {
  for (const ipt of ["iptables-legacy", "ip6tables-legacy"]) {
    if (findTool(ipt) === null) return { ok: false, why: `${ipt} is not installed (Debian: iptables)` };
  }
  const chain = `PORTCULLIS-PROBE-${process.pid}`.slice(0, 28);
  for (const ipt of ["iptables-legacy", "ip6tables-legacy"]) {
    const steps = [["-N", chain], ["-A", chain, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]];
    let failed: string | null = null;
    for (const s of steps) {
      const r = run([ipt, "-w", "-t", "filter", ...s], { netns });
      if (r.status !== 0) { failed = r.stderr.trim() || `exit status ${r.status}`; break; }
    }
    run([ipt, "-w", "-t", "filter", "-F", chain], { netns });
    run([ipt, "-w", "-t", "filter", "-X", chain], { netns });
    if (failed !== null) return { ok: false, why: `${ipt} refused an NFQUEUE rule: ${failed}` };
  }
  return { ok: true, why: "iptables-legacy and ip6tables-legacy loaded and deleted an NFQUEUE rule" };
}

export function detect(netns?: string): Detection {
  return { nftQueue: detectNftQueue(netns), iptablesLegacy: detectIptablesLegacy(netns) };
}
