// The release core under three engines: V8 (class Core), wasmtime (class
// Core with engine "wasmtime": host/native/wasmtime.c, Cranelift) and wasm2c
// + gcc (test/wasm2c/harness.ts, test/wasm2c/driver.c). The same batches,
// crafted, truncated, mutated and random packets and broken descriptors,
// must give byte-identical return values, batch headers, PKT scratch,
// verdict records and counters. That the module translates at all shows it has no SIMD
// (wasm2c 1.0.32 aborts on SIMD; the helper checks with wasm-validate first).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core, type PacketMeta } from "../host/core/core.js";
import { REASONS, reasonName } from "../host/core/reasons.js";
import {
  buildWasm2cCore, DRIVER_EXIT, encodeVectors, packBatch, type PacketIn, type RunResult,
  runInCore, runWasm2cCore, runWasm2cVectors, type VectorBatch, Wasm2cError,
} from "./wasm2c/harness.js";
import {
  ahExt, echo, type Ext6, fragmentExt, icmp, ipv4, ipv6, NH_DSTOPTS, NH_HOPOPTS, NH_NONE, optionsExt,
  PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, routingExt, tcp, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN,
  TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, udp,
} from "../host/packets/build.js";
import { isIcmpError } from "../host/packets/icmp-names.js";
import { compilePolicyFile, compilePolicyText } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { rng } from "./fuzz/gen.js";
import { icmpMessage, udpPkt } from "./helpers/conn.js";
import { ConvGen } from "./helpers/convgen.js";

const rand = rng(0x9e3779b9);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(xs: ReadonlyArray<T>): T => xs[int(xs.length)]!;
const bytesOf = (n: number, seed = 7): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const randomBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(256));
const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

// ---------------------------------------------------------------------------
// Crafted packets: every decoder exit we can name, both families.

interface Case { name: string; bytes: Uint8Array; meta?: PacketMeta }

const S4 = "192.0.2.10", D4 = "198.51.100.20", S6 = "2001:db8::10", D6 = "2001:db8:1::20";
const ETH_IP = 0x0800, ETH_IP6 = 0x86dd;

