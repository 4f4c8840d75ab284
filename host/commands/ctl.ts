// `portcullis stats [--json]` and `portcullis reload [POLICY|TABLE]`: talk to
// the running daemon over its control socket.
import { resolve } from "node:path";
import { Command } from "commander";
import { DEFAULT_CONTROL, request } from "../daemon/control.js";
import { type HaStats } from "../daemon/ha.js";
import { parseDuration } from "../policy/limit-text.js";

interface Stats {
  started: string; policy: string; mode: string;
  verdicts: { accept: { packets: number; bytes: number }; drop: { packets: number; bytes: number } };
  reasons: Array<{ reason: string; packets: number; bytes: number }>;
  rules: Array<{ rule: number; info: string; packets: number; bytes: number }>;
  flows: { live: number; capacity: number; created: number; expired: number; evicted: number; refused: number; ended: number };
  queues: Array<Record<string, number | string>>;
  reloads: Array<{
    ticket: number | null; at: string; ok: boolean; error?: string; trigger?: string; from?: string;
    ms: { compile: number; stage: number; commit: number; total: number }; recheck?: { ended: number };
  }>;
  shadow: ShadowReport | null;
  coreEngine?: string;
  engine?: { traps: number };
  undecided?: Record<string, number>;
  offload?: {
    generation: number; backend: string; live: number; total: number; ended: number; revoked: number;
    revocations: number; lastRevocation: string | null; lastRevocationMs: number | null; bytes: number; packets: number;
    adopted: number; adoptRefused: number; endedAtStart: number; removedUntracked: number; leftReplicated?: number;
  } | null;
  ha?: HaStats | null;
  limits?: Record<string, number>;
  tcp?: { pickup?: boolean; liberal?: boolean; pickedUp: number };
}

export function formatStats(s: Stats): string {
  const out = [
    `policy ${s.policy} (mode ${s.mode}), running since ${s.started}`,
    `engine ${s.coreEngine ?? "v8"}: ${s.engine?.traps ?? 0} batches trapped (${s.undecided?.core_error ?? 0} packets dropped for it)`,
    `verdicts: accept ${s.verdicts.accept.packets} packets / ${s.verdicts.accept.bytes} bytes, drop ${s.verdicts.drop.packets} packets / ${s.verdicts.drop.bytes} bytes`,
    `flows: ${s.flows.live} of ${s.flows.capacity} (created ${s.flows.created}, expired ${s.flows.expired}, evicted ${s.flows.evicted}, refused ${s.flows.refused}, ended by reload ${s.flows.ended})`,
    ...(s.tcp ? [`tcp: pickup ${s.tcp.pickup ? "on" : "off"} (picked up ${s.tcp.pickedUp}), window tracking ${s.tcp.liberal ? "off (liberal)" : "on"}`] : []),
    ...(s.offload ? [
      `offload (${s.offload.backend}, generation ${s.offload.generation}): ${s.offload.live} flows with the kernel now, ${s.offload.total} offloaded, ` +
        `${s.offload.ended} ended with the kernel's entry, ${s.offload.revoked} revoked; ${s.offload.bytes} bytes / ${s.offload.packets} packets carried by the kernel`,
      `  revocations ${s.offload.revocations}${s.offload.lastRevocation ? `, last ${s.offload.lastRevocation} (${s.offload.lastRevocationMs?.toFixed(1)} ms)` : ""}; ` +
        `at start adopted ${s.offload.adopted}, refused ${s.offload.adoptRefused}, ended ${s.offload.endedAtStart}; untracked kernel entries removed ${s.offload.removedUntracked}` +
        `${s.offload.leftReplicated ? `, left to the master ${s.offload.leftReplicated}` : ""}`,
    ] : []),
    ...(s.ha ? [formatHa(s.ha)] : []),
    ...(s.limits ? [formatSources([], s.limits)] : []),
    "rules:",
    ...s.rules.map((r) => `  [${r.rule}] ${String(r.packets).padStart(10)} packets  ${r.info}`),
    "reasons:",
    ...s.reasons.map((r) => `  ${r.reason.padEnd(22)} ${String(r.packets).padStart(10)} packets`),
    "queues:",
    ...s.queues.map((q) => `  ${Object.entries(q).map(([k, v]) => `${k} ${v}`).join(", ")}`),
    "reloads:",
    ...s.reloads.slice(-10).map((r) => `  ${r.at}${r.trigger ? ` ${r.trigger}` : ""} ticket ${r.ticket ?? "-"} ` +
      `${r.ok ? `ok${r.from ? ` (LAST GOOD TABLE ${r.from})` : ""}` : `FAILED: ${r.error}`} ` +
      `(${r.ms.total.toFixed(1)} ms: compile ${r.ms.compile.toFixed(1)}, stage ${r.ms.stage.toFixed(1)}, commit ${r.ms.commit.toFixed(2)})` +
      `${r.recheck ? `, re-check ended ${r.recheck.ended} flows` : ""}`),
    ...(s.shadow ? [formatShadow(s.shadow)] : []),
  ];
  return out.join("\n");
}

