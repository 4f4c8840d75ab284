// The policy language: every kind of broken policy refused with its code and
// its exact file:line:col; set files flattened by longest-prefix match (against
// a brute-force oracle, and at 100,000 prefixes); the check and compile
// commands as a user runs them.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { classifyAll } from "../host/core/batch.js";
import { Core } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { ipv4, ipv6, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { flattenLpm32, flattenLpm128, type LpmEntry, parseIPv4, parseIPv6, parsePrefix, rangesContain } from "../host/policy/addr.js";
import { compilePolicyFile, compilePolicyText, contextsFor } from "../host/policy/compile.js";
import { ConfigError } from "../host/config/errors.js";
import { buildTable } from "../host/rules/build.js";
import { ctxValue } from "../host/rules/format.js";
import { MAX_V4 } from "../host/rules/model.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "bin", "portcullis.js");
const DEFAULT_POLICY = join(ROOT, "host", "policy", "default.yaml");
const TMP = mkdtempSync(join(tmpdir(), "portcullis-policy-"));
let seq = 0;

// Writes a policy (and files beside it) into a fresh directory; its path.
function write(yaml: string, files: Record<string, string> = {}): string {
  const dir = join(TMP, `p${++seq}`);
  mkdir(dir);
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  const path = join(dir, "policy.yaml");
  writeFileSync(path, yaml);
  return path;
}
function mkdir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

function errorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new assert.Assertion({ message: "expected a ConfigError, but the policy compiled", expects: "ConfigError", actual: "nothing thrown", operator: "throws", generated: false });
}

// A rule at lines 4-8 of a minimal policy; `body` replaces the rule's lines.
const HEAD = "version: 1\ndefault: deny\nrules:\n";
const RULE = [
  "  - action: allow", //      line 4, value at col 13
  "    interface: external", // line 5, value at col 16
  "    direction: in", //       line 6, value at col 16
  "    proto: tcp", //          line 7, value at col 12
  "    dport: 443", //          line 8, value at col 12
];
const withRule = (edit: (lines: string[]) => string[], top = ""): string => `${HEAD.replace("rules:\n", `${top}rules:\n`)}${edit([...RULE]).join("\n")}\n`;
const set = (i: number, text: string) => (l: string[]): string[] => { l[i] = text; return l; };
const add = (text: string) => (l: string[]): string[] => [...l, text];

interface Broken {
  name: string;
  yaml: string;
  files?: Record<string, string>;
  code: string;
  at: [number, number]; //         line, col
  file?: string; //                 the file the error is in, when not the policy
  switches?: Record<string, boolean>;
  says?: RegExp;
}

