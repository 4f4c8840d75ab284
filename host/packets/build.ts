// Packets assembled from the RFC layouts, for tests, tools and the demo.
// Every builder returns plain bytes as they would be on the wire; the
// transport checksum is filled in when the whole transport segment is present.
import { addrBytes } from "./addr.js";

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function sum16(bytes: Uint8Array, acc = 0): number {
  for (let i = 0; i + 1 < bytes.length; i += 2) acc += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length & 1) acc += bytes[bytes.length - 1]! << 8;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

export function checksum(bytes: Uint8Array): number {
  return fold(sum16(bytes));
}

// Where each protocol keeps its checksum (ICMPv4 has no pseudo-header).
const CSUM_AT: Record<number, number> = { [PROTO_TCP]: 16, [PROTO_UDP]: 6, [PROTO_ICMP]: 2, [PROTO_ICMPV6]: 2 };

function fillChecksum(seg: Uint8Array, proto: number, src: Uint8Array, dst: Uint8Array): void {
  const at = CSUM_AT[proto];
  if (at === undefined || seg.length < at + 2) return;
  seg[at] = 0; seg[at + 1] = 0;
  let acc = 0;
  if (proto !== PROTO_ICMP) {
    acc = sum16(src, acc);
    acc = sum16(dst, acc);
    acc += proto + seg.length;
  }
  let c = fold(sum16(seg, acc));
  if (c === 0 && proto === PROTO_UDP) c = 0xffff;
  seg[at] = c >> 8; seg[at + 1] = c & 0xff;
}

export interface TcpOpts {
  sport: number;
  dport: number;
  flags: number;
  seq?: number;
  ack?: number;
  win?: number;
  options?: Uint8Array; // padded to 4 bytes by the caller
  payload?: Uint8Array;
  doff?: number; //       override the data offset (words), e.g. to lie
}

export function tcp(o: TcpOpts): Uint8Array {
  const opts = o.options ?? new Uint8Array(0);
  const h = new Uint8Array(20 + opts.length);
  const v = new DataView(h.buffer);
  v.setUint16(0, o.sport); v.setUint16(2, o.dport);
  v.setUint32(4, (o.seq ?? 1000) >>> 0); v.setUint32(8, (o.ack ?? 0) >>> 0);
  h[12] = (o.doff ?? (20 + opts.length) / 4) << 4;
  h[13] = o.flags;
  v.setUint16(14, o.win ?? 64240);
  h.set(opts, 20);
  return concat(h, o.payload ?? new Uint8Array(0));
}

export interface UdpOpts { sport: number; dport: number; payload?: Uint8Array; len?: number }

export function udp(o: UdpOpts): Uint8Array {
  const payload = o.payload ?? new Uint8Array(0);
  const h = new Uint8Array(8);
  const v = new DataView(h.buffer);
  v.setUint16(0, o.sport); v.setUint16(2, o.dport); v.setUint16(4, o.len ?? 8 + payload.length);
  return concat(h, payload);
}

export interface IcmpOpts { type: number; code?: number; rest?: number; payload?: Uint8Array }

// ICMP and ICMPv6 share the 8-byte header: type, code, checksum, 4 bytes.
export function icmp(o: IcmpOpts): Uint8Array {
  const h = new Uint8Array(8);
  const v = new DataView(h.buffer);
  h[0] = o.type; h[1] = o.code ?? 0; v.setUint32(4, (o.rest ?? 0) >>> 0);
  return concat(h, o.payload ?? new Uint8Array(0));
}

export function echo(type: number, id: number, seq: number, payload?: Uint8Array): Uint8Array {
  return icmp({ type, rest: ((id & 0xffff) << 16) | (seq & 0xffff), ...(payload ? { payload } : {}) });
}

export interface Ip4Opts {
  src: string;
  dst: string;
  proto: number;
  payload: Uint8Array;
  id?: number;
  ttl?: number;
  df?: boolean;
  mf?: boolean;
  fragOff?: number; //     8-byte units
  options?: Uint8Array; // padded to 4 bytes by the caller
  ihl?: number; //         override (words)
  totalLen?: number; //    override
  version?: number; //     override
}

