// The TypeScript reference (bench/reference/) against the release core, on
// the same batches: every packet must get the same verdict, reason and rule.
// The fuzz, the conversations, fragments and the seeded traffic run through
// the debug core too, whose invariants (`if (DEBUG) assert` in assembly/:
// bucket slots, key order, table bounds, verdict records) are live there.
//  - 100,000 fuzz packets (test/fuzz/gen.ts) with the default policy loaded;
//  - the reference capture replayed with the roles `portcullis replay`
//    assigns and its timestamps as batch time, in host and gateway mode,
//    with the default timeouts and with short ones;
//  - TCP conversations, UDP/ICMP pseudo-flows, related errors, fragments and
//    neighbour discovery written out as in the conntrack tests;
//  - seeded stateful traffic (test/helpers/convgen.ts) under two tables.
// The reference's state table is a Map that never fills; each test checks
// that the core's table did not fill either (nothing evicted or refused).
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { Core, type PacketMeta } from "../host/core/core.js";
import { type Build, type CoreConfig } from "../host/core/load.js";
import { type Mode, compilePolicyFile } from "../host/policy/compile.js";
import { isPrefix, parsePrefix, type Prefix } from "../host/policy/addr.js";
import { readCaptureFile } from "../host/pcap/read.js";
import { BATCH_WINDOW_NS, MAX_REPLAY_BATCH, wireLength } from "../host/replay/engine.js";
import { RolePlacer } from "../host/replay/roles.js";
import { fragmentExt, icmp, ipv4, ipv6, PROTO_ICMPV6, PROTO_UDP, udp } from "../host/packets/build.js";
import { buildTable } from "../host/rules/build.js";
import { Reference } from "../bench/reference/classify.js";
import { Fuzzer, rng } from "./fuzz/gen.js";
import { A, CLIENT4, CLIENT6, F_, icmpError, IN_EXT, OUT_EXT, P, ping, PROXY4, PROXY6, PROXY_SPEC, R, S, Tcp, udpPkt } from "./helpers/conn.js";
import { ConvGen } from "./helpers/convgen.js";
import { Comparer, timeoutArray, TwinHarness } from "./helpers/twin.js";

const root = join(process.cwd());
const DEFAULT_POLICY = join(root, "host", "policy", "default.yaml");
const REFERENCE_PCAP = join(root, "test", "fixtures", "reference.pcap");
// Large tables, so that no bucket of the core's fills during the tests.
const ROOMY: CoreConfig = { maxFlows: 1 << 18, maxFrags: 1 << 16 };

function defaultTable(mode: Mode = "host"): Uint8Array {
  return buildTable(compilePolicyFile(DEFAULT_POLICY, { mode }).spec).bytes;
}

const BUILDS = ["release", "debug"] as const;
// Test names stay as they were for the release core.
const through = (build: Build): string => build === "debug" ? " (debug core, assertions live)" : "";

function twin(table: Uint8Array, config: CoreConfig = {}, build: Build = "release"): Comparer {
  const core = new Core(build, undefined, { ...ROOMY, ...config });
  core.loadTable(table);
  const ref = new Reference({ timeouts: timeoutArray(config.timeouts) });
  ref.loadTable(table);
  return new Comparer(core, ref);
}

function agree(c: Comparer, what: string): void {
  const f = c.core.counters().flows;
  assert.is(f.evicted, 0n, `${what}: the core evicted flows (the comparison assumes room)`);
  assert.is(f.refused, 0n, `${what}: the core refused flows`);
  if (c.mismatches.length) assert.unreachable(`${what}: ${c.mismatches.length} disagreements, the first:\n${c.report()}`);
}

