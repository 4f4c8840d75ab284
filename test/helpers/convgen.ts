// Seeded traffic with state in it, for differential tests of connection
// tracking: TCP conversations whose two ends keep their own sequence numbers
// (mostly right, sometimes stale, sometimes wild), UDP and ICMP queries both
// ways, ICMP errors quoting packets that were really sent (or not), fragment
// trains out of order with duplicates and overlaps, neighbour discovery, and
// a clock that sometimes jumps past the timeouts. Over few endpoints, so flows
// meet each other.
import * as ABI from "../../host/core/abi.js";
import { type PacketMeta } from "../../host/core/core.js";
import { formatAddr } from "../../host/packets/addr.js";
import {
  echo, fragmentExt, icmp, ipv4, ipv6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH,
  TCP_RST, TCP_SYN, tcp, udp,
} from "../../host/packets/build.js";
import { rng } from "../fuzz/gen.js";

export interface GenPacket { bytes: Uint8Array; meta: PacketMeta }
export interface GenBatch { t: number; packets: GenPacket[] }

interface Side { addr: string; meta: PacketMeta }
interface Place { fam: 4 | 6; outside: Side; inside: Side; servicePorts: number[] }

const IN_EXT: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
const OUT_EXT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };
const OUT_INT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_INTERNAL };
const IN_INT: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_NONE };

// The proxy's external side (clients -> listener) and internal side (proxy ->
// pool), as in host/policy/default.yaml and test/helpers/conn.ts.
const PLACES: Place[] = [
  { fam: 4, outside: { addr: "203.0.113.10", meta: IN_EXT }, inside: { addr: "203.0.113.1", meta: OUT_EXT }, servicePorts: [443, 80, 53, 22] },
  { fam: 4, outside: { addr: "203.0.113.11", meta: IN_EXT }, inside: { addr: "203.0.113.1", meta: OUT_EXT }, servicePorts: [443, 80] },
  { fam: 6, outside: { addr: "2001:db8:1::10", meta: IN_EXT }, inside: { addr: "2001:db8:1::1", meta: OUT_EXT }, servicePorts: [443, 80, 53] },
  // the proxy opens connections to the pool: "outside" is the opener here
  { fam: 4, outside: { addr: "198.51.100.1", meta: OUT_INT }, inside: { addr: "198.51.100.10", meta: IN_INT }, servicePorts: [4443, 8080, 443] },
  { fam: 6, outside: { addr: "2001:db8:2::1", meta: OUT_INT }, inside: { addr: "2001:db8:2::30", meta: IN_INT }, servicePorts: [443, 4443] },
];

interface Conv { place: Place; cport: number; sport: number; cseq: number; sseq: number; wscale: boolean }

