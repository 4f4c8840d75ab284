// Field loads and stores of the decoded-packet scratch (PKT, drawn in
// abi.ts): the decoders write it, the deciding stages read it, all through
// these accessors.
import * as A from "../abi";
import { PKT_PTR } from "../layout";

// @ts-ignore: decorator
@inline export function clearPkt(): void { memory.fill(PKT_PTR, 0, <usize>A.PKT_SIZE); }
// @ts-ignore: decorator
@inline export function setU8(field: u32, v: u32): void { store<u8>(PKT_PTR + <usize>field, <u8>v); }
// @ts-ignore: decorator
@inline export function setU16(field: u32, v: u32): void { store<u16>(PKT_PTR + <usize>field, <u16>v); }
// @ts-ignore: decorator
@inline export function setU32(field: u32, v: u32): void { store<u32>(PKT_PTR + <usize>field, v); }
// @ts-ignore: decorator
@inline export function getU8(field: u32): u32 { return <u32>load<u8>(PKT_PTR + <usize>field); }
// @ts-ignore: decorator
@inline export function getU16(field: u32): u32 { return <u32>load<u16>(PKT_PTR + <usize>field); }
// @ts-ignore: decorator
@inline export function getU32(field: u32): u32 { return load<u32>(PKT_PTR + <usize>field); }
// Eight bytes of a field, as stored (an address half: network order bytes).
// @ts-ignore: decorator
@inline export function getU64(field: u32): u64 { return load<u64>(PKT_PTR + <usize>field); }
// Where a field is, for the stages that copy or compare a 16-byte address.
// @ts-ignore: decorator
@inline export function fieldAt(field: u32): usize { return PKT_PTR + <usize>field; }
// @ts-ignore: decorator
@inline export function addFlags(bits: u8): void {
  store<u8>(PKT_PTR + <usize>A.P_FLAGS, load<u8>(PKT_PTR + <usize>A.P_FLAGS) | bits);
}
// Copy `n` (4 or 16) address bytes from the packet into a 16-byte PKT slot.
// @ts-ignore: decorator
@inline export function setAddr(field: u32, src: usize, n: u32): void {
  if (n == 4) {
    store<u32>(PKT_PTR + <usize>field, load<u32>(src));
  } else {
    store<u64>(PKT_PTR + <usize>field, load<u64>(src));
    store<u64>(PKT_PTR + <usize>field + 8, load<u64>(src + 8));
  }
}
