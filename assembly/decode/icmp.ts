// ICMP (RFC 792) and ICMPv6 (RFC 4443), one decoder for both: type and code,
// the identifier of queries, and for error messages the quoted packet,
// decoded far enough to find its 5-tuple (the flow an error must belong to
// before it may pass). The type classes here are the ones conntrack uses too.
import * as A from "../abi";
import { Reason } from "../reasons";
import { be16, short, u8at } from "./cursor";
import { decodeInnerIp4 } from "./ipv4";
import { decodeInnerIp6 } from "./ipv6";
import { addFlags, getU8, setU16, setU8 } from "./pkt";
import { PROTO_DCCP, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE } from "./proto";

// ICMPv4: 3 unreachable, 4 source quench, 5 redirect, 11 time exceeded,
// 12 parameter problem. ICMPv6: every type below 128.
// @ts-ignore: decorator
@inline function isIcmpError(v6: bool, t: u32): bool {
  return v6 ? t < 128 : t == 3 || t == 4 || t == 5 || t == 11 || t == 12;
}
// The queries that open a flow (echo, and for ICMPv4 timestamp, information
// and address mask), and their answers.
// @ts-ignore: decorator
@inline export function isIcmpRequest(v6: bool, t: u32): bool { return v6 ? t == 128 : (t == 8 || t == 13 || t == 15 || t == 17); }
// @ts-ignore: decorator
@inline export function isIcmpReply(v6: bool, t: u32): bool { return v6 ? t == 129 : (t == 0 || t == 14 || t == 16 || t == 18); }

// The quoted transport header at `off` (protocol `proto`): its ports, or for
// a quoted ICMP message its identifier (an error about an error is refused).
function decodeQuotedL4(off: u32, proto: u32, v6: bool): i32 {
  if (proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP ||
      proto == PROTO_UDPLITE || proto == PROTO_DCCP) {
    // RFC 792 quotes 64 bits of the original datagram: ports and TCP's sequence.
    const r = short(off, 8, Reason.ICMP_INNER_TRUNCATED);
    if (r) return r;
    setU16(A.P_IN_SPORT, be16(off));
    setU16(A.P_IN_DPORT, be16(off + 2));
  } else if (proto == (v6 ? PROTO_ICMPV6 : PROTO_ICMP)) {
    const r = short(off, 8, Reason.ICMP_INNER_TRUNCATED);
    if (r) return r;
    if (isIcmpError(v6, u8at(off))) return -Reason.ICMP_ERROR_IN_ERROR;
    setU16(A.P_IN_SPORT, be16(off + 4));
    setU16(A.P_IN_DPORT, be16(off + 4));
  }
  addFlags(A.PF_ICMP_ERROR);
  return 0;
}

// The ICMP (v6 false) or ICMPv6 (v6 true) header at `off`. Returns the
// offset after it (8 bytes), or -reason.
export function decodeIcmp(off: u32, v6: bool): i32 {
  let r = short(off, 8, Reason.ICMP_TRUNCATED);
  if (r) return r;
  const t = u8at(off);
  setU8(A.P_ICMP_TYPE, t);
  setU8(A.P_ICMP_CODE, u8at(off + 1));
  if (isIcmpError(v6, t)) {
    r = v6 ? decodeInnerIp6(off + 8) : decodeInnerIp4(off + 8);
    if (r < 0) return r;
    r = decodeQuotedL4(<u32>r, getU8(A.P_IN_PROTO), v6);
    if (r) return r;
  } else if (isIcmpRequest(v6, t) || isIcmpReply(v6, t)) {
    setU16(A.P_ICMP_ID, be16(off + 4));
  }
  return <i32>(off + 8);
}