const ROUTER = { 4: "192.0.2.254", 6: "2001:db8:9::1" } as const;
const FWD_EXT: PacketMeta = { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
// The proxy's own addresses: what it receives, and what it sends.
const PROXY_META_IN: Record<string, PacketMeta> = {
  "203.0.113.1": IN_EXT, "2001:db8:1::1": IN_EXT, "198.51.100.1": IN_INT, "2001:db8:2::1": IN_INT,
};
const PROXY_META_OUT: Record<string, PacketMeta> = {
  "203.0.113.1": OUT_EXT, "2001:db8:1::1": OUT_EXT, "198.51.100.1": OUT_INT, "2001:db8:2::1": OUT_INT,
};

export class ConvGen {
  private readonly r: () => number;
  private readonly convs: Conv[] = [];
  private readonly sent: GenPacket[] = []; // recent packets, for ICMP errors to quote
  private t = 0;
  private fragId = 1;

  constructor(seed: number) {
    this.r = rng(seed);
    for (const place of PLACES) {
      for (const cport of [40000, 40001, 40002]) {
        for (const sport of place.servicePorts) {
          this.convs.push({ place, cport, sport, cseq: this.u32(), sseq: this.u32(), wscale: this.r() < 0.5 });
        }
      }
    }
  }

  private int(n: number): number { return Math.floor(this.r() * n); }
  private u32(): number { return Math.floor(this.r() * 2 ** 32) >>> 0; }
  private pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }

  private ip(fam: 4 | 6, src: string, dst: string, proto: number, payload: Uint8Array): Uint8Array {
    const hopLimit = 64;
    return fam === 4 ? ipv4({ src, dst, proto, payload, ttl: hopLimit }) : ipv6({ src, dst, proto, payload, hopLimit });
  }

  // Now and then a packet shows up on the wrong hook or side.
  private meta(m: PacketMeta): PacketMeta {
    if (this.r() > 0.05) return m;
    return { hook: this.pick([ABI.HOOK_INPUT, ABI.HOOK_OUTPUT, ABI.HOOK_FORWARD, ABI.HOOK_PREROUTING]), inRole: this.int(3), outRole: this.int(3) };
  }

  private tcpSeg(c: Conv): GenPacket {
    const fromClient = this.r() < 0.55;
    const flags = this.pick([
      TCP_SYN, TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_PSH, TCP_ACK | TCP_PSH,
      TCP_FIN | TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST, TCP_RST | TCP_ACK, TCP_ACK,
    ]);
    const len = flags & TCP_PSH ? this.pick([1, 100, 1400, 8000]) : 0;
    let seq = fromClient ? c.cseq : c.sseq;
    const roll = this.r();
    if (roll < 0.08) seq = (seq + this.int(200000) - 100000) >>> 0;
    else if (roll < 0.12) seq = this.u32();
    else if (roll < 0.17) seq = (seq - len - 1) >>> 0; // a retransmission
    if (flags === TCP_SYN && this.r() < 0.3) {
      // A fresh connection attempt: a new ISN.
      seq = this.u32();
      if (fromClient) c.cseq = seq; else c.sseq = seq;
    }
    const ackOf = fromClient ? c.sseq : c.cseq;
    const ack = this.r() < 0.9 ? ackOf : this.u32();
    const opts = flags & TCP_SYN && c.wscale ? Uint8Array.from([1, 3, 3, this.int(16)]) : undefined;
    const seg = tcp({
      sport: fromClient ? c.cport : c.sport, dport: fromClient ? c.sport : c.cport, flags, seq, ack,
      win: this.pick([0, 512, 29200, 65535]), payload: new Uint8Array(len), ...(opts ? { options: opts } : {}),
    });
    const from = fromClient ? c.place.outside : c.place.inside, to = fromClient ? c.place.inside : c.place.outside;
    const consumed = len + (flags & (TCP_SYN | TCP_FIN) ? 1 : 0);
    if (seq === (fromClient ? c.cseq : c.sseq)) {
      if (fromClient) c.cseq = (c.cseq + consumed) >>> 0; else c.sseq = (c.sseq + consumed) >>> 0;
    }
    return { bytes: this.ip(c.place.fam, from.addr, to.addr, PROTO_TCP, seg), meta: this.meta(from.meta) };
  }

  private udpDgram(c: Conv): GenPacket {
    const fromClient = this.r() < 0.6;
    const from = fromClient ? c.place.outside : c.place.inside, to = fromClient ? c.place.inside : c.place.outside;
    const seg = udp({ sport: fromClient ? c.cport : c.sport, dport: fromClient ? c.sport : c.cport, payload: new Uint8Array(this.int(40)) });
    return { bytes: this.ip(c.place.fam, from.addr, to.addr, PROTO_UDP, seg), meta: this.meta(from.meta) };
  }

  private ping(c: Conv): GenPacket {
    const fromClient = this.r() < 0.6;
    const v6 = c.place.fam === 6;
    const from = fromClient ? c.place.outside : c.place.inside, to = fromClient ? c.place.inside : c.place.outside;
    const type = this.r() < 0.5 ? (v6 ? 128 : 8) : this.r() < 0.8 ? (v6 ? 129 : 0) : this.pick(v6 ? [130, 133, 1] : [13, 14, 9, 3]);
    const msg = echo(type, this.pick([7, 8]), this.int(100), new Uint8Array(16));
    return { bytes: this.ip(c.place.fam, from.addr, to.addr, v6 ? PROTO_ICMPV6 : PROTO_ICMP, msg), meta: this.meta(from.meta) };
  }

  // An error about a packet that was sent, from its receiver or a router,
  // mostly to its sender.
  private error(): GenPacket | null {
    const q = this.sent[this.int(this.sent.length)];
    if (!q) return null;
    const v6 = q.bytes[0]! >> 4 === 6;
    const fam = v6 ? 6 : 4;
    const srcOf = (b: Uint8Array): string => v6 ? formatAddr(b.subarray(8, 24), 6) : formatAddr(b.subarray(12, 16), 4);
    const dstOf = (b: Uint8Array): string => v6 ? formatAddr(b.subarray(24, 40), 6) : formatAddr(b.subarray(16, 20), 4);
    const to = this.r() < 0.85 ? srcOf(q.bytes) : dstOf(q.bytes);
    const from = this.r() < 0.5 ? dstOf(q.bytes) : ROUTER[fam];
    const [type, code] = v6 ? this.pick([[1, 4], [3, 0], [2, 0], [4, 1]] as const) : this.pick([[3, 3], [3, 4], [11, 0], [12, 0], [5, 1]] as const);
    const quote = q.bytes.slice(0, this.pick(v6 ? [48, 56, 40, 44, q.bytes.length] : [28, 24, 20, q.bytes.length]));
    const msg = icmp({ type, code, rest: type === 3 && code === 4 ? 1280 : 0, payload: quote });
    const meta = PROXY_META_IN[to] ?? PROXY_META_OUT[from] ?? FWD_EXT;
    return { bytes: this.ip(fam, from, to, v6 ? PROTO_ICMPV6 : PROTO_ICMP, msg), meta: this.meta(meta) };
  }

  // A datagram cut into pieces, sent out of order, with duplicates and overlaps.
  private fragments(c: Conv): GenPacket[] {
    const fromClient = this.r() < 0.8;
    const from = fromClient ? c.place.outside : c.place.inside, to = fromClient ? c.place.inside : c.place.outside;
    const fam = c.place.fam;
    const kind = this.int(3);
    const proto = kind === 0 ? PROTO_UDP : kind === 1 ? PROTO_TCP : fam === 4 ? PROTO_ICMP : PROTO_ICMPV6;
    const body = new Uint8Array(this.pick([100, 600, 3000]));
    const l4 = proto === PROTO_UDP
      ? udp({ sport: fromClient ? c.cport : c.sport, dport: fromClient ? c.sport : c.cport, payload: body })
      : proto === PROTO_TCP
        ? tcp({ sport: fromClient ? c.cport : c.sport, dport: fromClient ? c.sport : c.cport, flags: TCP_SYN, seq: c.cseq, payload: body })
        : echo(fam === 4 ? 8 : 128, 7, 1, body);
    const cuts = [0];
    const pieces = 2 + this.int(3);
    for (let i = 1; i < pieces; i++) cuts.push(Math.min(l4.length, cuts[cuts.length - 1]! + 8 * (1 + this.int(Math.max(1, l4.length / 8 / pieces)))));
    cuts.push(l4.length);
    const ranges: Array<[number, number]> = [];
    for (let i = 0; i + 1 < cuts.length; i++) if (cuts[i]! < cuts[i + 1]! || this.r() < 0.2) ranges.push([cuts[i]!, cuts[i + 1]!]);
    if (this.r() < 0.15 && ranges.length > 1) ranges.push(ranges[this.int(ranges.length)]!); //              duplicate
    if (this.r() < 0.1) { const s = 8 * this.int(l4.length / 8); ranges.push([s, Math.min(l4.length, s + 64)]); } // overlap
    if (this.r() < 0.1 && ranges.length > 1) ranges.splice(this.int(ranges.length), 1); //                     lost
    for (let i = ranges.length - 1; i > 0; i--) { // shuffle, first fragment mostly first
      if (this.r() < 0.4) { const j = this.int(i + 1); [ranges[i], ranges[j]] = [ranges[j]!, ranges[i]!]; }
    }
    const id = this.r() < 0.9 ? this.fragId++ : 1;
    return ranges.map(([s, e]) => {
      const more = e < l4.length;
      const part = l4.slice(s, e);
      const bytes = fam === 4
        ? ipv4({ src: from.addr, dst: to.addr, proto, id: id & 0xffff, mf: more, fragOff: s / 8, payload: part })
        : ipv6({ src: from.addr, dst: to.addr, proto, payload: part, ext: [fragmentExt(s / 8, more, id)] });
      return { bytes, meta: this.meta(from.meta) };
    });
  }

  private ndp(): GenPacket {
    const type = 133 + this.int(5);
    const bytes = ipv6({ src: "fe80::1", dst: "ff02::1", proto: PROTO_ICMPV6, hopLimit: this.r() < 0.7 ? 255 : 64, payload: icmp({ type, payload: new Uint8Array(16) }) });
    return { bytes, meta: this.meta(IN_EXT) };
  }

  next(): GenBatch {
    const roll = this.r();
    if (roll < 0.01) this.t += 400000 + this.int(100000); //     past the established timeout
    else if (roll < 0.08) this.t += 20 + this.int(700); //        past the short timeouts
    else this.t += this.r() * 2;
    const n = 1 + this.int(this.r() < 0.5 ? 4 : 24);
    const packets: GenPacket[] = [];
    while (packets.length < n) {
      const c = this.pick(this.convs);
      const k = this.r();
      let got: GenPacket[];
      if (k < 0.55) got = [this.tcpSeg(c)];
      else if (k < 0.67) got = [this.udpDgram(c)];
      else if (k < 0.77) got = [this.ping(c)];
      else if (k < 0.88) { const e = this.error(); got = e ? [e] : []; }
      else if (k < 0.97) got = this.fragments(c);
      else got = [this.ndp()];
      for (const p of got) {
        packets.push(p);
        this.sent.push(p);
        if (this.sent.length > 64) this.sent.shift();
      }
    }
    return { t: this.t, packets: packets.slice(0, ABI.MAX_BATCH) };
  }
}
