// One packet, from its first byte to its transport header: picks the IP
// version, runs the decoders in order, and leaves the result in PKT.
// Returns 0 for a well-formed packet, or a reason code.
import * as A from "../abi";
import { Reason } from "../reasons";
import { setPacket, short, u8at } from "./cursor";
import { decodeIcmp } from "./icmp";
import { decodeIp4 } from "./ipv4";
import { decodeIp6, ip6NonFirstFragment } from "./ipv6";
import { clearPkt, getU8 } from "./pkt";
import { decodeTcp } from "./tcp";
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from "./proto";
import { decodeUdp } from "./udp";

export const ETH_P_IP: u32 = 0x0800;
export const ETH_P_IPV6: u32 = 0x86dd;

export function decodePacket(ptr: usize, cap: u32, wire: u32, hwProto: u32): Reason {
  clearPkt();
  setPacket(ptr, cap, wire);
  if (hwProto != ETH_P_IP && hwProto != ETH_P_IPV6 && hwProto != 0) return Reason.L3_UNSUPPORTED;
  // With no ethertype, an empty packet has no version nibble to go by.
  let r = short(0, 1, hwProto == ETH_P_IPV6 ? Reason.IP6_TRUNCATED :
    hwProto == ETH_P_IP ? Reason.IP4_TRUNCATED : Reason.L3_UNSUPPORTED);
  if (r) return <Reason>-r;
  const version = u8at(0) >> 4;
  let l4: i32;
  let nonFirst: bool;
  if (version == 4) {
    if (hwProto == ETH_P_IPV6) return Reason.L3_VERSION_MISMATCH;
    l4 = decodeIp4(wire);
    if (l4 < 0) return <Reason>-l4;
    nonFirst = (getU8(A.P_FLAGS) & (A.PF_FRAGMENT | A.PF_FIRST_FRAG)) == A.PF_FRAGMENT;
  } else if (version == 6) {
    if (hwProto == ETH_P_IP) return Reason.L3_VERSION_MISMATCH;
    l4 = decodeIp6(wire);
    if (l4 < 0) return <Reason>-l4;
    nonFirst = ip6NonFirstFragment();
  } else {
    return hwProto == 0 ? Reason.L3_UNSUPPORTED : Reason.L3_VERSION_MISMATCH;
  }
  // A non-first fragment carries no transport header; state decides it later.
  if (nonFirst) return Reason.NONE;
  const proto = getU8(A.P_PROTO);
  const off = <u32>l4;
  if (proto == PROTO_TCP) r = decodeTcp(off);
  else if (proto == PROTO_UDP) r = decodeUdp(off);
  else if (proto == (version == 6 ? PROTO_ICMPV6 : PROTO_ICMP)) r = decodeIcmp(off, version == 6);
  else r = 0;
  return r < 0 ? <Reason>-r : Reason.NONE;
}