export function ipv4(o: Ip4Opts): Uint8Array {
  const opts = o.options ?? new Uint8Array(0);
  const hl = 20 + opts.length;
  const h = new Uint8Array(hl);
  const v = new DataView(h.buffer);
  const src = addrBytes(o.src), dst = addrBytes(o.dst);
  h[0] = ((o.version ?? 4) << 4) | (o.ihl ?? hl / 4);
  v.setUint16(2, o.totalLen ?? hl + o.payload.length);
  v.setUint16(4, o.id ?? 0x1234);
  v.setUint16(6, (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.fragOff ?? 0));
  h[8] = o.ttl ?? 64; h[9] = o.proto;
  h.set(src, 12); h.set(dst, 16); h.set(opts, 20);
  v.setUint16(10, checksum(h));
  const payload = Uint8Array.from(o.payload);
  if (!o.mf && !o.fragOff) fillChecksum(payload, o.proto, src, dst);
  return concat(h, payload);
}

// One IPv6 extension header, as it appears in the chain (its next-header
// byte is filled in by ipv6()).
export interface Ext6 { type: number; bytes: Uint8Array }

export const NH_HOPOPTS = 0;
export const NH_ROUTING = 43;
export const NH_FRAGMENT = 44;
export const NH_AH = 51;
export const NH_DSTOPTS = 60;
export const NH_NONE = 59;

// Hop-by-hop or destination options: `len8` 8-byte units, PadN-filled.
export function optionsExt(type: number, len8 = 1): Ext6 {
  const b = new Uint8Array(len8 * 8);
  b[1] = len8 - 1;
  b[2] = 1; b[3] = len8 * 8 - 4; // PadN over the rest
  return { type, bytes: b };
}

export function routingExt(routingType: number, segmentsLeft = 0, len8 = 3): Ext6 {
  const b = new Uint8Array(len8 * 8);
  b[1] = len8 - 1; b[2] = routingType; b[3] = segmentsLeft;
  return { type: NH_ROUTING, bytes: b };
}

export function fragmentExt(offset8: number, more: boolean, id: number): Ext6 {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint16(2, (offset8 << 3) | (more ? 1 : 0));
  v.setUint32(4, id >>> 0);
  return { type: NH_FRAGMENT, bytes: b };
}

export function ahExt(icvWords = 3): Ext6 {
  const b = new Uint8Array(12 + icvWords * 4);
  b[1] = (b.length >> 2) - 2;
  return { type: NH_AH, bytes: b };
}

export interface Ip6Opts {
  src: string;
  dst: string;
  proto: number; //       the upper-layer protocol after the extension headers
  payload: Uint8Array;
  ext?: Ext6[];
  hopLimit?: number;
  payloadLen?: number; // override
  version?: number; //    override
}

export function ipv6(o: Ip6Opts): Uint8Array {
  const src = addrBytes(o.src), dst = addrBytes(o.dst);
  const ext = (o.ext ?? []).map((e) => ({ type: e.type, bytes: Uint8Array.from(e.bytes) }));
  ext.forEach((e, i) => { e.bytes[0] = i + 1 < ext.length ? ext[i + 1]!.type : o.proto; });
  const payload = Uint8Array.from(o.payload);
  if (!ext.some((e) => e.type === NH_FRAGMENT)) fillChecksum(payload, o.proto, src, dst);
  const body = concat(...ext.map((e) => e.bytes), payload);
  const h = new Uint8Array(40);
  const v = new DataView(h.buffer);
  v.setUint32(0, ((o.version ?? 6) << 28) >>> 0);
  v.setUint16(4, o.payloadLen ?? body.length);
  h[6] = ext.length ? ext[0]!.type : o.proto;
  h[7] = o.hopLimit ?? 64;
  h.set(src, 8); h.set(dst, 24);
  return concat(h, body);
}