for (const build of BUILDS) test(`100,000 fuzz packets with the default policy${through(build)}: same verdict, reason and rule`, () => {
  // Fragment entries live one second (one batch) here: the fuzz mutates the
  // same few datagrams, and the core's fragment hash sends IPv6 datagrams
  // that differ only in the top byte of an address half to one 8-slot
  // bucket, which then evicts (the reference's Map never does).
  const c = twin(defaultTable(), { timeouts: { fragment: 1 } }, build);
  const core = c.core;
  const SEED = 0x5eed2611;
  const f = new Fuzzer(SEED);
  const r = rng(SEED ^ 0x77);
  let sent = 0, batches = 0;
  while (sent < 100_000) {
    const n = Math.min(100_000 - sent, r() < 0.1 ? 1 : 1 + Math.floor(r() * ABI.MAX_BATCH));
    let used = 0, k = 0;
    for (; k < n; k++) {
      const p = f.next();
      if (used + p.bytes.length > ABI.DATA_CAP - 16) break;
      const off = p.dataOff ?? used;
      if (p.dataOff === undefined) { core.u8.set(p.bytes, core.dataPtr + used); used += p.bytes.length; }
      core.writeDescriptor(k, off, p.bytes.length, { wireLen: p.wireLen, hwProto: p.hwProto, inRole: p.inRole, outRole: p.outRole, hook: p.hook });
    }
    // A second per batch: flows and fragments expire as the fuzz goes on.
    const now = BigInt(batches) * 1_000_000_000n;
    assert.is(core.classify(k, now), k);
    c.check(k, now);
    sent += k;
    batches++;
  }
  assert.is(c.compared, 100_000);
  agree(c, "fuzz");
  // The fuzz reached the rules and the state table, not only the decoders.
  for (const reason of ["rule_allow", "default_deny", "state_match", "no_flow"]) {
    assert.ok((c.reasons.get(reason) ?? 0) > 0, `fuzz reached ${reason}: ${[...c.reasons.keys()].join(" ")}`);
  }
});

function pfx(s: string): Prefix {
  const p = parsePrefix(s);
  if (!isPrefix(p)) throw new Error(p.what);
  return p;
}

// As host/replay/engine.ts batches a capture: consecutive records, at most
// MAX_REPLAY_BATCH, a new batch when time moves more than BATCH_WINDOW_NS.
function replayTwin(mode: Mode, timeouts: CoreConfig["timeouts"]): Comparer {
  const c = twin(defaultTable(mode), { timeouts });
  const placer = new RolePlacer({
    mode, ipsFrom: "the default policy's listener and proxy_internal groups",
    sides: {
      external: { ips: [pfx("203.0.113.1"), pfx("2001:db8:1::1")], macs: [], nets: [] },
      internal: { ips: [pfx("198.51.100.1"), pfx("2001:db8:2::1")], macs: [], nets: [] },
    },
  });
  const batch = new Batch(c.core);
  let batchTs = 0n;
  const flush = (): void => {
    if (batch.count === 0) return;
    assert.is(batch.run(batchTs), batch.count);
    c.check(batch.count, batchTs);
    batch.clear();
  };
  for (const rec of readCaptureFile(REFERENCE_PCAP)) {
    const p = placer.place(rec);
    const meta: PacketMeta = { hook: p.hook, inRole: p.inRole, outRole: p.outRole, hwProto: rec.ethertype, tsNs: rec.ts, wireLen: wireLength(rec) };
    const gap = rec.ts > batchTs ? rec.ts - batchTs : batchTs - rec.ts;
    if (batch.count > 0 && (batch.count >= MAX_REPLAY_BATCH || gap > BATCH_WINDOW_NS)) flush();
    if (batch.count === 0) batchTs = rec.ts;
    assert.ok(batch.add(rec.ip, meta));
  }
  flush();
  return c;
}