function craft(): Case[] {
  const cases: Case[] = [];
  const add = (name: string, bytes: Uint8Array, meta?: PacketMeta): void => {
    cases.push(meta ? { name, bytes, meta } : { name, bytes });
  };
  const v4 = (proto: number, payload: Uint8Array, o: Partial<Parameters<typeof ipv4>[0]> = {}): Uint8Array =>
    ipv4({ src: S4, dst: D4, proto, payload, ...o });
  const v6 = (proto: number, payload: Uint8Array, o: Partial<Parameters<typeof ipv6>[0]> = {}): Uint8Array =>
    ipv6({ src: S6, dst: D6, proto, payload, ...o });
  const seg = (flags: number, o: Partial<Parameters<typeof tcp>[0]> = {}): Uint8Array =>
    tcp({ sport: 40000, dport: 443, flags, ...o });

  // TCP flag combinations, valid and not, both families.
  const flagSets = [
    TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_RST, TCP_RST | TCP_ACK, TCP_FIN | TCP_ACK, TCP_ACK | TCP_URG,
    TCP_SYN | TCP_URG, TCP_FIN | TCP_ACK | TCP_URG, TCP_PSH | TCP_ACK, TCP_SYN | TCP_ECE | TCP_CWR, 0, TCP_FIN,
    TCP_SYN | TCP_FIN, TCP_SYN | TCP_RST, TCP_FIN | TCP_PSH | TCP_URG, 0xff, TCP_RST | TCP_FIN, TCP_PSH, TCP_URG,
  ];
  for (const f of flagSets) {
    add(`v4 tcp flags ${f}`, v4(PROTO_TCP, seg(f, { payload: bytesOf(12) })));
    add(`v6 tcp flags ${f}`, v6(PROTO_TCP, seg(f)));
  }
  const mss = Uint8Array.of(2, 4, 5, 0xb4, 1, 1, 4, 2);
  for (const [name, t] of [
    ["options", seg(TCP_SYN, { options: mss })],
    ["sport 0", tcp({ sport: 0, dport: 80, flags: TCP_SYN })],
    ["dport 0", tcp({ sport: 1234, dport: 0, flags: TCP_SYN })],
    ["doff 4", seg(TCP_ACK, { doff: 4 })],
    ["doff 0", seg(TCP_ACK, { doff: 0 })],
    ["doff 15 short", seg(TCP_ACK, { doff: 15, payload: bytesOf(8) })],
    ["doff 15 full", seg(TCP_ACK, { doff: 15, payload: bytesOf(40) })],
    ["19 bytes", seg(TCP_ACK).subarray(0, 19)],
    ["big payload", seg(TCP_PSH | TCP_ACK, { payload: bytesOf(1400) })],
  ] as const) {
    add(`v4 tcp ${name}`, v4(PROTO_TCP, t));
    add(`v6 tcp ${name}`, v6(PROTO_TCP, t));
  }

  // UDP.
  for (const [name, u] of [
    ["ok", udp({ sport: 5353, dport: 53, payload: bytesOf(20) })],
    ["empty", udp({ sport: 5353, dport: 53 })],
    ["sport 0", udp({ sport: 0, dport: 53 })],
    ["dport 0", udp({ sport: 53, dport: 0 })],
    ["len 7", udp({ sport: 1, dport: 2, len: 7 })],
    ["len 0", udp({ sport: 1, dport: 2, len: 0 })],
    ["len past", udp({ sport: 1, dport: 2, payload: bytesOf(4), len: 40 })],
    ["len short", udp({ sport: 1, dport: 2, payload: bytesOf(40), len: 12 })],
    ["7 bytes", udp({ sport: 1, dport: 2 }).subarray(0, 7)],
  ] as const) {
    add(`v4 udp ${name}`, v4(PROTO_UDP, u));
    add(`v6 udp ${name}`, v6(PROTO_UDP, u));
  }

  // ICMP queries and others.
  for (const t of [0, 8, 13, 14, 15, 16, 17, 18, 9, 10, 200, 255]) add(`v4 icmp type ${t}`, v4(PROTO_ICMP, echo(t, 0x4242, 7, bytesOf(16))));
  add("v4 icmp 7 bytes", v4(PROTO_ICMP, echo(8, 1, 1).subarray(0, 7)));
  for (const t of [128, 129, 133, 134, 135, 136, 137, 143, 200, 255]) add(`v6 icmp type ${t}`, v6(PROTO_ICMPV6, echo(t, 0x4242, 7, bytesOf(16))));
  add("v6 icmp 7 bytes", v6(PROTO_ICMPV6, echo(128, 1, 1).subarray(0, 7)));
  add("v4 carrying icmpv6", v4(PROTO_ICMPV6, echo(128, 1, 1)));
  add("v6 carrying icmp", v6(PROTO_ICMP, echo(8, 1, 1)));

  // ICMPv4 errors and what they quote.
  const orig4 = (proto: number, payload: Uint8Array, o: Partial<Parameters<typeof ipv4>[0]> = {}): Uint8Array =>
    ipv4({ src: D4, dst: S4, proto, payload, ...o });
  const quotes4: Array<[string, Uint8Array]> = [
    ["tcp 8", orig4(PROTO_TCP, seg(TCP_SYN)).subarray(0, 28)],
    ["tcp full", orig4(PROTO_TCP, seg(TCP_SYN))],
    ["udp", orig4(PROTO_UDP, udp({ sport: 53, dport: 5353, payload: bytesOf(30) })).subarray(0, 28)],
    ["sctp", orig4(132, bytesOf(12)).subarray(0, 28)],
    ["dccp", orig4(33, bytesOf(12)).subarray(0, 28)],
    ["udplite", orig4(136, bytesOf(12)).subarray(0, 28)],
    ["gre", orig4(47, bytesOf(12)).subarray(0, 24)],
    ["echo", orig4(PROTO_ICMP, echo(8, 0x77, 1)).subarray(0, 28)],
    ["error", orig4(PROTO_ICMP, icmp({ type: 3, code: 1, payload: bytesOf(28) })).subarray(0, 28)],
    ["time exceeded", orig4(PROTO_ICMP, icmp({ type: 11, payload: bytesOf(28) })).subarray(0, 28)],
    ["tcp 4", orig4(PROTO_TCP, seg(TCP_SYN)).subarray(0, 24)],
    ["ip 20", orig4(PROTO_TCP, seg(TCP_SYN)).subarray(0, 20)],
    ["ip 12", orig4(PROTO_TCP, seg(TCP_SYN)).subarray(0, 12)],
    ["ihl 4", orig4(PROTO_TCP, seg(TCP_SYN), { ihl: 4 }).subarray(0, 28)],
    ["version 6", orig4(PROTO_TCP, seg(TCP_SYN), { version: 6 }).subarray(0, 28)],
    ["total 10", orig4(PROTO_TCP, seg(TCP_SYN), { totalLen: 10 }).subarray(0, 28)],
    ["non-first frag", orig4(PROTO_TCP, seg(TCP_SYN), { fragOff: 20, mf: true }).subarray(0, 28)],
    ["first frag", orig4(PROTO_TCP, seg(TCP_SYN), { mf: true }).subarray(0, 28)],
    ["options", orig4(PROTO_UDP, udp({ sport: 9, dport: 9 }), { options: Uint8Array.of(1, 1, 1, 0) }).subarray(0, 32)],
    ["options cut", orig4(PROTO_UDP, udp({ sport: 9, dport: 9 }), { options: Uint8Array.of(1, 1, 1, 0) }).subarray(0, 22)],
  ];
  for (const t of [3, 4, 5, 11, 12]) {
    for (const [name, q] of quotes4) add(`v4 icmp error ${t} quoting ${name}`, v4(PROTO_ICMP, icmp({ type: t, code: 1, payload: q })));
  }

  // ICMPv6 errors and what they quote.
  const orig6 = (proto: number, payload: Uint8Array, ext?: Ext6[]): Uint8Array =>
    ipv6({ src: D6, dst: S6, proto, payload, ...(ext ? { ext } : {}) });
  const quotes6: Array<[string, Uint8Array]> = [
    ["tcp", orig6(PROTO_TCP, seg(TCP_SYN))],
    ["udp", orig6(PROTO_UDP, udp({ sport: 53, dport: 5353 }))],
    ["echo", orig6(PROTO_ICMPV6, echo(128, 9, 9))],
    ["error", orig6(PROTO_ICMPV6, icmp({ type: 1, payload: bytesOf(48) }))],
    ["packet too big", orig6(PROTO_ICMPV6, icmp({ type: 2, payload: bytesOf(48) }))],
    ["hbh tcp", orig6(PROTO_TCP, seg(TCP_SYN), [optionsExt(NH_HOPOPTS)])],
    ["dst+frag0 udp", orig6(PROTO_UDP, udp({ sport: 1, dport: 2 }), [optionsExt(NH_DSTOPTS), fragmentExt(0, true, 5)])],
    ["non-first frag", orig6(PROTO_UDP, udp({ sport: 1, dport: 2 }), [fragmentExt(10, true, 5)])],
    ["rh0", orig6(PROTO_TCP, seg(TCP_SYN), [routingExt(0, 1)])],
    ["rh2", orig6(PROTO_TCP, seg(TCP_SYN), [routingExt(2, 1, 3)])],
    ["misplaced hbh", orig6(PROTO_TCP, seg(TCP_SYN), [optionsExt(NH_DSTOPTS), optionsExt(NH_HOPOPTS)])],
    ["long chain", orig6(PROTO_TCP, seg(TCP_SYN), Array.from({ length: 9 }, () => optionsExt(NH_DSTOPTS)))],
    ["ah", orig6(PROTO_TCP, seg(TCP_SYN), [ahExt()])],
    ["no next", orig6(NH_NONE, new Uint8Array(0))],
    ["tcp 4", orig6(PROTO_TCP, seg(TCP_SYN)).subarray(0, 44)],
    ["ip 40", orig6(PROTO_TCP, seg(TCP_SYN)).subarray(0, 40)],
    ["ip 30", orig6(PROTO_TCP, seg(TCP_SYN)).subarray(0, 30)],
    ["ext cut", orig6(PROTO_TCP, seg(TCP_SYN), [optionsExt(NH_HOPOPTS, 2)]).subarray(0, 50)],
    ["version 4", ipv4({ src: D4, dst: S4, proto: PROTO_TCP, payload: seg(TCP_SYN) })],
  ];
  for (const t of [1, 2, 3, 4, 0, 127]) {
    for (const [name, q] of quotes6) add(`v6 icmp error ${t} quoting ${name}`, v6(PROTO_ICMPV6, icmp({ type: t, payload: q })));
  }

  // IPv4 header faults, options, fragments.
  const t4 = seg(TCP_SYN);
  add("v4 version 5", v4(PROTO_TCP, t4, { version: 5 }));
  add("v4 version 0", v4(PROTO_TCP, t4, { version: 0 }));
  add("v4 ihl 4", v4(PROTO_TCP, t4, { ihl: 4 }));
  add("v4 ihl 0", v4(PROTO_TCP, t4, { ihl: 0 }));
  add("v4 ihl 15 short", v4(PROTO_TCP, t4, { ihl: 15 }));
  add("v4 ihl 15 tiny", v4(PROTO_TCP, new Uint8Array(0), { ihl: 15 }));
  add("v4 total 19", v4(PROTO_TCP, t4, { totalLen: 19 }));
  add("v4 total 0", v4(PROTO_TCP, t4, { totalLen: 0 }));
  add("v4 total < ihl", v4(PROTO_TCP, t4, { options: Uint8Array.of(1, 1, 1, 1), totalLen: 22 }));
  add("v4 total > wire", v4(PROTO_TCP, t4, { totalLen: 100 }));
  add("v4 total 65535", v4(PROTO_TCP, t4, { totalLen: 65535 }));
  add("v4 total < packet", v4(PROTO_TCP, cat(t4, bytesOf(30)), { totalLen: 40 }));
  add("v4 total cuts tcp", v4(PROTO_TCP, t4, { totalLen: 30 }));
  add("v4 19 bytes", v4(PROTO_TCP, t4).subarray(0, 19));
  for (const [name, o] of [
    ["nop eol", Uint8Array.of(1, 1, 0, 0)],
    ["record route", Uint8Array.of(7, 7, 4, 0, 0, 0, 0, 1)],
    ["timestamp", Uint8Array.of(0x44, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0)],
    ["lsrr", Uint8Array.of(0x83, 7, 4, 1, 2, 3, 4, 0)],
    ["ssrr", Uint8Array.of(0x89, 7, 4, 1, 2, 3, 4, 0)],
    ["lsrr after nop", Uint8Array.of(1, 0x83, 6, 4, 1, 2, 3, 0)],
    ["len 1", Uint8Array.of(7, 1, 0, 0)],
    ["len 0", Uint8Array.of(7, 0, 0, 0)],
    ["len past", Uint8Array.of(7, 9, 4, 0)],
    ["type at end", Uint8Array.of(1, 1, 1, 7)],
    ["router alert", Uint8Array.of(0x94, 4, 0, 0)],
    ["40 bytes", Uint8Array.from({ length: 40 }, (_, i) => (i < 39 ? 1 : 0))],
  ] as const) {
    add(`v4 option ${name}`, v4(PROTO_TCP, t4, { options: o }));
  }
  add("v4 first frag", v4(PROTO_TCP, seg(TCP_SYN, { payload: bytesOf(16) }), { mf: true, id: 77 }));
  add("v4 first frag tiny tcp", v4(PROTO_TCP, seg(TCP_SYN).subarray(0, 8), { mf: true }));
  add("v4 first frag tiny udp", v4(PROTO_UDP, udp({ sport: 1, dport: 2 }).subarray(0, 4), { mf: true }));
  add("v4 first frag udp long len", v4(PROTO_UDP, udp({ sport: 1, dport: 2, payload: bytesOf(8), len: 3000 }), { mf: true }));
  add("v4 first frag icmp error", v4(PROTO_ICMP, icmp({ type: 3, payload: quotes4[0]![1] }), { mf: true }));
  add("v4 middle frag", v4(PROTO_TCP, bytesOf(64), { mf: true, fragOff: 100 }));
  add("v4 last frag", v4(PROTO_UDP, bytesOf(64), { fragOff: 100 }));
  add("v4 frag too big", v4(PROTO_UDP, bytesOf(64), { fragOff: 8190 }));
  add("v4 frag just fits", v4(PROTO_UDP, bytesOf(7), { fragOff: 8188 }));
  add("v4 frag max off empty", v4(PROTO_UDP, new Uint8Array(0), { fragOff: 8191 }));
  add("v4 df", v4(PROTO_TCP, t4, { df: true }));
  add("v4 gre", v4(47, bytesOf(24)));
  add("v4 esp", v4(50, bytesOf(24)));
  add("v4 proto 255", v4(255, new Uint8Array(0)));

  // IPv6 header faults and extension-header chains.
  const t6 = seg(TCP_SYN);
  add("v6 version 7", v6(PROTO_TCP, t6, { version: 7 }));
  add("v6 39 bytes", v6(PROTO_TCP, t6).subarray(0, 39));
  add("v6 jumbo", v6(PROTO_TCP, t6, { ext: [optionsExt(NH_HOPOPTS)], payloadLen: 0 }));
  add("v6 plen 0 no hbh", v6(PROTO_TCP, t6, { payloadLen: 0 }));
  add("v6 plen > wire", v6(PROTO_TCP, t6, { payloadLen: 200 }));
  add("v6 plen < packet", v6(PROTO_TCP, cat(t6, bytesOf(20)), { payloadLen: 20 }));
  add("v6 plen cuts tcp", v6(PROTO_TCP, t6, { payloadLen: 10 }));
  const chains: Array<[string, Ext6[], number, Uint8Array]> = [
    ["hbh", [optionsExt(NH_HOPOPTS)], PROTO_TCP, t6],
    ["hbh big", [optionsExt(NH_HOPOPTS, 4)], PROTO_UDP, udp({ sport: 1, dport: 2 })],
    ["dst hbh", [optionsExt(NH_DSTOPTS), optionsExt(NH_HOPOPTS)], PROTO_TCP, t6],
    ["hbh hbh", [optionsExt(NH_HOPOPTS), optionsExt(NH_HOPOPTS)], PROTO_TCP, t6],
    ["rh0", [routingExt(0, 2)], PROTO_TCP, t6],
    ["rh0 sl 0", [routingExt(0, 0)], PROTO_TCP, t6],
    ["rh2", [routingExt(2, 1, 3)], PROTO_TCP, t6],
    ["rh4", [routingExt(4, 1, 5)], PROTO_TCP, t6],
    ["frag first", [fragmentExt(0, true, 0xabcdef01)], PROTO_TCP, t6],
    ["frag first tiny", [fragmentExt(0, true, 1)], PROTO_TCP, t6.subarray(0, 12)],
    ["frag first icmp", [fragmentExt(0, true, 1)], PROTO_ICMPV6, echo(128, 1, 1)],
    ["frag middle", [fragmentExt(100, true, 2)], PROTO_TCP, bytesOf(64)],
    ["frag last", [fragmentExt(100, false, 2)], PROTO_UDP, bytesOf(64)],
    ["frag atomic", [fragmentExt(0, false, 3)], PROTO_UDP, udp({ sport: 1, dport: 2 })],
    ["frag too big", [fragmentExt(8190, false, 4)], PROTO_UDP, bytesOf(64)],
    ["frag after dst", [optionsExt(NH_DSTOPTS), fragmentExt(5, false, 4)], PROTO_TCP, bytesOf(16)],
    ["frag frag", [fragmentExt(0, true, 4), fragmentExt(0, true, 4)], PROTO_UDP, udp({ sport: 1, dport: 2 })],
    ["ah", [ahExt()], PROTO_TCP, t6],
    ["ah 0 words", [ahExt(0)], PROTO_TCP, t6],
    ["dst", [optionsExt(NH_DSTOPTS, 2)], PROTO_UDP, udp({ sport: 1, dport: 2 })],
    ["mobility", [{ type: 135, bytes: bytesOf(8, 0).map((b, i) => (i === 1 ? 0 : b)) }], NH_NONE, new Uint8Array(0)],
    ["hip shim6", [{ type: 139, bytes: new Uint8Array(8) }, { type: 140, bytes: new Uint8Array(8) }], PROTO_TCP, t6],
    ["none", [], NH_NONE, bytesOf(8)],
    ["esp", [optionsExt(NH_DSTOPTS)], 50, bytesOf(24)],
    ["8 dst", Array.from({ length: 8 }, () => optionsExt(NH_DSTOPTS)), PROTO_TCP, t6],
    ["9 dst", Array.from({ length: 9 }, () => optionsExt(NH_DSTOPTS)), PROTO_TCP, t6],
    ["8 frag0", Array.from({ length: 8 }, () => fragmentExt(0, false, 1)), PROTO_UDP, udp({ sport: 1, dport: 2 })],
    ["9 frag0", Array.from({ length: 9 }, () => fragmentExt(0, false, 1)), PROTO_UDP, udp({ sport: 1, dport: 2 })],
  ];
  for (const [name, ext, proto, payload] of chains) add(`v6 ext ${name}`, v6(proto, payload, { ext }));
  // Extension headers that claim more than there is.
  const hbhLong = v6(PROTO_TCP, t6, { ext: [optionsExt(NH_HOPOPTS)] });
  hbhLong[41] = 20;
  add("v6 ext hbh too long", hbhLong);
  add("v6 ext cut in header", v6(PROTO_TCP, t6, { ext: [routingExt(2, 1, 3)] }).subarray(0, 42));
  add("v6 ext cut by plen", v6(PROTO_TCP, t6, { ext: [optionsExt(NH_DSTOPTS, 2)], payloadLen: 10 }));

  // Ethertype against the version nibble.
  const base4 = v4(PROTO_UDP, udp({ sport: 1, dport: 2 }));
  const base6 = v6(PROTO_UDP, udp({ sport: 1, dport: 2 }));
  for (const hw of [0, ETH_IP, ETH_IP6, 0x0806, 0x8100, 0xffff]) {
    add(`v4 hw ${hw}`, base4, { hwProto: hw });
    add(`v6 hw ${hw}`, base6, { hwProto: hw });
    add(`empty hw ${hw}`, new Uint8Array(0), { hwProto: hw });
    add(`version 9 hw ${hw}`, Uint8Array.of(0x95, 0, 0, 20), { hwProto: hw });
  }
  return cases;
}

