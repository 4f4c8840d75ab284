// The reference decoder: IPv4 (RFC 791), IPv6 and its extension headers
// (RFC 8200), TCP, UDP, ICMP and ICMPv6 with the packet an error quotes, in
// plain TypeScript. Same checks, in the same order, with the same reason for
// each refusal as assembly/decode/*.ts; a test runs both on the same bytes.
//
// Every read is preceded by `need`: is [off, off + n) inside the packet (by
// its length fields) and inside the captured bytes? Functions that find an
// offset return it, or a negative reason code.
import * as R from "./codes.js";

export const PF_FRAGMENT = 1; //    part of a fragmented datagram
export const PF_FIRST_FRAG = 2; //  its first piece
export const PF_MORE_FRAGS = 4; //  MF set
export const PF_HAS_PORTS = 8; //   sport/dport are valid
export const PF_ICMP_ERROR = 16; // the quoted 5-tuple (in*) is valid

export const TH_FIN = 0x01, TH_SYN = 0x02, TH_RST = 0x04, TH_ACK = 0x10, TH_URG = 0x20;
const PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_DCCP = 33, PROTO_ICMPV6 = 58;
const PROTO_SCTP = 132, PROTO_UDPLITE = 136;
export const ETH_P_IP = 0x0800, ETH_P_IPV6 = 0x86dd;
const MAX_EXT_HEADERS = 8;

// What the decoder found. Addresses are four 32-bit words, most significant
// first (an IPv4 address is word 0, the rest zero); numbers in host order.
export class Packet {
  family = 0;
  proto = 0;
  flags = 0;
  tcpFlags = 0;
  sport = 0;
  dport = 0;
  icmpType = 0;
  icmpCode = 0;
  icmpId = 0;
  ttl = 0;
  fragId = 0;
  fragOff = 0; //     in 8-byte units
  fragData = 0; //    where the fragmentable part starts
  ipLen = 0;
  l4Len = 0;
  tcpSeq = 0;
  tcpAck = 0;
  tcpWin = 0;
  wscale = 0; //      window scale option of a SYN, 0xff when none
  tcpSack = 0; //     highest SACK right edge above the ack, else the ack
  tcpPayload = 0;
  readonly src = new Uint32Array(4);
  readonly dst = new Uint32Array(4);
  inFamily = 0;
  inProto = 0;
  inSport = 0;
  inDport = 0;
  readonly inSrc = new Uint32Array(4);
  readonly inDst = new Uint32Array(4);

  reset(): void {
    this.family = this.proto = this.flags = this.tcpFlags = this.sport = this.dport = 0;
    this.icmpType = this.icmpCode = this.icmpId = this.ttl = this.fragId = this.fragOff = this.fragData = 0;
    this.ipLen = this.l4Len = this.tcpSeq = this.tcpAck = this.tcpWin = this.wscale = this.tcpPayload = this.tcpSack = 0;
    this.inFamily = this.inProto = this.inSport = this.inDport = 0;
    this.src.fill(0); this.dst.fill(0); this.inSrc.fill(0); this.inDst.fill(0);
  }
}

// The TCP flag combinations a stack sends (after masking PSH, ECE, CWR), as
// Linux conntrack's tcp_valid_flags: SYN, SYN|URG, SYN|ACK, RST, RST|ACK,
// FIN|ACK, FIN|ACK|URG, ACK, ACK|URG.
const VALID_TCP_FLAGS = new Set([0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30]);

export class Decoder {
  readonly p = new Packet();
  private b: Uint8Array = new Uint8Array(0);
  private base = 0;
  private capEnd = 0; //    bytes captured
  private ipEnd = 0; //     bytes the packet has: the wire length, then the IP length field
  private firstFrag = false;
  private chainProto = 0;
  private chainNonFirst = false;

