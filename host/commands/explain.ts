// `portcullis explain POLICY|TABLE --iface ... --dir ... --proto ... --src ...
// --dst ... [--sport N] [--dport N] [--flags S] [--icmp-type T[/C]]`: which rule decides a flow's
// first packet and why, from the same compiled table the core runs. The
// packet is built and classified by the release core; the per-rule account
// (which fields let each earlier rule pass or not) is read from the table's
// bitmaps, and the two must agree.
import { Command, InvalidArgumentError, Option } from "commander";
import * as ABI from "../core/abi.js";
import { Batch } from "../core/batch.js";
import { Core, TableError } from "../core/core.js";
import { reasonName, reasonText } from "../core/reasons.js";
import { addrBytes } from "../packets/addr.js";
import { echo, icmp, ipv4, ipv6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, tcp, udp } from "../packets/build.js";
import { icmpCodeName, icmpText, isIcmpError, resolveIcmp, splitIcmpText } from "../packets/icmp-names.js";
import { contextsFor, type Mode } from "../policy/compile.js";
import { suggest } from "../config/yaml.js";
import * as F from "../rules/format.js";
import { type FieldName, type FlowKey, loadTableView } from "../rules/inspect.js";
import { addPolicyOptions, compileOrReport, type PolicyCliOptions, readPolicyOrReport } from "./check.js";

const PROTOS: Record<string, number> = { tcp: PROTO_TCP, udp: PROTO_UDP, icmp: PROTO_ICMP, icmpv6: PROTO_ICMPV6 };
const FLAG_LETTERS = "FSRPAUEW";

export interface Flow {
  iface: "external" | "internal";
  dir: "in" | "out" | "forward";
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: number;
  icmp?: { type: number; code: number }; // ICMP/ICMPv6 only; default the echo request
}

function parseFlags(s: string): number {
  let v = 0;
  for (const ch of s.toUpperCase()) {
    const i = FLAG_LETTERS.indexOf(ch);
    if (i < 0) throw new InvalidArgumentError(`"${ch}" is not a TCP flag letter (${FLAG_LETTERS})`);
    v |= 1 << i;
  }
  return v;
}

function parsePort(s: string): number {
  if (!/^\d+$/.test(s) || Number(s) > 65535) throw new InvalidArgumentError(`"${s}" is not a port (0-65535)`);
  return Number(s);
}

function parseProto(s: string): number {
  const p = PROTOS[s.toLowerCase()] ?? (/^\d+$/.test(s) && Number(s) < 256 ? Number(s) : undefined);
  if (p === undefined) throw new InvalidArgumentError(`"${s}" is not a protocol (tcp, udp, icmp, icmpv6 or 0-255)`);
  return p;
}

// The packet that would open this flow, and where the core sees it.
function firstPacket(f: Flow, mode: Mode): { bytes: Uint8Array; ctx: number; family: 4 | 6; error: boolean } {
  const family = f.src.includes(":") ? 6 : 4;
  if ((f.dst.includes(":") ? 6 : 4) !== family) throw new Error("source and destination must be of one address family");
  const ic = f.icmp ?? { type: family === 4 ? 8 : 128, code: 0 };
  const isIcmp = f.proto === (family === 4 ? PROTO_ICMP : PROTO_ICMPV6);
  // An error quotes a datagram the destination sent to the source (here
  // one no flow owns: explain's core tracks nothing).
  const quoted = (): Uint8Array => {
    const q = { src: f.dst, dst: f.src, proto: PROTO_UDP, payload: udp({ sport: 40000, dport: 53 }) };
    return (family === 4 ? ipv4(q) : ipv6(q)).slice(0, family === 4 ? 28 : 48);
  };
  const payload = f.proto === PROTO_TCP ? tcp({ sport: f.sport, dport: f.dport, flags: f.flags })
    : f.proto === PROTO_UDP ? udp({ sport: f.sport, dport: f.dport })
    : isIcmp && (ic.type === 0 || ic.type === 8 || ic.type === 128 || ic.type === 129) && ic.code === 0 ? echo(ic.type, 1, 1)
    : isIcmp ? icmp({ type: ic.type, code: ic.code, ...(isIcmpError(family, ic.type) ? { payload: quoted() } : {}) })
    : icmp({ type: 0 }).subarray(0, 0);
  const o = { src: f.src, dst: f.dst, proto: f.proto, payload };
  const bytes = family === 4 ? ipv4(o) : ipv6(o);
  // The first of the contexts the policy compiler gives this place is the
  // one the appliance produces for it (the other role set to none).
  const role = f.iface === "external" ? ABI.ROLE_EXTERNAL : ABI.ROLE_INTERNAL;
  const other = role === ABI.ROLE_EXTERNAL ? ABI.ROLE_INTERNAL : ABI.ROLE_EXTERNAL;
  const candidates = contextsFor(mode, f.iface, f.dir);
  const hook = candidates[0]! & 7;
  const inRole = mode === "gateway" || f.dir === "forward" ? (f.dir === "out" ? other : role) : f.dir === "in" ? role : ABI.ROLE_NONE;
  const outRole = mode === "gateway" || f.dir === "forward" ? (f.dir === "out" ? role : other) : f.dir === "out" ? role : ABI.ROLE_NONE;
  return { bytes, ctx: F.ctxValue(hook, inRole, outRole), family, error: isIcmp && isIcmpError(family, ic.type) };
}

