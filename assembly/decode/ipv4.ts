// IPv4 (RFC 791): version, IHL and options, total length against the
// captured and wire lengths, fragment fields. Returns the transport header's
// offset, or -reason.
import * as A from "../abi";
import { Reason } from "../reasons";
import { base, be16, setFirstFrag, setIpEnd, short, u8at } from "./cursor";
import { addFlags, setAddr, setU16, setU32, setU8 } from "./pkt";
import { PROTO_TCP } from "./proto";

const OPT_EOL: u32 = 0;
const OPT_NOP: u32 = 1;
const OPT_LSRR: u32 = 0x83;
const OPT_SSRR: u32 = 0x89;

// IPv4 options are at most 40 bytes, so this walk is bounded by the header.
function checkOptions(ihl: u32): i32 {
  let i: u32 = 20;
  while (i < ihl) {
    const t = u8at(i);
    if (t == OPT_EOL) break;
    if (t == OPT_NOP) { i++; continue; }
    if (i + 1 >= ihl) return -Reason.IP4_BAD_OPTIONS;
    const len = u8at(i + 1);
    if (len < 2 || i + len > ihl) return -Reason.IP4_BAD_OPTIONS;
    if (t == OPT_LSRR || t == OPT_SSRR) return -Reason.IP4_SOURCE_ROUTE;
    i += len;
  }
  return 0;
}

export function decodeIp4(wire: u32): i32 {
  let r = short(0, 20, Reason.IP4_TRUNCATED);
  if (r) return r;
  const vihl = u8at(0);
  const ihl = (vihl & 15) << 2;
  if (ihl < 20) return -Reason.IP4_BAD_IHL;
  const total = be16(2);
  if (total < ihl) return total < 20 ? -Reason.IP4_BAD_TOTAL_LEN : -Reason.IP4_BAD_IHL;
  if (total > wire) return -Reason.IP4_LEN_EXCEEDS;
  setIpEnd(total);
  r = short(0, ihl, Reason.IP4_BAD_IHL);
  if (r) return r;
  if (ihl > 20) {
    r = checkOptions(ihl);
    if (r) return r;
    addFlags(A.PF_IP_OPTIONS);
  }
  const frag = be16(6);
  const fragOff = frag & 0x1fff;
  const more = (frag & 0x2000) != 0;
  const payload = total - ihl;
  if ((fragOff << 3) + payload > 0xffff) return -Reason.FRAG_TOO_BIG;
  // RFC 1858 3.2: a TCP fragment at offset 1 (8 bytes) can only be meant to
  // overwrite the first fragment's flags.
  if (fragOff == 1 && u8at(9) == PROTO_TCP) return -Reason.FRAG_OFFSET_ONE;
  if (more || fragOff != 0) {
    addFlags(A.PF_FRAGMENT | (more ? A.PF_MORE_FRAGS : 0) | (fragOff == 0 ? A.PF_FIRST_FRAG : 0));
    setU16(A.P_FRAG_OFF, fragOff);
    setU16(A.P_FRAG_DATA, ihl);
    setU32(A.P_FRAG_ID, be16(4));
    setFirstFrag(fragOff == 0);
  }
  setU8(A.P_FAMILY, 4);
  setU8(A.P_PROTO, u8at(9));
  setU8(A.P_TTL, u8at(8));
  setAddr(A.P_SRC, base + 12, 4);
  setAddr(A.P_DST, base + 16, 4);
  setU16(A.P_L4_OFF, ihl);
  setU32(A.P_L4_LEN, payload);
  setU32(A.P_IP_LEN, total);
  return <i32>ihl;
}

// The IPv4 header quoted in an ICMP error, at `off`. Its total length is the
// original packet's, not what was quoted, so it is only checked for sense.
// Returns the quoted transport header's offset, or -reason.
export function decodeInnerIp4(off: u32): i32 {
  let r = short(off, 20, Reason.ICMP_INNER_TRUNCATED);
  if (r) return r;
  const vihl = u8at(off);
  const ihl = (vihl & 15) << 2;
  if ((vihl >> 4) != 4 || ihl < 20) return -Reason.ICMP_INNER_BAD;
  r = short(off, ihl, Reason.ICMP_INNER_TRUNCATED);
  if (r) return r;
  if (be16(off + 2) < ihl) return -Reason.ICMP_INNER_BAD;
  // A non-first fragment quotes no transport header: nothing to relate it to.
  if ((be16(off + 6) & 0x1fff) != 0) return -Reason.ICMP_INNER_BAD;
  setU8(A.P_IN_FAMILY, 4);
  setU8(A.P_IN_PROTO, u8at(off + 9));
  setAddr(A.P_IN_SRC, base + <usize>(off + 12), 4);
  setAddr(A.P_IN_DST, base + <usize>(off + 16), 4);
  return <i32>(off + ihl);
}
