// The kernel's queue rules, generated from the board configuration: which
// packets of the two NICs go to which NFQUEUE queue. The rules only queue;
// the daemon maps each packet's interface index to its role and the core
// decides. Two backends produce the same effect:
//   nftables          `table inet portcullis`, one base chain per hook
//   iptables-legacy   chains PORTCULLIS-IN/-OUT/-FWD in the filter table of
//                     iptables-legacy and ip6tables-legacy, jumped to first
//                     from INPUT/OUTPUT/FORWARD
// (for kernels without nft_queue, see detect.ts).
//
// Queue numbering (queues: { first: F, count: N }):
//   external NIC   F       .. F+N-1
//   internal NIC   F+N     .. F+2N-1
// so each side has its own queues and the daemon can give them different
// fail-open settings (a property of the queue, set when the daemon binds it).
// With N > 1 the kernel spreads packets over the side's N queues by a hash of
// the addresses and protocol that is the same in both directions (nft
// `queue num a-b`, iptables `--queue-balance a:b`; not CPU fanout, which would
// split a flow across queues).
//
// Which side a packet is queued on:
//   host mode      INPUT `-i dev`, OUTPUT `-o dev`: the side of that NIC.
//                  FORWARD as in gateway mode: an appliance that is the proxy
//                  should not forward, and if it does the policy decides.
//                  Loopback and other interfaces are left alone.
//   gateway mode   FORWARD only: the side the packet entered by; a packet
//                  from another interface, the side it leaves by. (So the
//                  two directions of one forwarded flow use the two sides'
//                  queues: the daemon keeps one connection table for all.)
// Bypass (a side's `bypass`): when no daemon is bound to the queue, packets
// pass uninspected; without it (the default) they are dropped.
import { type BoardConfig, boardProblem, type Side, SIDES } from "./board.js";
import { detect, type Detection, KernelError, findTool, run, runOk } from "./detect.js";
import * as OFF from "./offload.js";
import { haPasses, haDescribe, iptHaRule, nftHaRule } from "./rules-ha.js";

export type { BoardConfig, Side, SideConfig } from "./board.js";

export const NFT_TABLE = "portcullis";
export const CHAINS = { input: "PORTCULLIS-IN", output: "PORTCULLIS-OUT", forward: "PORTCULLIS-FWD" } as const;
type Hook = keyof typeof CHAINS;
const BASE: Record<Hook, string> = { input: "INPUT", output: "OUTPUT", forward: "FORWARD" };
const HOOK_ORDER: readonly Hook[] = ["input", "forward", "output"];

export interface SideQueues {
  side: Side;
  dev: string;
  first: number; // queue numbers first..last
  last: number;
  failOpen: boolean;
  bypass: boolean;
}

export interface QueueFlags { queue: number; side: Side; dev: string; failOpen: boolean; bypass: boolean }

function checked(c: BoardConfig): BoardConfig {
  const p = boardProblem(c);
  if (p !== null) throw new KernelError("bad_board", `board configuration: ${p}`);
  return c;
}

// The two sides' queues: external first, then internal.
export function queuePlan(config: BoardConfig): SideQueues[] {
  const c = checked(config);
  const { first, count } = c.queues ?? { first: 0, count: 1 };
  return SIDES.map((side, i) => ({
    side, dev: c[side].dev,
    first: first + i * count, last: first + i * count + count - 1,
    failOpen: c[side].failOpen ?? false, bypass: c[side].bypass ?? false,
  }));
}

// What the daemon passes to the addon when it binds each queue (the fail-open
// flag is the queue's, NFQA_CFG_F_FAIL_OPEN), in queue order.
export function queueFlags(config: BoardConfig): QueueFlags[] {
  const out: QueueFlags[] = [];
  for (const s of queuePlan(config)) {
    for (let q = s.first; q <= s.last; q++) out.push({ queue: q, side: s.side, dev: s.dev, failOpen: s.failOpen, bypass: s.bypass });
  }
  return out;
}

// One queueing rule: which interface match, which side's queues.
interface Match { dir: "in" | "out"; q: SideQueues }

