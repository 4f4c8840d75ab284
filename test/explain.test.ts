// portcullis explain: the deciding rule and, for each rule before it, the
// fields that kept it from matching; from a policy or a compiled table.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { explainFlow } from "../host/commands/explain.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { compilePolicyText } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { limitedDefaultPolicy } from "./helpers/limited-policy.js";

const POLICY = "host/policy/default.yaml";
const table = buildTable(compilePolicyFile(POLICY, { mode: "host" }).spec).bytes;
const run = (...args: string[]) => spawnSync(process.execPath, ["bin/portcullis.js", "explain", ...args], { encoding: "utf8" });

test("HTTPS to the listener: rule 1 decides; rule 0 fails on the port alone", () => {
  const e = explainFlow(table, { iface: "external", dir: "in", proto: 6, src: "192.0.2.7", dst: "203.0.113.1", sport: 40000, dport: 443, flags: 2 }, "host");
  assert.is(e.verdict, "accept");
  assert.is(e.reason, "rule_allow");
  assert.is(e.rule, 1);
  assert.equal(e.steps.map((s) => [s.rule, s.failed]), [[0, ["dport"]], [1, []]]);
});

test("4443 toward Office Web Apps: every rule says why not, the default denies", () => {
  const e = explainFlow(table, { iface: "internal", dir: "out", proto: 6, src: "198.51.100.1", dst: "198.51.100.30", sport: 40000, dport: 4443, flags: 2 }, "host");
  assert.is(e.reason, "default_deny");
  assert.is(e.rule, null);
  assert.equal(e.steps.map((s) => s.failed), [
    ["interface", "dport", "dst"], ["interface", "dport", "dst"], ["dport", "dst"], ["dst"], ["dport"],
  ]);
});

test("IPv6, UDP 443 (QUIC) to the listener: refused on the protocol", () => {
  const e = explainFlow(table, { iface: "external", dir: "in", proto: 17, src: "2001:db8:1::5", dst: "2001:db8:1::1", sport: 5000, dport: 443, flags: 0 }, "host");
  assert.is(e.reason, "default_deny");
  assert.equal(e.steps[1]!.failed, ["proto"]);
  // A SYN-ACK would never open a flow: the core says so rather than a rule.
  const sa = explainFlow(table, { iface: "external", dir: "in", proto: 6, src: "192.0.2.7", dst: "203.0.113.1", sport: 40000, dport: 443, flags: 0x12 }, "host");
  assert.is(sa.reason, "no_flow");
});