for (const mode of ["host", "gateway"] as const) {
  test(`reference.pcap replayed in ${mode} mode: same answers`, () => {
    const c = replayTwin(mode, {});
    assert.is(c.compared, 77);
    agree(c, `reference.pcap (${mode})`);
    if (mode === "host") {
      for (const reason of ["rule_allow", "state_match", "default_deny", "no_flow", "icmp_unrelated", "frag_denied", "icmp6_ndp"]) {
        assert.ok((c.reasons.get(reason) ?? 0) > 0, `the capture reaches ${reason}: ${[...c.reasons.keys()].join(" ")}`);
      }
    }
  });

  test(`reference.pcap replayed in ${mode} mode with 1-second timeouts: same answers`, () => {
    const timeouts = Object.fromEntries(["fragment", "syn_sent", "syn_recv", "established", "fin_wait", "time_wait", "close",
      "udp_unreplied", "udp_replied", "icmp_query", "icmp_replied"].map((s) => [s, 1]));
    agree(replayTwin(mode, timeouts), `reference.pcap (${mode}, short timeouts)`);
  });
}

function harnessAgrees(h: TwinHarness, what: string): void {
  if (h.cmp.mismatches.length) assert.unreachable(`${what}:\n${h.cmp.report()}`);
  assert.ok(h.cmp.compared > 0);
}

for (const build of BUILDS) test(`TCP conversations as in the conntrack tests${through(build)}: same answers`, () => {
  const h = new TwinHarness(undefined, {}, build);
  for (const fam of [4, 6] as const) {
    const t = new Tcp(h, fam, 40000);
    t.handshake(0);
    t.c(A | P, 1, 300); t.s(A | P, 1, 1400); t.c(A, 1);
    t.c(F_ | A, 2); t.s(A, 2); t.s(F_ | A, 2); t.c(A, 2); //     client closes
    t.cseq += 100_000; t.handshake(3); //                        reopened after TIME_WAIT
    t.s(F_ | A, 4); t.c(A, 4); t.c(A | P, 4, 10); t.c(F_ | A, 5); t.s(A, 5);
    const u = new Tcp(h, fam, 40001);
    u.handshake(10); u.c(F_ | A, 11); u.s(F_ | A, 11); u.c(A, 11); u.s(A, 11); // simultaneous close
    const v = new Tcp(h, fam, 40002);
    v.handshake(20);
    v.cRaw(R, 21, v.cseq + 1_000_000); v.sRaw(R | A, 21, v.sseq - 500_000); // out of window
    v.cRaw(F_ | A, 21, v.cseq + 3_000_000, v.sseq);
    v.c(A | P, 21, 10); v.cRaw(R, 22, v.cseq + 100); v.c(A, 22); //         RST in window, then nothing
    const w = new Tcp(h, fam, 40003);
    w.c(S, 30); w.sRaw(R | A, 30, 0, w.cseq + 7); w.sRaw(R, 30, 0, 0); w.sRaw(R | A, 30, 0, w.cseq); // RST to a SYN
    const x = new Tcp(h, fam, 40004);
    x.c(S, 40); x.cseq--; x.c(S, 41); x.sRaw(S | A, 41, x.sseq, x.cseq + 99); x.s(S | A, 41); x.c(A, 41); // retransmitted SYN
    const y = new Tcp(h, fam, 40005);
    y.c(S, 50); y.s(S, 50); y.c(S | A, 50); y.c(A, 50); //                    simultaneous open
    const z = new Tcp(h, fam, 40006);
    z.c(A, 60); z.c(F_ | A, 60); z.c(R, 60); z.s(S | A, 60); //               no flow
    z.c(S, 61); z.c(A, 61); z.c(F_ | A, 61); z.c(S | A, 61); z.handshake(61); // out of order
    const d = new Tcp(h, fam, 40007, 22);
    d.c(S, 70); d.s(R | A, 70); d.s(S | A, 70); //                          denied
    const ws = (shift: number): Uint8Array => Uint8Array.from([1, 3, 3, shift]);
    const s = new Tcp(h, fam, 40008);
    h.send(s.pkt(true, S, 0, undefined, undefined, ws(7)), IN_EXT, 80); s.cseq++;
    h.send(s.pkt(false, S | A, 0, undefined, undefined, ws(2)), OUT_EXT, 80); s.sseq++;
    s.c(A, 80);
    for (const off of [0, 60_000, 200_000, 3_000_000, 9_000_000]) { s.cRaw(F_ | A, 81, s.cseq + off, s.sseq); s.sRaw(R, 81, s.sseq + off); }
    const e = new Tcp(h, fam, 40009);
    e.c(S, 100); e.s(S | A, 219.9); e.c(A, 219.9); e.c(A, 219.9 + 431_999); e.c(A, 219.9 + 431_999 + 432_000.5); // timeouts
  }
  harnessAgrees(h, "TCP");
});