  private u8(o: number): number { return this.b[this.base + o]!; }
  private be16(o: number): number { return (this.b[this.base + o]! << 8) | this.b[this.base + o + 1]!; }
  private be32(o: number): number { return ((this.be16(o) << 16) | this.be16(o + 2)) >>> 0; }
  private addr(to: Uint32Array, o: number, bytes: 4 | 16): void {
    for (let i = 0; i < bytes / 4; i++) to[i] = this.be32(o + 4 * i);
  }

  // 0 when [off, off + n) is there; else why not: the packet is too short
  // (`reason`), only the capture is (SNAP_TRUNCATED), or a first fragment
  // stops before its transport header (FRAG_TINY).
  private need(off: number, n: number, reason: number): number {
    const e = off + n;
    if (e <= this.ipEnd) return e <= this.capEnd ? 0 : -R.SNAP_TRUNCATED;
    return this.firstFrag ? -R.FRAG_TINY : -reason;
  }

  // The same for the packet an ICMP error quotes: running out is the quote's fault.
  private needInner(off: number, n: number): number { return this.need(off, n, R.ICMP_INNER_TRUNCATED); }

  // Decodes the packet of `cap` captured bytes at data[off]. Returns NONE for
  // a well-formed packet (the result in `p`), else the reason.
  decode(data: Uint8Array, off: number, cap: number, wire: number, hwProto: number): number {
    this.p.reset();
    this.b = data; this.base = off; this.capEnd = cap; this.ipEnd = wire; this.firstFrag = false;
    if (hwProto !== ETH_P_IP && hwProto !== ETH_P_IPV6 && hwProto !== 0) return R.L3_UNSUPPORTED;
    const r = this.need(0, 1, hwProto === ETH_P_IPV6 ? R.IP6_TRUNCATED : hwProto === ETH_P_IP ? R.IP4_TRUNCATED : R.L3_UNSUPPORTED);
    if (r < 0) return -r;
    const version = this.u8(0) >> 4;
    let l4: number;
    let nonFirst: boolean;
    if (version === 4) {
      if (hwProto === ETH_P_IPV6) return R.L3_VERSION_MISMATCH;
      l4 = this.ip4(wire);
      if (l4 < 0) return -l4;
      nonFirst = (this.p.flags & (PF_FRAGMENT | PF_FIRST_FRAG)) === PF_FRAGMENT;
    } else if (version === 6) {
      if (hwProto === ETH_P_IP) return R.L3_VERSION_MISMATCH;
      l4 = this.ip6(wire);
      if (l4 < 0) return -l4;
      nonFirst = this.chainNonFirst;
    } else {
      return hwProto === 0 ? R.L3_UNSUPPORTED : R.L3_VERSION_MISMATCH;
    }
    if (nonFirst) return R.NONE; // no transport header: the fragment tracker decides it
    const proto = this.p.proto;
    let t = 0;
    if (proto === PROTO_TCP) t = this.tcp(l4);
    else if (proto === PROTO_UDP) t = this.udp(l4);
    else if (proto === PROTO_ICMP && version === 4) t = this.icmp(l4, false);
    else if (proto === PROTO_ICMPV6 && version === 6) t = this.icmp(l4, true);
    return t < 0 ? -t : R.NONE;
  }

  private ip4(wire: number): number {
    const p = this.p;
    let r = this.need(0, 20, R.IP4_TRUNCATED);
    if (r) return r;
    const ihl = (this.u8(0) & 15) * 4;
    if (ihl < 20) return -R.IP4_BAD_IHL;
    const total = this.be16(2);
    if (total < ihl) return total < 20 ? -R.IP4_BAD_TOTAL_LEN : -R.IP4_BAD_IHL;
    if (total > wire) return -R.IP4_LEN_EXCEEDS;
    this.ipEnd = total;
    r = this.need(0, ihl, R.IP4_BAD_IHL);
    if (r) return r;
    if (ihl > 20) {
      r = this.ip4Options(ihl);
      if (r) return r;
    }
    const frag = this.be16(6);
    const fragOff = frag & 0x1fff;
    const more = (frag & 0x2000) !== 0;
    const payload = total - ihl;
    if (fragOff * 8 + payload > 0xffff) return -R.FRAG_TOO_BIG;
    // RFC 1858 3.2: a TCP fragment at 8 bytes can only rewrite the first's flags.
    if (fragOff === 1 && this.u8(9) === PROTO_TCP) return -R.FRAG_OFFSET_ONE;
    if (more || fragOff !== 0) {
      p.flags |= PF_FRAGMENT | (more ? PF_MORE_FRAGS : 0) | (fragOff === 0 ? PF_FIRST_FRAG : 0);
      p.fragOff = fragOff;
      p.fragData = ihl;
      p.fragId = this.be16(4);
      this.firstFrag = fragOff === 0;
    }
    p.family = 4;
    p.proto = this.u8(9);
    p.ttl = this.u8(8);
    this.addr(p.src, 12, 4);
    this.addr(p.dst, 16, 4);
    p.l4Len = payload;
    p.ipLen = total;
    return ihl;
  }

