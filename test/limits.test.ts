// Per-source limits and block lists through the release core (issue 19):
// bucket arithmetic exact to the nanosecond from batch times, live-flow
// counts that fall as flows close and expire, overload onto a block list with
// flush and expiry, a spoofed flood against the source table, reloads that
// keep the state; and the policy's check-time errors. Every packet sent
// through TwinHarness is also decided by the TypeScript reference
// (bench/reference/limits.ts) and must get the same verdict, reason and rule.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Batch } from "../host/core/batch.js";
import { Core, TableError } from "../host/core/core.js";
import { type CoreConfig } from "../host/core/load.js";
import { crc32 } from "../host/rules/crc32.js";
import * as F from "../host/rules/format.js";
import { blockAdd, blockDel, blocks, limitCounters, sources } from "../host/core/limits.js";
import { reasonName } from "../host/core/reasons.js";
import { ipv4, ipv6, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyText } from "../host/policy/compile.js";
import { ConfigError } from "../host/config/errors.js";
import { buildTable, listKey } from "../host/rules/build.js";
import { type TableSpec } from "../host/rules/model.js";
import { A, F_, IN_EXT, P, PROXY4, PROXY6, R, S, Tcp, udpPkt } from "./helpers/conn.js";
import { liveTable, TwinHarness } from "./helpers/twin.js";

const SEC = 1_000_000_000n;

// The proxy's 443 with `limit` (YAML lines of the limit mapping) and any
// extra text (lists:, more rules) around it.
function policy(limit: string[], o: { top?: string; before?: string[]; after?: string[] } = {}): string {
  return [
    "version: 1", "default: deny", o.top ?? "", "rules:",
    ...(o.before ?? []),
    "  - name: https", "    action: allow", "    interface: external", "    direction: in", "    proto: tcp",
    "    dst: [203.0.113.1, \"2001:db8:1::1\"]", "    dport: 443",
    ...(limit.length ? ["    limit:", ...limit.map((l) => `      ${l}`)] : []),
    ...(o.after ?? []),
  ].join("\n") + "\n";
}
const spec = (text: string): TableSpec => compilePolicyText(text, "limits.yaml").spec;

// The release core; the debug one (its asserts on source and block entries
// live) where a test asks for it.
class Twin extends TwinHarness {
  constructor(text: string, config: CoreConfig = {}, build: "release" | "debug" = "release") { super(spec(text), config, build); }
  // A new TCP flow from `client` (a fresh port each time) at second t.
  private port = 20000;
  syn(client: string, t: number): string { return this.send(this.synPkt(client, this.port++), IN_EXT, t); }
  synPkt(client: string, port: number): Uint8Array {
    const o = { src: client, dst: client.includes(":") ? PROXY6 : PROXY4, proto: PROTO_TCP, payload: tcp({ sport: port, dport: 443, flags: TCP_SYN, seq: 1 }) };
    return client.includes(":") ? ipv6(o) : ipv4(o);
  }
  conn(client: string, t: number): Tcp { return new Tcp(this, 4, this.port++, 443, client); }
  reload(text: string): void {
    this.core.loadTable(buildTable(spec(text)).bytes);
    this.ref.loadTable(liveTable(this.core));
  }
  agree(): void { assert.is(this.cmp.mismatches.length, 0, this.cmp.report()); }
  flowsOf(prefix: string): number { return sources(this.core).find((s) => s.prefix === prefix)?.flows ?? 0; }
}

for (const engine of ["v8", "wasmtime"] as const) test(`rate (${engine}): a source is limited exactly at the bucket's arithmetic from batch times; other sources are not`, () => {
  const h = new Twin(policy(["rate: 2/s", "burst: 3"]), { engine });
  // A full bucket: three at once, the fourth over.
  assert.equal([0, 0, 0, 0].map((t) => h.syn("203.0.113.10", t)), ["rule_allow", "rule_allow", "rule_allow", "rate_limited"]);
  // 2/s is one flow per 500 ms: one ns short of it is still over, at it one passes.
  assert.is(h.syn("203.0.113.10", 0.499999999), "rate_limited");
  assert.is(h.syn("203.0.113.10", 0.5), "rule_allow");
  assert.is(h.syn("203.0.113.10", 0.5), "rate_limited");
  // 2.5 s idle refills the whole burst and no more.
  assert.equal([3, 3, 3, 3].map((t) => h.syn("203.0.113.10", t)), ["rule_allow", "rule_allow", "rule_allow", "rate_limited"]);
  // Another source has its own bucket all along.
  assert.equal([3, 3, 3, 3].map((t) => h.syn("203.0.113.11", t)), ["rule_allow", "rule_allow", "rule_allow", "rate_limited"]);
  const limited = h.core.counters().reasons.find((r) => r.name === "rate_limited")!;
  assert.is(limited.packets, 5n);
  assert.is(h.core.rule(0), 0, "the drop names the limited rule");
  h.agree();
});

