// The dynamic block lists: one fixed-capacity table (a power of two, chosen
// at init) of (list, prefix) entries with an expiry from batch time, shared by
// every list. An entry lives in either of two buckets of 8 picked by its
// keyed hash (prefix.ts), so a probe reads at most 16 entries.
//
// A rule refers to a list by index in its table; entries carry the list's
// key (the host's hash of its name), so they survive a reload of the rule
// table that keeps the list, and a reload that drops the list drops its
// entries (blocksRetain). Entries are state, never policy.
//
// Lookup of a source: for each prefix length some entry of its family uses
// (a bitmask kept with per-length counts), mask the address and probe: one
// probe per distinct length in use (usually one: /32 or /128).
// Layout of an entry: abi.ts (B_*).
import * as ABI from "../abi";
import { DEBUG } from "../debug";
import { bumpCounter as bump } from "../counters";
import * as A from "../rules/active";
import { bucketPair, MASKED, maskTo, prefixHash, sameAddr } from "./prefix";

export const NEVER: u64 = 0xffffffffffffffff;
const SWEEP: u32 = 16;

let blocks: usize = 0;
let capacity: u32 = 0;
let bucketMask: u32 = 0;
let sweepAt: u32 = 0;
// Entries per (family, prefix length): v4 at [p], v6 at [33 + p].
const LEN_COUNTS: usize = memory.data(162 * 4, 16);
// Bit p: some v4 entry has length p; v6: lengths 0..63, 64..127, 128.
let lens4: u64 = 0;
let lens6a: u64 = 0;
let lens6b: u64 = 0;
let lens6c: u64 = 0;


export function setupBlocks(base: usize, cap: u32): void {
  blocks = base; capacity = cap; bucketMask = (cap >> 3) - 1; sweepAt = 0;
  memory.fill(base, 0, <usize>cap * ABI.BLOCK_SIZE);
  memory.fill(LEN_COUNTS, 0, 162 * 4);
  lens4 = 0; lens6a = 0; lens6b = 0; lens6c = 0;
}

export function blockCapacity(): u32 { return capacity; }
export function blocksBase(): usize { return blocks; }

// @ts-ignore: decorator
@inline function slot(i: u32): usize {
  if (DEBUG) assert(i < capacity, "block slot past the table");
  return blocks + <usize>i * ABI.BLOCK_SIZE;
}
// @ts-ignore: decorator
@inline function bucketOf(h: u64, k: u32): u32 { return bucketPair(h, bucketMask, k); }

function countLen(family: u32, prefix: u32, by: i32): void {
  const i = family == 4 ? prefix : 33 + prefix;
  const p = LEN_COUNTS + (<usize>i << 2);
  const n = load<i32>(p) + by;
  if (DEBUG) assert(n >= 0, "block length count below zero");
  store<i32>(p, n);
  const bit: u64 = <u64>1 << <u64>(prefix & 63);
  if (family == 4) lens4 = n > 0 ? lens4 | bit : lens4 & ~bit;
  else if (prefix < 64) lens6a = n > 0 ? lens6a | bit : lens6a & ~bit;
  else if (prefix < 128) lens6b = n > 0 ? lens6b | bit : lens6b & ~bit;
  else lens6c = n > 0 ? 1 : 0;
}

function freeEntry(e: usize, counter: u32): void {
  countLen(load<u8>(e + ABI.B_FAMILY), load<u8>(e + ABI.B_PREFIX), -1);
  memory.fill(e, 0, <usize>ABI.BLOCK_SIZE);
  bump(ABI.C_BLOCKS_LIVE, -1);
  if (counter != 0) bump(counter, 1);
}

// The live entry for (list, family, prefix, MASKED), or 0; an expired one
// met there is freed.
function find(list: u32, family: u32, prefix: u32, h: u64, now: u64): usize {
  const tag = <u32>h | 1;
  for (let k: u32 = 0; k < 2; k++) {
    const first = bucketOf(h, k);
    for (let i: u32 = 0; i < 8; i++) {
      const e = slot(first + i);
      if (load<u32>(e + ABI.B_TAG) != tag || load<u32>(e + ABI.B_LIST) != list) continue;
      if (load<u8>(e + ABI.B_FAMILY) != <u8>family || load<u8>(e + ABI.B_PREFIX) != <u8>prefix) continue;
      if (!sameAddr(e + ABI.B_ADDR, MASKED)) continue;
      if (load<u64>(e + ABI.B_EXPIRES) <= now) { freeEntry(e, ABI.C_BLOCKS_EXPIRED); return 0; }
      return e;
    }
  }
  return 0;
}

