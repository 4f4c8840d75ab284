// `portcullis replay CAPTURE --policy POLICY | --table TABLE`: classify a
// capture offline through the release core with a rule table loaded, so an
// operator can audit a policy against their own traffic. Each packet gets the
// hook and roles it would have had on the appliance (host/replay/roles.ts),
// the capture's timestamps drive the state table's clock (host/replay/engine.ts),
// and the output is one line per packet and a summary (or one JSON document).
// Bad input (a missing or corrupt capture, a broken policy or table) is one
// line on stderr and exit status 1.
import { Command, InvalidArgumentError, Option } from "commander";
import { Core, TableError } from "../core/core.js";
import { readOperatorFile } from "../io/operator-file.js";
import { Output } from "../io/output.js";
import { buildPolicyTable, compilePolicyText, type Mode, MODES, readPolicyFile } from "../policy/compile.js";
import { ConfigError, Diagnostics } from "../config/errors.js";
import { parsePolicyText } from "../policy/parse.js";
import { formatPrefix, type Prefix } from "../policy/addr.js";
import { CaptureFile, type CaptureFormat, linkTypeName, PcapError, type PcapRecord } from "../pcap/read.js";
import { loadTableView } from "../rules/inspect.js";
import { type ReplayPacket, type ReplaySummary, replay } from "../replay/engine.js";
import {
  describeRoles, parseAddressOption, parseMacOption, parseNetOption, placementText, type RoleConfig, RolePlacer,
  ROLE_RULE_HELP, type Side, SIDES,
} from "../replay/roles.js";
import { parseSwitchOverride } from "./check.js";
import { type EngineName } from "../core/load.js";
import { engineOption } from "./engine.js";
import { DEFAULT_COPY_RANGE, parseCopyRangeArg } from "../kernel/copy-range.js";

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
  copyRange?: number; //             bytes of each packet the core reads: default DEFAULT_COPY_RANGE, the daemon's
  pickup?: boolean; //               TCP pickup, as the daemon's --pickup / the board's tcp.pickup
  liberal?: boolean; //              window tracking off, as the board's tcp.liberal
}

// Opens a capture: a regular file, read as it is replayed (bounded memory).
export function openCapture(path: string): CaptureFile {
  try {
    return new CaptureFile(path);
  } catch (e) {
    throw captureError(path, e);
  }
}

function captureError(path: string, e: unknown): unknown {
  if (e instanceof PcapError) return new Error(`${path}: not a usable capture: ${e.message}`);
  return e; // an OperatorFileError says "PATH: ..." itself
}

// Every record of an opened capture; a fault part way is the one-line error.
export function* captureRecords(c: CaptureFile): Generator<PcapRecord> {
  try {
    yield* c.records();
  } catch (e) {
    throw captureError(c.path, e);
  }
}

interface LoadedTable { bytes: Uint8Array; from: string; switches: Record<string, boolean> | null; groups: Map<string, Prefix[]> | null }

// Compiles the policy in-process from one read of the file; the first error
// (FILE:LINE:COL: what) becomes the one-line message.
function fromPolicy(path: string, opts: Resolved): LoadedTable {
  try {
    const text = readPolicyFile(path).toString("utf8");
    const c = compilePolicyText(text, path, { mode: opts.mode, switches: opts.set });
    for (const w of c.summary.warnings) process.stderr.write(`${w.message}\n`);
    const bytes = buildPolicyTable(c).bytes;
    const ast = parsePolicyText(text, path, new Diagnostics()); // the same bytes: for the groups
    const groups = new Map<string, Prefix[]>();
    for (const [name, g] of ast?.groups ?? []) groups.set(name, g.entries.map((x) => x.prefix));
    return {
      bytes,
      from: `policy ${path}`,
      switches: Object.fromEntries(c.summary.switches.map((s) => [s.name, s.value])),
      groups,
    };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const n = e.all.filter((x) => x.code !== "too_many_errors").length;
    const more = n > 1 ? ` (and ${n - 1} more error${n === 2 ? "" : "s"}; portcullis check ${path} lists them all)` : "";
    throw new Error(`${e.message}${more}`);
  }
}

