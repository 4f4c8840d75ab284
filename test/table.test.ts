// Rule tables through the core: first-match results on a small table, the
// transaction (stage, ticket, commit), and every way a table can be corrupt,
// each refused with its reason while the previous table stays live.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { classifyAll } from "../host/core/batch.js";
import { Core, TableError } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { buildTable } from "../host/rules/build.js";
import { crc32 } from "../host/rules/crc32.js";
import * as F from "../host/rules/format.js";
import { type RuleSpec, type TableSpec } from "../host/rules/model.js";
import { ipv4, ipv6, PROTO_TCP, PROTO_UDP, TCP_SYN, tcp, udp } from "../host/packets/build.js";

const v4 = (a: string): number => a.split(".").reduce((x, o) => x * 256 + Number(o), 0);
const rule = (o: Partial<RuleSpec>): RuleSpec => ({
  action: "allow", log: false, ctx: null, src: null, dst: null, protos: null, sport: null, dport: null,
  tcpFlags: null, line: 0, info: "", ...o,
});

// 0: allow tcp to 198.51.100.10:4443; 1: deny tcp 22 anywhere; 2: allow udp
// from 2001:db8:1::/64; 3: allow tcp SYN-only to port 80 on the external
// input context.
const SPEC: TableSpec = {
  defaultAction: "deny",
  rules: [
    rule({ protos: [6], dst: { v4: [[v4("198.51.100.10"), v4("198.51.100.10")]], v6: [] }, dport: [[4443, 4443]], info: "r0" }),
    rule({ action: "deny", protos: [6], dport: [[22, 22]], info: "r1" }),
    rule({ protos: [17], src: { v4: [], v6: [[0x20010db8000100000000000000000000n, 0x20010db800010000ffffffffffffffffn]] }, info: "r2" }),
    rule({ protos: [6], dport: [[80, 80]], tcpFlags: { value: 0x02, mask: 0x12 }, ctx: [F.ctxValue(ABI.HOOK_INPUT, ABI.ROLE_EXTERNAL, 0)], info: "r3" }),
  ],
};

// Every probe is a new connection (a new source port): with a table live the
// core tracks flows, and a second SYN of the same flow would pass on state.
let nextPort = 20000;
const syn4 = (dst: string, dport: number, sport = nextPort++): Uint8Array =>
  ipv4({ src: "203.0.113.10", dst, proto: PROTO_TCP, payload: tcp({ sport, dport, flags: TCP_SYN }) });

function probe(core: Core): string[] {
  const pkts = [
    syn4("198.51.100.10", 4443), // r0
    syn4("198.51.100.11", 4443), // default
    syn4("198.51.100.10", 22), // r1
    ipv6({ src: "2001:db8:1::5", dst: "2001:db8:2::1", proto: PROTO_UDP, payload: udp({ sport: nextPort++, dport: 53 }) }), // r2
    ipv6({ src: "2001:db8:9::5", dst: "2001:db8:2::1", proto: PROTO_UDP, payload: udp({ sport: nextPort++, dport: 53 }) }), // default
    syn4("203.0.113.1", 80), // r3 (external input)
  ];
  return classifyAll(core, pkts, { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL })
    .map((d) => `${reasonName(d.reason)}:${d.rule === ABI.RULE_NONE ? "-" : d.rule}:${d.verdict}`);
}

const EXPECTED = ["rule_allow:0:1", "default_deny:-:0", "rule_deny:1:0", "rule_allow:2:1", "default_deny:-:0", "rule_allow:3:1"];

test("first match through the core: rules, default, IPv4 and IPv6, context and flags", () => {
  const core = new Core();
  core.loadTable(buildTable(SPEC).bytes);
  assert.equal(probe(core), EXPECTED);
  // The context matters: the same SYN to 80 arriving on the internal side.
  const other = classifyAll(core, [syn4("203.0.113.1", 80)], { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_INTERNAL });
  assert.is(reasonName(other[0]!.reason), "default_deny");
  // Flags S/SA: a SYN-ACK to 80 does not match rule 3.
  // (A SYN-ACK never meets the rules: without a flow it claims one that does not exist.)
  const synack = ipv4({ src: "203.0.113.10", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 4, dport: 80, flags: 0x12 }) });
  assert.is(reasonName(classifyAll(core, [synack], { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL })[0]!.reason), "no_flow");
  const synUrg = ipv4({ src: "203.0.113.10", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 5, dport: 80, flags: 0x22 }) });
  assert.is(reasonName(classifyAll(core, [synUrg], { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL })[0]!.reason), "rule_allow", "S/SA ignores URG");
  // Non-first fragments cannot be matched on ports; without their first, they go.
  const frag = ipv4({ src: "203.0.113.10", dst: "198.51.100.10", proto: PROTO_TCP, fragOff: 20, payload: new Uint8Array(16) });
  assert.is(reasonName(classifyAll(core, [frag])[0]!.reason), "frag_no_first");
});

