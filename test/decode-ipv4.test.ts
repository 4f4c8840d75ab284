// IPv4 decoder (RFC 791): every valid shape and every malformed one, from
// bytes assembled per the RFC layout, each asserting the exact reason.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { ipv4, PROTO_TCP, PROTO_UDP, TCP_SYN, tcp, udp } from "../host/packets/build.js";
import { judge, prefixes, reasonOf } from "./helpers/judge.js";

const SRC = "203.0.113.10";
const DST = "203.0.113.1";
const syn = (o: Partial<Parameters<typeof ipv4>[0]> = {}): Uint8Array =>
  ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, payload: tcp({ sport: 40000, dport: 443, flags: TCP_SYN, seq: 7 }), ...o });

test("a TCP SYN decodes to its 5-tuple; no table, so the default drop with no_table", () => {
  const j = judge(syn());
  assert.is(j.reason, "no_table");
  assert.is(j.verdict, ABI.VERDICT_DROP);
  assert.is(j.pkt.family, 4);
  assert.is(j.pkt.proto, 6);
  assert.is(j.pkt.src, SRC);
  assert.is(j.pkt.dst, DST);
  assert.is(j.pkt.sport, 40000);
  assert.is(j.pkt.dport, 443);
  assert.is(j.pkt.tcpFlags, TCP_SYN);
  assert.is(j.pkt.tcpSeq, 7);
  assert.is(j.pkt.l4Off, 20);
  assert.is(j.pkt.l4Len, 20);
  assert.is(j.pkt.ipLen, 40);
  assert.is(j.pkt.flags, ABI.PF_HAS_PORTS);
});

test("the ethertype may be given or left 0; a wrong one is refused", () => {
  assert.is(reasonOf(syn(), { hwProto: 0x0800 }), "no_table");
  assert.is(reasonOf(syn(), { hwProto: 0 }), "no_table");
  assert.is(reasonOf(syn(), { hwProto: 0x86dd }), "l3_version_mismatch");
  assert.is(reasonOf(syn(), { hwProto: 0x0806 }), "l3_unsupported");
  assert.is(reasonOf(syn({ version: 5 })), "l3_unsupported");
  assert.is(reasonOf(syn({ version: 5 }), { hwProto: 0x0800 }), "l3_version_mismatch");
  assert.is(reasonOf(new Uint8Array(0)), "l3_unsupported");
  assert.is(reasonOf(new Uint8Array(0), { hwProto: 0x0800 }), "ip4_truncated");
});

test("options: NOP, record route and timestamp pass and are flagged", () => {
  const rr = [7, 7, 4, 0, 0, 0, 0];
  const j = judge(syn({ options: Uint8Array.from([1, ...rr, 68, 4, 5, 0]) }));
  assert.is(j.reason, "no_table");
  assert.is(j.pkt.l4Off, 32);
  assert.is(j.pkt.flags, ABI.PF_HAS_PORTS | ABI.PF_IP_OPTIONS);
  assert.is(j.pkt.dport, 443);
  // End-of-list stops the walk even with garbage after it.
  assert.is(reasonOf(syn({ options: Uint8Array.from([0, 0xff, 0xff, 0xff]) })), "no_table");
});

test("malformed options are refused; source routes are refused", () => {
  assert.is(reasonOf(syn({ options: Uint8Array.from([7, 1, 0, 0]) })), "ip4_bad_options", "length 1");
  assert.is(reasonOf(syn({ options: Uint8Array.from([7, 0, 0, 0]) })), "ip4_bad_options", "length 0");
  assert.is(reasonOf(syn({ options: Uint8Array.from([7, 5, 0, 0]) })), "ip4_bad_options", "runs past the header");
  assert.is(reasonOf(syn({ options: Uint8Array.from([1, 1, 1, 7]) })), "ip4_bad_options", "no length byte");
  assert.is(reasonOf(syn({ options: Uint8Array.from([0x83, 7, 4, 0, 0, 0, 0, 1]) })), "ip4_source_route", "LSRR");
  assert.is(reasonOf(syn({ options: Uint8Array.from([0x89, 7, 4, 0, 0, 0, 0, 1]) })), "ip4_source_route", "SSRR");
});

test("IHL below 5 or past the packet; total length short or beyond the packet", () => {
  assert.is(reasonOf(syn({ ihl: 4 })), "ip4_bad_ihl");
  assert.is(reasonOf(syn({ ihl: 0 })), "ip4_bad_ihl");
  assert.is(reasonOf(syn({ ihl: 15 })), "ip4_bad_ihl", "60-byte header in a 40-byte packet");
  assert.is(reasonOf(syn({ totalLen: 19 })), "ip4_bad_total_len");
  assert.is(reasonOf(syn({ totalLen: 0 })), "ip4_bad_total_len");
  assert.is(reasonOf(syn({ totalLen: 41 })), "ip4_len_exceeds");
  assert.is(reasonOf(syn({ totalLen: 65535 })), "ip4_len_exceeds");
});

test("bytes after the total length (link padding) are ignored", () => {
  const p = syn();
  const padded = new Uint8Array(p.length + 6);
  padded.set(p);
  const j = judge(padded);
  assert.is(j.reason, "no_table");
  assert.is(j.pkt.ipLen, 40);
});

