// Offload in the core (assembly/conntrack/offload.ts), the policy's offload
// keys, and the kernel rules' offload chain as text (host/kernel/offload.ts).
// The same through the real kernel: test/offload-kernel.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { type FlowTuple } from "../host/core/core.js";
import { ConfigError } from "../host/config/errors.js";
import { buildTable } from "../host/rules/build.js";
import { type TableSpec } from "../host/rules/model.js";
import { TableView } from "../host/rules/inspect.js";
import { compilePolicyText } from "../host/policy/compile.js";
import { parseBoardText } from "../host/kernel/board.js";
import { apply, iptablesRestore, nftRuleset, remove } from "../host/kernel/rules.js";
import { spawnSync } from "node:child_process";
import * as OFF from "../host/kernel/offload.js";
import { A, CLIENT4, CLIENT6, F_, Harness, IN_EXT, OUT_EXT, P, PROXY4, PROXY6, PROXY_SPEC, R, Tcp } from "./helpers/conn.js";

const SEC = 1_000_000_000n;
// PROXY_SPEC with its web rule (0) offloading after `after` packets.
const offloading = (after = 4, rules = [0]): TableSpec => ({
  ...PROXY_SPEC, offloadAfter: after, rules: PROXY_SPEC.rules.map((r, i) => ({ ...r, offload: rules.includes(i) })),
});
const flags = (h: Harness, i = 0): number => h.core.u8[h.core.verdictsPtr + i * ABI.VERDICT_SIZE + ABI.V_FLAGS]!;
const CTX_IN_EXT = ABI.HOOK_INPUT | (ABI.ROLE_EXTERNAL << 3);
const tuple = (t: Tcp): FlowTuple => ({ family: t.fam, proto: 6, src: t.client, dst: t.proxy, sport: t.cport, dport: t.sport });
const on = (h: Harness, lease = 30): Harness => { h.core.setOffload(true, lease); return h; };

test("an established flow of an offloading rule is handed over at its offload_after-th packet, with its ctx", () => {
  const h = on(new Harness(offloading(6)));
  const t = new Tcp(h);
  t.handshake(0); // 3 packets; the SYN opened the flow (rules), the other two on state
  assert.is(flags(h), 0, "the handshake's last ACK: not yet");
  assert.is(t.c(A | P, 1, 100), "state_match"); assert.is(flags(h), 0);
  assert.is(t.s(A, 1), "state_match"); assert.is(flags(h), 0);
  assert.is(t.c(A | P, 1, 100), "state_match"); // the 5th packet on state: the 6th of the flow
  assert.is(flags(h), ABI.VF_OFFLOAD | CTX_IN_EXT);
  assert.is(h.core.verdict(0), ABI.VERDICT_ACCEPT);
  const c = h.core.counters().offload;
  assert.equal([c.live, c.total, c.ended, c.revoked], [1n, 1n, 0n, 0n]);
  const f = h.core.flows()[0]!;
  assert.is(f.offloaded, true);
  assert.is(f.packets, 6);
  // A packet of it that still reaches the core: offloaded again, counted once.
  assert.is(t.s(A, 2), "state_match");
  assert.is(flags(h) & ABI.VF_OFFLOAD, ABI.VF_OFFLOAD);
  assert.is(flags(h) & ABI.VF_CTX_MASK, CTX_IN_EXT, "the flow's ctx (its opening packet's), not this packet's");
  assert.is(h.core.counters().offload.total, 1n);
});

