// ICMP and ICMPv6: queries, errors, and the packet an error quotes, decoded
// to its 5-tuple, with every way the quote can be short or wrong.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import {
  echo, icmp, ipv4, ipv6, NH_DSTOPTS, optionsExt, fragmentExt, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
  TCP_SYN, tcp, udp, routingExt,
} from "../host/packets/build.js";
import { judge, reasonOf } from "./helpers/judge.js";

const PROXY = "203.0.113.1";
const CLIENT = "203.0.113.10";
const PROXY6 = "2001:db8:1::1";
const CLIENT6 = "2001:db8:1::10";

// The original datagram an error quotes: a UDP datagram from the proxy.
const origUdp = ipv4({ src: PROXY, dst: CLIENT, proto: PROTO_UDP, payload: udp({ sport: 33434, dport: 33435, payload: new Uint8Array(12) }) });
const origTcp = ipv4({ src: PROXY, dst: CLIENT, proto: PROTO_TCP, payload: tcp({ sport: 443, dport: 50000, flags: TCP_SYN }) });
const error4 = (type: number, code: number, quote: Uint8Array, rest = 0): Uint8Array =>
  ipv4({ src: CLIENT, dst: PROXY, proto: PROTO_ICMP, payload: icmp({ type, code, rest, payload: quote }) });

test("ICMP echo request and reply carry their identifier", () => {
  const j = judge(ipv4({ src: CLIENT, dst: PROXY, proto: PROTO_ICMP, payload: echo(8, 0x1234, 1, new Uint8Array(56)) }));
  assert.is(j.reason, "no_table");
  assert.is(j.pkt.icmpType, 8);
  assert.is(j.pkt.icmpCode, 0);
  assert.is(j.pkt.icmpId, 0x1234);
  assert.is(j.pkt.flags, 0);
  assert.is(judge(ipv4({ src: PROXY, dst: CLIENT, proto: PROTO_ICMP, payload: echo(0, 7, 1) })).pkt.icmpId, 7);
});

test("ICMP errors quote the original packet: its 5-tuple is found", () => {
  const unreach = judge(error4(3, 3, origUdp.slice(0, 28)));
  assert.is(unreach.reason, "no_table");
  assert.is(unreach.pkt.icmpType, 3);
  assert.is(unreach.pkt.icmpCode, 3);
  assert.is(unreach.pkt.flags, ABI.PF_ICMP_ERROR);
  assert.equal(unreach.pkt.inner, { family: 4, proto: 17, sport: 33434, dport: 33435, src: PROXY, dst: CLIENT });
  const needFrag = judge(error4(3, 4, origTcp.slice(0, 28), 1400));
  assert.is(needFrag.reason, "no_table");
  assert.equal(needFrag.pkt.inner, { family: 4, proto: 6, sport: 443, dport: 50000, src: PROXY, dst: CLIENT });
  // A quote longer than 8 bytes of transport is fine (RFC 1812 quotes more).
  assert.is(reasonOf(error4(11, 0, origTcp)), "no_table");
  // Source quench, redirect, parameter problem are errors too.
  for (const t of [4, 5, 12]) assert.equal(judge(error4(t, 0, origUdp.slice(0, 28))).pkt.inner?.dport, 33435, `type ${t}`);
});

test("an error quoting an echo finds the echo's identifier; quoting an error is refused", () => {
  const origEcho = ipv4({ src: PROXY, dst: CLIENT, proto: PROTO_ICMP, payload: echo(8, 0x77, 3) });
  const te = judge(error4(11, 0, origEcho));
  assert.is(te.reason, "no_table");
  assert.equal(te.pkt.inner, { family: 4, proto: 1, sport: 0x77, dport: 0x77, src: PROXY, dst: CLIENT });
  const errAboutErr = error4(3, 1, error4(3, 3, origUdp.slice(0, 28)).slice(0, 28));
  assert.is(reasonOf(errAboutErr), "icmp_error_in_error");
});

test("the quoted packet cut at every length: icmp_inner_truncated", () => {
  for (let k = 0; k < 28; k++) {
    assert.is(reasonOf(error4(3, 3, origUdp.slice(0, k))), "icmp_inner_truncated", `${k} quoted bytes`);
  }
  // Only the capture is short: the copy range is the problem.
  const whole = error4(3, 3, origUdp.slice(0, 28));
  for (const cap of [30, 40, 50, 55]) {
    assert.is(reasonOf(whole.slice(0, cap), { wireLen: whole.length }), "snap_truncated", `capture ${cap}`);
  }
});

test("a malformed quote: wrong version, bad IHL, a non-first fragment, total below IHL", () => {
  const q = origUdp.slice(0, 28);
  const mutate = (at: number, value: number): Uint8Array => { const c = Uint8Array.from(q); c[at] = value; return c; };
  assert.is(reasonOf(error4(3, 3, mutate(0, 0x65))), "icmp_inner_bad", "version 6 inside ICMPv4");
  assert.is(reasonOf(error4(3, 3, mutate(0, 0x44))), "icmp_inner_bad", "IHL 4");
  assert.is(reasonOf(error4(3, 3, mutate(7, 0x10))), "icmp_inner_bad", "fragment offset 16");
  const lie = mutate(2, 0); lie[3] = 10;
  assert.is(reasonOf(error4(3, 3, lie)), "icmp_inner_bad", "total length 10");
  // IHL 15 with only 20 quoted bytes: the quote is cut.
  assert.is(reasonOf(error4(3, 3, mutate(0, 0x4f))), "icmp_inner_truncated");
});