// ---------------------------------------------------------------------------
// The packet stream: crafted cases, every prefix of each, mutations, noise.

const HW = [0, 0, 0, ETH_IP, ETH_IP6];

function randomMeta(): PacketMeta {
  return {
    inRole: int(3), outRole: int(3), hook: int(5), queue: int(65536), packetId: int(2 ** 32),
    tsNs: BigInt(int(2 ** 32)) * 1000n + BigInt(int(1000)),
  };
}

function mutate(b: Uint8Array): Uint8Array {
  const out = Uint8Array.from(b);
  if (out.length === 0) return out;
  const n = 1 + int(4);
  for (let i = 0; i < n; i++) {
    // Mostly in the headers, where the decoders look.
    const at = rand() < 0.8 ? int(Math.min(out.length, 80)) : int(out.length);
    out[at] = rand() < 0.5 ? int(256) : out[at]! ^ (1 << int(8));
  }
  return out;
}

// Sets an IP or transport length field to something else.
function lieAboutLength(b: Uint8Array): Uint8Array {
  const out = Uint8Array.from(b);
  if (out.length < 20) return mutate(out);
  const v = new DataView(out.buffer);
  const version = out[0]! >> 4;
  const word = (): number => pick([0, 1, 7, 8, 19, 20, 39, 40, 41, out.length - 1, out.length, out.length + 1, int(65536)]) & 0xffff;
  const choice = int(3);
  if (version === 4) {
    const ihl = (out[0]! & 15) * 4;
    if (choice === 0) v.setUint16(2, word());
    else if (choice === 1) out[0] = 0x40 | int(16);
    else if (ihl + 14 <= out.length) out[ihl + 12] = int(256); // TCP data offset, or UDP length / ICMP bytes
    else v.setUint16(6, int(65536));
  } else if (out.length >= 40) {
    if (choice === 0) v.setUint16(4, word());
    else if (choice === 1) out[6] = pick([0, 6, 17, 43, 44, 51, 58, 59, 60, 135, 139, 140, int(256)]);
    else if (out.length >= 46) v.setUint16(44, word());
  }
  return out;
}