const BROKEN: Broken[] = [
  { name: "unknown key at the top level", yaml: "version: 1\ndefault: deny\npolicy: strict\nrules: []\n", code: "unknown_key", at: [3, 1] },
  { name: "unknown key in a rule (with a suggestion)", yaml: withRule(set(4, "    dports: 443")), code: "unknown_key", at: [8, 5], says: /did you mean "dport"/ },
  { name: "unknown key in a set", yaml: withRule((l) => l, "sets:\n  bl: {file: bl.txt, url: x}\n"), files: { "bl.txt": "" }, code: "unknown_key", at: [4, 22] },
  { name: "unknown group", yaml: withRule(add("    dst: front_end")), code: "unknown_name", at: [9, 10] },
  { name: "unknown group among others in a list", yaml: withRule(add("    src: [any_host, 192.0.2.1]")), code: "unknown_name", at: [9, 11] },
  { name: "prefix length past 32", yaml: withRule(add("    dst: 198.51.100.0/33")), code: "bad_prefix", at: [9, 10] },
  { name: "not an address", yaml: withRule(add("    dst: 198.51.100.256")), code: "bad_address", at: [9, 10] },
  { name: "IPv6 address with too many groups", yaml: withRule(add(`    dst: "2001:db8:1:2:3:4:5:6:7"`)), code: "bad_address", at: [9, 10] },
  { name: "host bits set in a rule's prefix", yaml: withRule(add("    dst: 198.51.100.1/24")), code: "host_bits", at: [9, 10], says: /198\.51\.100\.0\/24/ },
  { name: "host bits set in a group's IPv6 prefix", yaml: withRule((l) => l, `groups:\n  lan:\n    - "2001:db8:2::1/64"\n`), code: "host_bits", at: [5, 7], says: /2001:db8:2::\/64/ },
  { name: "port out of range", yaml: withRule(set(4, "    dport: 65536")), code: "bad_port", at: [8, 12] },
  { name: "port range out of range", yaml: withRule(set(4, `    dport: "1024-70000"`)), code: "bad_port", at: [8, 12] },
  { name: "reversed port range", yaml: withRule(set(4, `    dport: [80, "500-400"]`)), code: "bad_port_range", at: [8, 17] },
  { name: "service name instead of a port", yaml: withRule(set(4, "    dport: https")), code: "bad_port", at: [8, 12] },
  { name: "ports with proto icmp", yaml: withRule(set(3, "    proto: icmp")), code: "ports_need_tcp_udp", at: [8, 5] },
  { name: "ports without a proto", yaml: withRule((l) => l.filter((_, i) => i !== 3)), code: "ports_need_tcp_udp", at: [7, 5] },
  { name: "ports with tcp and icmp", yaml: withRule(set(3, "    proto: [tcp, icmp]")), code: "ports_need_tcp_udp", at: [8, 5] },
  { name: "unknown protocol", yaml: withRule(set(3, "    proto: tpc")), code: "unknown_proto", at: [7, 12], says: /tcp, udp/ },
  { name: "protocol number past 255", yaml: withRule(set(3, "    proto: 256")), code: "bad_proto", at: [7, 12] },
  { name: "bad action", yaml: withRule(set(0, "  - action: permit")), code: "bad_action", at: [4, 13] },
  { name: "missing action", yaml: withRule((l) => ["  - interface: external", ...l.slice(2)]), code: "missing_key", at: [4, 5], says: /no "action:"/ },
  { name: "unknown interface", yaml: withRule(set(1, "    interface: eth0")), code: "bad_interface", at: [5, 16] },
  { name: "missing interface", yaml: withRule((l) => l.filter((_, i) => i !== 1)), code: "missing_key", at: [4, 5], says: /no "interface:"/ },
  { name: "unknown direction", yaml: withRule(set(2, "    direction: inbound")), code: "bad_direction", at: [6, 16] },
  { name: "when names an unknown switch", yaml: withRule(add("    when: http"), "switches:\n  https: true\n"), code: "unknown_switch", at: [11, 11] },
  { name: "switch that is not a boolean", yaml: withRule(add("    when: web"), "switches:\n  web: on\n"), code: "bad_switch", at: [4, 8] },
  { name: "a name used by a group and a set", yaml: withRule((l) => l, "groups:\n  fe: [198.51.100.10]\nsets:\n  fe: {file: fe.txt}\n"), files: { "fe.txt": "198.51.100.0/24\n" }, code: "duplicate_name", at: [6, 3] },
  { name: "upper-case group name", yaml: withRule((l) => l, "groups:\n  FrontEnd: [198.51.100.10]\n"), code: "bad_name", at: [4, 3] },
  { name: "group named any", yaml: withRule((l) => l, "groups:\n  any: [198.51.100.10]\n"), code: "bad_name", at: [4, 3] },
  { name: "missing set file", yaml: withRule((l) => l, "sets:\n  bl:\n    file: lists/blocklist.txt\n"), code: "set_file_missing", at: [5, 11] },
  { name: "a bad line in a set file", yaml: withRule((l) => l, "sets:\n  bl: {file: bl.txt}\n"), files: { "bl.txt": "# feed\n10.0.0.0/8\n\n  192.168.1.300   # typo\n" }, code: "bad_address", at: [4, 3], file: "bl.txt" },
  { name: "host bits on an exception line of a set file", yaml: withRule((l) => l, "sets:\n  bl: {file: bl.txt}\n"), files: { "bl.txt": "10.0.0.0/8\n! 10.1.2.3/16\n" }, code: "host_bits", at: [2, 3], file: "bl.txt" },
  { name: "two prefixes on one set line", yaml: withRule((l) => l, "sets:\n  bl: {file: bl.txt}\n"), files: { "bl.txt": "10.0.0.0/8 10.1.0.0/16\n" }, code: "set_bad_line", at: [1, 12], file: "bl.txt" },
  { name: "a prefix both included and excepted", yaml: withRule((l) => l, "sets:\n  bl: {file: bl.txt}\n"), files: { "bl.txt": "10.0.0.0/8\n!10.0.0.0/8\n" }, code: "set_conflict", at: [2, 1], file: "bl.txt" },
  { name: "YAML syntax error", yaml: withRule(set(4, "    dport: [80, 443]]")), code: "yaml_syntax", at: [8, 21] },
  { name: "YAML: reserved character", yaml: withRule(add("    dst: @listener")), code: "yaml_syntax", at: [9, 10] },
  { name: "a key twice in one rule", yaml: withRule(add("    dport: 80")), code: "duplicate_key", at: [9, 5] },
  { name: "bad tcp_flags letter", yaml: withRule(add(`    tcp_flags: "S/SX"`)), code: "bad_tcp_flags", at: [9, 16] },
  { name: "tcp_flags set but not examined", yaml: withRule(add(`    tcp_flags: "SA/S"`)), code: "bad_tcp_flags", at: [9, 16] },
  { name: "tcp_flags with proto udp", yaml: withRule((l) => [...set(3, "    proto: udp")(l), `    tcp_flags: "S/SA"`]), code: "flags_need_tcp", at: [9, 5] },
  { name: "IPv4-only src with IPv6-only dst", yaml: withRule((l) => [...l, "    src: 203.0.113.0/24", `    dst: "2001:db8:2::10"`]), code: "family_mismatch", at: [10, 10] },
  { name: "IPv4-only group to IPv6-only group", yaml: withRule((l) => [...l, "    src: a", "    dst: b"], `groups:\n  a: [192.0.2.0/24]\n  b: ["2001:db8::/32"]\n`), code: "family_mismatch", at: [13, 10] },
  { name: "proto icmp toward IPv6-only addresses", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), `    dst: "2001:db8:2::/64"`]), code: "family_mismatch", at: [7, 12], says: /icmpv6/ },
  // ICMP types (issue 16): the rule's lines 4-7 with proto icmp/icmpv6, then icmp_type at line 8 (value at col 16).
  { name: "icmp_type on a tcp rule", yaml: withRule((l) => [...l.slice(0, 4), "    icmp_type: echo-request"]), code: "icmp_type_needs_icmp", at: [8, 5], says: /proto tcp/ },
  { name: "icmp_type on a rule of both ICMP families", yaml: withRule((l) => [...set(3, "    proto: [icmp, icmpv6]")(l).slice(0, 4), "    icmp_type: 3"]), code: "icmp_type_needs_icmp", at: [8, 5], says: /one rule per family/ },
  { name: "icmp_type without a proto", yaml: withRule((l) => [...l.slice(0, 3), "    icmp_type: echo-request"]), code: "icmp_type_needs_icmp", at: [7, 5], says: /no proto/ },
  { name: "an ICMPv6 type name on proto icmp", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), "    icmp_type: [echo-request, packet-too-big]"]), code: "icmp_other_family", at: [8, 31], says: /ICMPv6 type/ },
  { name: "an ICMP (IPv4) type name on proto icmpv6", yaml: withRule((l) => [...set(3, "    proto: icmpv6")(l).slice(0, 4), "    icmp_type: router-advertisement"]), code: "icmp_other_family", at: [8, 16], says: /ICMP \(IPv4\) type/ },
  { name: "an ICMPv6 code name on proto icmp", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), `    icmp_type: "destination-unreachable/no-route"`]), code: "icmp_other_family", at: [8, 41], says: /ICMPv6 code/ },
  { name: "an unknown ICMP type name (with a suggestion)", yaml: withRule((l) => [...set(3, "    proto: icmpv6")(l).slice(0, 4), "    icmp_type: nd-neighbour-solicit"]), code: "unknown_icmp_type", at: [8, 16], says: /did you mean "nd-neighbor-solicit"/ },
  { name: "an unknown code name (with a suggestion)", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), "    icmp_type: [destination-unreachable/frag-neded]"]), code: "unknown_icmp_code", at: [8, 41], says: /did you mean "frag-needed"/ },
  { name: "an ICMP code out of range", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), "    icmp_type: {type: 3, code: 256}"]), code: "bad_icmp_code", at: [8, 32], says: /0 to 255/ },
  { name: "an ICMP type number out of range", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), "    icmp_type: [8, 300]"]), code: "bad_icmp_type", at: [8, 20] },
  { name: "an ICMP type with ports", yaml: withRule((l) => [...set(3, "    proto: icmp")(l), "    icmp_type: echo-request"]), code: "icmp_type_with_ports", at: [8, 5], says: /ICMP has types, not ports/ },
  { name: "an unknown key in an icmp_type entry", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), "    icmp_type: [{type: 3, cod: 4}]"]), code: "unknown_key", at: [8, 27], says: /did you mean "code"/ },
  { name: "an empty icmp_type list", yaml: withRule((l) => [...set(3, "    proto: icmp")(l).slice(0, 4), "    icmp_type: []"]), code: "empty_list", at: [8, 16] },
  { name: "any mixed with addresses", yaml: withRule(add("    src: [any, 192.0.2.1]")), code: "bad_address", at: [9, 11] },
  { name: "default missing", yaml: "version: 1\nrules: []\n", code: "missing_key", at: [1, 1], says: /"default:"/ },
  { name: "default invalid", yaml: "version: 1\ndefault: drop\nrules: []\n", code: "bad_default", at: [2, 10] },
  { name: "version wrong", yaml: "version: 2\ndefault: deny\nrules: []\n", code: "bad_version", at: [1, 10] },
  { name: "version missing", yaml: "default: deny\nrules: []\n", code: "missing_key", at: [1, 1], says: /"version:"/ },
  { name: "rules missing", yaml: "version: 1\ndefault: deny\n", code: "missing_key", at: [1, 1], says: /"rules:"/ },
  { name: "rules not a list", yaml: "version: 1\ndefault: deny\nrules:\n  action: allow\n", code: "bad_type", at: [4, 3] },
  { name: "log not a boolean", yaml: withRule(add("    log: yes")), code: "bad_type", at: [9, 10] },
  { name: "empty policy", yaml: "# nothing yet\n", code: "empty_policy", at: [1, 1] },
  { name: "empty group", yaml: withRule((l) => l, "groups:\n  fe: []\n"), code: "empty_list", at: [4, 7] },
  {
    name: "two rules with one name",
    yaml: `${HEAD}  - name: web\n    action: allow\n    interface: external\n    direction: in\n` +
      "  - name: web\n    action: deny\n    interface: external\n    direction: in\n",
    code: "duplicate_rule_name", at: [8, 11],
  },
];