test("rate per /24: the sources of one prefix share a bucket", () => {
  const h = new Twin(policy(["rate: 1/m", "burst: 2", "per: { ipv4: /24 }"]));
  assert.equal([h.syn("203.0.113.10", 0), h.syn("203.0.113.99", 1), h.syn("203.0.113.200", 2)], ["rule_allow", "rule_allow", "rate_limited"]);
  assert.is(h.syn("198.51.100.7", 2), "rule_allow", "another /24");
  assert.is(h.syn("203.0.113.5", 60), "rule_allow", "a minute after the first: one token back");
  assert.equal(sources(h.core).map((s) => s.prefix).sort(), ["198.51.100.0/24", "203.0.113.0/24"]);
  h.agree();
});

test("flows: the live-flow count falls as flows close (RST, FIN) and expire", () => {
  // 64 flow slots: every batch's sweep visits the whole table, as the reference assumes.
  const h = new Twin(policy(["flows: 2"]), { maxFlows: 64, timeouts: { udp_unreplied: 5, syn_sent: 5 } }, "debug");
  const a = h.conn("203.0.113.10", 0), b = h.conn("203.0.113.10", 0);
  assert.equal(a.handshake(0), ["rule_allow", "state_match", "state_match"]);
  assert.equal(b.handshake(0), ["rule_allow", "state_match", "state_match"]);
  assert.is(h.flowsOf("203.0.113.10/32"), 2);
  assert.is(h.syn("203.0.113.10", 1), "source_flows_full");
  assert.is(h.syn("203.0.113.11", 1), "rule_allow", "another source");
  // RST closes a: one place back.
  assert.is(a.c(R | A, 2), "state_match");
  assert.is(h.flowsOf("203.0.113.10/32"), 1);
  assert.is(h.syn("203.0.113.10", 2), "rule_allow");
  assert.is(h.syn("203.0.113.10", 2), "source_flows_full");
  // FIN both ways closes b (TIME_WAIT no longer counts).
  assert.equal([b.c(F_ | A, 3), b.s(A, 3), b.s(F_ | A, 3), b.c(A, 3)], ["state_match", "state_match", "state_match", "state_match"]);
  assert.is(h.flowsOf("203.0.113.10/32"), 1);
  // The SYN of t=2 is unanswered: it expires at 7 (syn_sent 5 s), and the
  // sweep at the end of that batch frees it.
  assert.is(h.syn("203.0.113.10", 3), "rule_allow");
  assert.is(h.syn("203.0.113.10", 6.999), "source_flows_full");
  assert.is(h.flowsOf("203.0.113.10/32"), 2);
  h.send(udpPkt(4, "192.0.2.1", 1, PROXY4, 9), IN_EXT, 7); // an unrelated packet: a batch at t=7
  assert.is(h.flowsOf("203.0.113.10/32"), 1);
  assert.is(h.syn("203.0.113.10", 7), "rule_allow");
  h.agree();
});

test("overload: a source over the limit is listed, flush ends its flows, expiry takes it off", () => {
  const text = policy(["rate: 1/s", "burst: 2", "overload: abusers for 10s", "flush: true"], {
    before: ["  - action: deny", "    interface: external", "    direction: in", "    from: abusers"],
  });
  const h = new Twin(text, {}, "debug");
  const kept = h.conn("203.0.113.10", 0);
  assert.equal(kept.handshake(0), ["rule_allow", "state_match", "state_match"]);
  const other = h.conn("203.0.113.20", 0);
  assert.equal(other.handshake(0), ["rule_allow", "state_match", "state_match"]);
  assert.is(h.syn("203.0.113.10", 0), "rule_allow");
  assert.is(h.syn("203.0.113.10", 0), "rate_limited", "over: listed and flushed");
  const key = listKey("abusers");
  assert.equal(blocks(h.core).map((b) => [b.list, b.prefix, b.expiresNs]), [[key, "203.0.113.10/32", 10n * SEC]]);
  // Its established flow ends at its next packet; the other client's does not.
  assert.is(kept.c(A | P, 1, 10), "source_blocked");
  assert.is(kept.c(A | P, 1, 10), "no_flow", "the flow is gone");
  assert.is(other.c(A | P, 1, 10), "state_match");
  // New flows meet the deny rule `from: abusers`, named in the drop.
  assert.is(h.syn("203.0.113.10", 5), "source_blocked");
  assert.is(h.core.rule(0), 0);
  assert.is(h.syn("203.0.113.20", 5), "rule_allow");
  // Ten seconds after: off the list, and the bucket is full again.
  assert.is(h.syn("203.0.113.10", 9.999999999), "source_blocked");
  assert.is(h.syn("203.0.113.10", 10), "rule_allow");
  assert.equal(blocks(h.core, 10n * SEC), []);
  h.agree();
});

