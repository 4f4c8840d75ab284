// One-line human summaries of IP packets, tcpdump-like, for the demo, replay
// and explain tools (control path only). Works on any bytes: a truncated or
// malformed packet is described as far as it goes, never thrown on.
//
//   203.0.113.10:40000 > 203.0.113.1:80 TCP [S]
//   [2001:db8:1::1]:80 > [2001:db8:1::10]:60226 TCP [P.] len 185
//   203.0.113.1 > 203.0.113.10 ICMP 3/3 destination-unreachable/port-unreachable about UDP 203.0.113.10:48266 > 203.0.113.1:9
//   203.0.113.10 > 203.0.113.1 ICMP [frag id 0xb491 off 1480 more]
import { formatAddr } from "./addr.js";
import { icmpCodeName, icmpText, icmpTypeName, isIcmpError } from "./icmp-names.js";

export interface IpEnds {
  family: 4 | 6;
  src: string;
  dst: string;
}

interface L3 extends IpEnds {
  proto: number; //   upper-layer protocol (after IPv6 extension headers)
  l4: number; //      offset of the transport header
  end: number; //     end of the IP packet inside the captured bytes
  frag: string; //    "" or " [frag id .. off .. more]"
  nonFirst: boolean;
  exts: string[]; //  IPv6 extension headers other than the fragment header
}

const PROTOS: Record<number, string> = {
  1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
  58: "ICMPv6", 59: "no-next-header", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP",
};
const EXT_NAMES: Record<number, string> = { 0: "HBH", 43: "RH", 44: "FRAG", 51: "AH", 60: "DST" };

