// Reads the core's decoded-packet scratch (PKT) after a classify: what the
// decoders found in the last packet of the batch. For tools and tests.
import * as ABI from "./abi.js";
import { type Core } from "./core.js";
import { formatAddr } from "../packets/addr.js";

export interface Decoded {
  family: number;
  proto: number;
  flags: number;
  tcpFlags: number;
  sport: number;
  dport: number;
  icmpType: number;
  icmpCode: number;
  icmpId: number;
  l4Off: number;
  l4Len: number;
  ipLen: number;
  fragId: number;
  fragOff: number;
  extCount: number;
  tcpSeq: number;
  tcpAck: number;
  tcpWin: number;
  src: string;
  dst: string;
  inner?: { family: number; proto: number; sport: number; dport: number; src: string; dst: string };
}

export function readDecoded(core: Core): Decoded {
  const p = core.pktPtr;
  const v = core.view;
  const u8 = (f: number): number => v.getUint8(p + f);
  const u16 = (f: number): number => v.getUint16(p + f, true);
  const u32 = (f: number): number => v.getUint32(p + f, true);
  const addr = (f: number, fam: number): string =>
    fam === 4 || fam === 6 ? formatAddr(core.u8.subarray(p + f, p + f + 16), fam) : "";
  const family = u8(ABI.P_FAMILY);
  const flags = u8(ABI.P_FLAGS);
  const d: Decoded = {
    family,
    proto: u8(ABI.P_PROTO),
    flags,
    tcpFlags: u8(ABI.P_TCP_FLAGS),
    sport: u16(ABI.P_SPORT),
    dport: u16(ABI.P_DPORT),
    icmpType: u8(ABI.P_ICMP_TYPE),
    icmpCode: u8(ABI.P_ICMP_CODE),
    icmpId: u16(ABI.P_ICMP_ID),
    l4Off: u16(ABI.P_L4_OFF),
    l4Len: u32(ABI.P_L4_LEN),
    ipLen: u32(ABI.P_IP_LEN),
    fragId: u32(ABI.P_FRAG_ID),
    fragOff: u16(ABI.P_FRAG_OFF),
    extCount: u16(ABI.P_EXT_COUNT),
    tcpSeq: u32(ABI.P_TCP_SEQ),
    tcpAck: u32(ABI.P_TCP_ACK),
    tcpWin: u16(ABI.P_TCP_WIN),
    src: addr(ABI.P_SRC, family),
    dst: addr(ABI.P_DST, family),
  };
  if (flags & ABI.PF_ICMP_ERROR) {
    const f = u8(ABI.P_IN_FAMILY);
    d.inner = {
      family: f,
      proto: u8(ABI.P_IN_PROTO),
      sport: u16(ABI.P_IN_SPORT),
      dport: u16(ABI.P_IN_DPORT),
      src: addr(ABI.P_IN_SRC, f),
      dst: addr(ABI.P_IN_DST, f),
    };
  }
  return d;
}
