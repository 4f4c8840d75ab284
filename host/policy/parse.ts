// Policy file (YAML) -> checked syntax tree with positions. Everything that
// can be judged from the file alone is judged here (keys, types, values,
// prefixes, ports, protocols, flags); what needs the whole policy (names that
// refer to groups, sets and switches; address families; set files) is
// compile.ts's. The YAML, positions and errors are host/config/'s (the front
// end of every configuration file); this is the policy's schema over it. The
// format is described in host/policy/README.md.
import { dirname, isAbsolute, join } from "node:path";
import { type Alias, type Document, isAlias, isMap, isScalar, isSeq, type Node, visit } from "yaml";
import { type Diagnostics, type Pos } from "../config/errors.js";
import { isEmpty, suggest, YamlReader } from "../config/yaml.js";
import { type IcmpFamily, icmpText, resolveIcmp, splitIcmpText } from "../packets/icmp-names.js";
import { isPrefix, parsePrefix, type Prefix } from "./addr.js";
import { parseDuration, parseRate, type Rate } from "./limit-text.js";

export type Action = "allow" | "deny";
export type Iface = "external" | "internal" | "any";
export type Direction = "in" | "out" | "forward";

export interface Located<T> { value: T; pos: Pos }

export type AddrRef =
  | { kind: "any"; text: "any"; pos: Pos }
  | { kind: "name"; text: string; pos: Pos }
  | { kind: "prefix"; text: string; prefix: Prefix; pos: Pos };

export interface ProtoAst { num: number | null; text: string; pos: Pos } // num null: any
export interface PortAst { lo: number; hi: number; text: string; pos: Pos }
export interface FlagsAst { value: number; mask: number; text: string; pos: Pos }
// One entry of icmp_type: a type, or a type and code; text as check prints it.
export interface IcmpTypeAst { type: number; code: number | null; text: string; pos: Pos }

export interface RuleAst {
  index: number; //    1-based position in `rules:`
  pos: Pos; //         the rule's first key
  ok: boolean; //      false when a field of it is in error
  name: Located<string> | null;
  action: Located<Action> | null;
  iface: Located<Iface> | null;
  direction: Located<Direction> | null;
  proto: Located<ProtoAst[]> | null; //   null: any
  src: Located<AddrRef[]> | null; //      null: any
  dst: Located<AddrRef[]> | null;
  sport: Located<PortAst[]> | null; //    null: any
  dport: Located<PortAst[]> | null;
  tcpFlags: FlagsAst | null;
  icmpTypes: Located<IcmpTypeAst[]> | null; // null: any
  log: boolean;
  offload: Located<boolean> | null; // offload: true (the kernel carries its established TCP flows)
  comment: string | null;
  when: Located<string> | null;
  limit: LimitAst | null;
  from: Located<{ list: string; not: boolean }> | null; // a block list the source must (not) be on
}

// `limit:` of an allow rule (host/policy/README.md). At least one of rate and flows.
export interface LimitAst {
  pos: Pos;
  rate: (Rate & { pos: Pos }) | null;
  burst: number; //                 the bucket's depth; the rate's count when not given
  flows: number | null;
  prefix4: number; //               the source's aggregation, default /32
  prefix6: number; //               default /64
  overload: { list: string; pos: Pos; blockNs: bigint } | null; // blockNs 0n: until removed
  flush: boolean;
}
export const MAX_LIMIT_FLOWS = 1_000_000;
export const MAX_LIMIT_BURST = 1_000_000;

export interface GroupAst { name: string; pos: Pos; entries: Array<{ prefix: Prefix; text: string; pos: Pos }> }
export interface SetAst { name: string; pos: Pos; file: Located<string>; path: string }
export interface SwitchAst { name: string; value: boolean; pos: Pos }

export interface PolicyAst {
  file: string;
  pos: Pos; // the top-level mapping
  version: number | null;
  defaultAction: Located<Action> | null;
  switches: Map<string, SwitchAst>;
  groups: Map<string, GroupAst>;
  sets: Map<string, SetAst>;
  rules: RuleAst[];
  // offload: { after: N, all: bool }: packets a flow passes through the core
  // before the kernel carries it, and whether every allow rule offloads.
  offload: { after: number; all: boolean; pos: Pos } | null;
  lists: Map<string, { name: string; pos: Pos }>; // declared under lists: (overload: declares its own)
}

export const DEFAULT_OFFLOAD_AFTER = 10;

export const NAME_RE = /^[a-z][a-z0-9_-]*$/;
const RULE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const RESERVED_NAMES = new Set(["any"]);