test("per-rule counters: packets, bytes and last-hit time", () => {
  const core = new Core();
  core.loadTable(buildTable(SPEC).bytes);
  const p = syn4("198.51.100.10", 4443);
  classifyAll(core, [p, syn4("198.51.100.10", 4443), syn4("198.51.100.10", 22)], { tsNs: 123456789n });
  const c = core.ruleCounters(4);
  assert.equal(c.map((r) => [r.packets, r.bytes, r.lastHitNs]), [
    [2n, BigInt(2 * p.length), 123456789n], [1n, 40n, 123456789n], [0n, 0n, 0n], [0n, 0n, 0n],
  ]);
});

test("transaction: stage gives a ticket, a stale ticket is refused, commit swaps", () => {
  const core = new Core();
  assert.is(core.tableLive, false);
  const a = buildTable(SPEC).bytes;
  const t1 = core.stageTable(a);
  assert.ok(t1 > 0);
  const t2 = core.stageTable(a);
  assert.is(t2, t1 + 1);
  assert.throws(() => core.commitTable(t1), (e: unknown) => e instanceof TableError && e.code === "stale_ticket");
  assert.is(core.tableLive, false, "a stale ticket commits nothing");
  core.commitTable(t2);
  assert.is(core.tableLive, true);
  assert.throws(() => core.commitTable(t2), (e: unknown) => e instanceof TableError && e.code === "nothing_staged");
  assert.equal(probe(core), EXPECTED);
  // Swap to an allow-everything table and back.
  core.loadTable(buildTable({ defaultAction: "allow", rules: [] }).bytes);
  assert.equal(probe(core), ["default_allow:-:1", "default_allow:-:1", "default_allow:-:1", "default_allow:-:1", "default_allow:-:1", "default_allow:-:1"]);
  core.loadTable(a);
  assert.equal(probe(core), EXPECTED);
});

// Corruptions of a good table; `fix` recomputes the checksum so the check
// under test is the one that fires.
type Corrupt = [string, string, (t: Uint8Array, v: DataView) => Uint8Array | void, boolean];
const u32 = (v: DataView, at: number): number => v.getUint32(at, true);
const CORRUPTIONS: Corrupt[] = [
  ["truncated to the header", "bad_length", (t) => t.slice(0, F.HDR_SIZE), false],
  ["truncated below the header", "too_short", (t) => t.slice(0, 100), false],
  ["empty", "too_short", () => new Uint8Array(0), false],
  ["truncated by one byte", "bad_length", (t) => t.slice(0, t.length - 1), false],
  ["a flipped byte", "bad_checksum", (t) => { t[t.length - 3]! ^= 0x40; }, false],
  ["a flipped bit in a bitmap", "bad_checksum", (t, v) => { t[u32(v, F.T_BITMAPS_OFF) + 9]! ^= 1; }, false],
  ["wrong magic", "bad_magic", (t) => { t[0] = 0x50; t[1] = 0x4b; }, false],
  ["wrong version", "bad_version", (_, v) => { v.setUint16(F.T_VERSION, F.TABLE_VERSION + 1, true); }, false],
  ["wrong header size", "bad_header_size", (_, v) => { v.setUint16(F.T_HDR_SIZE, 64, true); }, false],
  ["rule count without its words", "bad_counts", (_, v) => { v.setUint32(F.T_NRULES, 65, true); }, true],
  ["zero bitmaps", "bad_counts", (_, v) => { v.setUint32(F.T_NBITMAPS, 0, true); }, true],
  ["bitmaps past the end", "section_out_of_range", (_, v) => { v.setUint32(F.T_BITMAPS_OFF, 0x7ffffff8, true); }, true],
  ["rules inside the header", "section_out_of_range", (_, v) => { v.setUint32(F.T_RULES_OFF, 8, true); }, true],
  ["icmp table past the end", "section_out_of_range", (_, v) => { v.setUint32(F.T_ICMP_OFF, u32(v, F.T_TOTAL_LEN) - 8, true); }, true],
  ["bitmap id out of range (icmp)", "bitmap_id_out_of_range", (_, v) => { v.setUint32(u32(v, F.T_ICMP_OFF) + 4 * 0x0800, 1e6, true); }, true],
  ["misaligned port table", "section_misaligned", (_, v) => { v.setUint32(F.T_DPORT_OFF, u32(v, F.T_DPORT_OFF) + 4, true); }, true],
  ["bad default", "bad_default", (t) => { t[F.T_DEFAULT] = 7; }, true],
  ["bad rule action", "bad_action", (t, v) => { t[u32(v, F.T_RULES_OFF) + F.RULE_SIZE] = 9; }, true],
  ["rule info out of range", "info_out_of_range", (_, v) => { v.setUint32(u32(v, F.T_RULES_OFF) + F.R_INFO_LEN, 1 << 30, true); }, true],
  ["bitmap id out of range (direct)", "bitmap_id_out_of_range", (_, v) => { v.setUint32(u32(v, F.T_PROTO_OFF) + 4 * 6, 1e6, true); }, true],
  ["bitmap id out of range (interval)", "bitmap_id_out_of_range", (_, v) => { v.setUint32(u32(v, F.T_IFIELDS + F.IF_IDS_OFF), 0xffffffff, true); }, true],
  ["interval bounds out of order", "bounds_not_ascending", (_, v) => { const b = u32(v, F.T_IFIELDS + F.IFIELD_SIZE + F.IF_BOUNDS_OFF); v.setUint32(b + 8, 5, true); }, true],
  ["IPv6 bounds out of order", "bounds_not_ascending", (_, v) => { const b = u32(v, F.T_IFIELDS + 2 * F.IFIELD_SIZE + F.IF_BOUNDS_OFF); v.setBigUint64(b + 16, 0n, true); v.setBigUint64(b + 24, 0n, true); }, true],
  ["first bound not zero", "first_bound_not_zero", (_, v) => { const b = u32(v, F.T_IFIELDS + F.IF_BOUNDS_OFF); v.setUint32(b, 1, true); }, true],
  ["interval count zero", "bad_counts", (_, v) => { v.setUint32(F.T_IFIELDS + F.IF_COUNT, 0, true); }, true],
  ["stray bit past the last rule", "stray_bits", (_, v) => { const b = u32(v, F.T_BITMAPS_OFF); const w = b + 8 * u32(v, F.T_AGGS); v.setUint32(w, v.getUint32(w, true) | (1 << 20), true); }, true],
  ["summary word disagrees", "summary_mismatch", (_, v) => { const b = u32(v, F.T_BITMAPS_OFF); v.setUint32(b, v.getUint32(b, true) ^ 2, true); }, true],
  ["total length lies", "bad_length", (_, v) => { v.setUint32(F.T_TOTAL_LEN, u32(v, F.T_TOTAL_LEN) - 8, true); }, true],
];