for (const build of BUILDS) test(`UDP and ICMP pseudo-flows, related errors and neighbour discovery${through(build)}: same answers`, () => {
  const h = new TwinHarness(undefined, {}, build);
  for (const fam of [4, 6] as const) {
    const client = fam === 4 ? CLIENT4 : CLIENT6, proxy = fam === 4 ? PROXY4 : PROXY6;
    const echoReq = fam === 4 ? 8 : 128, echoRep = fam === 4 ? 0 : 129;
    const base = fam === 4 ? 0 : 10_000;
    h.send(udpPkt(fam, client, 5353, proxy, 53), IN_EXT, base);
    h.send(udpPkt(fam, proxy, 53, client, 5353), OUT_EXT, base + 1);
    h.send(udpPkt(fam, proxy, 53, client, 5353), OUT_EXT, base + 100);
    h.send(udpPkt(fam, proxy, 53, client, 5353), OUT_EXT, base + 221);
    h.send(udpPkt(fam, client, 5354, proxy, 53), IN_EXT, base + 300);
    h.send(udpPkt(fam, proxy, 53, client, 5354), OUT_EXT, base + 331);
    h.send(ping(fam, client, proxy, echoReq, 77), IN_EXT, base + 400);
    h.send(ping(fam, proxy, client, echoRep, 77), OUT_EXT, base + 400);
    h.send(ping(fam, client, proxy, echoReq, 77, 2), IN_EXT, base + 401);
    h.send(ping(fam, proxy, client, echoRep, 78), OUT_EXT, base + 401);
    h.send(ping(fam, proxy, client, echoReq, 77), OUT_EXT, base + 401);
    h.send(ping(fam, proxy, client, echoRep, 77), OUT_EXT, base + 440);
    const q = udpPkt(fam, client, 6000, proxy, 53);
    h.send(q, IN_EXT, base + 500);
    const unreach = fam === 4 ? [3, 3] : [1, 4];
    const router = fam === 4 ? "198.51.100.254" : "2001:db8:9::1";
    h.send(icmpError(fam, proxy, client, unreach[0]!, unreach[1]!, q), OUT_EXT, base + 500);
    h.send(icmpError(fam, router, proxy, fam === 4 ? 11 : 3, 0, udpPkt(fam, proxy, 53, client, 6000)), IN_EXT, base + 500);
    h.send(icmpError(fam, proxy, client, unreach[0]!, unreach[1]!, udpPkt(fam, client, 7777, proxy, 53)), OUT_EXT, base + 500);
    h.send(icmpError(fam, client, router, unreach[0]!, unreach[1]!, q), IN_EXT, base + 500);
    const t = new Tcp(h, fam, 41000);
    t.handshake(base + 600);
    const seg = t.pkt(false, A, 1400);
    h.send(icmpError(fam, router, proxy, fam === 4 ? 3 : 2, fam === 4 ? 4 : 0, seg, 1280), IN_EXT, base + 601);
    h.send(icmpError(fam, router, proxy, fam === 4 ? 3 : 2, fam === 4 ? 4 : 0, seg, 1280), IN_EXT, base + 601 + 432_001);
  }
  const ns = (hops: number): Uint8Array => ipv6({ src: CLIENT6, dst: "ff02::1:ff00:1", proto: PROTO_ICMPV6, hopLimit: hops, payload: icmp({ type: 135, payload: new Uint8Array(16) }) });
  h.send(ns(255), IN_EXT, 0);
  h.send(ns(64), IN_EXT, 0);
  harnessAgrees(h, "UDP/ICMP");
});

