// The packet under the decoders: where it starts, how many bytes were
// captured, and how many the IP header says it has. Every read goes through
// `short` first (xdp-tools' rule: compare against the end before each read).
import { Reason } from "../reasons";

export let base: usize = 0; //    first byte of the IP header
export let capEnd: u32 = 0; //    bytes present in memory
export let ipEnd: u32 = 0; //     bytes the packet has (wire length, then the IP length field)
export let firstFrag: bool = false; // decoding the first fragment of a fragmented packet

// @ts-ignore: decorator
@inline export function setPacket(ptr: usize, cap: u32, wire: u32): void {
  base = ptr; capEnd = cap; ipEnd = wire; firstFrag = false;
}

// @ts-ignore: decorator
@inline export function setIpEnd(end: u32): void { ipEnd = end; }

// @ts-ignore: decorator
@inline export function setFirstFrag(v: bool): void { firstFrag = v; }

// 0 when bytes [off, off + n) lie inside the packet and inside the capture.
// Otherwise -reason: `reason` when the packet itself is too short for the
// header, SNAP_TRUNCATED when only the capture is (the copy range cut it),
// FRAG_TINY when a first fragment does not carry the header (RFC 1858/7112).
// The one bounds check of every decoder; for an ICMP error's quoted packet
// `reason` is ICMP_INNER_TRUNCATED: a quotation is cut wherever its sender
// cut it, so running out is the quoted header's fault.
// `off` and `n` are small (off < 4 MiB, n < 64 KiB): the sum cannot wrap.
// @ts-ignore: decorator
@inline export function short(off: u32, n: u32, reason: Reason): i32 {
  const e = off + n;
  if (e <= ipEnd) {
    if (e <= capEnd) return 0;
    return -Reason.SNAP_TRUNCATED;
  }
  return firstFrag ? -Reason.FRAG_TINY : -reason;
}

// @ts-ignore: decorator
@inline export function u8at(off: u32): u32 { return <u32>load<u8>(base + <usize>off); }
// @ts-ignore: decorator
@inline export function be16(off: u32): u32 { return <u32>bswap<u16>(load<u16>(base + <usize>off)); }
// @ts-ignore: decorator
@inline export function be32(off: u32): u32 { return bswap<u32>(load<u32>(base + <usize>off)); }
