// ICMP (RFC 792) and ICMPv6 (RFC 4443): type and code, the identifier of
// queries, and for error messages the quoted packet, decoded far enough to
// find its 5-tuple (the flow an error must belong to before it may pass).
import * as A from "../abi";
import { Reason } from "../reasons";
import { be16, shortInner, short, u8at } from "./cursor";
import { decodeInnerIp4 } from "./ipv4";
import { decodeInnerIp6 } from "./ipv6";
import { addFlags, getU8, setU16, setU8 } from "./pkt";
import { PROTO_DCCP, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE } from "./proto";


// @ts-ignore: decorator
@inline export function isIcmp4Error(t: u32): bool {
  // 3 unreachable, 4 source quench, 5 redirect, 11 time exceeded, 12 parameter problem
  return t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
}
// @ts-ignore: decorator
@inline function isIcmp4Query(t: u32): bool {
  // echo 0/8, timestamp 13/14, information 15/16, address mask 17/18
  return t == 0 || t == 8 || (t >= 13 && t <= 18);
}
// @ts-ignore: decorator
@inline export function isIcmp6Error(t: u32): bool { return t < 128; }
// @ts-ignore: decorator
@inline function isIcmp6Query(t: u32): bool { return t == 128 || t == 129; }

// The quoted transport header at `off` (protocol `proto`): its ports, or for
// a quoted ICMP message its type (an error about an error is refused).
function decodeQuotedL4(off: u32, proto: u32, v6: bool): i32 {
  if (proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP ||
      proto == PROTO_UDPLITE || proto == PROTO_DCCP) {
    // RFC 792 quotes 64 bits of the original datagram: ports and TCP's sequence.
    const r = shortInner(off, 8);
    if (r) return r;
    setU16(A.P_IN_SPORT, be16(off));
    setU16(A.P_IN_DPORT, be16(off + 2));
  } else if (proto == (v6 ? PROTO_ICMPV6 : PROTO_ICMP)) {
    const r = shortInner(off, 8);
    if (r) return r;
    const t = u8at(off);
    if (v6 ? isIcmp6Error(t) : isIcmp4Error(t)) return -Reason.ICMP_ERROR_IN_ERROR;
    setU16(A.P_IN_SPORT, be16(off + 4));
    setU16(A.P_IN_DPORT, be16(off + 4));
  }
  addFlags(A.PF_ICMP_ERROR);
  return 0;
}

// Returns the offset after the ICMP header (8 bytes), or -reason.
export function decodeIcmp4(off: u32): i32 {
  let r = short(off, 8, Reason.ICMP_TRUNCATED);
  if (r) return r;
  const t = u8at(off);
  setU8(A.P_ICMP_TYPE, t);
  setU8(A.P_ICMP_CODE, u8at(off + 1));
  if (isIcmp4Error(t)) {
    r = decodeInnerIp4(off + 8);
    if (r < 0) return r;
    r = decodeQuotedL4(<u32>r, getU8(A.P_IN_PROTO), false);
    if (r) return r;
  } else if (isIcmp4Query(t)) {
    setU16(A.P_ICMP_ID, be16(off + 4));
  }
  return <i32>(off + 8);
}

export function decodeIcmp6(off: u32): i32 {
  let r = short(off, 8, Reason.ICMP_TRUNCATED);
  if (r) return r;
  const t = u8at(off);
  setU8(A.P_ICMP_TYPE, t);
  setU8(A.P_ICMP_CODE, u8at(off + 1));
  if (isIcmp6Error(t)) {
    r = decodeInnerIp6(off + 8);
    if (r < 0) return r;
    r = decodeQuotedL4(<u32>r, getU8(A.P_IN_PROTO), true);
    if (r) return r;
  } else if (isIcmp6Query(t)) {
    setU16(A.P_ICMP_ID, be16(off + 4));
  }
  return <i32>(off + 8);
}