function randomChain6(): Uint8Array {
  const n = int(11);
  const ext: Ext6[] = [];
  for (let i = 0; i < n; i++) {
    const k = int(6);
    if (k === 0) ext.push(optionsExt(NH_HOPOPTS, 1 + int(3)));
    else if (k === 1) ext.push(optionsExt(NH_DSTOPTS, 1 + int(3)));
    else if (k === 2) ext.push(routingExt(int(5), int(3), 1 + int(4)));
    else if (k === 3) ext.push(fragmentExt(int(3) === 0 ? int(8192) : 0, rand() < 0.5, int(2 ** 32)));
    else if (k === 4) ext.push(ahExt(int(5)));
    else ext.push({ type: pick([135, 139, 140]), bytes: new Uint8Array(8 * (1 + int(2))).map((_, j) => (j === 1 ? 0 : int(256))) });
  }
  const proto = pick([PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, NH_NONE, 50]);
  const payload = proto === PROTO_TCP ? tcp({ sport: 1 + int(65535), dport: 1 + int(65535), flags: int(256) })
    : proto === PROTO_UDP ? udp({ sport: int(65536), dport: int(65536), payload: randomBytes(int(16)) })
    : proto === PROTO_ICMPV6 ? icmp({ type: int(256), payload: randomBytes(int(64)) }) : randomBytes(int(32));
  return ipv6({ src: S6, dst: D6, proto, payload, ext });
}