for (const b of BROKEN) {
  test(`broken policy: ${b.name} -> ${b.code} at ${b.at.join(":")}`, () => {
    const path = write(b.yaml, b.files);
    const e = errorOf(() => compilePolicyFile(path, b.switches ? { switches: b.switches } : {}));
    const file = b.file ? join(path, "..", b.file) : path;
    const where = `${file}:${b.at[0]}:${b.at[1]}`;
    assert.is(`${e.code} ${e.file}:${e.line}:${e.col}`, `${b.code} ${where}`, e.message);
    assert.ok(e.message.startsWith(`${where}: `), e.message);
    assert.is(e.all[0], e);
    if (b.says) assert.match(e.message, b.says);
  });
}

test("a policy with several errors reports every one, in file order", () => {
  const yaml = [
    "version: 1", "default: deny", "groups:", "  fe: [198.51.100.10/24]", "rules:",
    "  - action: allow", "    interface: outside", "    direction: in", "    proto: udp", "    dport: 99999",
    "  - action: maybe", "    interface: internal", "    direction: out", "    dst: nowhere",
  ].join("\n");
  const e = errorOf(() => compilePolicyFile(write(yaml)));
  assert.equal(e.all.map((x) => `${x.code}@${x.line}:${x.col}`),
    ["host_bits@4:8", "bad_interface@7:16", "bad_port@10:12", "bad_action@11:13", "unknown_name@14:10"]);
});

