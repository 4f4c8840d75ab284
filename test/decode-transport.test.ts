// TCP and UDP decoders: data offset, flags, ports, lengths.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import {
  fragmentExt, ipv4, ipv6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN,
  TCP_URG, tcp, udp,
} from "../host/packets/build.js";
import { judge, reasonOf } from "./helpers/judge.js";

const v4 = (payload: Uint8Array, proto = PROTO_TCP, mf = false): Uint8Array =>
  ipv4({ src: "198.51.100.2", dst: "198.51.100.20", proto, payload, mf });

test("TCP data offset: options inside pass, below 5 or past the segment do not", () => {
  const mss = Uint8Array.from([2, 4, 5, 0xb4, 1, 3, 3, 7]);
  const j = judge(v4(tcp({ sport: 1025, dport: 4443, flags: TCP_SYN, options: mss })));
  assert.is(j.reason, "no_table");
  assert.is(j.pkt.dport, 4443);
  for (const doff of [0, 1, 4]) {
    assert.is(reasonOf(v4(tcp({ sport: 1025, dport: 4443, flags: TCP_SYN, doff }))), "tcp_bad_doff", `doff ${doff}`);
  }
  assert.is(reasonOf(v4(tcp({ sport: 1025, dport: 4443, flags: TCP_SYN, doff: 6 }))), "tcp_bad_doff", "doff 6 in 20 bytes");
  assert.is(reasonOf(v4(tcp({ sport: 1025, dport: 4443, flags: TCP_SYN, doff: 15, options: mss }))), "tcp_bad_doff");
  // Data after the header is payload, whatever it looks like.
  assert.is(reasonOf(v4(tcp({ sport: 1025, dport: 4443, flags: TCP_ACK | TCP_PSH, payload: new Uint8Array(100).fill(0xff) }))), "no_table");
});

test("TCP flags: exactly conntrack's valid combinations pass, for all 256 flag bytes", () => {
  const valid = new Set([
    TCP_SYN, TCP_SYN | TCP_URG, TCP_SYN | TCP_ACK, TCP_RST, TCP_RST | TCP_ACK,
    TCP_FIN | TCP_ACK, TCP_FIN | TCP_ACK | TCP_URG, TCP_ACK, TCP_ACK | TCP_URG,
  ]);
  const ignored = TCP_PSH | TCP_ECE | TCP_CWR;
  for (let flags = 0; flags < 256; flags++) {
    const want = valid.has(flags & ~ignored) ? "no_table" : "tcp_bad_flags";
    assert.is(reasonOf(v4(tcp({ sport: 5555, dport: 443, flags }))), want, `flags 0x${flags.toString(16)}`);
  }
});

test("the scans: NULL, FIN, Xmas, SYN+FIN, SYN+RST are bad flags", () => {
  const named: Array<[string, number]> = [
    ["NULL", 0], ["FIN", TCP_FIN], ["Xmas", TCP_FIN | TCP_PSH | TCP_URG],
    ["SYN+FIN", TCP_SYN | TCP_FIN], ["SYN+RST", TCP_SYN | TCP_RST], ["RST+FIN", TCP_RST | TCP_FIN],
  ];
  for (const [name, flags] of named) {
    assert.is(reasonOf(v4(tcp({ sport: 5555, dport: 443, flags }))), "tcp_bad_flags", name);
  }
  // An ECN-setup SYN is a real SYN.
  assert.is(reasonOf(v4(tcp({ sport: 5555, dport: 443, flags: TCP_SYN | TCP_ECE | TCP_CWR }))), "no_table");
});

test("port 0: refused for TCP either side and for UDP destination", () => {
  assert.is(reasonOf(v4(tcp({ sport: 0, dport: 443, flags: TCP_SYN }))), "l4_port_zero");
  assert.is(reasonOf(v4(tcp({ sport: 1234, dport: 0, flags: TCP_SYN }))), "l4_port_zero");
  assert.is(reasonOf(v4(udp({ sport: 1234, dport: 0 }), PROTO_UDP)), "l4_port_zero");
  // RFC 768: a UDP source port of 0 means "none" and is legal.
  assert.is(reasonOf(v4(udp({ sport: 0, dport: 53 }), PROTO_UDP)), "no_table");
});

test("UDP: ports and length", () => {
  const j = judge(v4(udp({ sport: 5353, dport: 443, payload: new Uint8Array(10) }), PROTO_UDP));
  assert.is(j.reason, "no_table");
  assert.is(j.pkt.proto, 17);
  assert.is(j.pkt.sport, 5353);
  assert.is(j.pkt.dport, 443);
  assert.is(j.pkt.flags, ABI.PF_HAS_PORTS);
  assert.is(reasonOf(v4(udp({ sport: 1, dport: 53, len: 7 }), PROTO_UDP)), "udp_bad_len");
  assert.is(reasonOf(v4(udp({ sport: 1, dport: 53, len: 0 }), PROTO_UDP)), "udp_bad_len");
  assert.is(reasonOf(v4(udp({ sport: 1, dport: 53, payload: new Uint8Array(4), len: 13 }), PROTO_UDP)), "udp_bad_len");
  // A UDP length shorter than the IP payload leaves trailing bytes: allowed.
  assert.is(reasonOf(v4(udp({ sport: 1, dport: 53, payload: new Uint8Array(4), len: 9 }), PROTO_UDP)), "no_table");
  // In a first fragment the length covers the whole datagram.
  assert.is(reasonOf(v4(udp({ sport: 1, dport: 53, payload: new Uint8Array(8), len: 3000 }), PROTO_UDP, true)), "no_table");
  const frag6 = ipv6({ src: "2001:db8:2::1", dst: "2001:db8:2::2", proto: PROTO_UDP, payload: udp({ sport: 1, dport: 53, payload: new Uint8Array(8), len: 3000 }), ext: [fragmentExt(0, true, 7)] });
  assert.is(reasonOf(frag6), "no_table");
});

test("TCP and UDP over IPv6 get the same checks", () => {
  const six = (payload: Uint8Array, proto: number): Uint8Array => ipv6({ src: "2001:db8:2::1", dst: "2001:db8:2::2", proto, payload });
  assert.is(reasonOf(six(tcp({ sport: 1, dport: 8080, flags: 0 }), PROTO_TCP)), "tcp_bad_flags");
  assert.is(reasonOf(six(tcp({ sport: 1, dport: 8080, flags: TCP_SYN, doff: 3 }), PROTO_TCP)), "tcp_bad_doff");
  assert.is(reasonOf(six(udp({ sport: 1, dport: 0 }), PROTO_UDP)), "l4_port_zero");
  assert.is(reasonOf(six(udp({ sport: 1, dport: 9, len: 4 }), PROTO_UDP)), "udp_bad_len");
  assert.is(reasonOf(six(tcp({ sport: 1, dport: 8080, flags: TCP_SYN }).slice(0, 19), PROTO_TCP)), "tcp_truncated");
});

test.run();