function randomPacket(crafted: ReadonlyArray<Case>): PacketIn {
  const meta = randomMeta();
  const base = pick(crafted).bytes;
  const k = rand();
  let bytes: Uint8Array;
  if (k < 0.4) bytes = mutate(base);
  else if (k < 0.55) bytes = lieAboutLength(base);
  else if (k < 0.7) bytes = randomChain6();
  else if (k < 0.85) {
    bytes = randomBytes(int(120));
    if (bytes.length && rand() < 0.7) bytes[0] = (pick([4, 6]) << 4) | (bytes[0]! & 15);
  } else bytes = mutate(randomChain6());
  meta.hwProto = rand() < 0.95 ? pick(HW) : int(65536);
  // Capture shorter than the packet, or a wire length beyond the bytes.
  const r = rand();
  if (r < 0.15 && bytes.length) {
    const cap = int(bytes.length);
    meta.wireLen = bytes.length;
    return { bytes: bytes.subarray(0, cap), meta };
  }
  if (r < 0.25) meta.wireLen = bytes.length + int(200);
  return { bytes, meta };
}

function sweep(cases: ReadonlyArray<Case>): PacketIn[] {
  const out: PacketIn[] = [];
  for (const c of cases) {
    const meta = c.meta ?? {};
    out.push({ bytes: c.bytes, meta });
    // The same packet announced by its ethertype.
    if (meta.hwProto === undefined && c.bytes.length) {
      const v = c.bytes[0]! >> 4;
      out.push({ bytes: c.bytes, meta: { hwProto: v === 6 ? ETH_IP6 : ETH_IP } });
    }
    // Every prefix: captured short of a longer packet, and a packet that short.
    const stop = Math.min(c.bytes.length, 160);
    for (let cap = 0; cap < stop; cap++) {
      out.push({ bytes: c.bytes.subarray(0, cap), meta: { ...meta, wireLen: c.bytes.length } });
      out.push({ bytes: c.bytes.subarray(0, cap), meta });
    }
  }
  return out;
}

// Descriptors the core must refuse, and some at the edge that it must not.
function edgeDescriptors(): PacketIn[] {
  const p = ipv4({ src: S4, dst: D4, proto: PROTO_UDP, payload: udp({ sport: 1, dport: 2 }) });
  const end = ABI.DATA_CAP;
  return [
    { bytes: p, dataOff: end - p.length }, //                              ends exactly at DATA_CAP: fine
    { bytes: new Uint8Array(0), dataOff: end }, //                         empty at the end: fine (truncated)
    { bytes: p.subarray(0, 3), dataOff: end - 3 },
    { bytes: p.subarray(0, 10), dataOff: end - 10, capLen: 11 }, //        one past DATA_CAP
    { bytes: new Uint8Array(0), dataOff: end, capLen: 1 },
    { bytes: new Uint8Array(0), dataOff: end + 1, capLen: 0 }, //          offset past the data area
    { bytes: new Uint8Array(0), dataOff: 0xffffffff, capLen: 0xffffffff }, // would wrap in 32 bits
    { bytes: new Uint8Array(0), dataOff: 0xfffffff0, capLen: 0x20 },
    { bytes: new Uint8Array(0), dataOff: 0, capLen: 0xffffffff },
    { bytes: p, meta: { wireLen: p.length - 1 } }, //                     wire_len < cap_len
    { bytes: p, meta: { wireLen: 0 } },
    { bytes: p, meta: { wireLen: 0xffffffff } }, //                         huge wire_len: fine
    { bytes: p, meta: { inRole: 7 } },
    { bytes: p, meta: { outRole: 7 } },
    { bytes: p, meta: { inRole: 3 } },
    { bytes: p, meta: { outRole: 255 } },
    { bytes: p, meta: { hook: 9 } },
    { bytes: p, meta: { hook: 5 } },
    { bytes: p, meta: { hook: 255 } },
    { bytes: p, meta: { inRole: 2, outRole: 2, hook: 4 } }, //              the largest valid values
    { bytes: p, meta: { queue: 65535, packetId: 0xffffffff, tsNs: 0xffffffffffffffffn } },
  ];
}

function badDescriptor(): PacketIn {
  const all = edgeDescriptors();
  return all[3 + int(all.length - 3)]!;
}

// Only the default-verdict byte: the rest of CONFIG is read by init alone
// and stays as init saw it.
function config(defaultVerdict: number): Uint8Array {
  const c = new Uint8Array(ABI.CFG_DEFAULT_VERDICT + 1);
  c[ABI.CFG_DEFAULT_VERDICT] = defaultVerdict;
  return c;
}

function buildBatches(): { batches: VectorBatch[]; packets: number; notes: Map<number, string> } {
  const crafted = craft();
  const stream: PacketIn[] = sweep(crafted);
  for (let i = 0; i < 20000; i++) stream.push(rand() < 0.01 ? badDescriptor() : randomPacket(crafted));

  const batches: VectorBatch[] = [];
  const notes = new Map<number, string>();
  const push = (b: VectorBatch, note: string): void => { notes.set(batches.length, note); batches.push(b); };
  const now = (): bigint => BigInt(int(2 ** 32)) * 1_000_000n;
  const sizes = [1, 32, 256, ABI.MAX_BATCH];
  let at = 0, k = 0;
  while (at < stream.length) {
    const n = Math.min(sizes[k++ % sizes.length]!, stream.length - at);
    const slice = stream.slice(at, at + n);
    at += n;
    // Default verdict: drop, accept, an unknown value (drop), or left as it was.
    const cfg = pick([0, 1, 2, -1]);
    const align = pick([8, 8, 4, 1]);
    push(packBatch(slice, { nowNs: now(), align, ...(cfg >= 0 ? { config: config(cfg) } : {}) }), `stream ${at - n}..${at}`);
    if (k === 7) {
      push(packBatch(edgeDescriptors(), { config: config(1) }), "edge descriptors");
      push(packBatch([], { count: 0 }), "empty batch");
      push(packBatch(stream.slice(0, ABI.MAX_BATCH), { count: ABI.MAX_BATCH + 1 }), "count MAX_BATCH + 1");
      push(packBatch(stream.slice(0, 10), { count: 5 }), "fewer counted than written");
      // More counted than written: the rest are the last batch's descriptors.
      push(packBatch(stream.slice(100, 132), { count: 40 }), "more counted than written");
      push({ ...packBatch([], { count: 0xffffffff }) }, "count 2^32-1");
    }
  }
  return { batches, packets: stream.length, notes };
}