for (const [name, code, mutate, fix] of CORRUPTIONS) {
  test(`corrupt table refused (${name}): ${code}, the previous table stays live`, () => {
    const core = new Core();
    core.loadTable(buildTable(SPEC).bytes);
    const good = buildTable({ ...SPEC, defaultAction: "allow" }).bytes;
    let t = Uint8Array.from(good);
    const out = mutate(t, new DataView(t.buffer));
    if (out) t = Uint8Array.from(out);
    if (fix) new DataView(t.buffer).setUint32(F.T_CRC, crc32(t, 16), true);
    assert.throws(() => core.loadTable(t), (e: unknown) => e instanceof TableError && e.code === code, `expected ${code}`);
    assert.equal(probe(core), EXPECTED, "previous table still live");
  });
}

test("a table of format version 1 (before the icmp field) is refused with a message to compile it again", () => {
  const core = new Core();
  core.loadTable(buildTable(SPEC).bytes);
  const old = Uint8Array.from(buildTable(SPEC).bytes);
  new DataView(old.buffer).setUint16(F.T_VERSION, 1, true);
  new DataView(old.buffer).setUint32(F.T_CRC, crc32(old, 16), true);
  assert.throws(() => core.loadTable(old), (e: unknown) => e instanceof TableError && e.code === "bad_version" &&
    e.message === `rule table refused: bad version (at byte 4): it is format version 1, this core reads version ${F.TABLE_VERSION}; ` +
    "compile the policy again (portcullis compile POLICY -o TABLE)");
  assert.equal(probe(core), EXPECTED, "previous table still live");
});

test("a table with more rules than the core was sized for is refused", () => {
  const core = new Core("release", undefined, { maxRules: 3 });
  assert.throws(() => core.loadTable(buildTable(SPEC).bytes), (e: unknown) => e instanceof TableError && e.code === "too_many_rules");
  const small = new Core("release", undefined, { tableCap: 4096 });
  assert.throws(() => small.loadTable(buildTable(SPEC).bytes), (e: unknown) => e instanceof TableError && e.code === "too_large");
});

test("random byte flips never trap and never commit a corrupt table", () => {
  const core = new Core();
  const good = buildTable(SPEC).bytes;
  core.loadTable(good);
  let seed = 12345;
  const rnd = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
  let refused = 0;
  for (let i = 0; i < 300; i++) {
    const t = Uint8Array.from(good);
    const flips = 1 + rnd(4);
    for (let k = 0; k < flips; k++) t[rnd(t.length)] = rnd(256);
    if (rnd(2)) new DataView(t.buffer).setUint32(F.T_CRC, crc32(t, 16), true);
    try { core.loadTable(t); core.loadTable(good); } catch (e) { assert.instance(e, TableError); refused++; }
    assert.equal(probe(core), EXPECTED);
  }
  assert.ok(refused > 100, `refused ${refused}`);
});

test("the debug core validates the same way", () => {
  const core = new Core("debug");
  core.loadTable(buildTable(SPEC).bytes);
  assert.equal(probe(core), EXPECTED);
  const t = Uint8Array.from(buildTable(SPEC).bytes);
  t[t.length - 1]! ^= 1;
  assert.throws(() => core.loadTable(t), (e: unknown) => e instanceof TableError && e.code === "bad_checksum");
});

test.run();
