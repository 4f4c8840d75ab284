// Checked policy tree -> TableSpec for one deployment mode.
//
// Interface and direction become the core's interface contexts
// (ctxValue(hook, inRole, outRole), host/rules/format.ts):
//
//   mode     direction  hook     roles
//   host     in         INPUT    in_role = R,  out_role any
//   host     out        OUTPUT   out_role = R, in_role any
//   host     forward    FORWARD  in_role = R,  out_role any
//   gateway  in         FORWARD  in_role = R,  out_role any
//   gateway  out        FORWARD  out_role = R, in_role any
//   gateway  forward    FORWARD  in_role = R,  out_role any
//
// with R the interface's role (external 1, internal 2; `any` is 0, 1 and 2).
import { basename, resolve as resolvePath } from "node:path";
import * as ABI from "../core/abi.js";
import { MAX_OPERATOR_FILE, OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { buildTable, type BuiltTable, MAX_BUILD_BYTES, TableTooLargeError } from "../rules/build.js";
import { crc32 } from "../rules/crc32.js";
import { durationText } from "./limit-text.js";
import { ctxValue } from "../rules/format.js";
import { type AddrRanges, type Range32, type RuleExt, type RuleSpec, type TableSpec } from "../rules/model.js";
import { countAddresses, FULL_V4, FULL_V6, parseSetText, prefixesToRanges, unionAddr, unionRanges32 } from "./addr.js";
import { type ConfigWarning, Diagnostics, type Pos } from "../config/errors.js";
import { suggest } from "../config/yaml.js";
import { type Action, type AddrRef, DEFAULT_OFFLOAD_AFTER, type Direction, type Iface, parsePolicyText, type PolicyAst, type RuleAst } from "./parse.js";

export type Mode = "host" | "gateway";
export const MAX_POLICY_TEXT = 4 << 20;
export const MODES: readonly Mode[] = ["host", "gateway"];

export interface CompileOptions {
  mode?: Mode; //                        default host
  switches?: Record<string, boolean>; // overrides of the policy's switches (--set)
}

export interface RuleSummary {
  index: number; //          1-based position in the policy's rules
  table: number | null; //   index in the compiled table; null when switched off
  name: string | null;
  line: number;
  action: Action;
  iface: Iface;
  direction: Direction;
  when: string | null;
  info: string;
}

export interface GroupSummary { name: string; line: number; entries: number; v4Addresses: number; v6Addresses: bigint; usedBy: number }
export interface SetSummary {
  name: string; line: number; path: string; includes: number; exceptions: number;
  v4Ranges: number; v6Ranges: number; ms: number; usedBy: number;
}
export interface SwitchSummary { name: string; line: number; value: boolean; policyValue: boolean; overridden: boolean; usedBy: number }

export interface PolicySummary {
  file: string;
  mode: Mode;
  defaultAction: Action;
  rules: RuleSummary[];
  tableRules: number;
  byPlace: Array<{ iface: Iface; direction: Direction; rules: number }>; // rules in the table
  groups: GroupSummary[];
  sets: SetSummary[];
  switches: SwitchSummary[];
  warnings: ConfigWarning[];
  ms: number;
}

export interface CompiledPolicy { spec: TableSpec; summary: PolicySummary }

const ROLES: Record<Iface, number[]> = {
  external: [ABI.ROLE_EXTERNAL],
  internal: [ABI.ROLE_INTERNAL],
  any: [ABI.ROLE_NONE, ABI.ROLE_EXTERNAL, ABI.ROLE_INTERNAL],
};
const ALL_ROLES = [ABI.ROLE_NONE, ABI.ROLE_EXTERNAL, ABI.ROLE_INTERNAL];

// The interface contexts one rule applies to (see the table at the top).
export function contextsFor(mode: Mode, iface: Iface, direction: Direction): number[] {
  const out: number[] = [];
  for (const r of ROLES[iface]) {
    for (const other of ALL_ROLES) {
      if (mode === "host") {
        if (direction === "in") out.push(ctxValue(ABI.HOOK_INPUT, r, other));
        else if (direction === "out") out.push(ctxValue(ABI.HOOK_OUTPUT, other, r));
        else out.push(ctxValue(ABI.HOOK_FORWARD, r, other));
      } else if (direction === "out") out.push(ctxValue(ABI.HOOK_FORWARD, other, r));
      else out.push(ctxValue(ABI.HOOK_FORWARD, r, other));
    }
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

interface Fam { v4: boolean; v6: boolean }
const famOf = (a: AddrRanges | null): Fam => (a === null ? { v4: true, v6: true } : { v4: a.v4.length > 0, v6: a.v6.length > 0 });
const famText = (f: Fam): string => (f.v4 && f.v6 ? "IPv4 and IPv6" : f.v4 ? "IPv4 only" : f.v6 ? "IPv6 only" : "empty");

function restrict(a: AddrRanges | null, f: Fam): AddrRanges | null {
  if (a === null) return f.v4 && f.v6 ? null : { v4: f.v4 ? [FULL_V4] : [], v6: f.v6 ? [FULL_V6] : [] };
  return { v4: f.v4 ? a.v4 : [], v6: f.v6 ? a.v6 : [] };
}

function oneLine(s: string, max: number): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

// "FILE:LINE name-or-#index: action proto iface dir src -> dst ports # comment"
export function ruleInfo(file: string, r: RuleAst): string {
  const refs = (x: { value: AddrRef[] } | null): string => (x === null ? "any" : x.value.map((a) => a.text).join(","));
  const parts = [
    r.action?.value ?? "?",
    r.proto === null ? "any" : r.proto.value.map((p) => p.text).join(","),
    r.iface?.value ?? "?",
    r.direction?.value ?? "?",
    refs(r.src), "->", refs(r.dst),
  ];
  if (r.sport) parts.push("sport", r.sport.value.map((p) => p.text).join(","));
  if (r.dport) parts.push("dport", r.dport.value.map((p) => p.text).join(","));
  if (r.tcpFlags) parts.push("flags", r.tcpFlags.text);
  if (r.icmpTypes) parts.push("icmp_type", r.icmpTypes.value.map((t) => t.text).join(","));
  if (r.log) parts.push("log");
  if (r.offload?.value) parts.push("offload");
  if (r.when) parts.push(`when ${r.when.value}`);
  if (r.from) parts.push(`from ${r.from.value.not ? "not " : ""}${r.from.value.list}`);
  if (r.limit) parts.push(limitText(r.limit));
  let s = `${basename(file)}:${r.pos.line} ${r.name?.value ?? `#${r.index}`}: ${parts.join(" ")}`;
  if (r.comment) s += ` # ${oneLine(r.comment, 80)}`;
  return s;
}

// "limit rate 20/s burst 40 flows 200 per /32,/64 overload abusers for 10m flush"
export function limitText(l: NonNullable<RuleAst["limit"]>): string {
  const out = ["limit"];
  if (l.rate) out.push("rate", l.rate.text, "burst", String(l.burst));
  if (l.flows !== null) out.push("flows", String(l.flows));
  out.push("per", `/${l.prefix4},/${l.prefix6}`);
  if (l.overload) out.push("overload", l.overload.list + (l.overload.blockNs > 0n ? ` for ${durationText(l.overload.blockNs)}` : ""));
  if (l.flush) out.push("flush");
  return out.join(" ");
}

// Reads a policy (or a table) file once, for every later step to see the same
// bytes; a file that is missing, not a regular file or too large is a
// ConfigError at FILE (line 0).
export function readPolicyFile(path: string, what = "policy"): Buffer {
  try {
    return readOperatorFile(path, what);
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    const d = new Diagnostics();
    d.error(FILE_CODES.policy[e.kind], { file: path, line: 0, col: 0 }, e.detail);
    d.check();
    throw e; // unreachable: check() threw
  }
}

const FILE_CODES = {
  policy: { missing: "policy_missing", unreadable: "policy_unreadable", not_regular: "policy_not_regular", too_large: "policy_too_large" },
  set: { missing: "set_file_missing", unreadable: "set_unreadable", not_regular: "set_not_regular", too_large: "set_too_large" },
} as const;

export function compilePolicyFile(path: string, opts: CompileOptions = {}): CompiledPolicy {
  return compilePolicyText(readPolicyFile(path).toString("utf8"), path, opts);
}

// `file` names the policy in messages and anchors relative set paths.
export function compilePolicyText(text: string, file: string, opts: CompileOptions = {}): CompiledPolicy {
  const t0 = performance.now();
  const diag = new Diagnostics();
  const mode = opts.mode ?? "host";
  const cmdline: Pos = { file, line: 0, col: 0 };
  // The YAML parser holds about 100 times the text in memory: a policy is
  // held to a few MiB (large address lists belong in set files).
  const size = Buffer.byteLength(text);
  if (size > MAX_POLICY_TEXT) {
    diag.error("policy_too_large", cmdline, `the policy is ${size} bytes, over the ${MAX_POLICY_TEXT}-byte limit of a YAML policy (put large address lists in set files)`);
    diag.check();
  }
  if (!MODES.includes(mode)) diag.error("bad_mode", cmdline, `mode must be host or gateway, not "${String(mode)}"`);
  const ast = parsePolicyText(text, file, diag);
  if (ast === null) { diag.check(); throw new Error("unreachable"); }

  // Groups and sets share one namespace.
  for (const [name, s] of ast.sets) {
    const g = ast.groups.get(name);
    if (!g) continue;
    const [first, later] = g.pos.line <= s.pos.line ? [g, s] : [s, g];
    diag.error("duplicate_name", later.pos, `"${name}" names both a group and a set (the other is at line ${first.pos.line}); use distinct names`);
  }

  const groupRanges = new Map<string, AddrRanges>();
  for (const [name, g] of ast.groups) {
    // A group without entries was reported by the parser (empty, or every entry wrong).
    if (g.entries.length === 0) continue;
    groupRanges.set(name, prefixesToRanges(g.entries.map((e) => e.prefix)));
  }

  const setRanges = new Map<string, AddrRanges>();
  const setSummaries: SetSummary[] = [];
  const setTexts = new Map<string, string>();
  let setBytes = 0;
  for (const [name, s] of ast.sets) {
    const ts = performance.now();
    // Each set file is read once however many sets name it, and together
    // they are held to the same limit as one file.
    const key = resolvePath(s.path);
    let body = setTexts.get(key);
    if (body === undefined) {
      try {
        const bytes = readOperatorFile(s.path, "set", MAX_OPERATOR_FILE - setBytes);
        setBytes += bytes.length;
        body = bytes.toString("utf8");
        setTexts.set(key, body);
      } catch (e) {
        if (!(e instanceof OperatorFileError)) throw e;
        const what = e.kind === "missing" ? `no such file ${s.path}`
          : e.kind === "too_large" && setBytes > 0 ? `${s.path} would take the policy's set files over ${MAX_OPERATOR_FILE} bytes in all`
          : `${s.path}: ${e.detail}`;
        diag.error(FILE_CODES.set[e.kind], s.file.pos, `set "${name}": ${what}`);
        continue;
      }
    }
    const c = parseSetText(body, s.path, diag);
    setRanges.set(name, { v4: c.v4, v6: c.v6 });
    setSummaries.push({
      name, line: s.pos.line, path: s.path, includes: c.includes, exceptions: c.exceptions,
      v4Ranges: c.v4.length, v6Ranges: c.v6.length, ms: performance.now() - ts, usedBy: 0,
    });
  }

  // Switch states: the policy's, then the overrides.
  const state = new Map<string, boolean>();
  for (const [name, s] of ast.switches) state.set(name, s.value);
  const overridden = new Set<string>();
  for (const [name, v] of Object.entries(opts.switches ?? {})) {
    if (!ast.switches.has(name)) {
      const known = [...ast.switches.keys()];
      diag.error("unknown_switch", cmdline, `--set ${name}: the policy has no switch named "${name}"${suggest(name, known)}` +
        (known.length ? `; its switches are ${known.join(", ")}` : "; it defines no switches"));
      continue;
    }
    state.set(name, v);
    overridden.add(name);
  }

  const used = new Map<string, number>();
  const use = (n: string): void => { used.set(n, (used.get(n) ?? 0) + 1); };
  const resolve = (refs: { value: AddrRef[] } | null): AddrRanges | null | undefined => {
    if (refs === null) return null;
    const parts: AddrRanges[] = [];
    let ok = true;
    for (const a of refs.value) {
      if (a.kind === "prefix") { parts.push(prefixesToRanges([a.prefix])); continue; }
      if (a.kind !== "name") continue;
      const g = groupRanges.get(a.text) ?? setRanges.get(a.text);
      if (g) { parts.push(g); use(a.text); continue; }
      if (ast.groups.has(a.text) || ast.sets.has(a.text)) { use(a.text); ok = false; continue; } // already in error
      const names = [...ast.groups.keys(), ...ast.sets.keys()];
      diag.error("unknown_name", a.pos, `no group or set named "${a.text}"${suggest(a.text, names)}`);
      ok = false;
    }
    if (!ok) return undefined;
    return parts.length === 1 ? parts[0]! : unionAddr(parts);
  };

  // Block lists: declared under lists:, or by an overload: that names one.
  const lists = [...ast.lists.keys()];
  for (const r of ast.rules) {
    const o = r.limit?.overload;
    if (o && !lists.includes(o.list)) lists.push(o.list);
  }
  for (const name of lists) {
    if (ast.groups.has(name) || ast.sets.has(name)) {
      diag.error("duplicate_name", ast.lists.get(name)?.pos ?? ast.rules.find((r) => r.limit?.overload?.list === name)!.limit!.overload!.pos,
        `"${name}" names both a block list and a ${ast.groups.has(name) ? "group" : "set"}; use distinct names`);
    }
  }
  const usedLists = new Set<string>();

  const rules: RuleSpec[] = [];
  const ruleSummaries: RuleSummary[] = [];
  const byPlace = new Map<string, number>();
  for (const r of ast.rules) {
    let enabled = true;
    if (r.when) {
      const sw = state.get(r.when.value);
      if (sw === undefined) {
        const known = [...ast.switches.keys()];
        diag.error("unknown_switch", r.when.pos, `no switch named "${r.when.value}"${suggest(r.when.value, known)}; define it under switches:`);
        enabled = false;
      } else {
        use(`switch:${r.when.value}`);
        enabled = sw;
      }
    }
    if (r.from && !lists.includes(r.from.value.list)) {
      const known = ast.groups.has(r.from.value.list) || ast.sets.has(r.from.value.list)
        ? `; "${r.from.value.list}" is a ${ast.groups.has(r.from.value.list) ? "group" : "set"}: name it in src:` : "";
      diag.error("unknown_list", r.from.pos, `no block list named "${r.from.value.list}"${suggest(r.from.value.list, lists)}${known}` +
        (lists.length ? `; the policy's lists are ${lists.join(", ")}` : "; declare it under lists: or name it in a limit's overload:"));
      continue;
    }
    if (r.from) usedLists.add(r.from.value.list);
    const src = resolve(r.src);
    const dst = resolve(r.dst);
    if (src === undefined || dst === undefined || !r.ok || !r.action || !r.iface || !r.direction) continue;

    // Address families: a rule whose ends cannot share a family never matches.
    const fs = famOf(src), fd = famOf(dst);
    const nums = r.proto?.value.map((p) => p.num) ?? null;
    const fp: Fam = nums === null ? { v4: true, v6: true }
      : { v4: nums.some((n) => n !== 58), v6: nums.some((n) => n !== 1) };
    const both: Fam = { v4: fs.v4 && fd.v4, v6: fs.v6 && fd.v6 };
    const fam: Fam = { v4: both.v4 && fp.v4, v6: both.v6 && fp.v6 };
    const emptyEnd = (!fs.v4 && !fs.v6) || (!fd.v4 && !fd.v6);
    if (emptyEnd) {
      diag.warn("never_matches", r.pos, `rule ${r.name?.value ?? `#${r.index}`} can never match: its ${!fs.v4 && !fs.v6 ? "src" : "dst"} holds no addresses`);
    } else if (!both.v4 && !both.v6) {
      diag.error("family_mismatch", r.dst!.pos,
        `src is ${famText(fs)} and dst is ${famText(fd)}: this rule can never match (a packet is IPv4 or IPv6 end to end)`);
      continue;
    } else if (!fam.v4 && !fam.v6) {
      diag.error("family_mismatch", r.proto!.pos,
        `proto ${r.proto!.value.map((p) => p.text).join(",")} is ${fp.v4 ? "IPv4's ICMP (use icmpv6 for IPv6)" : "ICMP for IPv6 (use icmp for IPv4)"} but the addresses are ${famText(both)}: this rule can never match`);
      continue;
    }

    const info = ruleInfo(file, r);
    ruleSummaries.push({
      index: r.index, table: enabled ? rules.length : null, name: r.name?.value ?? null, line: r.pos.line,
      action: r.action.value, iface: r.iface.value, direction: r.direction.value, when: r.when?.value ?? null, info,
    });
    if (!enabled) continue;
    const key = `${r.iface.value} ${r.direction.value}`;
    byPlace.set(key, (byPlace.get(key) ?? 0) + 1);
    const ports = (p: { value: Array<{ lo: number; hi: number }> } | null): Range32[] | null =>
      p === null ? null : unionRanges32(p.value.map((x) => [x.lo, x.hi] as const));
    rules.push({
      action: r.action.value,
      log: r.log,
      // offload: the rule's own key, else the policy's `offload: { all: true }` for allow rules
      offload: r.action.value === "allow" && (r.offload?.value ?? ast.offload?.all ?? false),
      ctx: contextsFor(mode, r.iface.value, r.direction.value),
      src: restrict(src, fam),
      dst: restrict(dst, fam),
      protos: nums === null ? null : (nums as number[]),
      sport: ports(r.sport),
      dport: ports(r.dport),
      tcpFlags: r.tcpFlags ? { value: r.tcpFlags.value, mask: r.tcpFlags.mask } : null,
      icmp: r.icmpTypes === null ? null
        : unionRanges32(r.icmpTypes.value.map((t): Range32 => (t.code === null ? [t.type << 8, (t.type << 8) | 0xff] : [(t.type << 8) | t.code, (t.type << 8) | t.code]))),
      line: r.pos.line,
      info,
      ext: ruleExt(r, info, lists),
    });
  }
  for (const name of lists) {
    if (!usedLists.has(name)) diag.warn("unused", ast.lists.get(name)?.pos ?? cmdline, `block list "${name}" is not referred to by any rule (from: ${name}); its entries block nothing`);
  }
  diag.check(); // a missing default or version is an error, so both are set past here

  for (const [name, g] of ast.groups) if (!used.has(name)) diag.warn("unused", g.pos, `group "${name}" is not used by any rule`);
  for (const [name, s] of ast.sets) if (!used.has(name)) diag.warn("unused", s.pos, `set "${name}" is not used by any rule`);
  for (const [name, s] of ast.switches) if (!used.has(`switch:${name}`)) diag.warn("unused", s.pos, `switch "${name}" is not used by any rule (when: ${name})`);

  const places: Array<[Iface, Direction]> = [];
  for (const i of ["external", "internal", "any"] as const) for (const d of ["in", "out", "forward"] as const) places.push([i, d]);
  const summary: PolicySummary = {
    file,
    mode,
    defaultAction: ast.defaultAction!.value,
    rules: ruleSummaries,
    tableRules: rules.length,
    byPlace: places.filter(([i, d]) => byPlace.has(`${i} ${d}`)).map(([i, d]) => ({ iface: i, direction: d, rules: byPlace.get(`${i} ${d}`)! })),
    groups: [...ast.groups.values()].map((g) => {
      const n = countAddresses(groupRanges.get(g.name) ?? { v4: [], v6: [] });
      return { name: g.name, line: g.pos.line, entries: g.entries.length, v4Addresses: n.v4, v6Addresses: n.v6, usedBy: used.get(g.name) ?? 0 };
    }),
    sets: setSummaries.map((s) => ({ ...s, usedBy: used.get(s.name) ?? 0 })),
    switches: [...ast.switches.values()].map((s) => ({
      name: s.name, line: s.pos.line, value: state.get(s.name)!, policyValue: s.value, overridden: overridden.has(s.name),
      usedBy: used.get(`switch:${s.name}`) ?? 0,
    })),
    warnings: diag.warnings,
    ms: performance.now() - t0,
  };
  return { spec: { rules, defaultAction: ast.defaultAction!.value, lists, offloadAfter: ast.offload?.after ?? DEFAULT_OFFLOAD_AFTER }, summary };
}

// The table's extension of a rule: its limit and list condition; the key
// names the rule's sources in the core across reloads, from the rule's text
// after FILE:LINE (so an unchanged rule keeps its buckets, even moved).
function ruleExt(r: RuleAst, info: string, lists: string[]): RuleExt | null {
  if (!r.limit && !r.from) return null;
  const l = r.limit;
  return {
    key: crc32(new TextEncoder().encode(info.slice(info.indexOf(" ") + 1))),
    limit: l === null ? null : {
      rate: l.rate?.count ?? 0,
      periodNs: l.rate?.periodNs ?? 0n,
      burst: l.rate ? l.burst : 0,
      flows: l.flows ?? 0,
      prefix4: l.prefix4,
      prefix6: l.prefix6,
      overload: l.overload ? lists.indexOf(l.overload.list) : null,
      blockNs: l.overload?.blockNs ?? 0n,
      flush: l.flush,
    },
    fromList: r.from ? { list: lists.indexOf(r.from.value.list), not: r.from.value.not } : null,
  };
}

// The table of a compiled policy, refused (a ConfigError at FILE, line 0)
// when it holds more than the core takes: DEFAULT_MAX_RULES rules and
// DEFAULT_TABLE_CAP bytes, the limits the daemon runs its core with. So
// `check` and `compile` say what the daemon would refuse at reload.
export function buildPolicyTable(c: CompiledPolicy): BuiltTable {
  const file = c.summary.file;
  const rules = c.spec.rules.length;
  const limits = `the core takes at most ${ABI.DEFAULT_MAX_RULES} rules and ${ABI.DEFAULT_TABLE_CAP} bytes`;
  const refuse = (code: string, what: string): never => {
    const d = new Diagnostics();
    d.error(code, { file, line: 0, col: 0 }, what);
    d.check();
    throw new Error("unreachable");
  };
  if (rules > ABI.DEFAULT_MAX_RULES) refuse("too_many_rules", `the policy puts ${rules} rules in the table; ${limits}`);
  try {
    const built = buildTable(c.spec, { maxBytes: MAX_BUILD_BYTES });
    if (built.bytes.length > ABI.DEFAULT_TABLE_CAP) {
      refuse("table_too_large", `the compiled table is ${built.bytes.length} bytes with ${rules} rules; ${limits}`);
    }
    return built;
  } catch (e) {
    if (!(e instanceof TableTooLargeError)) throw e;
    return refuse("table_too_large", `the compiled table is more than ${e.limit} bytes with ${rules} rules; ${limits}`);
  }
}

export type { PolicyAst };
