// Fragments. The first fragment of a datagram is decided like any packet;
// its decision is remembered under (family, source, destination, protocol,
// id) and every later fragment of the datagram follows it. A later fragment
// whose first is unknown, one that overlaps bytes already seen (RFC 1858,
// RFC 5722: the whole datagram is then refused), or one past MAX_RANGES
// pieces is dropped with its own reason.
//
//   FRAG_SIZE = 128 bytes
//   0               4       5       6       7       8               12              16
//   ┌───────────────┬───────┬───────┬───────┬───────┬───────────────┬───────────────┐
//   │ tag      u32  │verdict│family │ proto │ flags │ id       u32  │ rule     u32  │
//   ├───────────────┴───────┴───────┴───────┴───────┴───────────────┴───────────────┤
//   │ expires_ns u64 │ source (16) │ destination (16) │ rsv u16 │ n │ rsv │ total u32 │ 16..64
//   ├───────────────────────────────────────────────────────────────────────────────┤
//   │ MAX_RANGES byte ranges seen: start u32, end u32                               │ 64..128
//   └───────────────────────────────────────────────────────────────────────────────┘
//   tag     the key's hash with bit 0 set; 0 marks a free slot
//   verdict, rule  the first fragment's
//   n       ranges in use (at most MAX_RANGES)
//   total   the datagram's length once its last fragment is seen, else 0
import * as ABI from "../abi";
import { DEBUG } from "../debug";
import { fieldAt, getU16, getU32, getU64, getU8 } from "../decode/pkt";
import { Reason } from "../reasons";
import { accept, Decision, drop, ruleOf, verdictOf } from "../verdict";
import { hashSeed, mix } from "./key";
import { bump } from "./table";

const F_TAG: u32 = 0;
const F_VERDICT: u32 = 4;
const F_FAMILY: u32 = 5;
const F_PROTO: u32 = 6;
const F_FLAGS: u32 = 7;
const F_ID: u32 = 8;
const F_RULE: u32 = 12;
const F_EXPIRES: u32 = 16;
const F_SRC: u32 = 24;
const F_DST: u32 = 40;
const F_NRANGES: u32 = 58;
const F_TOTAL: u32 = 60;
const F_RANGES: u32 = 64;
const FRAG_SIZE: u32 = 128;
export const MAX_RANGES: u32 = 8;
const FF_POISONED: u8 = 1;

let frags: usize = 0;
const BUCKET_SLOTS: u32 = 8;
let fragMask: u32 = 0; // bucket mask
let fragCap: u32 = 0;

export function fragBytes(cap: u32): u64 { return <u64>cap * FRAG_SIZE; }

export function setupFrags(base: usize, cap: u32): void {
  frags = base; fragCap = cap; fragMask = (cap >> 3) - 1;
  memory.fill(base, 0, <usize>cap * FRAG_SIZE);
}

// Keyed like the flow hash (the host's random seed, a full mix after each
// word), so every input bit reaches the bucket bits and nobody can aim
// fragments at one bucket.
function fragHash(): u32 {
  let h = mix(hashSeed() ^ ((<u64>getU32(ABI.P_FRAG_ID) << 16) | (<u64>getU8(ABI.P_PROTO) << 8) | <u64>getU8(ABI.P_FAMILY)));
  h = mix(h ^ getU64(ABI.P_SRC));
  h = mix(h ^ getU64(ABI.P_SRC + 8));
  h = mix(h ^ getU64(ABI.P_DST));
  h = mix(h ^ getU64(ABI.P_DST + 8));
  return <u32>(h >> 32) | 1;
}

// @ts-ignore: decorator
@inline function same(f: usize): bool {
  return load<u32>(f + F_ID) == getU32(ABI.P_FRAG_ID) && <u32>load<u8>(f + F_PROTO) == getU8(ABI.P_PROTO) &&
    <u32>load<u8>(f + F_FAMILY) == getU8(ABI.P_FAMILY) &&
    load<u64>(f + F_SRC) == getU64(ABI.P_SRC) && load<u64>(f + F_SRC + 8) == getU64(ABI.P_SRC + 8) &&
    load<u64>(f + F_DST) == getU64(ABI.P_DST) && load<u64>(f + F_DST + 8) == getU64(ABI.P_DST + 8);
}

function release(f: usize, expired: bool): void {
  store<u32>(f + F_TAG, 0);
  bump(ABI.C_FRAGS_LIVE, -1);
  if (expired) bump(ABI.C_FRAGS_EXPIRED, 1);
}

// Slot i (0..BUCKET_SLOTS) of the bucket that `tag` picks.
// @ts-ignore: decorator
@inline function slotOf(tag: u32, i: u32): usize {
  const at = ((tag >> 8 & fragMask) << 3) + i;
  if (DEBUG) assert(i < BUCKET_SLOTS && at < fragCap, "fragment slot past the table");
  const f = frags + <usize>at * FRAG_SIZE;
  if (DEBUG) assert(load<u32>(f + F_TAG) == 0 || <u32>load<u8>(f + F_NRANGES) <= MAX_RANGES, "fragment entry with more ranges than it has room for");
  return f;
}

function find(tag: u32, now: u64): usize {
  for (let i: u32 = 0; i < BUCKET_SLOTS; i++) {
    const f = slotOf(tag, i);
    if (load<u32>(f + F_TAG) != tag || !same(f)) continue;
    if (load<u64>(f + F_EXPIRES) <= now) { release(f, true); return 0; }
    return f;
  }
  return 0;
}