// @ts-ignore: decorator
@inline function probe(list: u32, family: u32, prefix: u32, src: usize, now: u64): bool {
  maskTo(src, prefix);
  return find(list, family, prefix, prefixHash(list, family, prefix, MASKED), now) != 0;
}

function anyIn(bits: u64, base: u32, list: u32, family: u32, src: usize, now: u64): bool {
  while (bits != 0) {
    if (probe(list, family, base + <u32>ctz(bits), src, now)) return true;
    bits &= bits - 1;
  }
  return false;
}

// Whether the address at `src` (family 4 or 6) is on list `list` at `now`.
export function blockListed(list: u32, family: u32, src: usize, now: u64): bool {
  if (family == 4) return anyIn(lens4, 0, list, 4, src, now);
  return anyIn(lens6a, 0, list, 6, src, now) || anyIn(lens6b, 64, list, 6, src, now) ||
    (lens6c != 0 && probe(list, 6, 128, src, now));
}

// Puts (family, prefix of the address at a) on list `list` until `expires`
// (NEVER: until removed); an entry already there keeps the later expiry.
// Returns 1, or 0 when both buckets are full of live entries (counted).
export function blockAdd(list: u32, family: u32, prefix: u32, a: usize, expires: u64, now: u64): u32 {
  maskTo(a, prefix);
  const h = prefixHash(list, family, prefix, MASKED);
  let e = find(list, family, prefix, h, now);
  if (e) {
    if (expires > load<u64>(e + ABI.B_EXPIRES)) store<u64>(e + ABI.B_EXPIRES, expires);
    return 1;
  }
  for (let k: u32 = 0; k < 2 && e == 0; k++) {
    const first = bucketOf(h, k);
    for (let i: u32 = 0; i < 8; i++) {
      const c = slot(first + i);
      if (load<u32>(c + ABI.B_TAG) != 0 && load<u64>(c + ABI.B_EXPIRES) <= now) freeEntry(c, ABI.C_BLOCKS_EXPIRED);
      if (load<u32>(c + ABI.B_TAG) == 0) { e = c; break; }
    }
  }
  if (e == 0) { bump(ABI.C_BLOCKS_REFUSED, 1); return 0; }
  store<u32>(e + ABI.B_TAG, <u32>h | 1);
  store<u32>(e + ABI.B_LIST, list);
  store<u64>(e + ABI.B_EXPIRES, expires);
  memory.copy(e + ABI.B_ADDR, MASKED, 16);
  store<u8>(e + ABI.B_FAMILY, <u8>family);
  store<u8>(e + ABI.B_PREFIX, <u8>prefix);
  countLen(family, prefix, 1);
  bump(ABI.C_BLOCKS_LIVE, 1);
  return 1;
}

// Takes (family, prefix of a) off list `list`. Returns 1 if it was there.
export function blockDel(list: u32, family: u32, prefix: u32, a: usize, now: u64): u32 {
  maskTo(a, prefix);
  const e = find(list, family, prefix, prefixHash(list, family, prefix, MASKED), now);
  if (e == 0) return 0;
  freeEntry(e, 0);
  return 1;
}

// After a commit: drops the entries of lists the live table no longer has.
// Control path (the whole table once). Returns how many were dropped.
export function blocksRetain(): u32 {
  let dropped: u32 = 0;
  for (let i: u32 = 0; i < capacity; i++) {
    const e = slot(i);
    if (load<u32>(e + ABI.B_TAG) == 0) continue;
    const list = load<u32>(e + ABI.B_LIST);
    let kept = false;
    for (let l: u32 = 0; l < A.tNlists; l++) if (A.listKey(l) == list) { kept = true; break; }
    if (!kept) { freeEntry(e, 0); dropped++; }
  }
  return dropped;
}

// Frees expired entries among the next SWEEP slots (per batch).
export function blockSweep(now: u64): void {
  for (let i: u32 = 0; i < SWEEP; i++) {
    const e = slot(sweepAt);
    if (load<u32>(e + ABI.B_TAG) != 0 && load<u64>(e + ABI.B_EXPIRES) <= now) freeEntry(e, ABI.C_BLOCKS_EXPIRED);
    sweepAt = (sweepAt + 1) & (capacity - 1);
  }
}
