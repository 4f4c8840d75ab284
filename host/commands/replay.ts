// `portcullis replay CAPTURE --policy POLICY | --table TABLE`: classify a
// capture offline through the release core with a rule table loaded, so an
// operator can audit a policy against their own traffic. Each packet gets the
// hook and roles it would have had on the appliance (host/replay/roles.ts),
// the capture's timestamps drive the state table's clock (host/replay/engine.ts),
// and the output is one line per packet and a summary (or one JSON document).
// Bad input (a missing or corrupt capture, a broken policy or table) is one
// line on stderr and exit status 1.
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { Core, TableError } from "../core/core.js";
import { compilePolicyFile, type Mode, MODES } from "../policy/compile.js";
import { Diagnostics, PolicyError } from "../policy/errors.js";
import { parsePolicyText } from "../policy/parse.js";
import { formatPrefix, type Prefix } from "../policy/addr.js";
import { captureFormat, linkTypeName, PcapError, type PcapRecord, readCapture } from "../pcap/read.js";
import { buildTable } from "../rules/build.js";
import { TableView } from "../rules/inspect.js";
import { type ReplayPacket, type ReplayResult, replay } from "../replay/engine.js";
import {
  describeRoles, parseAddressOption, parseMacOption, parseNetOption, placementText, type RoleConfig, RolePlacer,
  ROLE_RULE_HELP, type Side, SIDES,
} from "../replay/roles.js";
import { parseSwitchOverride } from "./check.js";
import { type EngineName } from "../core/load.js";
import { engineOption } from "./engine.js";

export interface ReplayOptions {
  policy?: string;
  table?: string;
  mode?: Mode; //                    default host
  set?: Record<string, boolean>;
  externalIp?: Prefix[];
  internalIp?: Prefix[];
  externalMac?: string[];
  internalMac?: string[];
  externalNet?: Prefix[];
  internalNet?: Prefix[];
  json?: boolean;
  summary?: boolean;
  engine?: EngineName; //            default V8
}

function fileError(what: string, path: string, e: unknown): Error {
  const err = e as NodeJS.ErrnoException;
  const why = err.code === "ENOENT" ? "no such file" : err.code === "EISDIR" ? "is a directory" : err.message;
  return new Error(`cannot read the ${what} ${path}: ${why}`);
}

export function loadCapture(path: string): { records: PcapRecord[]; format: string } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw fileError("capture", path, e);
  }
  try {
    return { format: captureFormat(bytes), records: readCapture(bytes) };
  } catch (e) {
    if (e instanceof PcapError) throw new Error(`${path}: not a usable capture: ${e.message}`);
    throw e;
  }
}

interface LoadedTable { bytes: Uint8Array; from: string; switches: Record<string, boolean> | null; groups: Map<string, Prefix[]> | null }

// Compiles the policy in-process; the first error (FILE:LINE:COL: what) becomes the one-line message.
function fromPolicy(path: string, opts: Resolved): LoadedTable {
  try {
    const c = compilePolicyFile(path, { mode: opts.mode, switches: opts.set });
    for (const w of c.summary.warnings) process.stderr.write(`${w.message}\n`);
    const ast = parsePolicyText(readFileSync(path, "utf8"), path, new Diagnostics());
    const groups = new Map<string, Prefix[]>();
    for (const [name, g] of ast?.groups ?? []) groups.set(name, g.entries.map((x) => x.prefix));
    return {
      bytes: buildTable(c.spec).bytes,
      from: `policy ${path}`,
      switches: Object.fromEntries(c.summary.switches.map((s) => [s.name, s.value])),
      groups,
    };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    const n = e.all.filter((x) => x.code !== "too_many_errors").length;
    const more = n > 1 ? ` (and ${n - 1} more error${n === 2 ? "" : "s"}; portcullis check ${path} lists them all)` : "";
    throw new Error(`${e.message}${more}`);
  }
}

function fromTable(path: string): LoadedTable {
  try {
    return { bytes: readFileSync(path), from: `table ${path}`, switches: null, groups: null };
  } catch (e) {
    throw fileError("rule table", path, e);
  }
}

function roleConfig(opts: Resolved, groups: Map<string, Prefix[]> | null): RoleConfig {
  const sides = {
    external: { ips: [...opts.externalIp], macs: [...opts.externalMac], nets: [...opts.externalNet] },
    internal: { ips: [...opts.internalIp], macs: [...opts.internalMac], nets: [...opts.internalNet] },
  };
  let ipsFrom = "from --external-ip/--internal-ip";
  if (opts.externalIp.length === 0 && opts.internalIp.length === 0) {
    const listener = groups?.get("listener") ?? [];
    const internal = groups?.get("proxy_internal") ?? [];
    sides.external.ips = listener;
    sides.internal.ips = internal;
    if (groups === null) ipsFrom = "unknown (a compiled table carries no groups: give --external-ip/--internal-ip)";
    else if (listener.length || internal.length) {
      const used = [listener.length ? "listener (external)" : "", internal.length ? "proxy_internal (internal)" : ""].filter(Boolean);
      ipsFrom = `from the policy's group${used.length > 1 ? "s" : ""} ${used.join(" and ")}; --external-ip/--internal-ip override`;
    } else ipsFrom = "unknown (the policy has no listener or proxy_internal group: give --external-ip/--internal-ip)";
  }
  return { mode: opts.mode, sides, ipsFrom };
}

