// Random and mutated packets for the fuzz tests, from a seeded PRNG so a
// failure can be replayed from its seed.
import * as ABI from "../../host/core/abi.js";
import { type Core } from "../../host/core/core.js";
import {
  ahExt, echo, fragmentExt, icmp, ipv4, ipv6, NH_DSTOPTS, NH_HOPOPTS, optionsExt, PROTO_ICMP, PROTO_ICMPV6,
  PROTO_TCP, PROTO_UDP, routingExt, TCP_ACK, TCP_SYN, tcp, udp,
} from "../../host/packets/build.js";
import { REASONS, Reason } from "../../host/core/reasons.js";

// mulberry32
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seeds(): Uint8Array[] {
  const s4 = "203.0.113.10", d4 = "203.0.113.1", s6 = "2001:db8:1::10", d6 = "2001:db8:1::1";
  const syn = tcp({ sport: 40000, dport: 443, flags: TCP_SYN, options: Uint8Array.from([2, 4, 5, 0xb4]) });
  const dg = udp({ sport: 5000, dport: 53, payload: new Uint8Array(20) });
  const q4 = ipv4({ src: d4, dst: s4, proto: PROTO_UDP, payload: dg });
  const q6 = ipv6({ src: d6, dst: s6, proto: PROTO_TCP, payload: syn, ext: [optionsExt(NH_DSTOPTS)] });
  return [
    ipv4({ src: s4, dst: d4, proto: PROTO_TCP, payload: syn }),
    ipv4({ src: s4, dst: d4, proto: PROTO_TCP, payload: syn, options: Uint8Array.from([1, 1, 7, 5, 4, 0, 0, 0]) }),
    ipv4({ src: s4, dst: d4, proto: PROTO_UDP, payload: dg }),
    ipv4({ src: s4, dst: d4, proto: PROTO_ICMP, payload: echo(8, 9, 1, new Uint8Array(16)) }),
    ipv4({ src: s4, dst: d4, proto: PROTO_ICMP, payload: icmp({ type: 3, code: 3, payload: q4 }) }),
    ipv4({ src: s4, dst: d4, proto: PROTO_TCP, mf: true, payload: syn }),
    ipv4({ src: s4, dst: d4, proto: PROTO_UDP, fragOff: 100, payload: new Uint8Array(64) }),
    ipv6({ src: s6, dst: d6, proto: PROTO_TCP, payload: tcp({ sport: 1, dport: 8080, flags: TCP_ACK, payload: new Uint8Array(30) }) }),
    ipv6({ src: s6, dst: d6, proto: PROTO_UDP, payload: dg, ext: [optionsExt(NH_HOPOPTS), routingExt(2, 1), ahExt()] }),
    ipv6({ src: s6, dst: d6, proto: PROTO_TCP, payload: syn, ext: [fragmentExt(0, true, 77)] }),
    ipv6({ src: s6, dst: d6, proto: PROTO_UDP, payload: new Uint8Array(40), ext: [fragmentExt(20, false, 77)] }),
    ipv6({ src: s6, dst: d6, proto: PROTO_ICMPV6, payload: echo(128, 5, 5) }),
    ipv6({ src: s6, dst: d6, proto: PROTO_ICMPV6, payload: icmp({ type: 1, code: 4, payload: q6 }) }),
  ];
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x45, 0x4f, 0x60, 0x2c, 0x3a, 0x06, 0x11, 0x3b, 0x00];

export interface FuzzPacket {
  bytes: Uint8Array;
  wireLen: number;
  hwProto: number;
  inRole: number;
  outRole: number;
  hook: number;
  dataOff?: number; // set only to aim a descriptor outside the data area
}

export class Fuzzer {
  private readonly r: () => number;
  private readonly corpus = seeds();
  constructor(readonly seed: number) { this.r = rng(seed); }

  private int(n: number): number { return Math.floor(this.r() * n); }

  private random(): Uint8Array {
    const len = this.r() < 0.7 ? this.int(96) : this.int(1600);
    const b = new Uint8Array(len);
    for (let i = 0; i < len; i++) b[i] = this.int(256);
    if (len > 0 && this.r() < 0.6) b[0] = this.r() < 0.5 ? 0x40 | (b[0]! & 15) : 0x60 | (b[0]! & 15);
    return b;
  }

  private mutate(): Uint8Array {
    let b = Uint8Array.from(this.corpus[this.int(this.corpus.length)]!);
    const rounds = 1 + this.int(4);
    for (let k = 0; k < rounds; k++) {
      const op = this.int(6);
      const at = this.int(Math.max(1, b.length));
      if (op === 0 && b.length) b[at] = b[at]! ^ (1 << this.int(8));
      else if (op === 1 && b.length) b[at] = INTERESTING[this.int(INTERESTING.length)]!;
      else if (op === 2) b = b.slice(0, this.int(b.length + 1));
      else if (op === 3) {
        const more = new Uint8Array(b.length + this.int(64));
        more.set(b);
        for (let i = b.length; i < more.length; i++) more[i] = this.int(256);
        b = more;
      } else if (op === 4 && b.length > 6) {
        // Lie in a length field: IPv4 total length or IPv6 payload length.
        const f = (b[0]! >> 4) === 6 ? 4 : 2;
        b[f] = this.int(256); b[f + 1] = this.int(256);
      } else if (op === 5 && b.length > 40) {
        b[20 + this.int(b.length - 20)] = this.int(256);
      }
    }
    return b;
  }