test("never offloaded: offload off in CONFIG, a rule without the flag, UDP, a flow not yet established, a dropped packet", () => {
  const off = new Harness(offloading(1));
  const t0 = new Tcp(off);
  t0.handshake(0);
  for (let i = 0; i < 5; i++) { t0.c(A | P, 1, 10); assert.is(flags(off), 0, "CONFIG offload is 0 by default"); }

  const plain = on(new Harness(offloading(1, [])));
  const t1 = new Tcp(plain);
  t1.handshake(0);
  for (let i = 0; i < 5; i++) { t1.c(A | P, 1, 10); assert.is(flags(plain), 0, "rule without offload"); }

  const h = on(new Harness(offloading(1, [0, 1])));
  const t = new Tcp(h);
  assert.is(t.c(0x02, 0), "rule_allow"); assert.is(flags(h), 0, "the SYN");
  assert.is(t.s(0x12, 0), "state_match"); assert.is(flags(h), 0, "SYN-ACK: syn_recv, not established");
  assert.is(t.c(A, 0), "state_match"); assert.is(flags(h), ABI.VF_OFFLOAD | CTX_IN_EXT, "established by this ACK: after 1");
  // A segment the state machine refuses gets no flag.
  assert.is(t.c(0x02, 1), "tcp_invalid_state"); assert.is(flags(h), 0);
  assert.is(h.core.verdict(0), ABI.VERDICT_DROP);
  // Offloaded, the flow's window checks are liberal in the core: the kernel's
  // conntrack tracked the windows meanwhile, and the rules drop what it finds INVALID.
  assert.is(t.cRaw(R | A, 1, 12345678), "state_match");
  // A denied flow: no flow, no flag.
  const deny = new Tcp(h, 4, 40100, 22);
  assert.is(deny.c(0x02, 1), "default_deny"); assert.is(flags(h), 0);
});

test("within a batch the flag sits on the flow's last packet", () => {
  const h = on(new Harness(offloading(1)));
  const t = new Tcp(h);
  t.handshake(0);
  assert.is(flags(h), ABI.VF_OFFLOAD | CTX_IN_EXT);
  const other = new Tcp(h, 4, 40001);
  other.handshake(0);
  const b = new Batch(h.core);
  const mk = (x: Tcp, client: boolean): Uint8Array => { const p = x.pkt(client, A | P, 10); if (client) x.cseq += 10; else x.sseq += 10; return p; };
  b.add(mk(t, true), IN_EXT); b.add(mk(other, true), IN_EXT); b.add(mk(t, false), OUT_EXT); b.add(mk(t, true), IN_EXT); b.add(mk(other, false), OUT_EXT);
  assert.is(b.run(2n * SEC), 5);
  assert.equal([0, 1, 2, 3, 4].map((i) => flags(h, i) & ABI.VF_OFFLOAD), [0, 0, 0, ABI.VF_OFFLOAD, ABI.VF_OFFLOAD]);
  assert.equal([0, 1, 2, 3, 4].map((i) => h.core.reason(i)), new Array(5).fill(h.core.reason(0)), "all state_match");
  // The next batch starts over: its first packet of the flow carries it.
  b.clear(); b.add(mk(t, true), IN_EXT);
  b.run(3n * SEC);
  assert.is(flags(h, 0) & ABI.VF_OFFLOAD, ABI.VF_OFFLOAD);
});

test("the lease: renewed by offload_touch, ended by offload_end or when nothing renews it", () => {
  const h = on(new Harness(offloading(1)), 10);
  const a = new Tcp(h), b = new Tcp(h, 6, 40002);
  a.handshake(0); b.handshake(0);
  assert.is(h.core.counters().offload.live, 2n);
  // t = 8 s and 16 s: touches keep a alive past b's lease (10 s from t = 0).
  assert.is(h.core.offloadTouch(tuple(a), 8n * SEC), ABI.TOUCH_RENEWED);
  assert.is(h.core.offloadTouch(tuple(a), 16n * SEC), ABI.TOUCH_RENEWED);
  assert.is(h.core.offloadTouch(tuple(b), 16n * SEC), ABI.TOUCH_NONE, "b's lease ran out at 10 s");
  assert.is(h.core.flows(16n * SEC).length, 1);
  assert.is(h.core.counters().offload.live, 1n);
  // The reply direction names the same flow only as its original tuple.
  assert.is(h.core.offloadTouch({ ...tuple(a), src: a.proxy, dst: a.client, sport: a.sport, dport: a.cport }, 16n * SEC), ABI.TOUCH_RENEWED,
    "the key is canonical: either direction finds the flow");
  assert.is(h.core.offloadEnd(tuple(a), 17n * SEC), true);
  assert.is(h.core.offloadEnd(tuple(a), 17n * SEC), false, "already ended");
  const c = h.core.counters();
  assert.equal([c.offload.live, c.offload.total, c.offload.ended, c.flows.live], [0n, 2n, 1n, 0n]);
  // A flow the core inspects (not offloaded) is not ended by the kernel's news.
  const h2 = on(new Harness(offloading(1, [])));
  const x = new Tcp(h2);
  x.handshake(0);
  assert.is(h2.core.offloadTouch(tuple(x), SEC), ABI.TOUCH_INSPECTED);
  assert.is(h2.core.offloadEnd(tuple(x), SEC), false);
  assert.is(h2.core.flows().length, 1);
  assert.throws(() => h2.core.offloadTouch({ ...tuple(x), dst: PROXY6 }, SEC), /not both IPv4/);
});

