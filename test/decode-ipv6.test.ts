// IPv6 decoder (RFC 8200): the fixed header, payload length, and the
// extension-header chain with its limits, from bytes assembled per the RFCs.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import {
  ahExt, type Ext6, fragmentExt, ipv6, NH_DSTOPTS, NH_HOPOPTS, NH_NONE, optionsExt, PROTO_TCP, PROTO_UDP,
  routingExt, TCP_ACK, TCP_SYN, tcp, udp,
} from "../host/packets/build.js";
import { judge, prefixes, reasonOf } from "./helpers/judge.js";

const SRC = "2001:db8:1::10";
const DST = "2001:db8:1::1";
const seg = tcp({ sport: 40001, dport: 443, flags: TCP_SYN | TCP_ACK, seq: 1, ack: 2 });
const pkt = (ext: Ext6[] = [], o: Partial<Parameters<typeof ipv6>[0]> = {}): Uint8Array =>
  ipv6({ src: SRC, dst: DST, proto: PROTO_TCP, payload: seg, ext, ...o });

test("a TCP segment over IPv6 decodes to its 5-tuple", () => {
  const j = judge(pkt(), { hwProto: 0x86dd });
  assert.is(j.reason, "no_table");
  assert.is(j.verdict, ABI.VERDICT_DROP);
  assert.is(j.pkt.family, 6);
  assert.is(j.pkt.proto, 6);
  assert.is(j.pkt.src, SRC);
  assert.is(j.pkt.dst, DST);
  assert.is(j.pkt.sport, 40001);
  assert.is(j.pkt.dport, 443);
  assert.is(j.pkt.l4Off, 40);
  assert.is(j.pkt.l4Len, 20);
  assert.is(j.pkt.extCount, 0);
  assert.is(reasonOf(pkt(), { hwProto: 0x0800 }), "l3_version_mismatch");
});

test("each extension header the decoder walks, alone and chained", () => {
  const cases: Array<[string, Ext6[], number]> = [
    ["hop-by-hop", [optionsExt(NH_HOPOPTS)], 48],
    ["destination options, 2 units", [optionsExt(NH_DSTOPTS, 2)], 56],
    ["routing type 2", [routingExt(2, 1, 3)], 64],
    ["routing type 4 (SRH)", [routingExt(4, 0, 1)], 48],
    ["AH", [ahExt(3)], 64],
    ["atomic fragment", [fragmentExt(0, false, 9)], 48],
    ["hbh, dst, routing, AH, dst", [optionsExt(NH_HOPOPTS), optionsExt(NH_DSTOPTS), routingExt(2, 1), ahExt(), optionsExt(NH_DSTOPTS)], 40 + 8 + 8 + 24 + 24 + 8],
  ];
  for (const [name, ext, l4] of cases) {
    const j = judge(pkt(ext));
    assert.is(j.reason, "no_table", name);
    assert.is(j.pkt.proto, 6, name);
    assert.is(j.pkt.l4Off, l4, name);
    assert.is(j.pkt.dport, 443, name);
    assert.is(j.pkt.extCount, ext.length, name);
  }
  // An atomic fragment (offset 0, no more) is not a fragment (RFC 6946).
  assert.is(judge(pkt([fragmentExt(0, false, 9)])).pkt.flags, ABI.PF_HAS_PORTS);
});

test("ESP and no-next-header end the chain", () => {
  const esp = judge(ipv6({ src: SRC, dst: DST, proto: 50, payload: new Uint8Array(24), ext: [optionsExt(NH_DSTOPTS)] }));
  assert.is(esp.reason, "no_table");
  assert.is(esp.pkt.proto, 50);
  const none = judge(ipv6({ src: SRC, dst: DST, proto: NH_NONE, payload: new Uint8Array(0) }));
  assert.is(none.reason, "no_table");
  assert.is(none.pkt.proto, 59);
});

test("routing header type 0 is refused (RFC 5095), even with no segments left", () => {
  assert.is(reasonOf(pkt([routingExt(0, 2)])), "ip6_rh0");
  assert.is(reasonOf(pkt([routingExt(0, 0)])), "ip6_rh0");
  assert.is(reasonOf(pkt([optionsExt(NH_DSTOPTS), routingExt(0, 1)])), "ip6_rh0");
});

test("hop-by-hop anywhere but first is refused", () => {
  assert.is(reasonOf(pkt([optionsExt(NH_DSTOPTS), optionsExt(NH_HOPOPTS)])), "ip6_hbh_misplaced");
  assert.is(reasonOf(pkt([optionsExt(NH_HOPOPTS), optionsExt(NH_HOPOPTS)])), "ip6_hbh_misplaced");
});