test("a --set override naming no switch is refused; so is an unknown mode", () => {
  const e = errorOf(() => compilePolicyFile(DEFAULT_POLICY, { switches: { http80: false } }));
  assert.is(e.code, "unknown_switch");
  assert.is(e.line, 0);
  assert.match(e.message, /--set http80/);
  const m = errorOf(() => compilePolicyFile(DEFAULT_POLICY, { mode: "bridge" as never }));
  assert.is(m.code, "bad_mode");
  const missing = errorOf(() => compilePolicyFile(join(TMP, "no-such-policy.yaml")));
  assert.is(missing.code, "policy_missing");
});

test("addresses: strict IPv4, every IPv6 text form, prefixes", () => {
  assert.is(parseIPv4("198.51.100.10"), 0xc633640a);
  assert.is(parseIPv4("198.51.100.010"), null, "leading zero");
  assert.is(parseIPv4("1.2.3"), null);
  assert.is(parseIPv6("::"), 0n);
  assert.is(parseIPv6("::1"), 1n);
  assert.is(parseIPv6("2001:db8::"), 0x20010db8n << 96n);
  assert.is(parseIPv6("2001:DB8:0:0:0:0:0:1"), (0x20010db8n << 96n) | 1n);
  assert.is(parseIPv6("::ffff:192.0.2.1"), (0xffffn << 32n) | 0xc0000201n);
  assert.is(parseIPv6("1:2:3:4:5:6:7::8"), null, "nine groups");
  assert.is(parseIPv6("1::2::3"), null);
  assert.is(parseIPv6("fe80::1%eth0"), null);
  assert.is(parseIPv6("12345::"), null);
  assert.equal(parsePrefix("0.0.0.0/0"), { family: 4, lo: 0, hi: MAX_V4, len: 0 });
  assert.equal(parsePrefix("2001:db8::/32"), { family: 6, lo: 0x20010db8n << 96n, hi: (0x20010db9n << 96n) - 1n, len: 32 });
  assert.is((parsePrefix("10.0.0.1/8") as { code: string }).code, "host_bits");
  assert.is((parsePrefix("10.0.0.0/") as { code: string }).code, "bad_prefix");
});