// ---------------------------------------------------------------------------
// Comparison.

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function firstDifference(a: RunResult, b: RunResult, batches: ReadonlyArray<VectorBatch>, notes: Map<number, string>): string | null {
  if (a.batches.length !== b.batches.length) return `${a.batches.length} batch results against ${b.batches.length}`;
  for (let i = 0; i < a.batches.length; i++) {
    const x = a.batches[i]!, y = b.batches[i]!;
    const where = `batch ${i} (${notes.get(i) ?? "?"})`;
    if (x.ret !== y.ret) return `${where}: classify returned ${x.ret} against ${y.ret}`;
    if (hex(x.header) !== hex(y.header)) return `${where}: batch header ${hex(x.header)} against ${hex(y.header)}`;
    if (hex(x.verdicts) !== hex(y.verdicts)) {
      for (let p = 0; p * ABI.VERDICT_SIZE < x.verdicts.length; p++) {
        const s = p * ABI.VERDICT_SIZE;
        const vx = x.verdicts.subarray(s, s + ABI.VERDICT_SIZE), vy = y.verdicts.subarray(s, s + ABI.VERDICT_SIZE);
        if (hex(vx) === hex(vy)) continue;
        const b = batches[i]!;
        const d = b.descs.subarray(p * ABI.DESC_SIZE, (p + 1) * ABI.DESC_SIZE);
        const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
        const off = d.length === ABI.DESC_SIZE ? dv.getUint32(ABI.D_DATA_OFF, true) : 0;
        const cap = d.length === ABI.DESC_SIZE ? dv.getUint32(ABI.D_CAP_LEN, true) : 0;
        const reason = (v: Uint8Array): string => reasonName(v[ABI.V_REASON]! | (v[ABI.V_REASON + 1]! << 8));
        return `${where}, packet ${p}: verdict ${hex(vx)} (${reason(vx)}) against ${hex(vy)} (${reason(vy)})\n` +
          `descriptor ${hex(d)}\npacket ${hex(b.data.subarray(off, Math.min(off + cap, off + 256)))}`;
      }
    }
    if (hex(x.pkt) !== hex(y.pkt)) return `${where}: PKT after the batch ${hex(x.pkt)} against ${hex(y.pkt)}`;
  }
  if (hex(a.counters) !== hex(b.counters)) {
    for (let o = 0; o < a.counters.length; o += 8) {
      const cx = hex(a.counters.subarray(o, o + 8)), cy = hex(b.counters.subarray(o, o + 8));
      if (cx !== cy) return `counters differ at byte ${o}: ${cx} against ${cy}`;
    }
  }
  return null;
}

function counter(r: RunResult, at: number): bigint {
  return new DataView(r.counters.buffer, r.counters.byteOffset).getBigUint64(at, true);
}

// Every reason a packet can get without a rule table: descriptor, decoders,
// and the configured default.
const NO_TABLE_REASONS = [
  "no_table", "bad_descriptor", "l3_unsupported", "l3_version_mismatch", "snap_truncated",
  "ip4_truncated", "ip4_bad_ihl", "ip4_bad_total_len", "ip4_len_exceeds", "ip4_bad_options",
  "ip4_source_route", "frag_too_big", "ip6_truncated", "ip6_len_exceeds", "ip6_jumbo",
  "ip6_ext_truncated", "ip6_ext_chain_long", "ip6_hbh_misplaced", "ip6_rh0", "frag_tiny",
  "tcp_truncated", "tcp_bad_doff", "tcp_bad_flags", "l4_port_zero", "udp_truncated", "udp_bad_len",
  "icmp_truncated", "icmp_inner_truncated", "icmp_inner_bad", "icmp_error_in_error",
];

// ---------------------------------------------------------------------------

const built = buildBatches();
let v8Result: RunResult | undefined;

test("wasm2c: the release core translates and compiles (no SIMD, no imports)", () => {
  const b = buildWasm2cCore();
  assert.ok(b.binary.endsWith("portcullis-core"));
  // Up to date now: a second call must not rebuild.
  assert.is(buildWasm2cCore().rebuilt, false);
});

test("wasm2c: packBatch writes the descriptors Core.writeDescriptor writes", () => {
  const core = new Core("release");
  const metas: PacketMeta[] = [{}, { inRole: 2, outRole: 1, hook: 4, hwProto: ETH_IP6, packetId: 99, tsNs: 123456789n, queue: 7, wireLen: 1500 }];
  core.u8.fill(0xff, core.descsPtr, core.descsPtr + metas.length * ABI.DESC_SIZE); // the reserved byte too is written
  const packed = packBatch(metas.map((meta, i) => ({ bytes: new Uint8Array(60), meta, dataOff: 1000 + i })));
  metas.forEach((meta, i) => core.writeDescriptor(i, 1000 + i, 60, meta));
  assert.is(hex(packed.descs), hex(core.u8.subarray(core.descsPtr, core.descsPtr + metas.length * ABI.DESC_SIZE)));
});

test(`wasm2c: ${built.packets} packets in ${built.batches.length} batches give byte-identical results under V8 and wasm2c`, () => {
  const v8 = runInCore(new Core("release"), built.batches);
  v8Result = v8;
  const c = runWasm2cCore(built.batches);
  assert.is(c.repeat, 1);
  const diff = firstDifference(v8, c, built.batches, built.notes);
  if (diff !== null) assert.unreachable(`V8 and wasm2c disagree: ${diff}`);

  // The comparison is only worth what the vectors reach: every reason the
  // descriptor check and the decoders give (no rule table is loaded here),
  // both verdicts, refused batches.
  const seen = new Set(REASONS.map(([name]) => name as string)
    .filter((_, code) => counter(v8, ABI.C_REASONS + code * 16) > 0n));
  assert.equal(NO_TABLE_REASONS.filter((name) => !seen.has(name)), [], "reason codes no vector reached");
  assert.ok(counter(v8, ABI.C_VERDICTS + ABI.VERDICT_DROP * 16) > 0n, "drops");
  assert.ok(counter(v8, ABI.C_VERDICTS + ABI.VERDICT_ACCEPT * 16) > 0n, "accepts");
  assert.ok(counter(v8, ABI.C_BAD_BATCHES) >= 2n, "refused batches");
  assert.ok(v8.batches.some((b) => b.ret === ABI.MAX_BATCH), "a full batch");
  const over = [...built.notes].find(([, n]) => n === "count MAX_BATCH + 1")![0];
  assert.is(v8.batches[over]!.ret, -ABI.STATUS_BAD_COUNT);
});