test("ICMP shorter than its 8-byte header", () => {
  for (let k = 0; k < 8; k++) {
    const p = ipv4({ src: CLIENT, dst: PROXY, proto: PROTO_ICMP, payload: echo(8, 1, 1).slice(0, k) });
    assert.is(reasonOf(p), "icmp_truncated", `${k} bytes`);
  }
  // A first fragment that does not carry the ICMP header is tiny.
  const p = ipv4({ src: CLIENT, dst: PROXY, proto: PROTO_ICMP, mf: true, payload: echo(8, 1, 1).slice(0, 4) });
  assert.is(reasonOf(p), "frag_tiny");
  // So is a first fragment of an error whose quote the fragmentation cut.
  const cutQuote = ipv4({ src: CLIENT, dst: PROXY, proto: PROTO_ICMP, mf: true, payload: icmp({ type: 3, code: 3, payload: origUdp.slice(0, 24) }) });
  assert.is(reasonOf(cutQuote), "frag_tiny");
});

// ICMPv6: the quote is an IPv6 packet, with its own extension headers.
const origUdp6 = ipv6({ src: PROXY6, dst: CLIENT6, proto: PROTO_UDP, payload: udp({ sport: 40000, dport: 5061 }) });
const error6 = (type: number, code: number, quote: Uint8Array, rest = 0): Uint8Array =>
  ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_ICMPV6, payload: icmp({ type, code, rest, payload: quote }) });

test("ICMPv6 echo, neighbour discovery and errors with their quoted 5-tuple", () => {
  const e = judge(ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_ICMPV6, payload: echo(128, 0xbeef, 1) }));
  assert.is(e.reason, "no_table");
  assert.is(e.pkt.icmpType, 128);
  assert.is(e.pkt.icmpId, 0xbeef);
  const ns = judge(ipv6({ src: CLIENT6, dst: "ff02::1:ff00:1", proto: PROTO_ICMPV6, payload: icmp({ type: 135, payload: new Uint8Array(16) }) }));
  assert.is(ns.reason, "no_table");
  assert.is(ns.pkt.icmpType, 135);
  const unreach = judge(error6(1, 4, origUdp6));
  assert.is(unreach.reason, "no_table");
  assert.is(unreach.pkt.flags, ABI.PF_ICMP_ERROR);
  assert.equal(unreach.pkt.inner, { family: 6, proto: 17, sport: 40000, dport: 5061, src: PROXY6, dst: CLIENT6 });
  const ptb = judge(error6(2, 0, origUdp6, 1280));
  assert.is(ptb.pkt.icmpType, 2);
  assert.is(ptb.pkt.inner?.dport, 5061);
});

test("ICMPv6 errors: the quote's extension headers are walked", () => {
  const quoted = ipv6({ src: PROXY6, dst: CLIENT6, proto: PROTO_TCP, payload: tcp({ sport: 443, dport: 50001, flags: TCP_SYN }), ext: [optionsExt(NH_DSTOPTS), fragmentExt(0, true, 3)] });
  const j = judge(error6(3, 0, quoted));
  assert.is(j.reason, "no_table");
  assert.equal(j.pkt.inner, { family: 6, proto: 6, sport: 443, dport: 50001, src: PROXY6, dst: CLIENT6 });
  const nonFirst = ipv6({ src: PROXY6, dst: CLIENT6, proto: PROTO_UDP, payload: new Uint8Array(16), ext: [fragmentExt(10, false, 3)] });
  assert.is(reasonOf(error6(3, 0, nonFirst)), "icmp_inner_bad", "quote of a non-first fragment");
  const rh0 = ipv6({ src: PROXY6, dst: CLIENT6, proto: PROTO_UDP, payload: udp({ sport: 1, dport: 2 }), ext: [routingExt(0, 1)] });
  assert.is(reasonOf(error6(4, 0, rh0)), "icmp_inner_bad", "quote with RH0");
});

test("ICMPv6 errors: cut quotes, wrong version, error about an error", () => {
  for (let k = 0; k < 48; k++) {
    assert.is(reasonOf(error6(1, 4, origUdp6.slice(0, k))), "icmp_inner_truncated", `${k} quoted bytes`);
  }
  const v4quote = Uint8Array.from(origUdp6); v4quote[0] = 0x45;
  assert.is(reasonOf(error6(1, 4, v4quote)), "icmp_inner_bad");
  const inner = error6(1, 4, origUdp6);
  assert.is(reasonOf(error6(1, 4, inner)), "icmp_error_in_error");
  for (let k = 0; k < 8; k++) {
    assert.is(reasonOf(ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_ICMPV6, payload: echo(128, 1, 1).slice(0, k) })), "icmp_truncated", `${k} bytes`);
  }
});

test("ICMP numbers in the wrong IP version are just protocols", () => {
  const v6icmp4 = judge(ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_ICMP, payload: echo(8, 1, 1) }));
  assert.is(v6icmp4.reason, "no_table");
  assert.is(v6icmp4.pkt.icmpType, 0);
  const v4icmp6 = judge(ipv4({ src: CLIENT, dst: PROXY, proto: PROTO_ICMPV6, payload: echo(128, 1, 1) }));
  assert.is(v4icmp6.reason, "no_table");
  assert.is(v4icmp6.pkt.icmpType, 0);
});

test.run();