  next(): FuzzPacket {
    const bytes = this.r() < 0.5 ? this.random() : this.mutate();
    const pick = this.r();
    const hwProto = pick < 0.4 ? 0 : pick < 0.65 ? 0x0800 : pick < 0.9 ? 0x86dd : this.int(0x10000);
    const wireLen = this.r() < 0.85 ? bytes.length : bytes.length + this.int(2000) - (this.r() < 0.1 ? bytes.length + 1 : 0);
    const p: FuzzPacket = {
      bytes,
      wireLen: Math.max(0, wireLen),
      hwProto,
      inRole: this.r() < 0.02 ? 3 + this.int(253) : this.int(3),
      outRole: this.r() < 0.02 ? 3 + this.int(253) : this.int(3),
      hook: this.r() < 0.02 ? 5 + this.int(251) : this.int(5),
    };
    if (this.r() < 0.01) p.dataOff = ABI.DATA_CAP - this.int(8);
    return p;
  }
}

export function descriptorIsBad(p: FuzzPacket, dataOff: number): boolean {
  return dataOff + p.bytes.length > ABI.DATA_CAP || p.wireLen < p.bytes.length ||
    p.inRole > 2 || p.outRole > 2 || p.hook > 4;
}

export interface FuzzTotals {
  packets: number;
  batches: number;
  bytes: bigint;
  badDescriptors: number;
  byReason: Map<string, number>;
}

// Runs `count` fuzz packets through `core` in batches of random size and
// checks every answer; throws on the first wrong one, naming seed and index.
export function runFuzz(core: Core, seed: number, count: number, defaultVerdict = ABI.VERDICT_DROP): FuzzTotals {
  const f = new Fuzzer(seed);
  const r = rng(seed ^ 0x5eed);
  const memBefore = core.memory.buffer.byteLength;
  const totals: FuzzTotals = { packets: 0, batches: 0, bytes: 0n, badDescriptors: 0, byReason: new Map() };
  const bad: boolean[] = [];
  while (totals.packets < count) {
    const n = Math.min(count - totals.packets, r() < 0.1 ? 1 : 1 + Math.floor(r() * ABI.MAX_BATCH));
    let used = 0;
    let k = 0;
    for (; k < n; k++) {
      const p = f.next();
      if (used + p.bytes.length > ABI.DATA_CAP - 16) break;
      const off = p.dataOff ?? used;
      if (p.dataOff === undefined) {
        core.u8.set(p.bytes, core.dataPtr + used);
        used += p.bytes.length;
      }
      core.writeDescriptor(k, off, p.bytes.length, { wireLen: p.wireLen, hwProto: p.hwProto, inRole: p.inRole, outRole: p.outRole, hook: p.hook, packetId: k });
      bad[k] = descriptorIsBad(p, off);
      if (!bad[k]) totals.bytes += BigInt(p.wireLen);
    }
    const got = core.classify(k, BigInt(totals.batches));
    if (got !== k) throw new Error(`seed ${seed} batch ${totals.batches}: classify returned ${got} for ${k} packets`);
    for (let i = 0; i < k; i++) {
      const v = core.verdict(i), code = core.reason(i);
      const where = `seed ${seed} packet ${totals.packets + i}`;
      if (code < 1 || code >= REASONS.length) throw new Error(`${where}: reason ${code} is not in the table`);
      if (v !== ABI.VERDICT_DROP && v !== ABI.VERDICT_ACCEPT) throw new Error(`${where}: verdict ${v}`);
      const want = code === Reason.no_table ? defaultVerdict : ABI.VERDICT_DROP;
      if (v !== want) throw new Error(`${where}: verdict ${v} with reason ${REASONS[code]![0]}`);
      if ((code === Reason.bad_descriptor) !== bad[i]) throw new Error(`${where}: descriptor bad=${bad[i]} but reason ${REASONS[code]![0]}`);
      if (core.rule(i) !== ABI.RULE_NONE) throw new Error(`${where}: rule ${core.rule(i)} without a table`);
      if (bad[i]) totals.badDescriptors++;
      const name = REASONS[code]![0];
      totals.byReason.set(name, (totals.byReason.get(name) ?? 0) + 1);
    }
    totals.packets += k;
    totals.batches++;
    if (core.memory.buffer.byteLength !== memBefore) throw new Error(`seed ${seed}: memory changed size`);
  }
  return totals;
}