const protoName = (p: number): string => PROTOS[p] ?? `proto ${p}`;
const be16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const be32 = (b: Uint8Array, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

// tcpdump's flag letters, in tcpdump's order; "." is ACK.
export function tcpFlags(f: number): string {
  const letters: Array<[number, string]> = [[1, "F"], [2, "S"], [4, "R"], [8, "P"], [16, "."], [32, "U"], [64, "E"], [128, "W"]];
  const s = letters.filter(([bit]) => f & bit).map(([, c]) => c).join("");
  return s === "" ? "none" : s;
}

// The addresses of an IP packet, when its fixed header is there.
export function ipEnds(b: Uint8Array): IpEnds | undefined {
  const v = b.length > 0 ? b[0]! >> 4 : 0;
  if (v === 4 && b.length >= 20) return { family: 4, src: formatAddr(b.subarray(12, 16), 4), dst: formatAddr(b.subarray(16, 20), 4) };
  if (v === 6 && b.length >= 40) return { family: 6, src: formatAddr(b.subarray(8, 24), 6), dst: formatAddr(b.subarray(24, 40), 6) };
  return undefined;
}

// The network layer, or a finished description when it is cut short or bad.
function network(b: Uint8Array): L3 | string {
  const ends = ipEnds(b);
  const v = b.length > 0 ? b[0]! >> 4 : 0;
  if (!ends) return v === 4 || v === 6 ? `IPv${v} truncated (${b.length} bytes)` : `not IP (version ${v}, ${b.length} bytes)`;
  const pair = `${ends.src} > ${ends.dst}`;
  if (ends.family === 4) {
    const ihl = (b[0]! & 15) * 4;
    if (ihl < 20 || ihl > b.length) return `${pair} IPv4 bad header length ${ihl}`;
    const total = be16(b, 2);
    if (total < ihl) return `${pair} IPv4 bad total length ${total}`;
    const ff = be16(b, 6);
    const off = (ff & 0x1fff) * 8;
    const more = (ff & 0x2000) !== 0;
    const frag = off || more ? ` [frag id 0x${be16(b, 4).toString(16)} off ${off}${more ? " more" : ""}]` : "";
    return { ...ends, proto: b[9]!, l4: ihl, end: Math.min(b.length, total), frag, nonFirst: off > 0, exts: [] };
  }
  const end = Math.min(b.length, 40 + be16(b, 4));
  let nh = b[6]!;
  let at = 40;
  let frag = "";
  let nonFirst = false;
  const exts: string[] = [];
  for (let n = 0; n < 16 && EXT_NAMES[nh] !== undefined && !nonFirst; n++) {
    if (at + 8 > end) return `${pair} IPv6 ${EXT_NAMES[nh]} header truncated`;
    const next = b[at]!;
    let len = (b[at + 1]! + 1) * 8;
    if (nh === 44) {
      const fo = be16(b, at + 2);
      nonFirst = (fo & 0xfff8) !== 0;
      frag = ` [frag id 0x${be32(b, at + 4).toString(16)} off ${fo & 0xfff8}${fo & 1 ? " more" : ""}]`;
      len = 8;
    } else {
      if (nh === 51) len = (b[at + 1]! + 2) * 4;
      exts.push(nh === 43 ? `RH type ${b[at + 2]}` : EXT_NAMES[nh]!);
    }
    nh = next;
    at += len;
  }
  return { ...ends, proto: nh, l4: at, end, frag, nonFirst, exts };
}

function hostPort(family: 4 | 6, addr: string, port: number): string {
  return family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

// The transport part: "TCP [S.] len 5", "UDP len 12", "ICMP echo request id 1 seq 2", ...
function transport(b: Uint8Array, l: L3, quoted: boolean): string {
  const at = l.l4;
  const left = l.end - at;
  const ports = (): string => `${hostPort(l.family, l.src, be16(b, at))} > ${hostPort(l.family, l.dst, be16(b, at + 2))}`;
  const pair = `${l.src} > ${l.dst}`;
  const name = protoName(l.proto);
  if (l.nonFirst) return `${pair} ${name}`;
  if ((l.proto === 6 || l.proto === 17) && left >= 4 && quoted) return `${name} ${ports()}`;
  if (l.proto === 6) {
    if (left < 20) return `${left >= 4 ? ports() : pair} TCP truncated`;
    const doff = (b[at + 12]! >> 4) * 4;
    const data = left - doff;
    return `${ports()} TCP [${tcpFlags(b[at + 13]!)}]${data > 0 ? ` len ${data}` : ""}`;
  }
  if (l.proto === 17) {
    if (left < 8) return `${left >= 4 ? ports() : pair} UDP truncated`;
    return `${ports()} UDP len ${be16(b, at + 4) - 8}`;
  }
  if (l.proto === 1 || l.proto === 58) {
    if (left < (quoted ? 2 : 4)) return `${pair} ${name} truncated`;
    const t = b[at]!, c = b[at + 1]!;
    if (quoted) return `${name} ${t}/${c} ${pair}`;
    // Types and codes by their nftables names (icmp-names.ts), as policies write them.
    const v6 = l.proto === 58;
    const fam = v6 ? 6 : 4;
    const known = icmpTypeName(fam, t);
    const tname = known ?? `type ${t}`;
    const echo = v6 ? t === 128 || t === 129 : t === 0 || t === 8;
    if (echo && left >= 8) return `${pair} ${name} ${tname} id ${be16(b, at + 4)} seq ${be16(b, at + 6)}`;
    if (isIcmpError(fam, t)) {
      let what = `${t}/${c} ${known ? icmpText(fam, t, icmpCodeName(fam, t, c) === undefined ? null : c) : tname}`;
      if (left >= 8 && ((!v6 && t === 3 && c === 4) || (v6 && t === 2))) what += ` (mtu ${v6 ? be32(b, at + 4) : be16(b, at + 6)})`;
      return `${pair} ${name} ${what} about ${quote(b.subarray(at + 8, l.end))}`;
    }
    if (v6 && (t === 135 || t === 136) && left >= 24) return `${pair} ${name} ${tname} ${formatAddr(b.subarray(at + 8, at + 24), 6)}`;
    return `${pair} ${name} ${known ? icmpText(fam, t, c === 0 ? null : c) : `${t}/${c}`}`;
  }
  return `${pair} ${name}${left > 0 ? ` len ${left}` : ""}`;
}

// The packet an ICMP error quotes: only its header is there, often cut.
function quote(b: Uint8Array): string {
  const l = network(b);
  if (typeof l === "string") return l;
  l.end = b.length; // the quoted length fields describe the original, not the quote
  return transport(b, l, true);
}

// One line for a packet that starts at its IP header. `ethertype` (when the
// capture has one) names what is not IP.
export function describePacket(ip: Uint8Array, ethertype = 0): string {
  if (ethertype !== 0 && ethertype !== 0x0800 && ethertype !== 0x86dd) {
    return `ethertype 0x${ethertype.toString(16).padStart(4, "0")}, ${ip.length} bytes`;
  }
  const l = network(ip);
  if (typeof l === "string") return l;
  const ext = l.exts.length ? ` [${l.exts.join(",")}]` : "";
  return `${transport(ip, l, false)}${ext}${l.frag}`;
}