test("interface contexts for each mode, interface and direction", () => {
  const X = ABI.ROLE_EXTERNAL, I = ABI.ROLE_INTERNAL;
  const all = [0, 1, 2];
  assert.equal(contextsFor("host", "external", "in"), all.map((o) => ctxValue(ABI.HOOK_INPUT, X, o)));
  assert.equal(contextsFor("host", "internal", "out"), all.map((i) => ctxValue(ABI.HOOK_OUTPUT, i, I)));
  assert.equal(contextsFor("host", "internal", "forward"), all.map((o) => ctxValue(ABI.HOOK_FORWARD, I, o)));
  assert.equal(contextsFor("gateway", "external", "in"), all.map((o) => ctxValue(ABI.HOOK_FORWARD, X, o)));
  assert.equal(contextsFor("gateway", "internal", "out"), all.map((i) => ctxValue(ABI.HOOK_FORWARD, i, I)).sort((a, b) => a - b));
  assert.equal(contextsFor("gateway", "external", "forward"), contextsFor("gateway", "external", "in"));
  assert.equal(contextsFor("host", "any", "in"), all.flatMap((r) => all.map((o) => ctxValue(ABI.HOOK_INPUT, r, o))).sort((a, b) => a - b));
});

test("a rule compiles to exactly its fields; the info line says where and what", () => {
  const yaml = [
    "version: 1", "default: allow", "groups:", "  lan: [198.51.100.0/24, \"2001:db8:2::/64\"]", "rules:",
    "  - name: no-ssh", "    action: deny", "    interface: any", "    direction: forward", "    proto: [tcp, udp]",
    "    src: [lan, 192.0.2.7]", "    sport: \"1024-65535\"", "    dport: [22, \"2222-2223\", 2224]", "    log: true",
    "    comment: |", "      no SSH out of the LAN,", "      whatever the port", "  - action: allow", "    interface: external",
    "    direction: in", "    proto: icmp",
  ].join("\n");
  const path = write(yaml);
  const { spec, summary } = compilePolicyFile(path);
  assert.is(spec.defaultAction, "allow");
  const [r0, r1] = spec.rules;
  assert.ok(r0 && r1);
  assert.is(r0.action, "deny");
  assert.is(r0.log, true);
  assert.equal(r0.protos, [6, 17]);
  assert.equal(r0.src, { v4: [[0xc0000207, 0xc0000207], [0xc6336400, 0xc63364ff]], v6: [[0x20010db8000200000000000000000000n, 0x20010db800020000ffffffffffffffffn]] });
  assert.is(r0.dst, null);
  assert.equal(r0.sport, [[1024, 65535]]);
  assert.equal(r0.dport, [[22, 22], [2222, 2224]]);
  assert.equal(r0.ctx, contextsFor("host", "any", "forward"));
  assert.is(r0.line, 6);
  assert.is(r0.info, "policy.yaml:6 no-ssh: deny tcp,udp any forward lan,192.0.2.7 -> any sport 1024-65535 dport 22,2222-2223,2224 log # no SSH out of the LAN, whatever the port");
  // ICMP is IPv4's: the rule is restricted to IPv4 even with "any" ends.
  assert.equal(r1.protos, [1]);
  assert.equal(r1.src, { v4: [[0, MAX_V4]], v6: [] });
  assert.is(r1.info, "policy.yaml:18 #2: allow icmp external in any -> any");
  assert.is(summary.rules.length, 2);
  assert.equal(summary.byPlace, [{ iface: "external", direction: "in", rules: 1 }, { iface: "any", direction: "forward", rules: 1 }]);
});

test("tcp_flags in pf syntax", () => {
  const flags = (text: string): unknown => {
    const yaml = withRule(add(`    tcp_flags: "${text}"`));
    return compilePolicyText(yaml, join(TMP, "flags.yaml")).spec.rules[0]!.tcpFlags;
  };
  assert.equal(flags("S/SA"), { value: 0x02, mask: 0x12 });
  assert.equal(flags("S"), { value: 0x02, mask: 0xff });
  assert.equal(flags("/SAFR"), { value: 0, mask: 0x17 });
  assert.equal(flags("SEW/SAEWFRPU"), { value: 0xc2, mask: 0xff });
  assert.is(flags("any"), null);
  assert.is(errorOf(() => flags("s/sa")).code, "bad_tcp_flags");
  assert.is(errorOf(() => flags("SS/SA")).code, "bad_tcp_flags");
});

test("switches: when a switch is off its rules are left out; overrides win", () => {
  const yaml = withRule(add("    when: web"), "switches:\n  web: false\n  other: true\n");
  const path = write(yaml);
  const off = compilePolicyFile(path);
  assert.is(off.spec.rules.length, 0);
  assert.is(off.summary.rules[0]!.table, null);
  assert.ok(off.summary.warnings.some((w) => w.code === "unused" && /switch "other"/.test(w.message) && w.line === 5));
  const on = compilePolicyFile(path, { switches: { web: true } });
  assert.is(on.spec.rules.length, 1);
  assert.equal(on.summary.switches.map((s) => [s.name, s.value, s.overridden]), [["web", true, true], ["other", true, false]]);
});