export interface ReplayRun {
  capture: { path: string; format: string; linkTypes: string; records: number };
  source: { kind: "policy" | "table"; path: string; mode: Mode; defaultAction: string; rules: number; switches: Record<string, boolean> | null };
  roles: RoleConfig;
  result: ReplayResult;
}

type Resolved = Required<Omit<ReplayOptions, "policy" | "table" | "json" | "summary" | "engine">> & Pick<ReplayOptions, "policy" | "table">;

function resolve(o: ReplayOptions): Resolved {
  return {
    policy: o.policy, table: o.table, mode: o.mode ?? "host", set: o.set ?? {},
    externalIp: o.externalIp ?? [], internalIp: o.internalIp ?? [], externalMac: o.externalMac ?? [],
    internalMac: o.internalMac ?? [], externalNet: o.externalNet ?? [], internalNet: o.internalNet ?? [],
  };
}

export function runReplay(capturePath: string, options: ReplayOptions): ReplayRun {
  const opts = resolve(options);
  if (opts.policy === undefined && opts.table === undefined) {
    throw new Error("replay needs a rule table: give --policy FILE (a YAML policy) or --table FILE (from portcullis compile)");
  }
  if (opts.policy !== undefined && opts.table !== undefined) throw new Error("give either --policy or --table, not both");
  if (opts.table !== undefined && Object.keys(opts.set).length > 0) {
    throw new Error("--set applies to --policy only (a compiled table has its switches built in)");
  }
  const loaded = opts.policy !== undefined ? fromPolicy(opts.policy, opts) : fromTable(opts.table!);
  const { records, format } = loadCapture(capturePath);
  const core = new Core("release", undefined, options.engine ? { engine: options.engine } : {});
  try {
    core.loadTable(loaded.bytes);
  } catch (e) {
    if (e instanceof TableError) throw new Error(`${opts.table ?? opts.policy}: ${e.message}`);
    throw e;
  }
  const table = new TableView(loaded.bytes);
  const roles = roleConfig(opts, loaded.groups);
  const result = replay(core, table, records, new RolePlacer(roles));
  return {
    capture: {
      path: capturePath, format, records: records.length,
      linkTypes: [...new Set(records.map((r) => linkTypeName(r.linkType)))].join(", ") || "no packets",
    },
    source: {
      kind: opts.policy !== undefined ? "policy" : "table", path: (opts.policy ?? opts.table)!, mode: opts.mode,
      defaultAction: table.defaultAction, rules: table.nrules, switches: loaded.switches,
    },
    roles,
    result,
  };
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function packetLine(p: ReplayPacket, w: number): string {
  const place = placementText(p.hook, p.inRole, p.outRole);
  let s = `${String(p.index).padStart(w)}  ${p.time.toFixed(6)}  ${place.padEnd(11)}  ${p.summary}  => ${p.verdict} ${p.reason}`;
  if (p.rule !== null) {
    const via = p.ruleVia === "flow" ? "flow of rule" : p.ruleVia === "fragment" ? "first fragment's rule" : "rule";
    s += `  [${via} ${p.rule}: ${p.ruleInfo}]`;
  }
  return s;
}

export function formatReplayText(run: ReplayRun, summaryOnly: boolean): string {
  const { capture, source, result } = run;
  const s = result.summary;
  const out: string[] = [
    `portcullis replay: ${plural(capture.records, "packet")} from ${capture.path} (${capture.format}, ${capture.linkTypes})`,
    `${source.kind} ${source.path}: mode ${source.mode}, ${plural(source.rules, "rule")}, default ${source.defaultAction}` +
      (source.switches && Object.keys(source.switches).length
        ? `; switches ${Object.entries(source.switches).map(([k, v]) => `${k}=${v ? "on" : "off"}`).join(", ")}` : ""),
    ...describeRoles(run.roles).map((l) => `roles: ${l}`),
    "",
  ];
  if (!summaryOnly) {
    const w = String(result.packets.length).length;
    for (const p of result.packets) out.push(packetLine(p, w));
    if (result.packets.length) out.push("");
  }
  out.push(`Summary: ${plural(s.packets, "packet")} in ${plural(s.batches, "batch", "batches")}: ` +
    `accept ${s.verdicts.accept.packets} (${s.verdicts.accept.bytes} bytes), drop ${s.verdicts.drop.packets} (${s.verdicts.drop.bytes} bytes)`);
  out.push(`Hooks: ${s.hooks.in} in, ${s.hooks.out} out, ${s.hooks.fwd} forward` + (s.sideUnknown
    ? `; ${plural(s.sideUnknown, "packet")} on a side that could not be told (role none: see --external-net/--external-mac)` : ""));
  out.push("By reason:");
  const names = Object.keys(s.reasons);
  const rw = Math.max(8, ...names.map((k) => k.length));
  const nw = Math.max(1, ...Object.values(s.reasons).map((x) => String(x.packets).length));
  for (const [name, x] of Object.entries(s.reasons)) out.push(`  ${name.padEnd(rw)}  ${String(x.packets).padStart(nw)}  ${x.description}`);
  if (names.length === 0) out.push("  (no packets)");
  out.push("By rule (packets a rule decided; later packets of its flows count as state_match):");
  const hw = Math.max(1, ...s.rules.map((x) => String(x.packets).length));
  for (const r of s.rules) out.push(`  [${r.index}] ${String(r.packets).padStart(hw)}  ${r.info}${r.packets === 0 ? "  (never hit)" : ""}`);
  if (s.rules.length === 0) out.push("  (the table has no rules)");
  out.push(`Flows: ${s.flows.created} created, ${s.flows.live} live at the end, ${s.flows.expired} expired` +
    `${s.flows.evicted ? `, ${s.flows.evicted} evicted` : ""}${s.flows.refused ? `, ${s.flows.refused} refused (table full)` : ""}`);
  return out.join("\n");
}

export function replayJson(run: ReplayRun, summaryOnly: boolean): unknown {
  const side = (x: Side): unknown => {
    const c = run.roles.sides[x];
    return { ips: c.ips.map(formatPrefix), macs: c.macs, nets: c.nets.map(formatPrefix) };
  };
  const src = run.source;
  return {
    capture: run.capture,
    source: {
      [src.kind]: src.path, mode: src.mode, rules: src.rules, defaultAction: src.defaultAction, switches: src.switches,
    },
    roles: {
      proxyAddresses: run.roles.ipsFrom,
      ...Object.fromEntries(SIDES.map((x) => [x, side(x)])),
    },
    ...(summaryOnly ? {} : { packets: run.result.packets }),
    summary: run.result.summary,
  };
}

function collect<T>(parse: (s: string) => T) {
  return (value: string, previous: T[] = []): T[] => {
    try {
      return [...previous, parse(value)];
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

export function replayCommand(): Command {
  return new Command("replay")
    .description("classify a capture offline through the core with a policy (or compiled table) loaded: " +
      "per-packet verdicts and reasons, hits per rule, flows; for auditing a policy against real traffic")
    .argument("<capture>", "pcap or pcapng capture (Ethernet, raw IP, Linux cooked)")
    .option("--policy <file>", "YAML policy, compiled in-process (see host/policy/README.md)")
    .option("--table <file>", "compiled rule table (from portcullis compile)")
    .addOption(new Option("--mode <mode>", "deployment mode: host (the appliance is the proxy) or gateway (it forwards)")
      .choices(MODES).default("host"))
    .addOption(new Option("--set <switch=on|off>", "turn a switch of the policy on or off (repeatable; --policy only)")
      .argParser(parseSwitchOverride).default({}, "the policy's own values"))
    .option("--external-ip <addr>", "an address of the proxy on its external side (repeatable)", collect(parseAddressOption))
    .option("--internal-ip <addr>", "an address of the proxy on its internal side (repeatable)", collect(parseAddressOption))
    .option("--external-mac <mac>", "MAC of the external NIC: a frame to/from it is on the external side (repeatable)", collect(parseMacOption))
    .option("--internal-mac <mac>", "MAC of the internal NIC (repeatable)", collect(parseMacOption))
    .option("--external-net <prefix>", "a network on the external side (repeatable)", collect(parseNetOption))
    .option("--internal-net <prefix>", "a network on the internal side (repeatable)", collect(parseNetOption))
    .option("--json", "print one JSON document (packets and summary) instead of text")
    .option("--summary", "print only the summary (no per-packet lines / no packets array)")
    .addOption(engineOption())
    .addHelpText("after", `\n${ROLE_RULE_HELP}\n`)
    .action((capture: string, opts: ReplayOptions) => {
      const run = runReplay(capture, opts);
      const text = opts.json ? JSON.stringify(replayJson(run, opts.summary === true), null, 2) : formatReplayText(run, opts.summary === true);
      process.stdout.write(`${text}\n`);
    });
}