export const PROTO_NUMBERS: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };
export const PROTO_NAMES: Readonly<Record<number, string>> = { 6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6" };

// pf's letters, in bit order of the TCP flags byte.
export const TCP_FLAG_LETTERS = "FSRPAUEW";

export const MAX_ALIAS_ENTRIES = 100_000;
const TOP_KEYS = ["version", "default", "switches", "groups", "sets", "lists", "rules", "offload"];
const OFFLOAD_KEYS = ["after", "all"];
const RULE_KEYS = ["name", "action", "interface", "direction", "proto", "src", "dst", "sport", "dport",
  "tcp_flags", "icmp_type", "log", "offload", "comment", "when", "limit", "from"];
const LIMIT_KEYS = ["rate", "burst", "flows", "per", "overload", "flush"];
const SET_KEYS = ["file"];

// Parses one policy. Returns null when the YAML itself is broken (the
// errors are in diag); otherwise a tree in which fields found wrong are null
// and their rule is marked not ok.
export function parsePolicyText(text: string, file: string, diag: Diagnostics): PolicyAst | null {
  const p = new Parser(text, file, diag);
  // Content of the file is quoted in messages only once it is a policy:
  // reload PATH may name any file the daemon can read (/etc/shadow), and its
  // errors go to replies, logs and stats.
  const policyLike = isPolicyDocument(p.doc);
  const unnamed: Pos = { file, line: 0, col: 0 };
  if (policyLike) {
    if (p.reportSyntax()) return null;
  } else if (p.doc.errors.length > 0) {
    const e = p.syntaxErrors()[0]!;
    diag.error(e.code, unnamed, e.code === "duplicate_key" ? e.what : `not a policy: it does not parse as YAML (${e.yamlCode})`);
    return null;
  } else if (!isEmpty(p.doc.contents as Node | null)) {
    diag.error("not_a_policy", unnamed, `not a policy: ${isMap(p.doc.contents)
      ? `its top-level keys are not a policy's (${TOP_KEYS.join(", ")})`
      : "it is not a YAML mapping of version, default, rules..."}`);
    return null;
  }
  for (const w of p.doc.warnings) diag.warn("yaml_warning", p.at(w.pos[0]), `YAML: ${w.message}`);
  return p.policy();
}

// A YAML mapping whose top-level keys are all a policy's, or one that says
// `version:`. Anything else is not quoted in errors.
function isPolicyDocument(doc: Document): boolean {
  const top = doc.contents;
  if (!isMap(top) || top.items.length === 0) return false;
  const keys = top.items.map((i) => (isScalar(i.key) && typeof i.key.value === "string" ? i.key.value : null));
  return keys.includes("version") || keys.every((k) => k !== null && TOP_KEYS.includes(k));
}

// The policy's schema over the YAML front end, which expands aliases here.
class Parser extends YamlReader {
  // Every alias's target, found in one pass in document order (yaml's own
  // Alias.resolve searches the whole document each time: quadratic).
  private targets: Map<Alias, Node> | null = null;

  private anchors(): Map<Alias, Node> {
    if (this.targets) return this.targets;
    const byName = new Map<string, Node>();
    const out = new Map<Alias, Node>();
    visit(this.doc, {
      Node: (_k, node) => {
        if (isAlias(node)) { const t = byName.get(node.source); if (t) out.set(node, t); } else if (node.anchor) byName.set(node.anchor, node);
      },
    });
    return (this.targets = out);
  }

  // What aliases may still expand to, in entries: `src: *big` in every rule
  // would otherwise cost rules x entries (a 4 MB policy stalled for minutes).
  private aliasBudget = MAX_ALIAS_ENTRIES;

  protected override node(n: unknown): Node | null {
    if (n === null || n === undefined) return null;
    if (isAlias(n)) {
      if (this.aliasBudget < 0) return null;
      const r = this.anchors().get(n) ?? null;
      this.aliasBudget -= r && (isSeq(r) || isMap(r)) ? Math.max(1, r.items.length) : 1;
      if (this.aliasBudget < 0) {
        this.diag.error("alias_expansion", this.pos(n, this.start),
          `aliases expand to more than ${MAX_ALIAS_ENTRIES} entries in all; put the addresses in a group and name it`);
        return null;
      }
      return r;
    }
    return n as Node;
  }

  // A mapping of names to anything (groups, sets, switches).
  private named(n: Node | null, what: string, fallback: Pos): Array<{ name: string; key: Pos; value: Node | null }> {
    const out: Array<{ name: string; key: Pos; value: Node | null }> = [];
    if (!isMap(n)) {
      this.diag.error("bad_type", this.pos(n, fallback), `${what} must be a mapping of names to values`);
      return out;
    }
    for (const item of n.items) {
      const k = this.node(item.key);
      const kpos = this.pos(k, this.pos(n, fallback));
      if (!k || !isScalar(k) || typeof k.value !== "string") {
        this.diag.error("bad_name", kpos, `names in ${what} must be words like front_end`);
        continue;
      }
      const name = k.value;
      if (!NAME_RE.test(name)) {
        this.diag.error("bad_name", kpos, `"${name}" is not a valid name: lower-case letter first, then lower-case letters, digits, _ or -`);
        continue;
      }
      if (RESERVED_NAMES.has(name)) {
        this.diag.error("bad_name", kpos, `"${name}" is reserved and cannot name a group, set or switch`);
        continue;
      }
      out.push({ name, key: kpos, value: this.node(item.value) });
    }
    return out;
  }

  private str(n: Node | null): string | null {
    return n && isScalar(n) && typeof n.value === "string" ? n.value : null;
  }

  // One word out of a list of choices; `code` on anything else.
  private choice<T extends string>(n: Node | null, key: Pos, choices: readonly T[], code: string, what: string): Located<T> | null {
    const s = this.str(n);
    const p = this.pos(n, key);
    if (s !== null && (choices as readonly string[]).includes(s)) return { value: s as T, pos: p };
    const shown = s === null ? (n && isScalar(n) ? JSON.stringify(n.value) : "nothing") : `"${s}"`;
    const hint = s !== null ? suggest(s, choices) : "";
    this.diag.error(code, p, `${what} must be ${choices.slice(0, -1).join(", ")} or ${choices[choices.length - 1]}, not ${shown}${hint}`);
    return null;
  }

  // A scalar or a list of scalars, as (node, position) pairs; an empty list
  // and nested lists are errors.
  private list(n: Node | null, key: Pos, what: string, emptyHint = "leave the key out to mean any"): Array<Node> | null {
    if (n === null || (isScalar(n) && n.value === null)) {
      this.diag.error("bad_type", this.pos(n, key), `${what} has no value`);
      return null;
    }
    if (isSeq(n)) {
      const items = n.items.map((i) => this.node(i));
      if (items.length === 0) {
        this.diag.error("empty_list", this.pos(n, key), `${what} is an empty list; ${emptyHint}`);
        return null;
      }
      const out: Node[] = [];
      for (const it of items) {
        if (!it || !isScalar(it)) {
          this.diag.error("bad_type", this.pos(it, this.pos(n, key)), `each entry of ${what} must be a single value, not a list or mapping`);
          return null;
        }
        out.push(it);
      }
      return out;
    }
    if (!isScalar(n)) {
      this.diag.error("bad_type", this.pos(n, key), `${what} must be a value or a list of values`);
      return null;
    }
    return [n];
  }

  policy(): PolicyAst | null {
    const top = this.top();
    if (isEmpty(top)) {
      this.diag.error("empty_policy", this.start, "the policy is empty; it needs at least version, default and rules");
      return null;
    }
    const e = this.mapping(top, TOP_KEYS, "the policy", this.start);
    if (e === null) return null;
    const pos = e.pos;
    const ast: PolicyAst = {
      file: this.file, pos, version: null, defaultAction: null,
      switches: new Map(), groups: new Map(), sets: new Map(), rules: [], lists: new Map(), offload: null,
    };

    const ver = e.need("version", "write version: 1");
    if (ver) {
      const v = ver.value;
      if (v && isScalar(v) && v.value === 1) ast.version = 1;
      else this.diag.error("bad_version", this.pos(v, ver.key), `unsupported policy version ${v && isScalar(v) ? JSON.stringify(v.value) : "(none)"}; this compiler reads version: 1`);
    }

    const def = e.need("default", "deny or allow: what happens to packets no rule matches");
    if (def) ast.defaultAction = this.choice<Action>(def.value, def.key, ["deny", "allow"], "bad_default", "default");

    const sw = e.get("switches");
    if (sw && !isEmpty(sw.value)) {
      for (const { name, key, value } of this.named(sw.value, "switches", sw.key)) {
        const on = this.boolean({ key, value }, `switch "${name}"`, "bad_switch");
        if (on !== undefined) ast.switches.set(name, { name, value: on, pos: key });
      }
    }

    const gr = e.get("groups");
    if (gr && !isEmpty(gr.value)) {
      for (const { name, key, value } of this.named(gr.value, "groups", gr.key)) this.group(ast, name, key, value);
    }

    const st = e.get("sets");
    if (st && !isEmpty(st.value)) {
      for (const { name, key, value } of this.named(st.value, "sets", st.key)) this.set(ast, name, key, value);
    }

    const of = e.get("offload");
    if (of) {
      const m = this.mapping(of.value, OFFLOAD_KEYS, "offload", of.key);
      if (m) {
        const off = { after: DEFAULT_OFFLOAD_AFTER, all: false, pos: of.key };
        const af = m.get("after");
        if (af) {
          const v = af.value && isScalar(af.value) ? af.value.value : null;
          if (typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 65535) off.after = v;
          else this.diag.error("bad_offload", this.pos(af.value, af.key), "offload.after must be a whole number of packets, 1-65535");
        }
        const al = m.get("all");
        const all = al && this.boolean(al, "offload.all");
        if (all !== undefined) off.all = all;
        ast.offload = off;
      }
    }

    const li = e.get("lists");
    if (li && !isEmpty(li.value)) {
      for (const it of this.list(li.value, li.key, "lists", "leave the key out when there are none") ?? []) {
        const s = this.str(it);
        const p = this.pos(it, li.key);
        if (s === null || !NAME_RE.test(s) || RESERVED_NAMES.has(s)) {
          this.diag.error("bad_name", p, "lists: names block lists, each a word like abusers (lower-case letter first)");
        } else if (ast.lists.has(s)) {
          this.diag.error("duplicate_name", p, `list "${s}" is declared twice`);
        } else ast.lists.set(s, { name: s, pos: p });
      }
    }

    const ru = e.need("rules", "write rules: [] for none");
    if (ru && !isSeq(ru.value)) {
      this.diag.error("bad_type", this.pos(ru.value, ru.key), "rules must be a list (each rule starts with -)");
    } else if (ru && isSeq(ru.value)) {
      const list = ru.value;
      list.items.forEach((item, i) => {
        const r = this.rule(this.node(item), i + 1, this.pos(list, ru.key));
        if (r) ast.rules.push(r);
      });
      const seen = new Map<string, RuleAst>();
      for (const r of ast.rules) {
        if (!r.name) continue;
        const prev = seen.get(r.name.value);
        if (prev) this.diag.error("duplicate_rule_name", r.name.pos, `rule name "${r.name.value}" is already used by the rule at line ${prev.pos.line}`);
        else seen.set(r.name.value, r);
      }
    }
    return ast;
  }

  private group(ast: PolicyAst, name: string, key: Pos, value: Node | null): void {
    const items = this.list(value, key, `group "${name}"`, "a group needs at least one address or prefix");
    if (items === null) return;
    const g: GroupAst = { name, pos: key, entries: [] };
    for (const it of items) {
      const p = this.pos(it, key);
      const s = this.str(it);
      if (s === null) {
        this.diag.error("bad_type", p, `group "${name}" lists addresses and prefixes as text, e.g. 198.51.100.10 or 2001:db8:2::/64`);
        continue;
      }
      const pr = parsePrefix(s.trim());
      if (!isPrefix(pr)) {
        const named = NAME_RE.test(s) ? "; a group holds addresses and prefixes, not other names" : "";
        this.diag.error(pr.code, p, pr.what + named);
        continue;
      }
      g.entries.push({ prefix: pr, text: s.trim(), pos: p });
    }
    ast.groups.set(name, g);
  }

  private set(ast: PolicyAst, name: string, key: Pos, value: Node | null): void {
    if (value === null || !isMap(value)) {
      this.diag.error("bad_type", this.pos(value, key), `set "${name}" must be a mapping like { file: blocklist.txt }`);
      return;
    }
    const f = this.mapping(value, SET_KEYS, `set "${name}"`, key)?.need("file", "a path relative to the policy file");
    if (!f) return;
    const s = this.str(f.value);
    if (s === null || s.trim() === "") {
      this.diag.error("bad_type", this.pos(f.value, f.key), `the file of set "${name}" must be a path`);
      return;
    }
    const path = isAbsolute(s) ? s : join(dirname(this.file), s);
    ast.sets.set(name, { name, pos: key, file: { value: s, pos: this.pos(f.value, f.key) }, path });
  }

  private rule(n: Node | null, index: number, listPos: Pos): RuleAst | null {
    const pos = this.pos(n, listPos);
    if (n === null || !isMap(n)) {
      this.diag.error("bad_type", pos, `rule #${index} must be a mapping (action:, interface:, direction:, ...)`);
      return null;
    }
    const errorsBefore = this.diag.errors.length;
    const e = this.mapping(n, RULE_KEYS, `rule #${index}`, pos);
    if (e === null) return null;
    const r: RuleAst = {
      index, pos, ok: true, name: null, action: null, iface: null, direction: null, proto: null,
      src: null, dst: null, sport: null, dport: null, tcpFlags: null, icmpTypes: null, log: false, offload: null, comment: null, when: null,
      limit: null, from: null,
    };
    const act = e.need("action", "allow or deny");
    if (act) r.action = this.choice<Action>(act.value, act.key, ["allow", "deny"], "bad_action", "action");
    const ifc = e.need("interface", "external, internal or any");
    if (ifc) r.iface = this.choice<Iface>(ifc.value, ifc.key, ["external", "internal", "any"], "bad_interface", "interface");
    const dir = e.need("direction", "in, out or forward");
    if (dir) r.direction = this.choice<Direction>(dir.value, dir.key, ["in", "out", "forward"], "bad_direction", "direction");

    const nm = e.get("name");
    if (nm) {
      const s = this.str(nm.value);
      if (s !== null && RULE_NAME_RE.test(s)) r.name = { value: s, pos: this.pos(nm.value, nm.key) };
      else this.diag.error("bad_name", this.pos(nm.value, nm.key), "a rule name is 1 to 64 letters, digits, _ . or -, starting with a letter or digit");
    }
    const pr = e.get("proto");
    let protoOk = true;
    if (pr) {
      const before = this.diag.errors.length;
      r.proto = this.protos(pr.value, pr.key);
      protoOk = this.diag.errors.length === before;
    }
    const src = e.get("src");
    if (src) r.src = this.addrs(src.value, src.key, "src");
    const dst = e.get("dst");
    if (dst) r.dst = this.addrs(dst.value, dst.key, "dst");
    const sp = e.get("sport");
    if (sp) r.sport = this.ports(sp.value, sp.key, "sport");
    const dp = e.get("dport");
    if (dp) r.dport = this.ports(dp.value, dp.key, "dport");

    // ICMP types belong to one ICMP family (the numbers differ), never with ports.
    const it = e.get("icmp_type");
    const protoText = r.proto ? `proto ${r.proto.value.map((p) => p.text).join(", ")}` : "no proto (any)";
    if (it) {
      const nums = r.proto?.value.map((p) => p.num) ?? [];
      const fam: IcmpFamily | null = nums.length === 1 && nums[0] === 1 ? 4 : nums.length === 1 && nums[0] === 58 ? 6 : null;
      const ports = sp ?? dp;
      if (ports) {
        this.diag.error("icmp_type_with_ports", ports.key, `${sp ? "sport" : "dport"} and icmp_type cannot be in one rule: ICMP has types, not ports`);
      } else if (protoOk && fam === null) {
        const both = nums.includes(1) && nums.includes(58);
        this.diag.error("icmp_type_needs_icmp", it.key, `icmp_type needs proto icmp or proto icmpv6; this rule has ${protoText}` +
          (both ? " (the two number their types differently: write one rule per family)" : ""));
      }
      if (fam !== null) r.icmpTypes = this.icmpTypes(it.value, it.key, fam);
    }

    // Ports exist only for TCP and UDP; say so rather than build a rule that
    // silently never matches anything else.
    const tcpUdpOnly = r.proto !== null && r.proto.value.every((p) => p.num === 6 || p.num === 17);
    for (const [k, v] of [["sport", sp], ["dport", dp]] as const) {
      if (v && protoOk && !tcpUdpOnly && !it) {
        this.diag.error("ports_need_tcp_udp", v.key, `${k} needs proto tcp or udp (or a list of only those); this rule has ${protoText}`);
      }
    }

    const fl = e.get("tcp_flags");
    if (fl) {
      r.tcpFlags = this.flags(fl.value, fl.key);
      const tcpOnly = r.proto !== null && r.proto.value.every((p) => p.num === 6);
      if (protoOk && !tcpOnly && this.str(fl.value) !== "any") {
        this.diag.error("flags_need_tcp", fl.key, `tcp_flags needs proto tcp; this rule has ${r.proto ? `proto ${r.proto.value.map((p) => p.text).join(", ")}` : "no proto (any)"}`);
      }
    }

    const lg = e.get("log");
    if (lg) {
      if (lg.value && isScalar(lg.value) && typeof lg.value.value === "boolean") r.log = lg.value.value;
      else this.diag.error("bad_type", this.pos(lg.value, lg.key), "log must be true or false");
    }
    const ol = e.get("offload");
    if (ol) {
      const on = this.boolean(ol, "offload");
      if (on !== undefined) {
        r.offload = { value: on, pos: this.pos(ol.value, ol.key) };
        if (on && r.action?.value === "deny") this.diag.error("offload_on_deny", ol.key, "offload is for allow rules: a deny rule has no flow for the kernel to carry");
        else if (on && protoOk && r.proto !== null && !r.proto.value.some((p) => p.num === 6)) {
          this.diag.error("offload_needs_tcp", ol.key, `offload carries established TCP flows; this rule has proto ${r.proto.value.map((p) => p.text).join(", ")}`);
        }
      }
    }
    const cm = e.get("comment");
    if (cm) {
      const v = cm.value;
      if (v && isScalar(v) && (typeof v.value === "string" || typeof v.value === "number")) r.comment = String(v.value);
      else this.diag.error("bad_type", this.pos(v, cm.key), "comment must be text");
    }
    const wh = e.get("when");
    if (wh) {
      const s = this.str(wh.value);
      if (s !== null && NAME_RE.test(s)) r.when = { value: s, pos: this.pos(wh.value, wh.key) };
      else this.diag.error("bad_name", this.pos(wh.value, wh.key), "when names a switch (from switches:), e.g. when: http_redirect");
    }
    const lm = e.get("limit");
    if (lm) {
      if (r.action?.value === "deny") {
        this.diag.error("limit_on_deny", lm.key, "limit: belongs on an allow rule (it limits the flows a rule admits); a deny rule admits none");
      } else r.limit = this.limit(lm.value, lm.key);
    }
    const fr = e.get("from");
    if (fr) {
      const s = this.str(fr.value);
      const m = s === null ? null : /^\s*(not\s+)?([a-z][a-z0-9_-]*)\s*$/.exec(s);
      if (m) r.from = { value: { list: m[2]!, not: m[1] !== undefined }, pos: this.pos(fr.value, fr.key) };
      else this.diag.error("bad_list_ref", this.pos(fr.value, fr.key), "from: names a block list, as from: abusers (only sources on it) or from: not abusers (only sources not on it)");
    }
    r.ok = this.diag.errors.length === errorsBefore;
    return r;
  }

  private limit(n: Node | null, key: Pos): LimitAst | null {
    const e = this.mapping(n, LIMIT_KEYS, "limit", key);
    if (e === null) return null;
    const before = this.diag.errors.length;
    const out: LimitAst = { pos: e.pos, rate: null, burst: 0, flows: null, prefix4: 32, prefix6: 64, overload: null, flush: false };
    const count = (x: { key: Pos; value: Node | null }, what: string, max: number): number | null => {
      const v = x.value && isScalar(x.value) ? x.value.value : null;
      if (typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= max) return v;
      this.diag.error("bad_limit", this.pos(x.value, x.key), `${what} must be a whole number from 1 to ${max}, not ${JSON.stringify(v)}`);
      return null;
    };
    const ra = e.get("rate");
    if (ra) {
      const s = this.str(ra.value);
      const rt = parseRate(s ?? String(ra.value && isScalar(ra.value) ? ra.value.value : ""));
      if (typeof rt === "string") this.diag.error("bad_rate", this.pos(ra.value, ra.key), rt);
      else out.rate = { ...rt, pos: this.pos(ra.value, ra.key) };
    }
    const bu = e.get("burst");
    if (bu) {
      const b = count(bu, "burst", MAX_LIMIT_BURST);
      if (!ra) this.diag.error("bad_limit", bu.key, "burst: is the depth of a rate's bucket; give rate: too");
      else if (b !== null) out.burst = b;
    }
    if (out.rate && out.burst === 0) out.burst = out.rate.count;
    const fl = e.get("flows");
    if (fl) out.flows = count(fl, "flows", MAX_LIMIT_FLOWS);
    if (!ra && !fl) this.diag.error("bad_limit", e.pos, "limit: needs rate: (new flows per time), flows: (live flows per source) or both");
    const pe = e.get("per");
    if (pe) this.per(pe.value, pe.key, out);
    const ov = e.get("overload");
    if (ov) {
      const s = this.str(ov.value);
      const m = s === null ? null : /^\s*([a-z][a-z0-9_-]*)(?:\s+for\s+(.+?))?\s*$/.exec(s);
      const p = this.pos(ov.value, ov.key);
      if (!m) this.diag.error("bad_overload", p, "overload: names a block list, optionally for how long: overload: abusers for 10m");
      else {
        const ns = m[2] === undefined ? 0n : parseDuration(m[2]);
        if (typeof ns === "string") this.diag.error("bad_duration", p, ns);
        else out.overload = { list: m[1]!, pos: p, blockNs: ns };
      }
    }
    const fs = e.get("flush");
    if (fs) {
      const f = this.boolean(fs, "flush");
      if (f && !ov) this.diag.error("bad_limit", fs.key, "flush: true ends the flows of a source put on the overload list; give overload: too");
      else if (f !== undefined) out.flush = f;
    }
    return this.diag.errors.length === before ? out : null;
  }

  // per: address (/32 and /128), or { ipv4: /N, ipv6: /M } (defaults /32, /64).
  private per(n: Node | null, key: Pos, out: LimitAst): void {
    if (this.str(n) === "address") { out.prefix4 = 32; out.prefix6 = 128; return; }
    const bad = (p: Pos): void => {
      this.diag.error("bad_per", p, "per: is address (each address alone) or prefix lengths per family, like per: { ipv4: /24, ipv6: /56 } (defaults /32 and /64)");
    };
    if (!isMap(n)) { bad(this.pos(n, key)); return; }
    const e = this.mapping(n, ["ipv4", "ipv6"], "per", key);
    if (e === null) return;
    for (const [k, max] of [["ipv4", 32], ["ipv6", 128]] as const) {
      const x = e.get(k);
      if (!x) continue;
      const s = this.str(x.value);
      const m = s === null ? null : /^\s*\/?(\d+)\s*$/.exec(s);
      const v = m ? Number(m[1]) : x.value && isScalar(x.value) && typeof x.value.value === "number" ? x.value.value : -1;
      if (!Number.isInteger(v) || v < 0 || v > max) { bad(this.pos(x.value, x.key)); continue; }
      if (k === "ipv4") out.prefix4 = v; else out.prefix6 = v;
    }
  }

  private protos(n: Node | null, key: Pos): Located<ProtoAst[]> | null {
    const items = this.list(n, key, "proto");
    if (items === null) return null;
    const out: ProtoAst[] = [];
    let ok = true;
    for (const it of items) {
      const p = this.pos(it, key);
      const v = isScalar(it) ? it.value : null;
      if (typeof v === "number") {
        if (Number.isInteger(v) && v >= 0 && v <= 255) out.push({ num: v, text: PROTO_NAMES[v] ?? String(v), pos: p });
        else { this.diag.error("bad_proto", p, `protocol number ${v} is not 0 to 255`); ok = false; }
        continue;
      }
      if (typeof v === "string") {
        if (v === "any") { out.push({ num: null, text: "any", pos: p }); continue; }
        const num = PROTO_NUMBERS[v];
        if (num !== undefined) { out.push({ num, text: v, pos: p }); continue; }
        const lower = PROTO_NUMBERS[v.toLowerCase()] !== undefined ? ` (names are lower case: ${v.toLowerCase()})` : suggest(v, Object.keys(PROTO_NUMBERS));
        this.diag.error("unknown_proto", p, `unknown protocol "${v}"${lower}; use tcp, udp, icmp, icmpv6, any or a number 0-255`);
        ok = false;
        continue;
      }
      this.diag.error("unknown_proto", p, "proto must be tcp, udp, icmp, icmpv6, any or a number 0-255");
      ok = false;
    }
    if (!ok) return null;
    if (out.some((p) => p.num === null)) {
      if (out.length > 1) {
        this.diag.error("bad_proto", out.find((p) => p.num === null)!.pos, `"any" cannot be combined with other protocols`);
        return null;
      }
      return null; // any
    }
    const seen = new Set<number>();
    return { value: out.filter((p) => (seen.has(p.num!) ? false : (seen.add(p.num!), true))), pos: this.pos(n, key) };
  }

  private addrs(n: Node | null, key: Pos, what: "src" | "dst"): Located<AddrRef[]> | null {
    const items = this.list(n, key, what);
    if (items === null) return null;
    const out: AddrRef[] = [];
    let ok = true;
    for (const it of items) {
      const p = this.pos(it, key);
      const s = this.str(it);
      if (s === null) {
        this.diag.error("bad_type", p, `${what} entries are any, a group or set name, or an address or prefix written as text`);
        ok = false;
        continue;
      }
      const t = s.trim();
      if (t === "any") { out.push({ kind: "any", text: "any", pos: p }); continue; }
      if (NAME_RE.test(t)) { out.push({ kind: "name", text: t, pos: p }); continue; }
      const pr = parsePrefix(t);
      if (!isPrefix(pr)) {
        const what2 = pr.code === "bad_address" && !/^[0-9a-fA-F:.]+(\/.*)?$/.test(t)
          ? `"${t}" is not any, a group or set name (lower case), an address or a prefix`
          : pr.what;
        this.diag.error(pr.code, p, what2);
        ok = false;
        continue;
      }
      out.push({ kind: "prefix", text: t, prefix: pr, pos: p });
    }
    // The rule is in error (not built), but its names are still worth checking.
    if (!ok) return { value: out.filter((a) => a.kind !== "any"), pos: this.pos(n, key) };
    const anyRef = out.find((a) => a.kind === "any");
    if (anyRef) {
      if (out.length > 1) {
        this.diag.error("bad_address", anyRef.pos, `"any" cannot be combined with other addresses in ${what}`);
        return null;
      }
      return null; // any
    }
    return { value: out, pos: this.pos(n, key) };
  }

  private ports(n: Node | null, key: Pos, what: "sport" | "dport"): Located<PortAst[]> | null {
    const items = this.list(n, key, what);
    if (items === null) return null;
    const out: PortAst[] = [];
    let ok = true;
    const bad = (code: string, p: Pos, msg: string): void => { this.diag.error(code, p, msg); ok = false; };
    for (const it of items) {
      const p = this.pos(it, key);
      const v = isScalar(it) ? it.value : null;
      if (typeof v === "number") {
        if (Number.isInteger(v) && v >= 0 && v <= 65535) out.push({ lo: v, hi: v, text: String(v), pos: p });
        else bad("bad_port", p, `port ${v} is out of range (0 to 65535)`);
        continue;
      }
      if (typeof v !== "string") { bad("bad_port", p, `${what} is a port number, a range "lo-hi" or a list of them`); continue; }
      const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(v);
      if (!m) {
        bad("bad_port", p, `"${v}" is not a port or a port range "lo-hi" (service names are not accepted: write the number)`);
        continue;
      }
      const lo = Number(m[1]), hi = m[2] === undefined ? lo : Number(m[2]);
      if (lo > 65535 || hi > 65535) { bad("bad_port", p, `"${v}": ports are 0 to 65535`); continue; }
      if (lo > hi) { bad("bad_port_range", p, `port range "${v}" is reversed: write ${hi}-${lo}`); continue; }
      out.push({ lo, hi, text: lo === hi ? String(lo) : `${lo}-${hi}`, pos: p });
    }
    return ok ? { value: out, pos: this.pos(n, key) } : null;
  }

  // icmp_type: a name, a number, "type/code" (each a name or a number),
  // { type: T, code: C }, or a list of these; names of family `fam` only.
  private icmpTypes(n: Node | null, key: Pos, fam: IcmpFamily): Located<IcmpTypeAst[]> | null {
    if (n === null || (isScalar(n) && n.value === null)) {
      this.diag.error("bad_type", this.pos(n, key), "icmp_type has no value");
      return null;
    }
    const items = isSeq(n) ? n.items.map((i) => this.node(i)) : [n];
    if (items.length === 0) {
      this.diag.error("empty_list", this.pos(n, key), "icmp_type is an empty list; leave the key out to mean any");
      return null;
    }
    const out: IcmpTypeAst[] = [];
    let ok = true;
    for (const item of items) {
      const t = this.icmpEntry(item, this.pos(item, key), fam);
      if (t === null) ok = false; else out.push(t);
    }
    return ok ? { value: out, pos: this.pos(n, key) } : null;
  }

  private icmpEntry(n: Node | null, p: Pos, fam: IcmpFamily): IcmpTypeAst | null {
    let type: unknown, code: unknown = null, codePos = p;
    if (n && isMap(n)) {
      const e = this.mapping(n, ["type", "code"], "an icmp_type entry", p);
      if (e === null) return null;
      const t = e.get("type");
      if (!t) { this.diag.error("missing_key", p, `an icmp_type entry { type: ..., code: ... } needs "type:"`); return null; }
      type = t.value && isScalar(t.value) ? t.value.value : undefined;
      p = this.pos(t.value, t.key);
      const c = e.get("code");
      if (c) { code = c.value && isScalar(c.value) ? c.value.value : undefined; codePos = this.pos(c.value, c.key); }
    } else if (n && isScalar(n)) {
      type = n.value;
      if (typeof n.value === "string") {
        const sp = splitIcmpText(n.value);
        type = sp.type;
        code = sp.code;
        const quoted = n.type === "QUOTE_DOUBLE" || n.type === "QUOTE_SINGLE" ? 1 : 0;
        if (sp.code !== null && n.range) codePos = this.at(n.range[0] + quoted + sp.codeAt);
      }
    } else {
      this.diag.error("bad_type", p, "each icmp_type entry is a name, a number, type/code or { type: T, code: C }");
      return null;
    }
    const v = resolveIcmp(fam, type, code, suggest);
    if ("what" in v) {
      this.diag.error(v.code, v.part === "type" ? p : codePos, v.what);
      return null;
    }
    return { type: v.type, code: v.code, text: icmpText(fam, v.type, v.code), pos: p };
  }

  // pf syntax: "S/SA" = of the flags S and A, S is set and A is not.
  // "S" alone examines all eight flags; "any" examines none.
  private flags(n: Node | null, key: Pos): FlagsAst | null {
    const p = this.pos(n, key);
    const s = this.str(n);
    const fail = (msg: string): null => {
      this.diag.error("bad_tcp_flags", p, `tcp_flags ${s === null ? "must be text" : `"${s}"`}: ${msg}; write pf-style flags like "S/SA" (letters ${TCP_FLAG_LETTERS.split("").join(" ")})`);
      return null;
    };
    if (s === null) return fail("not text");
    if (s === "any") return null;
    const m = /^([A-Za-z]*)(?:\/([A-Za-z]+))?$/.exec(s);
    if (!m || (m[1] === "" && m[2] === undefined)) return fail("not flags/mask");
    const bits = (letters: string): number | string => {
      let v = 0;
      for (const ch of letters) {
        const i = TCP_FLAG_LETTERS.indexOf(ch);
        if (i < 0) return `unknown flag letter "${ch}"${ch !== ch.toUpperCase() && TCP_FLAG_LETTERS.includes(ch.toUpperCase()) ? " (flags are upper case)" : ""}`;
        if (v & (1 << i)) return `flag "${ch}" appears twice`;
        v |= 1 << i;
      }
      return v;
    };
    const value = bits(m[1]!);
    if (typeof value === "string") return fail(value);
    const mask = m[2] === undefined ? 0xff : bits(m[2]);
    if (typeof mask === "string") return fail(mask);
    if ((value & ~mask) !== 0) return fail("every flag required set must also be examined (in the part after /)");
    return { value, mask, text: s, pos: p };
  }
}