// Both modes queue the appliance's own input and output too: in gateway
// mode the policy speaks of forwarded traffic, so the appliance's own
// addresses get only what the core passes without rules (neighbour
// discovery, ICMP errors about tracked flows, such as its own
// "fragmentation needed") and are otherwise closed.
function matches(config: BoardConfig): Record<Hook, Match[]> {
  const [ext, int] = queuePlan(config) as [SideQueues, SideQueues];
  const forward: Match[] = [{ dir: "in", q: ext }, { dir: "in", q: int }, { dir: "out", q: ext }, { dir: "out", q: int }];
  return { input: [{ dir: "in", q: ext }, { dir: "in", q: int }], output: [{ dir: "out", q: ext }, { dir: "out", q: int }], forward };
}

function describe(config: BoardConfig): string[] {
  const what = config.mode === "gateway"
    ? "packets forwarded between the two NICs, and the appliance's own packets on them, go to the daemon."
    : "input, output and forwarded packets of the two NICs go to the daemon.";
  return [
    `portcullis queue rules, mode ${config.mode}: ${what}`,
    ...(config.offload?.enabled ? ["  offload on: flows the daemon hands over (their connmark) pass before the queue"] : []),
    ...haDescribe(config),
    ...queuePlan(config).map((s) => `  ${s.side} ${s.dev}: queue ${s.first === s.last ? s.first : `${s.first}-${s.last}`}` +
      `, ${s.bypass ? "bypass (no daemon: packets pass)" : "no bypass (no daemon: packets dropped)"}` +
      `, ${s.failOpen ? "fail open" : "fail closed"} (queue full: ${s.failOpen ? "packets pass" : "packets dropped"})`),
  ];
}

function nftQueue(q: SideQueues): string {
  return `queue num ${q.first === q.last ? q.first : `${q.first}-${q.last}`}${q.bypass ? " bypass" : ""}`;
}

// The nftables ruleset, for `nft -f`. Loading it replaces the table in one
// transaction (the first two lines make the delete safe when it is absent).
// `gen`: the offload generation to load (host/kernel/offload.ts), when the
// board has offload on; apply() keeps the one the kernel has.
export function nftRuleset(config: BoardConfig, gen = 0): string {
  const m = matches(config);
  const off = config.offload?.enabled === true;
  const out = [
    "#!/usr/sbin/nft -f",
    ...describe(config).map((l) => `# ${l}`),
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
  ];
  if (off) out.push(`\tchain ${OFF.NFT_CHAIN} {`, ...OFF.nftOffloadChain(gen).map((r) => `\t\t${r}`), "\t}");
  for (const hook of HOOK_ORDER) {
    if (m[hook].length === 0) continue;
    out.push(`\tchain ${hook} {`, `\t\ttype filter hook ${hook} priority filter; policy accept;`);
    out.push(...haPasses(config, hook).map((r) => `\t\t${nftHaRule(r)}`));
    if (off) out.push(...OFF.nftOffloadEntry().map((r) => `\t\t${r}`));
    for (const { dir, q } of m[hook]) out.push(`\t\t${dir === "in" ? "iifname" : "oifname"} "${q.dev}" ${nftQueue(q)}`);
    out.push("\t}");
  }
  out.push("}");
  return `${out.join("\n")}\n`;
}

function iptQueue(q: SideQueues): string {
  const num = q.first === q.last ? `--queue-num ${q.first}` : `--queue-balance ${q.first}:${q.last}`;
  return `-j NFQUEUE ${num}${q.bypass ? " --queue-bypass" : ""}`;
}

function iptHooks(config: BoardConfig): Hook[] {
  const m = matches(config);
  return HOOK_ORDER.filter((h) => m[h].length > 0);
}