test("the chain is bounded: 8 extension headers pass, 9 are refused", () => {
  const n = (k: number): Ext6[] => Array.from({ length: k }, () => optionsExt(NH_DSTOPTS));
  assert.is(reasonOf(pkt(n(8))), "no_table");
  assert.is(reasonOf(pkt(n(9))), "ip6_ext_chain_long");
  assert.is(reasonOf(pkt(n(40))), "ip6_ext_chain_long");
});

test("payload length beyond the packet, jumbograms, and truncation at every length", () => {
  assert.is(reasonOf(pkt([], { payloadLen: 21 })), "ip6_len_exceeds");
  assert.is(reasonOf(pkt([optionsExt(NH_HOPOPTS)], { payloadLen: 0 })), "ip6_jumbo");
  const p = pkt([optionsExt(NH_HOPOPTS)]);
  for (const [n, cut] of prefixes(p)) {
    const want = n < 40 ? "ip6_truncated" : "ip6_len_exceeds";
    assert.is(reasonOf(cut, { hwProto: 0x86dd }), want, `cut at ${n}`);
    if (n > 0) assert.is(reasonOf(cut, { wireLen: p.length }), "snap_truncated", `capture cut at ${n}`);
  }
});

test("an extension header that runs past a consistent payload: ip6_ext_truncated", () => {
  const full = pkt([optionsExt(NH_DSTOPTS, 2)]).slice(0, 40 + 16);
  for (let k = 0; k < 16; k++) {
    const p = ipv6({ src: SRC, dst: DST, proto: NH_DSTOPTS, payload: full.slice(40, 40 + k) });
    assert.is(reasonOf(p), "ip6_ext_truncated", `${k} bytes of a 16-byte header`);
  }
  const ah = ahExt(3);
  const p = ipv6({ src: SRC, dst: DST, proto: 51, payload: ah.bytes.slice(0, 12) });
  assert.is(reasonOf(p), "ip6_ext_truncated", "AH shorter than its length");
  const frag = ipv6({ src: SRC, dst: DST, proto: 44, payload: new Uint8Array(7) });
  assert.is(reasonOf(frag), "ip6_ext_truncated", "fragment header of 7 bytes");
});

test("fragments: first carries ports, non-first stops the chain", () => {
  const first = judge(pkt([fragmentExt(0, true, 0xdeadbeef)]));
  assert.is(first.reason, "no_table");
  assert.is(first.pkt.flags, ABI.PF_FRAGMENT | ABI.PF_FIRST_FRAG | ABI.PF_MORE_FRAGS | ABI.PF_HAS_PORTS);
  assert.is(first.pkt.fragId, 0xdeadbeef);
  assert.is(first.pkt.dport, 443);
  const later = judge(ipv6({ src: SRC, dst: DST, proto: PROTO_UDP, payload: new Uint8Array(100), ext: [fragmentExt(181, false, 5)] }));
  assert.is(later.reason, "no_table");
  assert.is(later.pkt.flags, ABI.PF_FRAGMENT);
  assert.is(later.pkt.fragOff, 181);
  assert.is(later.pkt.proto, 17);
  assert.is(later.pkt.dport, 0);
  assert.is(later.pkt.l4Off, 48);
});

test("a first fragment must hold the whole chain and transport header (RFC 7112)", () => {
  const cutTcp = ipv6({ src: SRC, dst: DST, proto: PROTO_TCP, payload: seg.slice(0, 10), ext: [fragmentExt(0, true, 1)] });
  assert.is(reasonOf(cutTcp), "frag_tiny");
  const cutChain = ipv6({ src: SRC, dst: DST, proto: NH_DSTOPTS, payload: new Uint8Array(4), ext: [fragmentExt(0, true, 1)] });
  assert.is(reasonOf(cutChain), "frag_tiny");
  const cutUdp = ipv6({ src: SRC, dst: DST, proto: PROTO_UDP, payload: udp({ sport: 5, dport: 53 }).slice(0, 6), ext: [fragmentExt(0, true, 1)] });
  assert.is(reasonOf(cutUdp), "frag_tiny");
});

test("a TCP fragment at offset 1 is refused (RFC 1858 3.2)", () => {
  const p = ipv6({ src: SRC, dst: DST, proto: PROTO_TCP, payload: new Uint8Array(24), ext: [fragmentExt(1, true, 9)] });
  assert.is(reasonOf(p), "frag_offset_one");
  const u = ipv6({ src: SRC, dst: DST, proto: PROTO_UDP, payload: new Uint8Array(24), ext: [fragmentExt(1, true, 9)] });
  assert.is(reasonOf(u), "no_table");
});

test("a fragment ending past 65535 bytes is refused", () => {
  const p = ipv6({ src: SRC, dst: DST, proto: PROTO_UDP, payload: new Uint8Array(64), ext: [fragmentExt(8190, false, 1)] });
  assert.is(reasonOf(p), "frag_too_big");
});

test.run();