test(`wasmtime: the same ${built.packets} packets in ${built.batches.length} batches give byte-identical results under V8 and wasmtime`, () => {
  const v8 = v8Result ?? runInCore(new Core("release"), built.batches);
  const core = new Core("release", undefined, { engine: "wasmtime" });
  assert.is(core.engine, "wasmtime");
  const wt = runInCore(core, built.batches);
  const diff = firstDifference(v8, wt, built.batches, built.notes);
  if (diff !== null) assert.unreachable(`V8 and wasmtime disagree: ${diff}`);
  // Not vacuous: the batches reached refusals, both verdicts and full batches.
  assert.ok(counter(wt, ABI.C_BAD_BATCHES) >= 2n && counter(wt, ABI.C_VERDICTS + ABI.VERDICT_ACCEPT * 16) > 0n);
  assert.ok(wt.batches.some((b) => b.ret === ABI.MAX_BATCH));
});

test("wasm2c: the debug build (assertions on) agrees with the release build", () => {
  const dbg = runInCore(new Core("debug"), built.batches);
  const rel = v8Result ?? runInCore(new Core("release"), built.batches);
  const diff = firstDifference(rel, dbg, built.batches, built.notes);
  if (diff !== null) assert.unreachable(`release and debug disagree: ${diff}`);
});

test("wasm2c: --repeat runs each batch N times and reports the time", () => {
  const some = built.batches.slice(0, 4);
  const once = runWasm2cCore(some);
  const thrice = runWasm2cCore(some, { repeat: 3 });
  assert.is(thrice.repeat, 3);
  assert.equal(thrice.timings.map((t) => [t.batch, t.iters, t.count]), once.batches.map((b, i) => [i, 3, b.ret]));
  assert.ok(thrice.timings.every((t) => t.ns > 0n));
  assert.equal(thrice.batches.map((b) => hex(b.verdicts)), once.batches.map((b) => hex(b.verdicts)));
  assert.is(counter(thrice, ABI.C_PACKETS), 3n * counter(once, ABI.C_PACKETS));
  assert.is(counter(thrice, ABI.C_BATCHES), 3n * counter(once, ABI.C_BATCHES));
});

test("wasm2c: a malformed vector file is refused with a message", () => {
  const good = encodeVectors(built.batches.slice(0, 2));
  const expectFormat = (bytes: Uint8Array, re: RegExp): void => {
    assert.throws(() => runWasm2cVectors(bytes), (e: unknown) =>
      e instanceof Wasm2cError && e.status === DRIVER_EXIT.FORMAT && re.test(e.message));
  };
  expectFormat(good.subarray(0, good.length - 1), /ends inside the packet data of batch 1/);
  expectFormat(good.subarray(0, 20), /ends inside the file header/);
  expectFormat(Uint8Array.from([...good, 0]), /1 bytes after the last batch/);
  const otherAbi = Uint8Array.from(good);
  otherAbi[8] = ABI.ABI_VERSION + 1;
  expectFormat(otherAbi, /ABI version/);
  const bigHeader = Uint8Array.from(good);
  new DataView(bigHeader.buffer).setUint32(48, ABI.BH_SIZE + 1, true);
  expectFormat(bigHeader, /larger than its region/);
  const bigInit = Uint8Array.from(good);
  new DataView(bigInit.buffer).setUint32(44, ABI.CONFIG_SIZE + 1, true);
  expectFormat(bigInit, /init config is larger than CONFIG/);
  assert.throws(() => encodeVectors([], { initConfig: new Uint8Array(ABI.CONFIG_SIZE + 1) }), RangeError);
  // An all-zero init config is what a fresh instance has anyway.
  const plain = runWasm2cVectors(good);
  const zeroed = runWasm2cVectors(encodeVectors(built.batches.slice(0, 2), { initConfig: new Uint8Array(ABI.CONFIG_SIZE) }));
  assert.equal(zeroed, plain);
});

// A module with the core's exports whose classify traps: count 1 runs
// `unreachable`, count 2 loads far outside memory. It proves the driver
// catches traps (wasm_rt_impl_try, and the guard-page signal handler).
const TRAP_WAT = `(module
  (memory (export "memory") 66 66)
  (func (export "abi_version") (result i32) (i32.const ${ABI.ABI_VERSION}))
  (func (export "init") (result i32) (i32.const 0))
  (func (export "batch_ptr") (result i32) (i32.const 0))
  (func (export "config_ptr") (result i32) (i32.const 64))
  (func (export "pkt_ptr") (result i32) (i32.const 320))
  (func (export "counters_ptr") (result i32) (i32.const 512))
  (func (export "descs_ptr") (result i32) (i32.const 4096))
  (func (export "verdicts_ptr") (result i32) (i32.const 40960))
  (func (export "data_ptr") (result i32) (i32.const 65536))
  (func (export "classify") (result i32)
    (if (i32.eq (i32.load (i32.const 0)) (i32.const 1)) (then unreachable))
    (if (i32.eq (i32.load (i32.const 0)) (i32.const 2)) (then (drop (i32.load (i32.const 0xfffffff0)))))
    (i32.const 0)))
`;