test("from: not LIST on the allow rule; block add and del from the host; the drop is source_blocked", () => {
  const text = policy(["flows: 100"], { top: "lists: [manual]" }).replace("    dport: 443\n", "    dport: 443\n    from: not manual\n");
  const h = new Twin(text);
  assert.is(h.syn("203.0.113.30", 0), "rule_allow");
  const key = listKey("manual");
  assert.ok(blockAdd(h.core, key, "203.0.113.0/28", 1n * SEC, 0n));
  h.ref.limits!.add(key, 4, 28, Uint32Array.of(0xcb007100, 0, 0, 0), -1n, h.ref.relNs(1n * SEC));
  assert.is(h.syn("203.0.113.3", 1), "source_blocked", "inside the /28");
  assert.is(h.syn("203.0.113.30", 1), "rule_allow", "outside it");
  assert.equal(blocks(h.core).map((b) => [b.prefix, b.expiresNs]), [["203.0.113.0/28", null]]);
  assert.ok(blockDel(h.core, key, "203.0.113.0/28", 2n * SEC));
  h.ref.limits!.del(key, 4, 28, Uint32Array.of(0xcb007100, 0, 0, 0));
  assert.not.ok(blockDel(h.core, key, "203.0.113.0/28", 2n * SEC), "not there any more");
  assert.is(h.syn("203.0.113.3", 2), "rule_allow");
  assert.is(limitCounters(h.core).blocksLive, 0n);
  h.agree();
});

test("a spoofed flood of 10x the source table does not reset the counts of 100 busy sources", () => {
  const CAP = 256;
  const h = new Twin(policy(["rate: 100/s", "burst: 100", "flows: 3"]), { maxSources: CAP, maxFlows: 8192 }, "debug");
  const busy: string[] = [];
  for (let i = 0; i < 100; i++) {
    const c = `198.51.100.${i + 1}`;
    busy.push(c);
    for (let k = 0; k < 2; k++) assert.equal(h.conn(c, 0).handshake(0), ["rule_allow", "state_match", "state_match"]);
  }
  const before = new Map(sources(h.core).map((s) => [s.prefix, s.flows]));
  assert.is(before.size, 100);
  // 2,560 new sources (each its own /64 of 2001:db8::/32), one SYN each, in
  // batches of 256 (not through the twin: the reference never runs out of room).
  const batch = new Batch(h.core);
  const reasons = new Map<string, number>();
  for (let b = 0; b < 10; b++) {
    batch.clear();
    for (let i = 0; i < 256; i++) batch.add(h.synPkt(`2001:db8:${(0x1000 + b * 256 + i).toString(16)}::1`, 1024 + i), IN_EXT);
    const got = batch.run(1n + BigInt(b) * 1000n);
    for (let k = 0; k < got; k++) { const r = reasonName(h.core.reason(k)); reasons.set(r, (reasons.get(r) ?? 0) + 1); }
  }
  // The busy sources' counts are exactly what they were.
  const after = new Map(sources(h.core).map((s) => [s.prefix, s.flows]));
  for (const c of busy) assert.is(after.get(`${c}/32`), 2, c);
  // And their limits still hold exactly: one more flow each, then full.
  for (const c of busy) {
    assert.is(h.syn(c, 1), "rule_allow", c);
    assert.is(h.syn(c, 1), "source_flows_full", c);
  }
  const lc = limitCounters(h.core);
  assert.is(lc.sourcesLive, BigInt(CAP), "the table filled");
  // Each admitted flood source holds a live (embryonic) flow, so none was
  // reusable once the table filled: 156 admitted, the rest refused.
  assert.is(reasons.get("rule_allow"), CAP - 100);
  assert.is(lc.sourcesEvicted, 0n);
  // Every flood SYN was admitted or refused for want of a reusable entry, counted.
  assert.is((reasons.get("rule_allow") ?? 0) + (reasons.get("source_table_full") ?? 0), 2560, JSON.stringify([...reasons]));
  assert.is(BigInt(reasons.get("source_table_full") ?? 0), lc.sourcesRefused);
});