  // Options are at most 40 bytes: the walk stays inside the header.
  private ip4Options(ihl: number): number {
    let i = 20;
    while (i < ihl) {
      const t = this.u8(i);
      if (t === 0) break; //                  end of options
      if (t === 1) { i++; continue; } //       no-op
      if (i + 1 >= ihl) return -R.IP4_BAD_OPTIONS;
      const len = this.u8(i + 1);
      if (len < 2 || i + len > ihl) return -R.IP4_BAD_OPTIONS;
      if (t === 0x83 || t === 0x89) return -R.IP4_SOURCE_ROUTE; // LSRR, SSRR
      i += len;
    }
    return 0;
  }

  private ip6(wire: number): number {
    const p = this.p;
    const r = this.need(0, 40, R.IP6_TRUNCATED);
    if (r) return r;
    const plen = this.be16(4);
    const nh = this.u8(6);
    if (plen === 0 && nh === 0) return -R.IP6_JUMBO;
    const total = 40 + plen;
    if (total > wire) return -R.IP6_LEN_EXCEEDS;
    this.ipEnd = total;
    p.family = 6;
    p.ttl = this.u8(7);
    this.addr(p.src, 8, 16);
    this.addr(p.dst, 24, 16);
    p.ipLen = total;
    const l4 = this.chain(40, nh, false);
    if (l4 < 0) return l4;
    p.proto = this.chainProto;
    p.l4Len = total - l4;
    return l4;
  }

  private needExt(inner: boolean, off: number, n: number): number {
    return inner ? this.needInner(off, n) : this.need(off, n, R.IP6_EXT_TRUNCATED);
  }

  // Walks the extension headers from `off` (next header `nh`) to the first
  // header that is not one. For the outer packet it records the fragment
  // header; a non-first fragment ends the walk (what follows is payload).
  private chain(off: number, nh: number, inner: boolean): number {
    const p = this.p;
    this.chainNonFirst = false;
    let count = 0;
    for (;;) {
      let len: number;
      if (nh === 0 || nh === 43 || nh === 60 || nh === 135 || nh === 139 || nh === 140) {
        // hop-by-hop, routing, destination options, mobility, HIP, shim6
        if (nh === 0 && count !== 0) return -R.IP6_HBH_MISPLACED;
        const r = this.needExt(inner, off, nh === 43 ? 4 : 2);
        if (r) return r;
        if (nh === 43 && this.u8(off + 2) === 0) return -R.IP6_RH0;
        len = (this.u8(off + 1) + 1) * 8;
      } else if (nh === 51) { // AH
        const r = this.needExt(inner, off, 2);
        if (r) return r;
        len = (this.u8(off + 1) + 2) * 4;
      } else if (nh === 44) { // fragment
        const r = this.needExt(inner, off, 8);
        if (r) return r;
        const fo = this.be16(off + 2);
        const fragOff = fo >> 3;
        const more = (fo & 1) !== 0;
        const next = this.u8(off);
        if (fragOff !== 0 || more) {
          if (inner) {
            if (fragOff !== 0) return -R.ICMP_INNER_BAD;
          } else {
            if (fragOff * 8 + (this.ipEnd - off - 8) > 0xffff) return -R.FRAG_TOO_BIG;
            if (fragOff === 1 && next === PROTO_TCP) return -R.FRAG_OFFSET_ONE;
            p.flags |= PF_FRAGMENT | (more ? PF_MORE_FRAGS : 0) | (fragOff === 0 ? PF_FIRST_FRAG : 0);
            p.fragOff = fragOff;
            p.fragData = off + 8;
            p.fragId = this.be32(off + 4);
            this.firstFrag = fragOff === 0;
          }
          if (fragOff !== 0) {
            this.chainProto = next;
            this.chainNonFirst = true;
            return off + 8;
          }
        }
        nh = next;
        off += 8;
        if (++count > MAX_EXT_HEADERS) return -R.IP6_EXT_CHAIN_LONG;
        continue;
      } else {
        this.chainProto = nh;
        return off;
      }
      const r = this.needExt(inner, off, len);
      if (r) return r;
      nh = this.u8(off);
      off += len;
      if (++count > MAX_EXT_HEADERS) return -R.IP6_EXT_CHAIN_LONG;
    }
  }

