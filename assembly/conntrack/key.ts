// The flow key of the packet at hand, in canonical order (see entry.ts), in a
// scratch block KEY; and its keyed hash, which the state table's lookup and
// claim take (table.ts): the hash names the tag and the two buckets.
//
//   0       1       2               4               6       7       8
//   ┌───────┬───────┬───────────────┬───────────────┬───────┬───────┐
//   │family │ proto │ portA    u16  │ portB    u16  │origB  │ rsv   │
//   ├───────┴───────┴───────────────┴───────────────┴───────┴───────┤
//   │ address A (16 bytes)                                          │ 8..24
//   │ address B (16 bytes)                                          │ 24..40
//   └───────────────────────────────────────────────────────────────┘
import { DEBUG } from "../debug";

export const K_FAMILY: u32 = 0;
export const K_PROTO: u32 = 1;
export const K_PORT_A: u32 = 2;
export const K_PORT_B: u32 = 4;
export const K_ORIG_B: u32 = 6;
export const K_ADDR_A: u32 = 8;
export const K_ADDR_B: u32 = 24;
export const KEY_SIZE: u32 = 40;

export const KEY: usize = memory.data(KEY_SIZE, 16);

// @ts-ignore: decorator
@inline function keyPortA(): u32 { return <u32>load<u16>(KEY + K_PORT_A); }
// @ts-ignore: decorator
@inline function keyPortB(): u32 { return <u32>load<u16>(KEY + K_PORT_B); }

let seed: u64 = 0x9e3779b97f4a7c15;
export function setHashSeed(s: u64): void { seed = s ^ 0x9e3779b97f4a7c15; }
export function hashSeed(): u64 { return seed; }

// @ts-ignore: decorator
@inline export function mix(x: u64): u64 {
  x ^= x >> 33; x *= 0xff51afd7ed558ccd;
  x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53;
  return x ^ (x >> 33);
}

// (address, port) of s is below that of d: compare the addresses as
// big-endian numbers, then the ports.
// @ts-ignore: decorator
@inline function below(s: usize, sp: u32, d: usize, dp: u32): bool {
  const sh = bswap<u64>(load<u64>(s)), dh = bswap<u64>(load<u64>(d));
  if (sh != dh) return sh < dh;
  const sl = bswap<u64>(load<u64>(s + 8)), dl = bswap<u64>(load<u64>(d + 8));
  if (sl != dl) return sl < dl;
  return sp < dp;
}

// Fills KEY from a packet going src:sport -> dst:dport and returns its hash.
// The originator of a new flow is the sender, so origB says whether the
// sender is endpoint B.
export function makeKey(family: u32, proto: u32, src: usize, sport: u32, dst: usize, dport: u32): u64 {
  store<u8>(KEY + K_FAMILY, <u8>family);
  store<u8>(KEY + K_PROTO, <u8>proto);
  const srcFirst = below(src, sport, dst, dport);
  const a = srcFirst ? src : dst, b = srcFirst ? dst : src;
  store<u16>(KEY + K_PORT_A, <u16>(srcFirst ? sport : dport));
  store<u16>(KEY + K_PORT_B, <u16>(srcFirst ? dport : sport));
  store<u8>(KEY + K_ORIG_B, srcFirst ? 0 : 1);
  store<u64>(KEY + K_ADDR_A, load<u64>(a));
  store<u64>(KEY + K_ADDR_A + 8, load<u64>(a + 8));
  store<u64>(KEY + K_ADDR_B, load<u64>(b));
  store<u64>(KEY + K_ADDR_B + 8, load<u64>(b + 8));
  if (DEBUG) assert(!below(KEY + K_ADDR_B, keyPortB(), KEY + K_ADDR_A, keyPortA()), "key endpoints not in canonical order");
  return keyHash();
}

// The keyed hash of KEY (both directions of a flow hash alike).
export function keyHash(): u64 {
  let h = mix(seed ^ keyHead());
  h = mix(h ^ load<u64>(KEY + K_ADDR_A));
  h = mix(h ^ load<u64>(KEY + K_ADDR_A + 8));
  h = mix(h ^ load<u64>(KEY + K_ADDR_B));
  return mix(h ^ load<u64>(KEY + K_ADDR_B + 8));
}

// The first 8 bytes of KEY with origB masked out: family, proto, ports.
// @ts-ignore: decorator
@inline function keyHead(): u64 { return load<u64>(KEY + K_FAMILY) & ~(<u64>0xff << (<u64>K_ORIG_B << 3)); }