// iptables-legacy-restore --noflush input for one family (the same rules for
// both, but for the HA pair's, which name addresses of one family):
// declaring a chain creates it or empties it, so loading it again replaces
// the rules in one commit. `jumpsToAdd` are the hooks whose base chain does
// not jump to our chain yet (apply() reads that first).
export function iptablesRestore(config: BoardConfig, jumpsToAdd: readonly Hook[] = iptHooks(config), gen = 0, family: 4 | 6 = 4): string {
  const m = matches(config);
  const hooks = iptHooks(config);
  const off = config.offload?.enabled === true;
  const out = ["*filter", ...(off ? [`:${OFF.CHAIN} - [0:0]`] : []), ...hooks.map((h) => `:${CHAINS[h]} - [0:0]`)];
  if (off) out.push(...OFF.iptablesOffloadChain(gen));
  for (const h of hooks) {
    out.push(...haPasses(config, h).filter((r) => r.family === family).map((r) => `-A ${CHAINS[h]} ${iptHaRule(r)}`));
    if (off) out.push(...OFF.iptablesOffloadEntry(CHAINS[h]));
    for (const { dir, q } of m[h]) out.push(`-A ${CHAINS[h]} ${dir === "in" ? "-i" : "-o"} ${q.dev} ${iptQueue(q)}`);
  }
  for (const h of hooks) if (jumpsToAdd.includes(h)) out.push(`-I ${BASE[h]} 1 -j ${CHAINS[h]}`);
  out.push("COMMIT");
  return `${out.join("\n")}\n`;
}

// The same as a shell script for an operator: both families, idempotent.
// (With ha: the two families' rules differ, so each has its own block.)
export function iptablesScript(config: BoardConfig): string {
  const hooks = iptHooks(config);
  const jumps = (ipt: string, indent: string): string[] =>
    hooks.map((h) => `${indent}${ipt} -w -C ${BASE[h]} -j ${CHAINS[h]} 2>/dev/null || ${ipt} -w -I ${BASE[h]} 1 -j ${CHAINS[h]}`);
  const head = ["#!/bin/sh", ...describe(config).map((l) => `# ${l}`), "# For kernels without nft_queue: iptables-legacy and ip6tables-legacy.", "set -eu"];
  const out = config.ha === undefined ? [
    ...head,
    "for ipt in iptables-legacy ip6tables-legacy; do",
    "\t\"$ipt-restore\" -w --noflush <<'EOF'",
    iptablesRestore(config, []).trimEnd(),
    "EOF",
    ...jumps('"$ipt"', "\t"),
    "done",
  ] : [
    ...head,
    ...([[4, "iptables-legacy"], [6, "ip6tables-legacy"]] as const).flatMap(([family, ipt]) => [
      `${ipt}-restore -w --noflush <<'EOF'`,
      iptablesRestore(config, [], 0, family).trimEnd(),
      "EOF",
      ...jumps(ipt, ""),
    ]),
  ];
  return `${out.join("\n")}\n`;
}

// ---- applying and removing ------------------------------------------------

export type Backend = "nft" | "iptables";
export interface ApplyOptions { backend?: Backend | "auto"; netns?: string }
export interface ApplyResult { backend: Backend; netns: string | null; detection: Detection | null; queues: QueueFlags[] }

const IPT = [
  { cmd: "iptables-legacy", save: "iptables-legacy-save", restore: "iptables-legacy-restore", family: 4 },
  { cmd: "ip6tables-legacy", save: "ip6tables-legacy-save", restore: "ip6tables-legacy-restore", family: 6 },
] as const;

// What of ours is in a family's filter table: our chains, and which base
// chains jump to them. Without -t, the save lists only the tables that exist,
// so reading creates nothing (and a kernel without legacy tables has none).
function iptState(save: string, netns?: string): { chains: Set<string>; jumps: Array<{ base: string; chain: string }> } {
  const r = run([save], { netns });
  const ours = new Set<string>([...Object.values(CHAINS), OFF.CHAIN]);
  const chains = new Set<string>();
  const jumps: Array<{ base: string; chain: string }> = [];
  let inFilter = false;
  for (const line of r.status === 0 ? r.stdout.split("\n") : []) {
    if (line.startsWith("*")) inFilter = line === "*filter";
    if (!inFilter) continue;
    const decl = /^:(\S+) /.exec(line);
    if (decl && ours.has(decl[1]!)) chains.add(decl[1]!);
    const jump = /^-A (INPUT|OUTPUT|FORWARD) -j (\S+)$/.exec(line);
    if (jump && ours.has(jump[2]!)) jumps.push({ base: jump[1]!, chain: jump[2]! });
  }
  return { chains, jumps };
}