test("wasm2c: a trap in the module is caught and reported with its batch", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-wasm2c-"));
  try {
    writeFileSync(join(dir, "trap.wat"), TRAP_WAT);
    const w = spawnSync("wat2wasm", [join(dir, "trap.wat"), "-o", join(dir, "trap.wasm")], { encoding: "utf8" });
    assert.is(w.status, 0, `wat2wasm: ${w.error?.message ?? w.stderr}`);
    const { binary } = buildWasm2cCore({ wasm: join(dir, "trap.wasm"), outDir: dir });
    const ok = packBatch([], { count: 0 });
    const trapsWith = (count: number, re: RegExp): void => {
      assert.throws(() => runWasm2cCore([ok, packBatch([], { count })], { binary }), (e: unknown) =>
        e instanceof Wasm2cError && e.status === DRIVER_EXIT.TRAP && /trap in classify \(batch 1\)/.test(e.message) && re.test(e.message));
    };
    trapsWith(1, /nreachable/);
    trapsWith(2, /[Oo]ut.of.bounds/);
    assert.is(runWasm2cCore([ok, packBatch([], { count: 3 })], { binary }).batches.length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("wasm2c: with the default policy committed (--table) and stateful traffic, V8, wasm2c and wasmtime agree", () => {
  const table = buildTable(compilePolicyFile(join(process.cwd(), "host", "policy", "default.yaml")).spec).bytes;
  const core = new Core("release", undefined, { hashSeed: 0x7ab1en });
  core.loadTable(table);
  const gen = new ConvGen(0x2c0de);
  const batches: VectorBatch[] = [];
  const notes = new Map<number, string>();
  for (let i = 0; i < 300; i++) {
    const b = gen.next();
    notes.set(i, `convgen t=${b.t.toFixed(1)}`);
    batches.push(packBatch(b.packets, { nowNs: BigInt(Math.round(b.t * 1e9)) }));
  }
  const initConfig = core.u8.slice(core.configPtr, core.configPtr + ABI.CONFIG_SIZE);
  const v8 = runInCore(core, batches);
  const dir = mkdtempSync(join(tmpdir(), "portcullis-wasm2c-table-"));
  try {
    writeFileSync(join(dir, "default.table"), table);
    const c = runWasm2cCore(batches, { initConfig, table: join(dir, "default.table") });
    const diff = firstDifference(v8, c, batches, notes);
    if (diff !== null) assert.unreachable(`V8 and wasm2c disagree: ${diff}`);
    // wasmtime, from the same CONFIG (hash seed included) and table.
    const wtCore = new Core("release", undefined, { hashSeed: 0x7ab1en, engine: "wasmtime" });
    wtCore.loadTable(table);
    assert.is(hex(wtCore.u8.slice(wtCore.configPtr, wtCore.configPtr + ABI.CONFIG_SIZE)), hex(initConfig));
    const wt = runInCore(wtCore, batches);
    const wdiff = firstDifference(v8, wt, batches, notes);
    if (wdiff !== null) assert.unreachable(`V8 and wasmtime disagree: ${wdiff}`);
    for (const name of ["rule_allow", "state_match", "state_related", "frag_follows"]) {
      assert.ok(counter(v8, ABI.C_REASONS + REASONS.findIndex(([n]) => n === name) * 16) > 0n, `the traffic reached ${name}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("wasm2c: a table with ICMP type rules, and a message of every type and several codes of both families, V8 and wasm2c agree", () => {
  const policy = `version: 1
default: deny
groups:
  listener: [203.0.113.1, "2001:db8:1::1"]
rules:
  - { name: dns, action: allow, interface: external, direction: in, proto: udp, dst: listener, dport: 53 }
  - { name: ping4, action: allow, interface: external, direction: in, proto: icmp, dst: listener, icmp_type: [echo-request, timestamp-request] }
  - { name: pmtu4, action: allow, interface: external, direction: in, proto: icmp, icmp_type: ["destination-unreachable/frag-needed", time-exceeded] }
  - { name: refuse4, action: deny, interface: external, direction: in, proto: icmp, icmp_type: [redirect, router-advertisement] }
  - { name: ping6, action: allow, interface: external, direction: in, proto: icmpv6, dst: listener, icmp_type: echo-request }
  - { name: pmtu6, action: allow, interface: external, direction: in, proto: icmpv6, icmp_type: [packet-too-big, "1/4"] }
  - { name: refuse6, action: deny, interface: external, direction: in, proto: icmpv6, icmp_type: [nd-router-advert, 130] }
`;
  const table = buildTable(compilePolicyText(policy, "icmp.yaml").spec).bytes;
  const core = new Core("release", undefined, { hashSeed: 0x1c3bn });
  core.loadTable(table);
  const inbound: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
  const outbound: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };
  const stream: PacketIn[] = [];
  for (const fam of [4, 6] as const) {
    const [client, proxy, router] = fam === 4 ? ["203.0.113.10", "203.0.113.1", "192.0.2.254"] : ["2001:db8:1::10", "2001:db8:1::1", "2001:db8:9::1"];
    // A tracked flow, so that errors about its reply are related.
    stream.push({ bytes: udpPkt(fam, client, 5353, proxy, 53), meta: inbound });
    const reply = udpPkt(fam, proxy, 53, client, 5353);
    stream.push({ bytes: reply, meta: outbound });
    for (let t = 0; t < 256; t++) {
      for (const code of [0, 1, 4, 13]) {
        stream.push({ bytes: icmpMessage(fam, client, proxy, t, code), meta: inbound }); //        unrelated errors, queries, the rest
        if (isIcmpError(fam, t)) stream.push({ bytes: icmpMessage(fam, router, proxy, t, code, reply), meta: inbound }); // related
        if (fam === 6 && t >= 133 && t <= 137) stream.push({ bytes: icmpMessage(fam, client, proxy, t, code, undefined, 255), meta: inbound });
      }
      // The proxy's answers to the queries of that type (a reply to a request that opened a flow passes).
      stream.push({ bytes: icmpMessage(fam, proxy, client, t), meta: outbound });
    }
  }
  const batches: VectorBatch[] = [];
  const notes = new Map<number, string>();
  for (let i = 0; i < stream.length; i += 200) {
    notes.set(batches.length, `icmp packets ${i}..${Math.min(stream.length, i + 200) - 1}`);
    batches.push(packBatch(stream.slice(i, i + 200), { nowNs: BigInt(batches.length) * 1000000n }));
  }
  const initConfig = core.u8.slice(core.configPtr, core.configPtr + ABI.CONFIG_SIZE);
  const v8 = runInCore(core, batches);
  const dir = mkdtempSync(join(tmpdir(), "portcullis-wasm2c-icmp-"));
  try {
    writeFileSync(join(dir, "icmp.table"), table);
    const c = runWasm2cCore(batches, { initConfig, table: join(dir, "icmp.table") });
    const diff = firstDifference(v8, c, batches, notes);
    if (diff !== null) assert.unreachable(`V8 and wasm2c disagree: ${diff}`);
    for (const name of ["rule_allow", "rule_deny", "default_deny", "state_match", "state_related", "icmp_unrelated", "no_flow", "icmp6_ndp"]) {
      assert.ok(counter(v8, ABI.C_REASONS + REASONS.findIndex(([n]) => n === name) * 16) > 0n, `the traffic reached ${name}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