test("a re-check revokes: a refused offloaded flow ends, one whose rule no longer offloads comes back for inspection", () => {
  const h = on(new Harness(offloading(1)));
  const a = new Tcp(h), b = new Tcp(h, 4, 40003);
  a.handshake(0); b.handshake(0);
  // b's port no longer allowed; a's still, without offload.
  const spec = offloading(1, []);
  spec.rules[0] = { ...spec.rules[0]!, dport: [[443, 443]] };
  const moved = new Tcp(h, 4, 40004, 80);
  moved.handshake(0);
  assert.is(h.core.counters().offload.live, 3n);
  h.core.loadTable(buildTable(spec).bytes);
  assert.is(h.core.recheckFlows(SEC), 1, "the port-80 flow ended");
  const c = h.core.counters().offload;
  assert.equal([c.live, c.revoked], [0n, 3n]);
  assert.is(moved.c(A | P, 2, 10), "no_flow");
  assert.is(a.c(A | P, 2, 10), "state_match");
  assert.is(flags(h), 0, "inspected again");
  assert.equal(h.core.flows().map((f) => f.offloaded), [false, false]);
});

test("adoption: decided by the live table; offloaded, inspected, known or refused", () => {
  const h = on(new Harness(offloading(3)));
  const adopt = (t: FlowTuple): number => h.core.offloadAdopt(t, CTX_IN_EXT, SEC);
  const web4: FlowTuple = { family: 4, proto: 6, src: CLIENT4, dst: PROXY4, sport: 50000, dport: 443 };
  const web6: FlowTuple = { family: 6, proto: 6, src: CLIENT6, dst: PROXY6, sport: 50001, dport: 80 };
  assert.is(adopt(web4), ABI.ADOPT_OFFLOADED);
  assert.is(adopt(web6), ABI.ADOPT_OFFLOADED);
  assert.is(adopt(web4), ABI.ADOPT_KNOWN);
  assert.is(adopt({ ...web4, dport: 22 }), ABI.ADOPT_REFUSED, "no rule allows 22");
  assert.is(h.core.offloadAdopt(web4, ABI.HOOK_OUTPUT | (ABI.ROLE_EXTERNAL << 5), SEC) , ABI.ADOPT_KNOWN);
  assert.is(h.core.offloadAdopt({ ...web4, sport: 50002 }, ABI.HOOK_OUTPUT | (ABI.ROLE_EXTERNAL << 5), SEC), ABI.ADOPT_REFUSED,
    "the ctx from the mark decides: the web rule is for input on the external side");
  assert.is(adopt({ ...web4, proto: 17 }), ABI.ADOPT_REFUSED, "only TCP flows are offloaded");
  const c = h.core.counters();
  assert.equal([c.offload.live, c.offload.total, c.flows.live], [2n, 2n, 2n]);
  const f = h.core.flows().find((x) => x.orig.port === 50000)!;
  assert.equal([f.state, f.offloaded, f.rule, f.orig.addr, f.reply.addr], ["established", true, 0, CLIENT4, PROXY4]);
  // Its packets, if they come back, pass on state (and are offloaded again).
  const t = new Tcp(h, 4, 50000, 443);
  assert.is(t.c(A | P, 2, 100), "state_match");
  assert.is(flags(h) & ABI.VF_OFFLOAD, ABI.VF_OFFLOAD);
  assert.is(t.c(F_ | A, 2), "state_match", "a FIN far from any sequence seen: the windows of an adopted flow are liberal");
  // A rule without offload: adopted for inspection.
  const h2 = on(new Harness(offloading(3, [])));
  assert.is(h2.core.offloadAdopt(web4, CTX_IN_EXT, SEC), ABI.ADOPT_INSPECTED);
  assert.equal(h2.core.flows().map((x) => x.offloaded), [false]);
  // No table live: refused.
  assert.is(new Harness(offloading(3)).core.offloadAdopt(web4, 0x80, SEC), ABI.ADOPT_REFUSED, "ctx >= 128 cannot be a flow's");
});