test("truncated at every length: the header's own fields say how", () => {
  const p = syn();
  for (const [n, cut] of prefixes(p)) {
    // Cut on the wire: below 20 bytes there is no header; above, the total
    // length field claims more than the packet has.
    const want = n === 0 ? "l3_unsupported" : n < 20 ? "ip4_truncated" : "ip4_len_exceeds";
    assert.is(reasonOf(cut), want, `cut at ${n}`);
  }
});

test("truncated at every length by the capture only: snap_truncated", () => {
  const p = syn();
  for (const [n, cut] of prefixes(p)) {
    if (n === 0) continue;
    assert.is(reasonOf(cut, { wireLen: p.length }), "snap_truncated", `capture cut at ${n}`);
  }
});

test("a consistent header with a short transport: the transport's reason", () => {
  const seg = tcp({ sport: 1, dport: 2, flags: TCP_SYN });
  for (let k = 0; k < 20; k++) {
    const p = ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, payload: seg.slice(0, k) });
    assert.is(reasonOf(p), "tcp_truncated", `${k} bytes of TCP`);
  }
  for (let k = 0; k < 8; k++) {
    const p = ipv4({ src: SRC, dst: DST, proto: PROTO_UDP, payload: udp({ sport: 1, dport: 53 }).slice(0, k) });
    assert.is(reasonOf(p), "udp_truncated", `${k} bytes of UDP`);
  }
});

test("fragments: first, middle, last; the non-first carry no ports", () => {
  const first = judge(syn({ mf: true, id: 0x4242 }));
  assert.is(first.reason, "no_table");
  assert.is(first.pkt.flags, ABI.PF_FRAGMENT | ABI.PF_FIRST_FRAG | ABI.PF_MORE_FRAGS | ABI.PF_HAS_PORTS);
  assert.is(first.pkt.fragId, 0x4242);
  assert.is(first.pkt.dport, 443);
  const middle = judge(ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, mf: true, fragOff: 185, payload: new Uint8Array(1480) }));
  assert.is(middle.reason, "no_table");
  assert.is(middle.pkt.flags, ABI.PF_FRAGMENT | ABI.PF_MORE_FRAGS);
  assert.is(middle.pkt.fragOff, 185);
  assert.is(middle.pkt.dport, 0);
  const last = judge(ipv4({ src: SRC, dst: DST, proto: PROTO_UDP, fragOff: 370, payload: new Uint8Array(3) }));
  assert.is(last.reason, "no_table");
  assert.is(last.pkt.flags, ABI.PF_FRAGMENT);
  // DF alone is not a fragment.
  assert.is(judge(syn({ df: true })).pkt.flags, ABI.PF_HAS_PORTS);
});

test("a first fragment without the whole TCP header is tiny (RFC 1858)", () => {
  const seg = tcp({ sport: 40000, dport: 22, flags: TCP_SYN });
  for (const k of [0, 8, 12, 16, 19]) {
    const p = ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, mf: true, payload: seg.slice(0, k) });
    assert.is(reasonOf(p), "frag_tiny", `${k} bytes of TCP in the first fragment`);
  }
  // Options announced by the data offset must be in the first fragment too.
  const withOpts = tcp({ sport: 40000, dport: 22, flags: TCP_SYN, options: new Uint8Array([2, 4, 5, 0xb4]) });
  const p = ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, mf: true, payload: withOpts.slice(0, 20) });
  assert.is(reasonOf(p), "frag_tiny");
});

test("a TCP fragment at offset 1 is refused (RFC 1858 3.2); other protocols may", () => {
  const tcp1 = ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, fragOff: 1, payload: new Uint8Array(24) });
  assert.is(reasonOf(tcp1), "frag_offset_one");
  const udp1 = ipv4({ src: SRC, dst: DST, proto: PROTO_UDP, fragOff: 1, payload: new Uint8Array(24) });
  assert.is(reasonOf(udp1), "no_table");
  const tcp2 = ipv4({ src: SRC, dst: DST, proto: PROTO_TCP, fragOff: 2, payload: new Uint8Array(24) });
  assert.is(reasonOf(tcp2), "no_table");
});

test("a fragment ending past 65535 bytes is refused (ping of death)", () => {
  const p = ipv4({ src: SRC, dst: DST, proto: PROTO_UDP, fragOff: 8189, payload: new Uint8Array(40) });
  assert.is(reasonOf(p), "frag_too_big");
  const ok = ipv4({ src: SRC, dst: DST, proto: PROTO_UDP, fragOff: 8189, payload: new Uint8Array(23) });
  assert.is(reasonOf(ok), "no_table", "ends exactly at 65535");
});

test("other transports decode to their protocol number only", () => {
  const gre = judge(ipv4({ src: SRC, dst: DST, proto: 47, payload: new Uint8Array(4) }));
  assert.is(gre.reason, "no_table");
  assert.is(gre.pkt.proto, 47);
  assert.is(gre.pkt.flags, 0);
  // ICMPv6's number inside IPv4 is just another protocol.
  assert.is(reasonOf(ipv4({ src: SRC, dst: DST, proto: 58, payload: new Uint8Array(0) })), "no_table");
});

test("the debug build gives the same answers (its assertions hold)", () => {
  const cases = [syn(), syn({ ihl: 4 }), syn({ mf: true }), syn({ options: Uint8Array.from([0x83, 3, 0, 0]) })];
  for (const p of cases) assert.is(reasonOf(p, {}, "debug"), reasonOf(p));
});

test.run();