test("a full source table reuses the least recently active entry without live flows, and counts it", () => {
  // 16 entries: every source's two buckets are the whole table.
  const h = new Twin(policy(["rate: 1/m", "burst: 5"]), { maxSources: 16 }, "debug");
  const addr = (i: number): string => `198.51.100.${i + 1}`;
  for (let i = 0; i < 16; i++) {
    const c = h.conn(addr(i), i);
    assert.is(c.c(S, i), "rule_allow");
    assert.is(c.s(R | A, i), "state_match", "refused by the server: the flow closes and stops counting");
  }
  assert.equal(sources(h.core).map((s) => s.flows), new Array(16).fill(0));
  // A 17th source: no free entry, none idle (every bucket is short of full
  // for a minute), so the least recently active one (198.51.100.1) goes.
  const held = h.conn("203.0.113.50", 20);
  assert.is(held.c(S, 20), "rule_allow");
  let lc = limitCounters(h.core);
  assert.is(lc.sourcesEvicted, 1n);
  assert.not.ok(sources(h.core).some((s) => s.prefix === "198.51.100.1/32"));
  assert.ok(sources(h.core).some((s) => s.prefix === "198.51.100.2/32"));
  // A minute after each, the buckets are full again: reused without loss, not counted.
  assert.is(h.syn(addr(0), 100), "rule_allow");
  lc = limitCounters(h.core);
  assert.is(lc.sourcesEvicted, 1n);
  // Sixteen sources with a live flow each: a new source finds nothing to reuse.
  const h2 = new Twin(policy(["flows: 10"]), { maxSources: 16 }, "debug");
  for (let i = 0; i < 16; i++) assert.is(h2.syn(addr(i), 0), "rule_allow");
  assert.is(h2.syn("203.0.113.50", 0), "source_table_full");
  assert.is(limitCounters(h2.core).sourcesRefused, 1n);
  assert.is(h2.core.counters().flows.live, 16n, "the refused SYN created no flow");
});

test("a reload keeps block lists and buckets; a reload without the list drops it", () => {
  const lim = ["rate: 1/s", "burst: 2", "overload: abusers"];
  const before = ["  - action: deny", "    interface: external", "    direction: in", "    from: abusers"];
  const h = new Twin(policy(lim, { before }));
  assert.equal([0, 0, 0].map(() => h.syn("203.0.113.10", 0)), ["rule_allow", "rule_allow", "rate_limited"]);
  assert.is(h.syn("203.0.113.11", 0), "rule_allow");
  // The same rules behind a new one: the 443 rule keeps its key, so its buckets.
  const extra = ["  - action: allow", "    interface: external", "    direction: in", "    proto: udp", "    dport: 53"];
  h.reload(policy(lim, { before: [...before, ...extra] }));
  assert.is(h.syn("203.0.113.10", 0.1), "source_blocked", "still on the list");
  assert.is(h.syn("203.0.113.11", 0.1), "rule_allow", "its second token");
  assert.is(h.syn("203.0.113.11", 0.1), "rate_limited", "the bucket came through the reload");
  assert.is(blocks(h.core).length, 2);
  // A table without the list: its entries go.
  h.reload(policy(["rate: 1/s", "burst: 2"]));
  assert.equal(blocks(h.core), []);
  assert.is(h.syn("203.0.113.10", 5), "rule_allow");
  h.agree();
});