// ---- sets and longest-prefix match ----------------------------------------

const ip = (s: string): number => parseIPv4(s)!;

test("a set file: comments, blank lines, CRLF, exceptions inside exceptions", () => {
  const body = [
    "# blocklist feed", "", "10.0.0.0/8          # the whole of 10/8", "!10.1.0.0/16        # but not 10.1/16",
    "10.1.2.0/24\r", "   !  10.1.2.128/25", "10.1.2.200", "10.0.0.0/8", "2001:db8::/32", "!2001:db8:1::/48", "192.0.2.255",
  ].join("\n");
  const yaml = withRule(add("    src: bl"), "sets:\n  bl: {file: bl.txt}\n");
  const { spec, summary } = compilePolicyFile(write(yaml, { "bl.txt": body }));
  const src = spec.rules[0]!.src!;
  assert.equal(src.v4, [
    [ip("10.0.0.0"), ip("10.0.255.255")],
    [ip("10.1.2.0"), ip("10.1.2.127")],
    [ip("10.1.2.200"), ip("10.1.2.200")],
    [ip("10.2.0.0"), ip("10.255.255.255")],
    [ip("192.0.2.255"), ip("192.0.2.255")],
  ]);
  const b = 0x20010db8n << 96n;
  assert.equal(src.v6, [[b, b + (1n << 80n) - 1n], [b + (2n << 80n), b + (1n << 96n) - 1n]]);
  assert.equal(summary.sets.map((s) => [s.name, s.includes, s.exceptions, s.v4Ranges, s.v6Ranges]), [["bl", 6, 3, 5, 2]]);
});

// The reference: the longest covering prefix decides (brute force).
function lpmOracle<T extends number | bigint>(entries: ReadonlyArray<LpmEntry<T>>, x: T): boolean {
  let best: LpmEntry<T> | null = null;
  for (const e of entries) if (e.lo <= x && x <= e.hi && (best === null || e.len > best.len)) best = e;
  return best !== null && best.include;
}

// A small deterministic PRNG (xorshift32).
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

test("LPM flattening agrees with brute force on random nested prefixes (IPv4 and IPv6)", () => {
  const next = rng(12345);
  for (let round = 0; round < 200; round++) {
    const e4: Array<LpmEntry<number>> = [];
    const e6: Array<LpmEntry<bigint>> = [];
    const n = 1 + (next() % 40);
    // Prefixes inside 10.0.0.0/8 so that they nest often.
    for (let i = 0; i < n; i++) {
      const len = 8 + (next() % 25);
      const size = 2 ** (32 - len);
      const lo = 0x0a000000 + Math.floor((next() % 2 ** 24) / size) * size;
      e4.push({ lo, hi: lo + size - 1, len, include: next() % 3 !== 0, tag: i });
      const len6 = 32 + (next() % 97);
      const size6 = 1n << BigInt(128 - len6);
      const lo6 = (0x20010db8n << 96n) + ((BigInt(next()) << 64n | BigInt(next())) << 32n) % (1n << 96n) / size6 * size6;
      e6.push({ lo: lo6, hi: lo6 + size6 - 1n, len: len6, include: next() % 3 !== 0, tag: i });
    }
    // Same prefix twice must agree (the set parser refuses conflicts).
    const dedupe = <T>(es: Array<LpmEntry<T>>): Array<LpmEntry<T>> => {
      const m = new Map<string, LpmEntry<T>>();
      for (const e of es) if (!m.has(`${e.lo}/${e.len}`)) m.set(`${e.lo}/${e.len}`, e);
      return [...m.values()];
    };
    const d4 = dedupe(e4), d6 = dedupe(e6);
    const r4 = flattenLpm32(d4.map((e) => ({ ...e })));
    const r6 = flattenLpm128(d6.map((e) => ({ ...e })));
    for (let k = 1; k < r4.length; k++) assert.ok(r4[k]![0] > r4[k - 1]![1] + 1, "sorted, disjoint, merged");
    // Probe every boundary and its neighbours, plus random addresses.
    const probes4 = d4.flatMap((e) => [e.lo - 1, e.lo, e.lo + 1, e.hi - 1, e.hi, e.hi + 1]).filter((x) => x >= 0 && x <= MAX_V4);
    for (let k = 0; k < 50; k++) probes4.push(0x0a000000 + (next() % 2 ** 24));
    for (const x of probes4) assert.is(rangesContain(r4, x), lpmOracle(d4, x), `round ${round}: ${x.toString(16)}`);
    const probes6 = d6.flatMap((e) => [e.lo - 1n, e.lo, e.hi, e.hi + 1n]);
    for (const x of probes6) assert.is(rangesContain(r6, x), lpmOracle(d6, x), `round ${round}: ${x.toString(16)}`);
  }
});

