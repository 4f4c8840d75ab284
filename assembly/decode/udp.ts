// UDP (RFC 768): ports and length.
import * as A from "../abi";
import { Reason } from "../reasons";
import { be16, ipEnd, short } from "./cursor";
import { addFlags, getU8, setU16 } from "./pkt";

// Returns the offset of the payload, or -reason.
export function decodeUdp(off: u32): i32 {
  let r = short(off, 8, Reason.UDP_TRUNCATED);
  if (r) return r;
  const len = be16(off + 4);
  // In a fragmented datagram the length covers all fragments, not this one.
  const fragmented = (getU8(A.P_FLAGS) & A.PF_FRAGMENT) != 0;
  if (len < 8 || (!fragmented && len > ipEnd - off)) return -Reason.UDP_BAD_LEN;
  const dport = be16(off + 2);
  if (dport == 0) return -Reason.L4_PORT_ZERO;
  setU16(A.P_SPORT, be16(off));
  setU16(A.P_DPORT, dport);
  addFlags(A.PF_HAS_PORTS);
  return <i32>(off + 8);
}