function fromTable(path: string): LoadedTable {
  return { bytes: readOperatorFile(path, "rule table"), from: `table ${path}`, switches: null, groups: null };
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

// What is known before the first packet: enough for a header.
export interface ReplayStart {
  capture: { path: string; format: CaptureFormat; size: number };
  source: { kind: "policy" | "table"; path: string; mode: Mode; defaultAction: string; rules: number; switches: Record<string, boolean> | null; copyRange: number };
  roles: RoleConfig;
}

export interface ReplayRun extends Omit<ReplayStart, "capture"> {
  capture: { path: string; format: CaptureFormat; linkTypes: string; records: number };
  summary: ReplaySummary;
}

// Where a replay's output goes as it is made (nothing per packet is kept).
export interface ReplaySink {
  start?(s: ReplayStart): void;
  packet?(p: ReplayPacket): void;
}

type Resolved = Required<Omit<ReplayOptions, "policy" | "table" | "json" | "summary" | "engine" | "pickup" | "liberal">> & Pick<ReplayOptions, "policy" | "table">;

function resolve(o: ReplayOptions): Resolved {
  return {
    policy: o.policy, table: o.table, mode: o.mode ?? "host", set: o.set ?? {},
    externalIp: o.externalIp ?? [], internalIp: o.internalIp ?? [], externalMac: o.externalMac ?? [],
    internalMac: o.internalMac ?? [], externalNet: o.externalNet ?? [], internalNet: o.internalNet ?? [],
    copyRange: o.copyRange ?? DEFAULT_COPY_RANGE,
  };
}

export function runReplay(capturePath: string, options: ReplayOptions, sink: ReplaySink = {}): ReplayRun {
  const opts = resolve(options);
  if (opts.policy === undefined && opts.table === undefined) {
    throw new Error("replay needs a rule table: give --policy FILE (a YAML policy) or --table FILE (from portcullis compile)");
  }
  if (opts.policy !== undefined && opts.table !== undefined) throw new Error("give either --policy or --table, not both");
  if (opts.table !== undefined && Object.keys(opts.set).length > 0) {
    throw new Error("--set applies to --policy only (a compiled table has its switches built in)");
  }
  const loaded = opts.policy !== undefined ? fromPolicy(opts.policy, opts) : fromTable(opts.table!);
  const core = new Core("release", undefined, {
    ...(options.engine ? { engine: options.engine } : {}), tcp: { pickup: options.pickup ?? false, liberal: options.liberal ?? false },
  });
  let table;
  try {
    table = loadTableView(core, loaded.bytes);
  } catch (e) {
    if (e instanceof TableError) throw new Error(`${opts.table ?? opts.policy}: ${e.message}`);
    throw e;
  }
  const capture = openCapture(capturePath);
  try {
    const roles = roleConfig(opts, loaded.groups);
    const start: ReplayStart = {
      capture: { path: capturePath, format: capture.format, size: capture.size },
      source: {
        kind: opts.policy !== undefined ? "policy" : "table", path: (opts.policy ?? opts.table)!, mode: opts.mode,
        defaultAction: table.defaultAction, rules: table.nrules, switches: loaded.switches, copyRange: opts.copyRange,
      },
      roles,
    };
    sink.start?.(start);
    const result = replay(core, table, captureRecords(capture), new RolePlacer(roles), sink.packet, opts.copyRange);
    return {
      capture: {
        path: capturePath, format: capture.format, records: result.summary.packets,
        linkTypes: result.linkTypes.map(linkTypeName).join(", ") || "no packets",
      },
      source: start.source,
      roles,
      summary: result.summary,
    };
  } finally {
    capture.close();
  }
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

// The width of packet numbers: enough for as many records as the file
// could hold (16 bytes at least each), so columns line up without a count.
export function indexWidth(size: number): number {
  return String(Math.max(1, Math.floor(size / 16))).length;
}

export function replayHeader(st: ReplayStart): string[] {
  const { capture, source } = st;
  return [
    `portcullis replay: ${capture.path} (${capture.format})`,
    `${source.kind} ${source.path}: mode ${source.mode}, ${plural(source.rules, "rule")}, default ${source.defaultAction}` +
      (source.switches && Object.keys(source.switches).length
        ? `; switches ${Object.entries(source.switches).map(([k, v]) => `${k}=${v ? "on" : "off"}`).join(", ")}` : "") +
      `; copy range ${source.copyRange} bytes`,
    ...describeRoles(st.roles).map((l) => `roles: ${l}`),
    "",
  ];
}

export function replaySummaryText(run: ReplayRun): string[] {
  const s = run.summary;
  const out: string[] = [];
  out.push(`Summary: ${plural(s.packets, "packet")} in ${plural(s.batches, "batch", "batches")}: ` +
    `accept ${s.verdicts.accept.packets} (${s.verdicts.accept.bytes} bytes), drop ${s.verdicts.drop.packets} (${s.verdicts.drop.bytes} bytes)`);
  out.push(`Link layers: ${run.capture.linkTypes}`);
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
  return out;
}

// JSON.stringify(x, null, 2) for a value nested at `indent` in a document written piece by piece.
export const json2 = (x: unknown, indent: string): string => JSON.stringify(x, null, 2).replace(/\n/g, `\n${indent}`);

function rolesJson(roles: RoleConfig): unknown {
  const side = (x: Side): unknown => {
    const c = roles.sides[x];
    return { ips: c.ips.map(formatPrefix), macs: c.macs, nets: c.nets.map(formatPrefix) };
  };
  return { proxyAddresses: roles.ipsFrom, ...Object.fromEntries(SIDES.map((x) => [x, side(x)])) };
}

function sourceJson(src: ReplayStart["source"]): unknown {
  return { [src.kind]: src.path, mode: src.mode, rules: src.rules, defaultAction: src.defaultAction, switches: src.switches, copyRange: src.copyRange };
}

// The command: text (a line per packet as its batch is decided, then the
// summary) or one JSON document written as it goes: source, roles, packets,
// then capture and summary, which are known only at the end.
export function replayToStdout(capturePath: string, opts: ReplayOptions): void {
  const out = new Output();
  const summaryOnly = opts.summary === true;
  let width = 1;
  let first = true;
  // With --summary nothing is printed until the end, so a capture found
  // corrupt part way leaves stdout empty.
  let head: ReplayStart | null = null;
  const writeHead = (st: ReplayStart): void => {
    if (opts.json) {
      out.write(`{\n  "source": ${json2(sourceJson(st.source), "  ")},\n  "roles": ${json2(rolesJson(st.roles), "  ")},\n`);
      if (!summaryOnly) out.write(`  "packets": [`);
    } else {
      width = indexWidth(st.capture.size);
      for (const l of replayHeader(st)) out.line(l);
    }
  };
  const sink: ReplaySink = {
    start: (st) => { head = st; if (!summaryOnly) writeHead(st); },
    packet: summaryOnly ? undefined : opts.json
      ? (p) => { out.write(`${first ? "" : ","}\n    ${json2(p, "    ")}`); first = false; }
      : (p) => { out.line(packetLine(p, width)); first = false; },
  };
  let run: ReplayRun;
  try {
    run = runReplay(capturePath, opts, sink);
  } catch (e) {
    out.flush(); // the packets decided before the fault
    throw e;
  }
  if (summaryOnly) writeHead(head!);
  if (opts.json) {
    if (!summaryOnly) out.write(first ? "],\n" : "\n  ],\n");
    out.write(`  "capture": ${json2(run.capture, "  ")},\n  "summary": ${json2(run.summary, "  ")}\n}\n`);
  } else {
    if (!first) out.line("");
    for (const l of replaySummaryText(run)) out.line(l);
  }
  out.flush();
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
    .option("--pickup", "TCP pickup on, as the daemon's --pickup: a mid-stream segment of a 5-tuple the rules allow creates its flow")
    .option("--liberal", "TCP window tracking off, as the board's tcp.liberal: only RST and FIN are checked (to compare a capture's verdicts with and without it)")
    .option("--copy-range <bytes>", `bytes of each packet the core reads, as the daemon's --copy-range / the board's copy_range: ` +
      `(default ${DEFAULT_COPY_RANGE}, the daemon's; 65535: whole packets)`, parseCopyRangeArg)
    .addHelpText("after", `\n${ROLE_RULE_HELP}\n`)
    .action((capture: string, opts: ReplayOptions) => replayToStdout(capture, opts));
}