// One line: the role, since when, how often it changed, what the
// transitions to master adopted.
export function formatHa(h: HaStats): string {
  // A notify that repeats the role is no transition: since stays null.
  const why = h.inferred ? " (from the virtual addresses at start; keepalived has not said yet)" : h.since ? ` since ${h.since}`
    : h.notifies > 0 ? ` (since the daemon started; keepalived said so ${h.notifies} time${h.notifies === 1 ? "" : "s"})` : " (keepalived has not said yet)";
  return `ha: ${h.role}${why}, ${h.transitions} transition${h.transitions === 1 ? "" : "s"}` +
    `${h.adopted || h.adoptRefused || h.lastAdoption ? `; offloaded flows adopted at transitions to master ${h.adopted}, refused ${h.adoptRefused}` : ""}`;
}

export function statsCommand(): Command {
  return new Command("stats")
    .description("counters of the running daemon: per rule, per reason, per queue, flows, reload history")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .option("--json", "print the daemon's answer as JSON")
    .option("--sources [n]", "instead: the top N sources of the limited rules, by live flows and new-flow rate (default 20)")
    .action(async (o: { control: string; json?: boolean; sources?: string | boolean }) => {
      if (o.sources !== undefined) {
        const top = o.sources === true ? 20 : Number(o.sources);
        const r = await request(o.control, { cmd: "sources", top });
        if (r.ok !== true) throw new Error(String(r.error));
        process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatSources(r.sources as SourceRow[], r.limits as Record<string, number>)}\n`);
        return;
      }
      const r = await request(o.control, { cmd: "stats" });
      if (r.ok !== true) throw new Error(String(r.error));
      process.stdout.write(o.json ? `${JSON.stringify(r.stats, null, 2)}\n` : `${formatStats(r.stats as Stats)}\n`);
    });
}

interface ShadowReport {
  path: string; since: string; packets: number; differ: number;
  liveAcceptCandidateDrop: number; liveDropCandidateAccept: number;
  byReasons: Record<string, number>;
  samples: Array<{ packet: string; live: { verdict: string; reason: string; rule: string | null }; candidate: { verdict: string; reason: string; rule: string | null } }>;
}

export function formatShadow(r: ShadowReport): string {
  return [
    `candidate ${r.path}, running since ${r.since}`,
    `  ${r.packets} packets seen, ${r.differ} would get another verdict ` +
      `(live accepts, candidate drops: ${r.liveAcceptCandidateDrop}; live drops, candidate accepts: ${r.liveDropCandidateAccept})`,
    ...Object.entries(r.byReasons).map(([k, n]) => `  ${String(n).padStart(8)}  ${k}`),
    ...(r.samples.length ? ["  samples:"] : []),
    ...r.samples.slice(0, 20).map((x) => `    ${x.packet}: live ${x.live.verdict} (${x.live.reason}), candidate ${x.candidate.verdict} (${x.candidate.reason}${x.candidate.rule ? `, ${x.candidate.rule}` : ""})`),
  ].join("\n");
}

export function offloadCommand(): Command {
  const cmd = new Command("offload").description("kernel offload of decided flows (the board config's offload:)");
  cmd.command("revoke")
    .description("every offloaded flow back to the queue: re-checked against the live table now (ended when refused), offloaded again at its next packet while its rule says so")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .action(async (o: { control: string }) => {
      const r = await request(o.control, { cmd: "offload", action: "revoke" }, 120_000);
      if (r.ok !== true) throw new Error(String(r.error));
      const v = r.revoke as { ended: number; revoked: number; ms: number };
      process.stdout.write(`revoked: the kernel queues every offloaded flow again (${v.ms.toFixed(1)} ms); the re-check ended ${v.ended} flows, ${v.revoked} of them offloaded\n`);
    });
  return cmd;
}

export function reloadCommand(): Command {
  return new Command("reload")
    .description("make the running daemon load a policy or table (default: the one it runs); the live table stays if it fails. " +
      "--shadow runs a candidate beside the live table without enforcing it; --promote or --discard ends that")
    .argument("[policy-or-table]", "a YAML policy or a compiled table")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .option("--shadow <candidate>", "run this policy or table as a canary: same packets, no enforcement, differences reported")
    .option("--promote", "make the running canary the live table")
    .option("--discard", "stop the running canary")
    .option("--status", "print the canary's report so far")
    .option("--recheck", "after the commit, re-check every tracked flow against the new table and end those it refuses")
    .action(async (path: string | undefined, o: { control: string; shadow?: string; promote?: boolean; discard?: boolean; status?: boolean; recheck?: boolean }) => {
      const modes = [o.shadow !== undefined, o.promote, o.discard, o.status].filter(Boolean).length;
      if (modes > 1 || (modes === 1 && path)) throw new Error("give one of: a file, --shadow FILE, --promote, --discard, --status");
      if (o.recheck && modes > 0) throw new Error("--recheck goes with a reload (of a file, or of the running policy)");
      if (o.shadow !== undefined || o.discard || o.status) {
        const r = o.status ? await request(o.control, { cmd: "stats" })
          : await request(o.control, o.shadow !== undefined ? { cmd: "shadow", path: resolve(o.shadow) } : { cmd: "discard" }, 120_000);
        if (r.ok !== true) throw new Error(String(r.error));
        const rep = (o.status ? (r.stats as { shadow: ShadowReport | null }).shadow : r.shadow) as ShadowReport | null | undefined;
        if (!rep) throw new Error("no candidate table is running");
        process.stdout.write(`${o.discard ? "discarded " : ""}${formatShadow(rep)}\n`);
        return;
      }
      const req = o.promote ? { cmd: "promote" } : { cmd: "reload", ...(path ? { path: resolve(path) } : {}), ...(o.recheck ? { recheck: true } : {}) };
      const r = await request(o.control, req, 120_000);
      const rec = r.reload as { ticket: number | null; ms: { total: number }; rules?: number; recheck?: { ended: number; revoked?: number; revokeMs?: number } } | undefined;
      if (r.ok !== true) {
        process.stderr.write(`portcullis: ${o.promote ? "promote" : "reload"} refused, the live table is unchanged: ${String(r.error)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${o.promote ? "promoted" : "reloaded"}: ticket ${rec?.ticket}, ${rec?.rules} rules, ${rec?.ms.total.toFixed(1)} ms` +
        `${rec?.recheck ? `; re-check ended ${rec.recheck.ended} flows` : ""}` +
        `${rec?.recheck?.revoked ? `, took ${rec.recheck.revoked} offloaded flows back from the kernel (${rec.recheck.revokeMs?.toFixed(1)} ms)` : ""}\n`);
    });
}

// `portcullis block list|add ADDR [--for DURATION] [--list NAME]|del ADDR [--list NAME]`
export function blockCommand(): Command {
  const ask = async (control: string, req: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const r = await request(control, { cmd: "block", ...req });
    if (r.ok !== true) throw new Error(String(r.error));
    return r;
  };
  const cmd = new Command("block").description("the running daemon's block lists (a limit's overload: list, or one under lists:)");
  cmd.command("list").description("every live entry, with its list and the time it has left")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .option("--json", "print the daemon's answer as JSON")
    .action(async (o: { control: string; json?: boolean }) => {
      const r = await ask(o.control, { op: "list" });
      const rows = r.blocks as Array<{ list: string; prefix: string; expiresInS: number | null }>;
      if (o.json) { process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`); return; }
      process.stdout.write(rows.length === 0 ? "no blocked sources\n"
        : rows.map((b) => `${b.list.padEnd(16)} ${b.prefix.padEnd(44)} ${b.expiresInS === null ? "until removed" : `${Math.ceil(b.expiresInS)} s left`}`).join("\n") + "\n");
    });
  cmd.command("add").description("block ADDR (an address or prefix) until removed, or --for a time")
    .argument("<addr>", "address or prefix, e.g. 203.0.113.7 or 2001:db8:1::/64")
    .option("--for <duration>", "how long: 90s, 10m, 1h, 2d", (v) => { const d = parseDuration(v); if (typeof d === "string") throw new Error(d); return v; })
    .option("--list <name>", "which list (default: the only one)")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .action(async (addr: string, o: { control: string; for?: string; list?: string }) => {
      const r = await ask(o.control, { op: "add", addr, ...(o.for ? { for: o.for } : {}), ...(o.list ? { list: o.list } : {}) });
      const a = r.added as { list: string; addr: string; for: string };
      process.stdout.write(`blocked ${a.addr} on ${a.list} (${a.for})\n`);
    });
  cmd.command("del").description("take ADDR (as it was added) off a list")
    .argument("<addr>", "address or prefix")
    .option("--list <name>", "which list (default: the only one)")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .action(async (addr: string, o: { control: string; list?: string }) => {
      const r = await ask(o.control, { op: "del", addr, ...(o.list ? { list: o.list } : {}) });
      if (r.removed !== true) { process.stderr.write(`portcullis: ${addr} is not on ${String(r.list)}\n`); process.exitCode = 1; return; }
      process.stdout.write(`released ${addr} from ${String(r.list)}\n`);
    });
  return cmd;
}

interface SourceRow { prefix: string; rule: string | null; flows: number; refillS: number; idleS: number }

export function formatSources(rows: SourceRow[], limits: Record<string, number>): string {
  return [
    `source table: ${limits.sourcesLive} of ${limits.sourceCapacity} entries (evicted ${limits.sourcesEvicted}, refused ${limits.sourcesRefused}); ` +
      `block lists: ${limits.blocksLive} of ${limits.blockCapacity} entries (refused ${limits.blocksRefused}, expired ${limits.blocksExpired})`,
    ...rows.map((s) => `  ${s.prefix.padEnd(44)} ${String(s.flows).padStart(7)} flows  bucket full in ${s.refillS.toFixed(1).padStart(7)} s  ${s.rule ?? ""}`),
  ].join("\n");
}