export interface Explanation {
  flow: Flow;
  mode: Mode;
  verdict: "accept" | "drop";
  reason: string;
  reasonText: string;
  rule: number | null;
  ruleInfo: string | null;
  defaultAction: "allow" | "deny";
  steps: Array<{ rule: number; info: string; action: string; failed: Array<FieldName | "from_list"> }>;
  limited: boolean; //  the deciding rule has a per-source limit
}

export function explainFlow(table: Uint8Array, flow: Flow, mode: Mode): Explanation {
  // The core the daemon runs (its default table slot and rule limit) checks
  // the table before the view reads it: the same refusals as replay --table.
  const core = new Core("release");
  const view = loadTableView(core, table);
  const pkt = firstPacket(flow, mode);
  const batch = new Batch(core);
  batch.add(pkt.bytes, { hook: pkt.ctx & 7, inRole: (pkt.ctx >> 3) & 3, outRole: (pkt.ctx >> 5) & 3 });
  batch.run();
  const reason = reasonName(core.reason(0));
  const rule = core.rule(0) === ABI.RULE_NONE ? null : core.rule(0);
  const addr = (a: string): bigint => addrBytes(a).reduce((x, b) => (x << 8n) | BigInt(b), 0n);
  const icmpFlow = flow.proto === (pkt.family === 4 ? PROTO_ICMP : PROTO_ICMPV6);
  const ic = flow.icmp ?? { type: pkt.family === 4 ? 8 : 128, code: 0 };
  const key: FlowKey = {
    // An ICMP error no tracked flow owns is looked up with CTX_ERROR.
    ctx: pkt.ctx | (pkt.error ? F.CTX_ERROR : 0), family: pkt.family, src: addr(flow.src), dst: addr(flow.dst), proto: flow.proto,
    sport: flow.proto === PROTO_TCP || flow.proto === PROTO_UDP ? flow.sport : 0,
    dport: flow.proto === PROTO_TCP || flow.proto === PROTO_UDP ? flow.dport : 0,
    tcpFlags: flow.proto === PROTO_TCP ? flow.flags : 0,
    icmp: icmpFlow ? (ic.type << 8) | ic.code : 0,
  };
  const ex = view.explain(key);
  // The host's reading of the table and the core's verdict must agree.
  if (reason.startsWith("rule_") || reason.startsWith("default_") || reason === "icmp_unrelated") {
    if ((ex.match === -1 ? null : ex.match) !== rule) {
      throw new Error(`internal error: the core chose rule ${rule}, the table reads ${ex.match}`);
    }
  }
  return {
    flow, mode, verdict: core.verdict(0) === ABI.VERDICT_ACCEPT ? "accept" : "drop", reason, reasonText: reasonText(core.reason(0)),
    rule, ruleInfo: rule === null ? null : view.rules[rule]!.info, defaultAction: view.defaultAction,
    steps: ex.steps.map((s) => ({ rule: s.rule.index, info: s.rule.info, action: s.rule.action, failed: s.failed })),
    limited: rule !== null && view.ruleKeys[rule] !== null,
  };
}

const FIELD_WORDS: Record<FieldName | "from_list", string> = {
  from_list: "the source is on no block list here (lists fill at run time)",
  interface: "interface/direction", proto: "protocol", tcp_flags: "TCP flags", sport: "source port",
  dport: "destination port", icmp_type: "ICMP type/code", src: "source address", dst: "destination address",
};