  private tcp(off: number): number {
    const p = this.p;
    let r = this.need(off, 20, R.TCP_TRUNCATED);
    if (r) return r;
    const doff = (this.u8(off + 12) >> 4) * 4;
    if (doff < 20) return -R.TCP_BAD_DOFF;
    r = this.need(off, doff, R.TCP_BAD_DOFF);
    if (r) return r;
    const flags = this.u8(off + 13);
    if (!VALID_TCP_FLAGS.has(flags & (TH_FIN | TH_SYN | TH_RST | TH_ACK | TH_URG))) return -R.TCP_BAD_FLAGS;
    const sport = this.be16(off), dport = this.be16(off + 2);
    if (sport === 0 || dport === 0) return -R.L4_PORT_ZERO;
    p.sport = sport;
    p.dport = dport;
    p.tcpFlags = flags;
    p.tcpSeq = this.be32(off + 4);
    p.tcpAck = this.be32(off + 8);
    p.tcpWin = this.be16(off + 14);
    this.options(off + 20, off + doff, flags);
    p.tcpPayload = p.l4Len - doff;
    p.flags |= PF_HAS_PORTS;
    return off + doff;
  }

  // A SYN's window scale (RFC 7323; 0xff when absent) and, with ACK, the
  // highest SACK right edge (RFC 2018) above the ack; a malformed list ends
  // the walk with what it found (as assembly/decode/tcp.ts).
  private options(at: number, end: number, flags: number): void {
    const p = this.p;
    p.wscale = 0xff;
    let sack = p.tcpAck;
    while (at < end) {
      const kind = this.u8(at);
      if (kind === 0) break;
      if (kind === 1) { at++; continue; }
      if (at + 1 >= end) break;
      const len = this.u8(at + 1);
      if (len < 2 || at + len > end) break;
      if (kind === 3 && len === 3 && (flags & TH_SYN)) p.wscale = Math.min(this.u8(at + 2), 14);
      if (kind === 5 && (flags & TH_ACK) && len >= 10 && ((len - 2) & 7) === 0) {
        for (let b = at + 2; b < at + len; b += 8) {
          const right = this.be32(b + 4);
          if (((right - sack) | 0) > 0) sack = right;
        }
      }
      at += len;
    }
    p.tcpSack = sack >>> 0;
  }

  private udp(off: number): number {
    const p = this.p;
    const r = this.need(off, 8, R.UDP_TRUNCATED);
    if (r) return r;
    const len = this.be16(off + 4);
    // In a fragmented datagram the length covers every fragment, not this one.
    const fragmented = (p.flags & PF_FRAGMENT) !== 0;
    if (len < 8 || (!fragmented && len > this.ipEnd - off)) return -R.UDP_BAD_LEN;
    const dport = this.be16(off + 2);
    if (dport === 0) return -R.L4_PORT_ZERO;
    p.sport = this.be16(off);
    p.dport = dport;
    p.flags |= PF_HAS_PORTS;
    return off + 8;
  }