test("the command, from a policy and from a compiled table, text and JSON", () => {
  const tmp = mkdtempSync(join(tmpdir(), "pc-explain-"));
  try {
    const out = join(tmp, "t.bin");
    assert.is(spawnSync(process.execPath, ["bin/portcullis.js", "compile", POLICY, "-o", out], { encoding: "utf8" }).status, 0);
    const flow = ["--iface", "internal", "--dir", "out", "--proto", "tcp", "--src", "198.51.100.1", "--dst", "198.51.100.10", "--dport", "4443"];
    const a = run(POLICY, ...flow);
    assert.is(a.status, 0, a.stderr);
    assert.match(a.stdout, /verdict: accept \(rule_allow/);
    assert.match(a.stdout, /decided by rule \[3\]: default\.yaml:111 int-https-4443/);
    const b = run(out, ...flow, "--json");
    assert.is(b.status, 0, b.stderr);
    const j = JSON.parse(b.stdout) as { rule: number; verdict: string; steps: unknown[] };
    assert.is(j.rule, 3);
    assert.is(j.verdict, "accept");
    assert.is(j.steps.length, 4);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

const ICMP_POLICY = `version: 1
default: allow
rules:
  - { name: lan-ping, action: allow, interface: internal, direction: in, proto: icmp, dst: 198.51.100.1, icmp_type: echo-request }
  - { name: pmtu, action: allow, interface: external, direction: in, proto: icmp, icmp_type: "destination-unreachable/frag-needed" }
  - { name: no-ra, action: deny, interface: external, direction: in, proto: icmpv6, icmp_type: [nd-router-advert] }
`;

test("--icmp-type: the ICMP type/code field is named when it fails; an unrelated error without a rule is not the default's", () => {
  const tmp = mkdtempSync(join(tmpdir(), "pc-explain-"));
  try {
    const p = join(tmp, "icmp.yaml");
    writeFileSync(p, ICMP_POLICY);
    const t = buildTable(compilePolicyFile(p, { mode: "host" }).spec).bytes;
    const flow = { iface: "external" as const, dir: "in" as const, proto: 1, src: "192.0.2.254", dst: "203.0.113.1", sport: 0, dport: 0, flags: 0 };
    const fn = explainFlow(t, { ...flow, icmp: { type: 3, code: 4 } }, "host");
    assert.equal([fn.reason, fn.rule], ["rule_allow", 1]);
    assert.equal(fn.steps.map((s) => s.failed), [["interface", "icmp_type", "dst"], []]);
    const other = explainFlow(t, { ...flow, icmp: { type: 3, code: 1 } }, "host");
    assert.equal([other.reason, other.verdict, other.rule], ["icmp_unrelated", "drop", null]);
    assert.equal(other.steps[1]!.failed, ["icmp_type"]);
    const a = run(p, "--iface", "external", "--dir", "in", "--proto", "icmp", "--src", "192.0.2.254", "--dst", "203.0.113.1", "--icmp-type", "destination-unreachable/host-unreachable");
    assert.is(a.status, 0, a.stderr);
    assert.match(a.stdout, /^flow: icmp destination-unreachable\/host-unreachable 192\.0\.2\.254 -> 203\.0\.113\.1, external in/);
    assert.match(a.stdout, /\[1\] icmp\.yaml:5 pmtu: allow icmp external in any -> any icmp_type destination-unreachable\/frag-needed\n {6}no: ICMP type\/code\n/);
    assert.match(a.stdout, /no rule matched: an ICMP error about no tracked flow meets only the rules that name its ICMP type/);
    const b = run(p, "--iface", "external", "--dir", "in", "--proto", "icmpv6", "--src", "2001:db8::1", "--dst", "2001:db8:1::1", "--icmp-type", "134");
    assert.is(b.status, 0, b.stderr);
    assert.match(b.stdout, /verdict: drop \(rule_deny/);
    assert.match(b.stdout, /^flow: icmpv6 nd-router-advert 2001:db8::1 -> 2001:db8:1::1/);
    const c = run(p, "--iface", "internal", "--dir", "in", "--proto", "icmp", "--src", "198.51.100.9", "--dst", "198.51.100.1");
    assert.match(c.stdout, /decided by rule \[0\]: icmp\.yaml:4 lan-ping/, "echo-request by default");
    const bad = run(p, "--iface", "external", "--dir", "in", "--proto", "icmp", "--src", "192.0.2.254", "--dst", "203.0.113.1", "--icmp-type", "packet-too-big");
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /--icmp-type packet-too-big: "packet-too-big" is an ICMPv6 type, not an icmp one/);
    const typo = run(p, "--iface", "external", "--dir", "in", "--proto", "icmp", "--src", "192.0.2.254", "--dst", "203.0.113.1", "--icmp-type", "echo-reqest");
    assert.match(typo.stderr, /did you mean "echo-request"/);
    const tcp = run(p, "--iface", "external", "--dir", "in", "--proto", "tcp", "--dport", "80", "--src", "192.0.2.254", "--dst", "203.0.113.1", "--icmp-type", "8");
    assert.match(tcp.stderr, /--icmp-type needs --proto icmp/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("bad input: a clear error and exit 1", () => {
  const base = ["--iface", "external", "--dir", "in", "--src", "192.0.2.7", "--dst", "203.0.113.1"];
  const noPort = run(POLICY, ...base, "--proto", "tcp");
  assert.is(noPort.status, 1);
  assert.match(noPort.stderr, /--dport is required/);
  const badFlag = run(POLICY, ...base, "--proto", "tcp", "--dport", "443", "--flags", "SX");
  assert.is(badFlag.status, 1);
  assert.match(badFlag.stderr, /not a TCP flag letter/);
  const mixed = run(POLICY, "--iface", "external", "--dir", "in", "--src", "192.0.2.7", "--dst", "2001:db8::1", "--proto", "udp", "--dport", "1");
  assert.is(mixed.status, 1);
  assert.match(mixed.stderr, /one address family/);
  const badIface = run(POLICY, ...base.map((x) => (x === "external" ? "dmz" : x)), "--proto", "tcp", "--dport", "1");
  assert.is(badIface.status, 1);
  assert.match(badIface.stderr, /Allowed choices are external, internal/);
});

test("a limited rule: explain says it has a limit; a deny rule on a block list is passed over (the lists start empty)", () => {
  const text = limitedDefaultPolicy().replace("rules:\n", "rules:\n  - name: abusers-first\n    action: deny\n    interface: external\n    direction: in\n    from: abusers\n");
  const t = buildTable(compilePolicyText(text, "limited.yaml").spec).bytes;
  const e = explainFlow(t, { iface: "external", dir: "in", proto: 6, src: "192.0.2.7", dst: "203.0.113.1", sport: 40000, dport: 443, flags: 2 }, "host");
  assert.is(e.reason, "rule_allow");
  assert.is(e.rule, 2);
  assert.equal(e.steps.map((s) => [s.rule, s.failed]), [[0, ["from_list"]], [1, ["dport"]], [2, []]]);
  assert.is(e.limited, true);
  const c = run("--iface", "external", "--dir", "in", "--proto", "tcp", "--src", "192.0.2.7", "--dst", "203.0.113.1", "--dport", "80", POLICY);
  assert.is(c.status, 0, c.stderr);
  assert.not.match(c.stdout, /per-source limit/, "no limit on the default policy's 80 rule");
});

test.run();
