// A source address reduced to its aggregate (a prefix of it), in a scratch
// block, and the keyed hash both the source table and the block lists use.
// Addresses are in network order in 16 bytes (IPv4 in bytes 0..3, the rest
// zero), as in PKT; a prefix length counts from the address's first bit.
import { hashSeed, mix } from "../conntrack/key";

export const MASKED: usize = memory.data(16, 16);

// @ts-ignore: decorator
@inline function maskBits(p: u32, from: u32): u64 {
  // The mask of the 64 bits starting at bit `from` for a prefix of p bits.
  if (p <= from) return 0;
  const n = p - from;
  return n >= 64 ? 0xffffffffffffffff : ~(0xffffffffffffffff >> <u64>n);
}

// Writes the first `prefix` bits of the address at `a` to MASKED.
export function maskTo(a: usize, prefix: u32): usize {
  store<u64>(MASKED, bswap<u64>(bswap<u64>(load<u64>(a)) & maskBits(prefix, 0)));
  store<u64>(MASKED + 8, bswap<u64>(bswap<u64>(load<u64>(a + 8)) & maskBits(prefix, 64)));
  return MASKED;
}

// The keyed hash of (key, family, prefix, address at a).
export function prefixHash(key: u32, family: u32, prefix: u32, a: usize): u64 {
  let h = mix(hashSeed() ^ 0x5bd1e995 ^ (<u64>key << 16) ^ (<u64>family << 8) ^ <u64>prefix);
  h = mix(h ^ load<u64>(a));
  return mix(h ^ load<u64>(a + 8));
}

// @ts-ignore: decorator
@inline export function sameAddr(x: usize, y: usize): bool {
  return load<u64>(x) == load<u64>(y) && load<u64>(x + 8) == load<u64>(y + 8);
}

// The first slot of bucket k (0 or 1) of hash h in a table of buckets of 8
// (mask: buckets - 1, at least 1): the second bucket always differs from
// the first (XOR with an odd number), so a key has 16 candidate slots.
// @ts-ignore: decorator
@inline export function bucketPair(h: u64, mask: u32, k: u32): u32 {
  const b0 = <u32>(h >> 32) & mask;
  return (k == 0 ? b0 : b0 ^ (((<u32>h >> 7) & mask) | 1)) << 3;
}