function applyIptables(config: BoardConfig, gen: number, netns?: string): void {
  for (const f of IPT) {
    const st = iptState(f.save, netns);
    const missing = iptHooks(config).filter((h) => !st.jumps.some((j) => j.chain === CHAINS[h]));
    runOk([f.restore, "-w", "--noflush"], { netns, input: iptablesRestore(config, missing, gen, f.family) });
  }
  // A chain of ours this mode does not use (the other mode's, or the
  // offload chain with offload off) goes.
  const used = new Set<string>(iptHooks(config).map((h) => CHAINS[h]));
  if (config.offload?.enabled) used.add(OFF.CHAIN);
  removeIptables(netns, (chain) => !used.has(chain));
}

function removeIptables(netns?: string, which: (chain: string) => boolean = () => true): boolean {
  let removed = false;
  for (const f of IPT) {
    if (findTool(f.save) === null) continue;
    const st = iptState(f.save, netns);
    const lines = ["*filter"];
    for (const j of st.jumps) if (which(j.chain)) lines.push(`-D ${j.base} -j ${j.chain}`);
    // Every flush before any delete: our chains jump to the offload chain.
    for (const c of st.chains) if (which(c)) lines.push(`-F ${c}`);
    for (const c of st.chains) if (which(c)) lines.push(`-X ${c}`);
    if (lines.length === 1) continue;
    runOk([f.restore, "-w", "--noflush"], { netns, input: `${[...lines, "COMMIT"].join("\n")}\n` });
    removed = true;
  }
  return removed;
}

function removeNft(netns?: string): boolean {
  if (findTool("nft") === null) return false;
  if (run(["nft", "list", "table", "inet", NFT_TABLE], { netns }).status !== 0) return false;
  runOk(["nft", "delete", "table", "inet", NFT_TABLE], { netns });
  return true;
}

// Loads the rules with the chosen backend ("auto": nftables when the kernel
// can queue from it, else iptables-legacy), then removes what the other
// backend had loaded before, so a packet is never queued twice for long and
// never left unqueued in between.
export function apply(config: BoardConfig, opts: ApplyOptions = {}): ApplyResult {
  checked(config);
  const want = opts.backend ?? "auto";
  const netns = opts.netns;
  let detection: Detection | null = null;
  let backend: Backend;
  if (want === "auto") {
    detection = detect(netns);
    if (detection.nftQueue.ok) backend = "nft";
    else if (detection.iptablesLegacy.ok) backend = "iptables";
    else {
      throw new KernelError("no_backend", `no way to queue packets here: nftables: ${detection.nftQueue.why}; iptables: ${detection.iptablesLegacy.why}`);
    }
  } else backend = want;

  // Loading again keeps the offload generation the kernel has (so the flows
  // it carries keep passing); a first load starts at 0.
  const gen = config.offload?.enabled ? OFF.readGeneration(netns)?.gen ?? 0 : 0;
  if (backend === "nft") {
    const r = run(["nft", "-f", "-"], { netns, input: nftRuleset(config, gen) });
    if (r.status !== 0) {
      const why = /No such file or directory/.test(r.stderr) ? " (does the kernel have nft_queue? try --backend iptables)" : "";
      throw new KernelError("apply_failed", `nft refused the ruleset${why}:\n${r.stderr.trim()}`);
    }
    removeIptables(netns);
  } else {
    applyIptables(config, gen, netns);
    removeNft(netns);
  }
  return { backend, netns: netns ?? null, detection, queues: queueFlags(config) };
}

// Removes every rule and chain of ours, from both backends; true when there
// was something to remove. Safe to call again.
export function remove(opts: { netns?: string } = {}): boolean {
  const a = removeNft(opts.netns);
  const b = removeIptables(opts.netns);
  return a || b;
}