test("the core validates rule extensions and lists: a corrupt one is refused with its reason, the live table stays", () => {
  const good = buildTable(spec(policy(["rate: 2/s", "burst: 3", "overload: abusers for 10s"], {
    before: ["  - action: deny", "    interface: external", "    direction: in", "    from: abusers"],
  }))).bytes;
  const core = new Core("release");
  core.loadTable(good);
  const v = (t: Uint8Array): DataView => new DataView(t.buffer, t.byteOffset, t.byteLength);
  const ext = (t: Uint8Array, i: number): number => v(t).getUint32(F.T_EXT_OFF, true) + i * F.EXT_SIZE;
  const rules = (t: Uint8Array): number => v(t).getUint32(F.T_RULES_OFF, true);
  const cases: Array<[string, string, (t: Uint8Array) => void]> = [
    ["a rate with burst 0", "bad_ext", (t) => v(t).setUint32(ext(t, 1) + F.X_BURST, 0, true)],
    ["a bucket too deep for u64", "bad_ext", (t) => { v(t).setUint32(ext(t, 1) + F.X_BURST, F.MAX_BURST, true); v(t).setBigUint64(ext(t, 1) + F.X_PERIOD, F.MAX_PERIOD_NS, true); }],
    ["an IPv4 prefix of 33", "bad_ext", (t) => { t[ext(t, 1) + F.X_PFX4] = 33; }],
    ["unknown extension flags", "bad_ext", (t) => { t[ext(t, 1) + F.X_FLAGS] = 0x80; }],
    ["a limit on the deny rule", "bad_ext", (t) => { t[ext(t, 0) + F.X_FLAGS] = F.XF_LIMIT | F.XF_FROM_LIST; }],
    ["a rule's extension past the section", "bad_ext", (t) => v(t).setUint16(rules(t) + F.R_EXT, 9, true)],
    ["an overload list past the lists", "bad_list", (t) => v(t).setUint16(ext(t, 1) + F.X_OVERLOAD, 1, true)],
    ["a from list past the lists", "bad_list", (t) => v(t).setUint16(ext(t, 0) + F.X_FROM_LIST, 5, true)],
    ["extensions past the end", "section_out_of_range", (t) => v(t).setUint32(F.T_NEXT, 1 << 20, true)],
    ["a list name out of range", "info_out_of_range", (t) => v(t).setUint32(v(t).getUint32(F.T_LISTS_OFF, true) + F.L_NAME_LEN, 1 << 30, true)],
  ];
  for (const [what, code, corrupt] of cases) {
    const t = Uint8Array.from(good);
    corrupt(t);
    v(t).setUint32(F.T_CRC, crc32(t, 16), true);
    assert.throws(() => core.stageTable(t), (e: unknown) => e instanceof TableError && e.code === code, what);
  }
  assert.is(core.tableLive, true);
});

// The policy's errors, each at FILE:LINE:COL.
function errorOf(text: string): ConfigError {
  try { compilePolicyText(text, "limits.yaml"); } catch (e) { if (e instanceof ConfigError) return e; throw e; }
  throw new Error("the policy compiled");
}

test("check: a limit on a deny rule, an impossible rate, an unknown list, a flush without overload", () => {
  const deny = policy(["rate: 1/s"]).replace("    action: allow", "    action: deny");
  let e = errorOf(deny);
  assert.is(e.code, "limit_on_deny");
  assert.is(e.message.split(": ")[0], "limits.yaml:12:5");
  assert.is(e.line, 12);
  e = errorOf(policy(["rate: 0/s"]));
  assert.is(e.code, "bad_rate");
  assert.is(e.message, `limits.yaml:13:13: rate "0/s" admits no flow at all: use a deny rule instead`);
  e = errorOf(policy(["rate: 20 per second"]));
  assert.is(e.code, "bad_rate");
  e = errorOf(policy(["rate: 5/s", "burst: 0"]));
  assert.is(e.code, "bad_limit");
  e = errorOf(policy(["flows: 3"]).replace("    dport: 443\n", "    dport: 443\n    from: not abusrs\n"));
  assert.is(e.code, "unknown_list");
  assert.ok(e.message.startsWith("limits.yaml:12:11: no block list named \"abusrs\""), e.message);
  e = errorOf(policy(["flows: 3", "flush: true"]));
  assert.is(e.code, "bad_limit");
  e = errorOf(policy(["flows: 3", "overload: abusers for ever"]));
  assert.is(e.code, "bad_duration");
  e = errorOf(policy(["flows: 3", "per: /24"]));
  assert.is(e.code, "bad_per");
  // And what compiles: the info text says the rule has a limit.
  const c = compilePolicyText(policy(["rate: 20/s", "burst: 40", "flows: 200", "overload: abusers for 10m", "flush: true"],
    { before: ["  - action: deny", "    interface: external", "    direction: in", "    from: abusers"] }), "limits.yaml");
  assert.ok(c.summary.rules[1]!.info.endsWith("limit rate 20/s burst 40 flows 200 per /32,/64 overload abusers for 10m flush"), c.summary.rules[1]!.info);
  assert.equal(c.spec.lists, ["abusers"]);
});

test.run();