  private icmp(off: number, v6: boolean): number {
    const p = this.p;
    let r = this.need(off, 8, R.ICMP_TRUNCATED);
    if (r) return r;
    const t = this.u8(off);
    p.icmpType = t;
    p.icmpCode = this.u8(off + 1);
    if (v6 ? isIcmp6Error(t) : isIcmp4Error(t)) {
      r = v6 ? this.innerIp6(off + 8) : this.innerIp4(off + 8);
      if (r < 0) return r;
      r = this.quotedL4(r, p.inProto, v6);
      if (r) return r;
    } else if (v6 ? t === 128 || t === 129 : t === 0 || t === 8 || (t >= 13 && t <= 18)) {
      p.icmpId = this.be16(off + 4); // echo, timestamp, information, address mask
    }
    return off + 8;
  }

  // The IPv4 header an error quotes. Its total length is the original's, so
  // it is only checked for sense.
  private innerIp4(off: number): number {
    const p = this.p;
    let r = this.needInner(off, 20);
    if (r) return r;
    const vihl = this.u8(off);
    const ihl = (vihl & 15) * 4;
    if (vihl >> 4 !== 4 || ihl < 20) return -R.ICMP_INNER_BAD;
    r = this.needInner(off, ihl);
    if (r) return r;
    if (this.be16(off + 2) < ihl) return -R.ICMP_INNER_BAD;
    // A non-first fragment quotes no transport header: nothing to relate it to.
    if ((this.be16(off + 6) & 0x1fff) !== 0) return -R.ICMP_INNER_BAD;
    p.inFamily = 4;
    p.inProto = this.u8(off + 9);
    this.addr(p.inSrc, off + 12, 4);
    this.addr(p.inDst, off + 16, 4);
    return off + ihl;
  }

  private innerIp6(off: number): number {
    const p = this.p;
    const r = this.needInner(off, 40);
    if (r) return r;
    if (this.u8(off) >> 4 !== 6) return -R.ICMP_INNER_BAD;
    p.inFamily = 6;
    this.addr(p.inSrc, off + 8, 16);
    this.addr(p.inDst, off + 24, 16);
    const l4 = this.chain(off + 40, this.u8(off + 6), true);
    if (l4 < 0) {
      // Only running out of quoted bytes keeps its own reason; any other
      // fault in the quoted chain makes the quote unusable.
      return l4 === -R.ICMP_INNER_TRUNCATED || l4 === -R.SNAP_TRUNCATED ? l4 : -R.ICMP_INNER_BAD;
    }
    p.inProto = this.chainProto;
    return l4;
  }

  // The quoted transport header: its ports, or for a quoted ICMP query its
  // identifier (an error about an error is refused).
  private quotedL4(off: number, proto: number, v6: boolean): number {
    const p = this.p;
    if (proto === PROTO_TCP || proto === PROTO_UDP || proto === PROTO_SCTP || proto === PROTO_UDPLITE || proto === PROTO_DCCP) {
      const r = this.needInner(off, 8); // RFC 792 quotes 64 bits: the ports at least
      if (r) return r;
      p.inSport = this.be16(off);
      p.inDport = this.be16(off + 2);
    } else if (proto === (v6 ? PROTO_ICMPV6 : PROTO_ICMP)) {
      const r = this.needInner(off, 8);
      if (r) return r;
      const t = this.u8(off);
      if (v6 ? isIcmp6Error(t) : isIcmp4Error(t)) return -R.ICMP_ERROR_IN_ERROR;
      p.inSport = p.inDport = this.be16(off + 4);
    }
    p.flags |= PF_ICMP_ERROR;
    return 0;
  }
}

// Unreachable, source quench, redirect, time exceeded, parameter problem.
export function isIcmp4Error(t: number): boolean { return t === 3 || t === 4 || t === 5 || t === 11 || t === 12; }
export function isIcmp6Error(t: number): boolean { return t < 128; }