test("the edges of the address space: 0.0.0.0/0 with exceptions at both ends", () => {
  const r = flattenLpm32([
    { lo: 0, hi: MAX_V4, len: 0, include: true, tag: 1 },
    { lo: 0, hi: 0, len: 32, include: false, tag: 2 },
    { lo: MAX_V4, hi: MAX_V4, len: 32, include: false, tag: 3 },
  ]);
  assert.equal(r, [[1, MAX_V4 - 1]]);
  assert.equal(flattenLpm32([{ lo: 0, hi: MAX_V4, len: 0, include: true, tag: 1 }]), [[0, MAX_V4]]);
  assert.equal(flattenLpm128([{ lo: 0n, hi: (1n << 128n) - 1n, len: 0, include: false, tag: 1 }]), []);
});

test("a 100,000-prefix set compiles quickly, matches brute force, and works in the core", () => {
  const next = rng(777);
  const entries: Array<LpmEntry<number>> = [];
  const lines: string[] = ["# generated: 100,000 prefixes, every 10th an exception"];
  const seen = new Set<string>();
  while (entries.length < 100000) {
    const len = [16, 20, 24, 24, 28, 32][next() % 6]!;
    const size = 2 ** (32 - len);
    const lo = Math.floor(next() / size) * size;
    const key = `${lo}/${len}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const include = entries.length % 10 !== 9;
    entries.push({ lo, hi: lo + size - 1, len, include, tag: entries.length });
    const a = `${lo >>> 24}.${(lo >>> 16) & 255}.${(lo >>> 8) & 255}.${lo & 255}`;
    lines.push(`${include ? "" : "!"}${a}/${len}`);
  }
  const yaml = withRule(add("    src: big"), "sets:\n  big: {file: big.txt}\n");
  const path = write(yaml, { "big.txt": `${lines.join("\n")}\n` });
  const t0 = performance.now();
  const { spec, summary } = compilePolicyFile(path);
  const ms = performance.now() - t0;
  console.log(`    100,000-prefix set: compiled in ${ms.toFixed(0)} ms (set ${summary.sets[0]!.ms.toFixed(0)} ms), ` +
    `${summary.sets[0]!.v4Ranges} ranges`);
  assert.ok(ms < 5000, `took ${ms} ms`);
  assert.is(summary.sets[0]!.includes, 90000);
  assert.is(summary.sets[0]!.exceptions, 10000);
  const ranges = spec.rules[0]!.src!.v4;
  // Addresses at the edges of some prefixes, and random ones.
  const probes: number[] = [];
  for (let k = 0; k < 300; k++) {
    const e = entries[next() % entries.length]!;
    probes.push(e.lo, e.hi, Math.max(0, e.lo - 1), Math.min(MAX_V4, e.hi + 1), next());
  }
  let members = 0;
  for (const x of probes) {
    const want = lpmOracle(entries, x);
    if (want) members++;
    assert.is(rangesContain(ranges, x), want, x.toString(16));
  }
  assert.ok(members > 100 && members < probes.length - 100, `probes both in and out (${members} of ${probes.length})`);

  // Through the core: the table holds every range.
  const t1 = performance.now();
  const built = buildTable(spec);
  const buildMs = performance.now() - t1;
  console.log(`    table with the set: ${built.bytes.length} bytes, built in ${buildMs.toFixed(0)} ms`);
  const core = new Core();
  core.loadTable(built.bytes);
  const few = probes.slice(0, 200);
  const text = (x: number): string => `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
  // A new source port each: a repeated 5-tuple would be the same connection.
  const pkts = few.map((x, i) => ipv4({ src: text(x), dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 20000 + i, dport: 443, flags: TCP_SYN }) }));
  const got = classifyAll(core, pkts, { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE });
  got.forEach((d, i) => assert.is(reasonName(d.reason), lpmOracle(entries, few[i]!) ? "rule_allow" : "default_deny", text(few[i]!)));
});

test("sets in IPv6 through the core: exception inside a prefix", () => {
  const yaml = withRule(add("    src: v6"), "sets:\n  v6: {file: v6.txt}\n");
  const { spec } = compilePolicyFile(write(yaml, { "v6.txt": "2001:db8:1::/48\n!2001:db8:1:ff::/64\n" }));
  const core = new Core();
  core.loadTable(buildTable(spec).bytes);
  let sport = 40000;
  const syn = (src: string): Uint8Array => ipv6({ src, dst: "2001:db8:1::1", proto: PROTO_TCP, payload: tcp({ sport: ++sport, dport: 443, flags: TCP_SYN }) });
  const got = classifyAll(core, [syn("2001:db8:1:fe::9"), syn("2001:db8:1:ff::9"), syn("2001:db8:1:100::1"), syn("2001:db8:2::9")],
    { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL });
  assert.equal(got.map((d) => reasonName(d.reason)), ["rule_allow", "default_deny", "rule_allow", "default_deny"]);
});