test("policy: offload per rule and policy-wide, compiled into the table; errors at FILE:LINE:COL", () => {
  const base = (rules: string, top = ""): string => `version: 1\ndefault: deny\n${top}rules:\n${rules}`;
  const web = "  - action: allow\n    interface: external\n    direction: in\n    proto: tcp\n    dport: [80, 443]\n";
  const c1 = compilePolicyText(base(`${web}    offload: true\n`), "p.yaml");
  assert.equal(c1.spec.rules.map((r) => r.offload), [true]);
  const v1 = new TableView(buildTable(c1.spec).bytes);
  assert.equal([v1.rules[0]!.offload, v1.offloadAfter], [true, 10]);
  assert.match(v1.rules[0]!.info, / offload/);
  const c2 = compilePolicyText(base(`${web}  - action: deny\n    interface: any\n    direction: in\n`, "offload: { after: 3, all: true }\n"), "p.yaml");
  assert.equal(c2.spec.rules.map((r) => r.offload), [true, false], "all: every allow rule; a deny rule never");
  assert.is(new TableView(buildTable(c2.spec).bytes).offloadAfter, 3);
  const c3 = compilePolicyText(base(`${web}    offload: false\n`, "offload: { all: true }\n"), "p.yaml");
  assert.equal(c3.spec.rules.map((r) => r.offload), [false], "the rule's own key wins");
  const err = (text: string): string => {
    try { compilePolicyText(text, "p.yaml"); } catch (e) { if (e instanceof ConfigError) return e.message; throw e; }
    return "no error";
  };
  assert.match(err(base("  - action: deny\n    interface: external\n    direction: in\n    offload: true\n")), /p\.yaml:7:5: .*offload is for allow rules/);
  assert.match(err(base("  - action: allow\n    interface: external\n    direction: in\n    proto: udp\n    offload: true\n")), /p\.yaml:8:5: .*offload carries established TCP flows; this rule has proto udp/);
  assert.match(err(base(web, "offload: { after: 0 }\n")), /p\.yaml:3:19: .*offload\.after must be a whole number of packets, 1-65535/);
  assert.match(err(base(web, "offload: { later: 3 }\n")), /p\.yaml:3:\d+: .*later/);
  assert.match(err(base(`${web}    offload: yes please\n`)), /p\.yaml:9:\d+: .*offload must be true or false/);
});

const BOARD = "version: 1\nmode: host\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\n";

test("board: offload off by default; enabled and on_start read; errors name the line", () => {
  assert.is(parseBoardText(BOARD, "b.yaml").offload, undefined);
  assert.equal(parseBoardText(`${BOARD}offload: { enabled: true }\n`, "b.yaml").offload, { enabled: true, onStart: "adopt" });
  assert.equal(parseBoardText(`${BOARD}offload: { enabled: true, on_start: end }\n`, "b.yaml").offload, { enabled: true, onStart: "end" });
  assert.throws(() => parseBoardText(`${BOARD}offload: { enabled: true, on_start: keep }\n`, "b.yaml"), /b\.yaml:5:\d+: .*offload\.on_start must be adopt or end, not "keep"/);
  assert.throws(() => parseBoardText(`${BOARD}offload: { enable: true }\n`, "b.yaml"), /b\.yaml:5:\d+: .*enable/);
});