// This packet's byte range within its datagram.
// @ts-ignore: decorator
@inline function rangeStart(): u32 { return getU16(ABI.P_FRAG_OFF) << 3; }
// @ts-ignore: decorator
@inline function rangeEnd(): u32 { return rangeStart() + getU32(ABI.P_IP_LEN) - getU16(ABI.P_FRAG_DATA); }

// Adds [s, e) to the entry's ranges, merging touching ones. FRAG_OVERLAP
// when it overlaps bytes already seen, FRAG_TOO_MANY when there is no room
// for another range, else Reason.NONE.
function addRange(f: usize, s: u32, e: u32): Reason {
  const n = <u32>load<u8>(f + F_NRANGES);
  for (let i: u32 = 0; i < n; i++) {
    const r = f + F_RANGES + (<usize>i << 3);
    if (s < load<u32>(r + 4) && load<u32>(r) < e) return Reason.FRAG_OVERLAP;
  }
  if (n >= MAX_RANGES) return Reason.FRAG_TOO_MANY;
  const r = f + F_RANGES + (<usize>n << 3);
  store<u32>(r, s); store<u32>(r + 4, e);
  store<u8>(f + F_NRANGES, <u8>coalesce(f, n + 1));
  return Reason.NONE;
}

// Joins ranges that touch (one's end is another's start); returns how many
// remain. At most MAX_RANGES ranges, so the quadratic walk is bounded.
function coalesce(f: usize, n: u32): u32 {
  let i: u32 = 0;
  while (i < n) {
    const a = f + F_RANGES + (<usize>i << 3);
    let joined = false;
    for (let j: u32 = 0; j < n; j++) {
      const b = f + F_RANGES + (<usize>j << 3);
      if (j == i || load<u32>(a + 4) != load<u32>(b)) continue;
      store<u32>(a + 4, load<u32>(b + 4));
      // Move the last range into j's place.
      const last = f + F_RANGES + (<usize>(n - 1) << 3);
      store<u64>(b, load<u64>(last));
      n--;
      if (i == n) i = j; // a itself was the last: it now sits at j
      joined = true;
      break;
    }
    if (!joined) i++;
  }
  return n;
}

// The datagram is whole once one range covers [0, total).
function complete(f: usize): bool {
  const total = load<u32>(f + F_TOTAL);
  return total != 0 && load<u8>(f + F_NRANGES) == 1 && load<u32>(f + F_RANGES) == 0 && load<u32>(f + F_RANGES + 4) == total;
}

// Remembers the first fragment's decision (its verdict and rule). Under
// pressure the entry closest to expiry in the bucket makes room.
export function fragFirst(first: Decision, now: u64, timeoutNs: u64): void {
  const tag = fragHash();
  let f = find(tag, now);
  if (f == 0) {
    let soonest: u64 = 0xffffffffffffffff;
    for (let i: u32 = 0; i < BUCKET_SLOTS; i++) {
      const c = slotOf(tag, i);
      if (load<u32>(c + F_TAG) == 0) { f = c; break; }
      const x = load<u64>(c + F_EXPIRES);
      if (x < soonest) { soonest = x; f = c; }
    }
    if (load<u32>(f + F_TAG) != 0) release(f, load<u64>(f + F_EXPIRES) <= now);
    memory.fill(f, 0, <usize>FRAG_SIZE);
    store<u32>(f + F_TAG, tag);
    store<u8>(f + F_FAMILY, <u8>getU8(ABI.P_FAMILY));
    store<u8>(f + F_PROTO, <u8>getU8(ABI.P_PROTO));
    store<u32>(f + F_ID, getU32(ABI.P_FRAG_ID));
    memory.copy(f + F_SRC, fieldAt(ABI.P_SRC), 32);
    bump(ABI.C_FRAGS_LIVE, 1);
  } else if (load<u8>(f + F_FLAGS) & FF_POISONED) {
    return;
  }
  // A repeated first fragment overlaps itself: the datagram is refused.
  if (addRange(f, 0, rangeEnd()) != Reason.NONE) store<u8>(f + F_FLAGS, FF_POISONED);
  store<u8>(f + F_VERDICT, verdictOf(first));
  store<u32>(f + F_RULE, ruleOf(first));
  store<u64>(f + F_EXPIRES, now + timeoutNs);
}

// A non-first fragment: accepted as FRAG_FOLLOWS under its first's rule when
// the first was accepted, dropped as FRAG_DENIED when it was not, or dropped
// with the reason it cannot follow.
export function fragFollow(now: u64): Decision {
  const f = find(fragHash(), now);
  if (f == 0) return drop(Reason.FRAG_NO_FIRST);
  if (load<u8>(f + F_FLAGS) & FF_POISONED) return drop(Reason.FRAG_OVERLAP);
  const s = rangeStart(), e = rangeEnd();
  const r = addRange(f, s, e);
  if (r != Reason.NONE) {
    store<u8>(f + F_FLAGS, FF_POISONED);
    return drop(r);
  }
  if ((getU8(ABI.P_FLAGS) & ABI.PF_MORE_FRAGS) == 0) store<u32>(f + F_TOTAL, e);
  const followed = load<u8>(f + F_VERDICT) == ABI.VERDICT_ACCEPT ? accept(Reason.FRAG_FOLLOWS, load<u32>(f + F_RULE)) : drop(Reason.FRAG_DENIED);
  if (complete(f)) release(f, false);
  return followed;
}
