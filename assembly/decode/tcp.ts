// TCP (RFC 9293): ports, sequence numbers, data offset, flags.
import * as A from "../abi";
import { Reason } from "../reasons";
import { be16, be32, short, u8at } from "./cursor";
import { addFlags, getU32, setU16, setU32, setU8 } from "./pkt";

export const TH_FIN: u32 = 0x01;
export const TH_SYN: u32 = 0x02;
export const TH_RST: u32 = 0x04;
export const TH_PSH: u32 = 0x08;
export const TH_ACK: u32 = 0x10;
export const TH_URG: u32 = 0x20;

// The flag combinations a TCP stack sends, after masking PSH, ECE and CWR:
// SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG
// (the same table as Linux conntrack's tcp_valid_flags). Anything else
// (NULL, FIN alone, Xmas, SYN|FIN, SYN|RST) is a probe or a forgery.
const VALID_FLAGS: u64 =
  (1 << 0x02) | (1 << 0x22) | (1 << 0x12) | (1 << 0x04) | (1 << 0x14) |
  (1 << 0x11) | (1 << 0x31) | (1 << 0x10) | (1 << 0x30);

// Returns the offset of the payload, or -reason.
export function decodeTcp(off: u32): i32 {
  let r = short(off, 20, Reason.TCP_TRUNCATED);
  if (r) return r;
  const doff = (u8at(off + 12) >> 4) << 2;
  if (doff < 20) return -Reason.TCP_BAD_DOFF;
  r = short(off, doff, Reason.TCP_BAD_DOFF);
  if (r) return r;
  const flags = u8at(off + 13);
  if (((VALID_FLAGS >> <u64>(flags & (TH_FIN | TH_SYN | TH_RST | TH_ACK | TH_URG))) & 1) == 0) {
    return -Reason.TCP_BAD_FLAGS;
  }
  const sport = be16(off);
  const dport = be16(off + 2);
  if (sport == 0 || dport == 0) return -Reason.L4_PORT_ZERO;
  setU16(A.P_SPORT, sport);
  setU16(A.P_DPORT, dport);
  setU8(A.P_TCP_FLAGS, flags);
  setU32(A.P_TCP_SEQ, be32(off + 4));
  setU32(A.P_TCP_ACK, be32(off + 8));
  setU16(A.P_TCP_WIN, be16(off + 14));
  const ack = be32(off + 8);
  setU32(A.P_TCP_SACK, ack);
  setU8(A.P_TCP_WSCALE, 0xff);
  if (doff > 20) tcpOptions(off + 20, off + doff, flags, ack);
  // The IP length fields bound the segment: payload = segment - header.
  setU32(A.P_TCP_PAYLOAD, getU32(A.P_L4_LEN) - doff);
  addFlags(A.PF_HAS_PORTS);
  return <i32>(off + doff);
}

// The options in [at, end), which `short` already proved present: a SYN's
// window scale (RFC 7323; P_TCP_WSCALE, 0xff when absent), and with ACK the
// highest right edge of a SACK block (RFC 2018) above the ack (P_TCP_SACK,
// conntrack takes it as the ack, as Linux does). A malformed list ends the
// walk with what it found: conntrack then tracks the window unscaled and
// the ack as sent, as Linux does. Bounded: every step advances `at`.
function tcpOptions(at: u32, end: u32, flags: u32, ack: u32): void {
  let sack = ack;
  while (at < end) {
    const kind = u8at(at);
    if (kind == 0) break;
    if (kind == 1) { at++; continue; }
    if (at + 1 >= end) break;
    const len = u8at(at + 1);
    if (len < 2 || at + len > end) break;
    if (kind == 3 && len == 3 && (flags & TH_SYN)) setU8(A.P_TCP_WSCALE, min<u32>(u8at(at + 2), 14));
    if (kind == 5 && (flags & TH_ACK) && len >= 10 && ((len - 2) & 7) == 0) {
      for (let b: u32 = at + 2; b < at + len; b += 8) {
        const right = be32(b + 4);
        if (<i32>(right - sack) > 0) sack = right;
      }
    }
    at += len;
  }
  setU32(A.P_TCP_SACK, sack);
}