test("kernel rules: the offload chain first in each of our chains, marks of other generations dropped", () => {
  const off = parseBoardText(BOARD, "b.yaml");
  assert.not.match(iptablesRestore(off), /PORTCULLIS-OFF|mark/);
  assert.not.match(nftRuleset(off), /mark/);
  const b = parseBoardText(`${BOARD}offload: { enabled: true }\n`, "b.yaml");
  const ipt = iptablesRestore(b, [], 5).split("\n");
  assert.ok(ipt.includes(":PORTCULLIS-OFF - [0:0]"));
  assert.equal(ipt.filter((l) => l.startsWith("-A PORTCULLIS-OFF")), [
    "-A PORTCULLIS-OFF -m conntrack --ctstate INVALID -j DROP",
    "-A PORTCULLIS-OFF -m connmark --mark 0x85000000/0xff000000 -j ACCEPT",
    "-A PORTCULLIS-OFF -m mark --mark 0x85000000/0xff000000 -j CONNMARK --save-mark",
    "-A PORTCULLIS-OFF -m mark --mark 0x85000000/0xff000000 -j ACCEPT",
  ]);
  const inRules = ipt.filter((l) => l.startsWith("-A PORTCULLIS-IN"));
  assert.equal(inRules.slice(0, 2), ["-A PORTCULLIS-IN -j PORTCULLIS-OFF", "-A PORTCULLIS-IN -m mark --mark 0x80000000/0x80000000 -j DROP"]);
  assert.match(inRules[2]!, /-j NFQUEUE/);
  const nft = nftRuleset(b, 5);
  assert.match(nft, /chain offloaded \{\n\t\tct state invalid drop\n\t\tct mark & 0xff000000 == 0x85000000 accept\n\t\tmeta mark & 0xff000000 == 0x85000000 ct mark set meta mark accept\n\t\}/);
  assert.match(nft, /chain input \{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tjump offloaded\n\t\tmeta mark & 0x80000000 == 0x80000000 drop\n\t\tiifname "ext0" queue/);
  assert.is(OFF.offloadMark(5, CTX_IN_EXT), 0x85090000);
  assert.equal([OFF.markGeneration(0x85090000), OFF.markCtx(0x85090000), OFF.markGeneration(0x05090000)], [5, CTX_IN_EXT, null]);
  assert.throws(() => OFF.generationMark(128), /0-127/);
});

// The offload chain through the kernel's own tools, in a namespace of this
// test: iptables-legacy (loaded by apply, replaced by setGeneration, read
// back), and the nftables chain's rules (ct mark, meta mark, ct state):
// this kernel has no nft queue, so the table is made by hand without it.
test("kernel: the offload chain loads, its generation is replaced and read back, in both backends", () => {
  const ns = `pofl${process.pid}`;
  const ip = (...a: string[]): number => spawnSync("ip", a, { encoding: "utf8" }).status ?? -1;
  ip("netns", "del", ns);
  assert.is(ip("netns", "add", ns), 0);
  try {
    const inNs = (argv: string[], input = ""): { status: number | null; stdout: string; stderr: string } =>
      spawnSync("ip", ["netns", "exec", ns, ...argv], { input, encoding: "utf8" });
    inNs(["ip", "link", "add", "ext0", "type", "dummy"]); inNs(["ip", "link", "add", "int0", "type", "dummy"]);
    assert.is(OFF.readGeneration(ns), null, "nothing loaded");
    const b = parseBoardText(`${BOARD}offload: { enabled: true }\n`, "b.yaml");
    apply(b, { backend: "iptables", netns: ns });
    assert.equal(OFF.readGeneration(ns), { backend: "iptables", gen: 0 });
    OFF.setGeneration("iptables", 7, ns);
    assert.equal(OFF.readGeneration(ns), { backend: "iptables", gen: 7 });
    for (const save of ["iptables-legacy-save", "ip6tables-legacy-save"]) {
      assert.match(inNs([save, "-t", "filter"]).stdout, /-A PORTCULLIS-OFF -m connmark --mark 0x87000000\/0xff000000 -j ACCEPT/, save);
    }
    apply(b, { backend: "iptables", netns: ns });
    assert.equal(OFF.readGeneration(ns), { backend: "iptables", gen: 7 }, "a second apply keeps the generation the kernel has");
    assert.is(remove({ netns: ns }), true);
    assert.is(OFF.readGeneration(ns), null, "remove takes the offload chain too");
    const nft = inNs(["nft", "-f", "-"], `table inet portcullis {\n\tchain offloaded {\n${OFF.nftOffloadChain(0).map((r) => `\t\t${r}`).join("\n")}\n\t}\n` +
      `\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n${OFF.nftOffloadEntry().map((r) => `\t\t${r}`).join("\n")}\n\t}\n}\n`);
    assert.is(nft.status, 0, nft.stderr);
    assert.equal(OFF.readGeneration(ns), { backend: "nft", gen: 0 });
    OFF.setGeneration("nft", 9, ns);
    assert.equal(OFF.readGeneration(ns), { backend: "nft", gen: 9 });
  } finally {
    ip("netns", "del", ns);
  }
});

test.run();
