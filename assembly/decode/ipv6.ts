// IPv6 (RFC 8200): fixed header, payload length against the captured and wire
// lengths, and the extension-header chain: hop-by-hop (first only), routing
// (type 0 refused, RFC 5095), fragment, destination options, AH, and the
// other RFC 7045 extension headers, at most MAX_EXT_HEADERS of them.
import * as A from "../abi";
import { Reason } from "../reasons";
import { base, be16, be32, ipEnd, setFirstFrag, setIpEnd, short, u8at } from "./cursor";
import { addFlags, setAddr, setU16, setU32, setU8 } from "./pkt";
import { PROTO_TCP } from "./proto";

export const MAX_EXT_HEADERS: u32 = 8;

const NH_HOPOPTS: u32 = 0;
const NH_ROUTING: u32 = 43;
const NH_FRAGMENT: u32 = 44;
const NH_AH: u32 = 51;
const NH_DSTOPTS: u32 = 60;
const NH_MOBILITY: u32 = 135;
const NH_HIP: u32 = 139;
const NH_SHIM6: u32 = 140;

// Result of a chain walk besides its return value (the transport offset).
let chainProto: u32 = 0;
let chainNonFirst: bool = false;

// @ts-ignore: decorator
@inline function need(inner: bool, off: u32, n: u32): i32 {
  return short(off, n, inner ? Reason.ICMP_INNER_TRUNCATED : Reason.IP6_EXT_TRUNCATED);
}

// Walks the chain from `off` with next header `nh`. Returns the offset of the
// first header that is not an extension header (its number in chainProto),
// or -reason. For the outer packet, records fragment fields in PKT; a
// non-first fragment ends the walk (chainNonFirst): what follows is payload.
function walkChain(off: u32, nh: u32, inner: bool): i32 {
  chainNonFirst = false;
  let count: u32 = 0;
  while (true) {
    let len: u32;
    if (nh == NH_HOPOPTS || nh == NH_ROUTING || nh == NH_DSTOPTS ||
        nh == NH_MOBILITY || nh == NH_HIP || nh == NH_SHIM6) {
      if (nh == NH_HOPOPTS && count != 0) return -Reason.IP6_HBH_MISPLACED;
      let r = need(inner, off, nh == NH_ROUTING ? 4 : 2);
      if (r) return r;
      if (nh == NH_ROUTING && u8at(off + 2) == 0) return -Reason.IP6_RH0;
      len = (u8at(off + 1) + 1) << 3;
    } else if (nh == NH_AH) {
      let r = need(inner, off, 2);
      if (r) return r;
      len = (u8at(off + 1) + 2) << 2;
    } else if (nh == NH_FRAGMENT) {
      let r = need(inner, off, 8);
      if (r) return r;
      const fo = be16(off + 2);
      const fragOff = fo >> 3;
      const more = (fo & 1) != 0;
      const next = u8at(off);
      if (fragOff != 0 || more) {
        if (inner) {
          if (fragOff != 0) return -Reason.ICMP_INNER_BAD;
        } else {
          if ((fragOff << 3) + (ipEnd - off - 8) > 0xffff) return -Reason.FRAG_TOO_BIG;
          if (fragOff == 1 && next == PROTO_TCP) return -Reason.FRAG_OFFSET_ONE;
          addFlags(A.PF_FRAGMENT | (more ? A.PF_MORE_FRAGS : 0) | (fragOff == 0 ? A.PF_FIRST_FRAG : 0));
          setU16(A.P_FRAG_OFF, fragOff);
          setU16(A.P_FRAG_DATA, off + 8);
          setU32(A.P_FRAG_ID, be32(off + 4));
          setFirstFrag(fragOff == 0);
        }
        if (fragOff != 0) {
          chainProto = next;
          chainNonFirst = true;
          if (!inner) setU16(A.P_EXT_COUNT, count + 1);
          return <i32>(off + 8);
        }
      }
      len = 8;
      nh = next;
      off += len;
      if (++count > MAX_EXT_HEADERS) return -Reason.IP6_EXT_CHAIN_LONG;
      continue;
    } else {
      chainProto = nh;
      if (!inner) setU16(A.P_EXT_COUNT, count);
      return <i32>off;
    }
    let r = need(inner, off, len);
    if (r) return r;
    nh = u8at(off);
    off += len;
    if (++count > MAX_EXT_HEADERS) return -Reason.IP6_EXT_CHAIN_LONG;
  }
  return 0; // unreachable: the loop returns
}

export function decodeIp6(wire: u32): i32 {
  let r = short(0, 40, Reason.IP6_TRUNCATED);
  if (r) return r;
  const plen = be16(4);
  const nh = u8at(6);
  if (plen == 0 && nh == NH_HOPOPTS) return -Reason.IP6_JUMBO;
  const total: u32 = 40 + plen;
  if (total > wire) return -Reason.IP6_LEN_EXCEEDS;
  setIpEnd(total);
  setU8(A.P_FAMILY, 6);
  setU8(A.P_TTL, u8at(7));
  setAddr(A.P_SRC, base + 8, 16);
  setAddr(A.P_DST, base + 24, 16);
  setU32(A.P_IP_LEN, total);
  r = walkChain(40, nh, false);
  if (r < 0) return r;
  setU8(A.P_PROTO, chainProto);
  setU16(A.P_L4_OFF, <u32>r);
  setU32(A.P_L4_LEN, total - <u32>r);
  return r;
}

// True when the last decodeIp6 ended at a non-first fragment.
// @ts-ignore: decorator
@inline export function ip6NonFirstFragment(): bool { return chainNonFirst; }

// The IPv6 header quoted in an ICMPv6 error, at `off`, and its chain.
// Returns the quoted transport header's offset, or -reason.
export function decodeInnerIp6(off: u32): i32 {
  let r = short(off, 40, Reason.ICMP_INNER_TRUNCATED);
  if (r) return r;
  if ((u8at(off) >> 4) != 6) return -Reason.ICMP_INNER_BAD;
  setU8(A.P_IN_FAMILY, 6);
  setAddr(A.P_IN_SRC, base + <usize>(off + 8), 16);
  setAddr(A.P_IN_DST, base + <usize>(off + 24), 16);
  r = walkChain(off + 40, u8at(off + 6), true);
  if (r < 0) {
    // A quoted packet's chain is only read to find its 5-tuple: any fault in
    // it other than running out of quoted bytes makes the quote unusable.
    return r == -Reason.ICMP_INNER_TRUNCATED || r == -Reason.SNAP_TRUNCATED ? r : -Reason.ICMP_INNER_BAD;
  }
  setU8(A.P_IN_PROTO, chainProto);
  return r;
}
