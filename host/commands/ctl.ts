// `portcullis stats [--json]` and `portcullis reload [POLICY|TABLE]`: talk to
// the running daemon over its control socket.
import { resolve } from "node:path";
import { Command } from "commander";
import { DEFAULT_CONTROL, request } from "../daemon/control.js";

interface Stats {
  started: string; policy: string; mode: string;
  verdicts: { accept: { packets: number; bytes: number }; drop: { packets: number; bytes: number } };
  reasons: Array<{ reason: string; packets: number; bytes: number }>;
  rules: Array<{ rule: number; info: string; packets: number; bytes: number }>;
  flows: { live: number; capacity: number; created: number; expired: number; evicted: number; refused: number; ended: number };
  queues: Array<Record<string, number | string>>;
  reloads: Array<{ ticket: number | null; at: string; ok: boolean; error?: string; ms: { total: number } }>;
}

export function formatStats(s: Stats): string {
  const out = [
    `policy ${s.policy} (mode ${s.mode}), running since ${s.started}`,
    `verdicts: accept ${s.verdicts.accept.packets} packets / ${s.verdicts.accept.bytes} bytes, drop ${s.verdicts.drop.packets} packets / ${s.verdicts.drop.bytes} bytes`,
    `flows: ${s.flows.live} of ${s.flows.capacity} (created ${s.flows.created}, expired ${s.flows.expired}, evicted ${s.flows.evicted}, refused ${s.flows.refused}, ended by reload ${s.flows.ended})`,
    "rules:",
    ...s.rules.map((r) => `  [${r.rule}] ${String(r.packets).padStart(10)} packets  ${r.info}`),
    "reasons:",
    ...s.reasons.map((r) => `  ${r.reason.padEnd(22)} ${String(r.packets).padStart(10)} packets`),
    "queues:",
    ...s.queues.map((q) => `  ${Object.entries(q).map(([k, v]) => `${k} ${v}`).join(", ")}`),
    "reloads:",
    ...s.reloads.slice(-10).map((r) => `  ${r.at} ticket ${r.ticket ?? "-"} ${r.ok ? "ok" : `FAILED: ${r.error}`} (${r.ms.total.toFixed(1)} ms)`),
  ];
  return out.join("\n");
}

export function statsCommand(): Command {
  return new Command("stats")
    .description("counters of the running daemon: per rule, per reason, per queue, flows, reload history")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .option("--json", "print the daemon's answer as JSON")
    .action(async (o: { control: string; json?: boolean }) => {
      const r = await request(o.control, { cmd: "stats" });
      if (r.ok !== true) throw new Error(String(r.error));
      process.stdout.write(o.json ? `${JSON.stringify(r.stats, null, 2)}\n` : `${formatStats(r.stats as Stats)}\n`);
    });
}

export function reloadCommand(): Command {
  return new Command("reload")
    .description("make the running daemon load a policy or table (default: the one it runs); the live table stays if it fails")
    .argument("[policy-or-table]", "a YAML policy or a compiled table")
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .action(async (path: string | undefined, o: { control: string }) => {
      const r = await request(o.control, path ? { cmd: "reload", path: resolve(path) } : { cmd: "reload" }, 120_000);
      const rec = r.reload as { ticket: number | null; ms: { total: number }; rules?: number } | undefined;
      if (r.ok !== true) {
        process.stderr.write(`portcullis: reload refused, the live table is unchanged: ${String(r.error)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`reloaded: ticket ${rec?.ticket}, ${rec?.rules} rules, ${rec?.ms.total.toFixed(1)} ms\n`);
    });
}