for (const build of BUILDS) test(`fragment trains in order, out of order, overlapping, orphaned, expired${through(build)}: same answers`, () => {
  const h = new TwinHarness(undefined, {}, build);
  const train = (fam: 4 | 6, dport: number, id: number, cuts: Array<[number, number]> = [[0, 1480], [1480, 2960], [2960, 3000]]): Uint8Array[] => {
    const dgram = udp({ sport: 5000, dport, payload: new Uint8Array(2992) });
    return cuts.map(([s, e]) => {
      const more = e < dgram.length;
      const part = dgram.slice(s, e);
      return fam === 4
        ? ipv4({ src: CLIENT4, dst: PROXY4, proto: PROTO_UDP, id, mf: more, fragOff: s / 8, payload: part })
        : ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_UDP, payload: part, ext: [fragmentExt(s / 8, more, id)] });
    });
  };
  for (const fam of [4, 6] as const) {
    const seq = (pkts: Uint8Array[], order: number[], t = 0): void => { for (const i of order) h.send(pkts[i]!, IN_EXT, t); };
    seq(train(fam, 53, 0x1111), [0, 1, 2]);
    seq(train(fam, 53, 0x2222), [2, 0, 2, 1]);
    seq(train(fam, 53, 0x3333), [0, 1, 1, 2]); //                       duplicate: overlap
    seq(train(fam, 99, 0x4444), [0, 1, 2]); //                          refused first
    seq(train(fam, 53, 0x5555), [0], 0); seq(train(fam, 53, 0x5555), [1, 2], 31); // expired
    seq(train(fam, 53, 0x6666, [[0, 8], [8, 8], [8, 16], [16, 24], [24, 32], [32, 40], [40, 48], [48, 56], [56, 64], [64, 72], [72, 3000]]), [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9]);
    seq(train(fam, 53, 0x7777, [[0, 1480], [1480, 1480], [1480, 2960], [2960, 3000]]), [0, 2, 1, 3]); // empty piece
    seq(train(fam, 53, 0x8888, [[0, 1480], [1472, 2960], [2960, 3000]]), [0, 1, 2]); //                   overlapping cut
  }
  harnessAgrees(h, "fragments");
});

for (const [name, table, seed] of [
  ["the default policy", (): Uint8Array => defaultTable("host"), 0xc0ffee],
  ["the proxy spec of the conntrack tests", (): Uint8Array => buildTable(PROXY_SPEC).bytes, 0xbeef],
] as const) for (const build of BUILDS) {
  test(`seeded stateful traffic under ${name}${through(build)}: same answers`, () => {
    const c = twin(table(), {}, build);
    const gen = new ConvGen(seed);
    const batch = new Batch(c.core);
    while (c.compared < 40_000) {
      const b = gen.next();
      batch.clear();
      for (const p of b.packets) assert.ok(batch.add(p.bytes, p.meta));
      const now = BigInt(Math.round(b.t * 1e9));
      assert.is(batch.run(now), batch.count);
      c.check(batch.count, now);
    }
    agree(c, name);
    for (const reason of ["rule_allow", "state_match", "state_related", "icmp_unrelated", "frag_follows", "tcp_out_of_window",
      "tcp_invalid_state", "no_flow", "frag_overlap", "frag_no_first", "icmp6_ndp"]) {
      assert.ok((c.reasons.get(reason) ?? 0) > 0, `reached ${reason}: ${[...c.reasons].map(([k, v]) => `${k} ${v}`).join(", ")}`);
    }
  });
}

test.run();