// ---- the commands -----------------------------------------------------------

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("check: the default policy is good; the summary says what it holds", () => {
  const r = cli("check", "host/policy/default.yaml");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /ok \(mode host, default deny\)/);
  assert.match(r.stdout, /external in\s+2 rules/);
  assert.match(r.stdout, /internal out\s+3 rules/);
  assert.match(r.stdout, /front_end\s+4 entries: 2 IPv4 addresses, 2 IPv6 addresses/);
  assert.match(r.stdout, /external_http_80\s+on/);
  const off = cli("check", "host/policy/default.yaml", "--mode", "gateway", "--set", "external_http_80=off", "--set", "internal_http_8080=off");
  assert.is(off.status, 0, off.stderr);
  assert.match(off.stdout, /mode gateway/);
  assert.match(off.stdout, /rules: 3 in the table, 2 switched off/);
  assert.match(off.stdout, /external_http_80\s+off\s+\(set on the command line/);
});

test("check: a broken policy exits 1 with every error as file:line:col", () => {
  const path = write(withRule((l) => [...set(1, "    interface: dmz")(l), "    dst: nowhere"]));
  const r = cli("check", path);
  assert.is(r.status, 1);
  assert.ok(r.stderr.includes(`${path}:5:16: interface must be`), r.stderr);
  assert.ok(r.stderr.includes(`${path}:9:10: no group or set named "nowhere"`), r.stderr);
  assert.match(r.stderr, /2 errors in/);
  assert.is(r.stdout, "");
  const setErr = write(withRule(add("    src: bl"), "sets:\n  bl: {file: bl.txt}\n"), { "bl.txt": "10.0.0.0/8\n10.0.0.0/40\n" });
  const s = cli("check", setErr);
  assert.is(s.status, 1);
  assert.ok(s.stderr.includes(`${join(setErr, "..", "bl.txt")}:2:10: "10.0.0.0/40": the prefix length must be 0 to 32`), s.stderr);
});

test("check and compile: bad flags are refused with a clear message", () => {
  const mode = cli("check", "host/policy/default.yaml", "--mode", "bridge");
  assert.not.equal(mode.status, 0);
  assert.match(mode.stderr, /--mode.*bridge.*host, gateway/);
  const bad = cli("check", "host/policy/default.yaml", "--set", "external_http_80=maybe");
  assert.not.equal(bad.status, 0);
  assert.match(bad.stderr, /"maybe" is not on or off/);
  const unknown = cli("check", "host/policy/default.yaml", "--set", "http=off");
  assert.is(unknown.status, 1);
  assert.match(unknown.stderr, /--set http: the policy has no switch named "http"/);
  const noOut = cli("compile", "host/policy/default.yaml");
  assert.not.equal(noOut.status, 0);
  assert.match(noOut.stderr, /--output/);
  const extra = cli("check", "host/policy/default.yaml", "--frobnicate");
  assert.not.equal(extra.status, 0);
  assert.match(extra.stderr, /unknown option/);
  const missing = cli("check", join(TMP, "absent.yaml"));
  assert.is(missing.status, 1);
  assert.match(missing.stderr, /absent\.yaml: no such policy file/);
});

test("compile: writes the table atomically; the bytes are the builder's; errors write nothing", () => {
  const dir = join(TMP, "out");
  mkdir(dir);
  const out = join(dir, "table.bin");
  const r = cli("compile", "host/policy/default.yaml", "-o", out, "--set", "internal_http_8080=off");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /wrote .*table\.bin: \d+ bytes, 4 rules \(1 switched off\), default deny, mode host; policy [\d.]+ ms, table build [\d.]+ ms/);
  const want = buildTable(compilePolicyFile(DEFAULT_POLICY, { switches: { internal_http_8080: false } }).spec).bytes;
  assert.equal(new Uint8Array(readFileSync(out)), want);
  assert.equal(readdirSync(dir), ["table.bin"], "no temporary file left behind");
  // The core takes it.
  new Core().loadTable(readFileSync(out));
  // A broken policy leaves the old table in place.
  const before = readFileSync(out);
  const bad = cli("compile", write(withRule(set(0, "  - action: permit"))), "-o", out);
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /:4:13: action must be allow or deny/);
  assert.match(bad.stderr, /table\.bin not written/);
  assert.equal(readFileSync(out), before);
  assert.equal(readdirSync(dir), ["table.bin"]);
  // An unwritable destination is an error, not a crash.
  const nodir = cli("compile", "host/policy/default.yaml", "-o", join(TMP, "no", "such", "dir", "t.bin"));
  assert.is(nodir.status, 1);
  assert.match(nodir.stderr, /portcullis: error: cannot write/);
  assert.not.ok(existsSync(join(TMP, "no")));
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));

test.run();