export function formatExplanation(e: Explanation): string {
  const f = e.flow;
  const proto = Object.entries(PROTOS).find(([, n]) => n === f.proto)?.[0] ?? String(f.proto);
  const ports = f.proto === PROTO_TCP || f.proto === PROTO_UDP;
  const flags = f.proto === PROTO_TCP ? ` [${[...FLAG_LETTERS].filter((_, i) => f.flags & (1 << i)).join("")}]` : "";
  const fam = f.src.includes(":") ? 6 : 4;
  const ic = f.proto === (fam === 4 ? PROTO_ICMP : PROTO_ICMPV6) ? (f.icmp ?? { type: fam === 4 ? 8 : 128, code: 0 }) : null;
  const icmpWords = ic ? ` ${icmpText(fam, ic.type, ic.code === 0 && icmpCodeName(fam, ic.type, 0) === undefined ? null : ic.code)}` : "";
  const out = [
    `flow: ${proto}${icmpWords} ${f.src}${ports ? `:${f.sport}` : ""} -> ${f.dst}${ports ? `:${f.dport}` : ""}${flags}, ${f.iface} ${f.dir} (mode ${e.mode})`,
    `verdict: ${e.verdict} (${e.reason}: ${e.reasonText})`,
  ];
  for (const s of e.steps) {
    const why = s.failed.length === 0 ? "MATCHES: every field" : `no: ${s.failed.map((x) => FIELD_WORDS[x]).join(", ")}`;
    out.push(`  [${s.rule}] ${s.info}\n      ${why}`);
  }
  if (e.rule === null && e.reason === "icmp_unrelated") {
    out.push("no rule matched: an ICMP error about no tracked flow meets only the rules that name its ICMP type, and without one it is dropped (the default does not apply)");
  } else if (e.rule === null) out.push(`no rule matched: the default (${e.defaultAction}) decides`);
  else out.push(`decided by rule [${e.rule}]: ${e.ruleInfo}`);
  if (e.limited) {
    out.push("the rule has a per-source limit: a source over it gets rate_limited or source_flows_full instead (see its limit above); " +
      "explain decides one packet on an empty source table and empty block lists");
  }
  return out.join("\n");
}

interface ExplainOpts extends PolicyCliOptions {
  iface: "external" | "internal"; dir: "in" | "out" | "forward"; proto: number; src: string; dst: string;
  sport: number; dport?: number; flags?: number; icmpType?: string; json?: boolean;
}

export function explainCommand(): Command {
  const cmd = new Command("explain")
    .description("which rule decides the first packet of a flow, and why, from the table the core runs")
    .argument("<policy-or-table>", "a YAML policy, or a table written by portcullis compile")
    .addOption(new Option("--iface <role>", "interface the flow is on").choices(["external", "internal"]).makeOptionMandatory())
    .addOption(new Option("--dir <direction>", "direction on that interface").choices(["in", "out", "forward"]).makeOptionMandatory())
    .requiredOption("--proto <proto>", "tcp, udp, icmp, icmpv6 or a protocol number", parseProto)
    .requiredOption("--src <addr>", "source address")
    .requiredOption("--dst <addr>", "destination address")
    .option("--sport <port>", "source port (tcp/udp)", parsePort, 40000)
    .option("--dport <port>", "destination port (tcp/udp)", parsePort)
    .option("--flags <letters>", "TCP flags of the packet (default S: a connection opener)", parseFlags)
    .option("--icmp-type <type[/code]>", "ICMP/ICMPv6 type and code, by name or number (default echo-request)")
    .option("--json", "print JSON");
  return addPolicyOptions(cmd).action((path: string, o: ExplainOpts) => {
    let table: Uint8Array;
    const raw = readPolicyOrReport(path, "nothing to explain");
    if (raw === null) return;
    if (raw.length >= 4 && raw.readUInt32LE(0) === F.TABLE_MAGIC) {
      table = raw;
    } else {
      const c = compileOrReport(path, o, "nothing to explain", raw);
      if (!c) return;
      table = c.table.bytes;
    }
    if ((o.proto === PROTO_TCP || o.proto === PROTO_UDP) && o.dport === undefined) {
      throw new Error("--dport is required for tcp and udp");
    }
    let ic: { type: number; code: number } | undefined;
    if (o.icmpType !== undefined) {
      const fam = o.src.includes(":") ? 6 : 4;
      if (o.proto !== (fam === 4 ? PROTO_ICMP : PROTO_ICMPV6)) throw new Error(`--icmp-type needs --proto ${fam === 4 ? "icmp" : "icmpv6"} (for IPv${fam} addresses)`);
      const sp = splitIcmpText(o.icmpType);
      const v = resolveIcmp(fam, sp.type, sp.code, suggest);
      if ("what" in v) throw new Error(`--icmp-type ${o.icmpType}: ${v.what}`);
      ic = { type: v.type, code: v.code ?? 0 };
    }
    let e: Explanation;
    try {
      e = explainFlow(table, {
        iface: o.iface, dir: o.dir, proto: o.proto, src: o.src, dst: o.dst,
        sport: o.sport, dport: o.dport ?? 0, flags: o.flags ?? 0x02, ...(ic ? { icmp: ic } : {}),
      }, o.mode);
    } catch (err) {
      if (err instanceof TableError) throw new Error(`${path}: ${err.message}`);
      throw err;
    }
    process.stdout.write(o.json ? `${JSON.stringify(e, null, 2)}\n` : `${formatExplanation(e)}\n`);
  });
}
