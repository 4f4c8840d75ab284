// The state table: fixed capacity (a power of two, chosen at init), in
// buckets of 8 slots; a key may live in either of two buckets picked by its
// keyed hash (two-choice hashing keeps buckets from overflowing), so a lookup
// reads at most 16 slots: the probe length is bounded.
//
// Pressure: when both buckets are full of live flows, the oldest embryonic
// one (SYN sent, unreplied UDP/ICMP, a picked-up TCP flow nobody answered
// yet) is evicted; established flows never
// are, so a new flow is refused instead. Expired slots are reused on the way
// and reclaimed by a bounded sweep each batch; time comes from the batch.
//
// lookup and claim take the hash makeKey returned for the key in KEY
// (key.ts): its tag (low word, bit 0 set: 0 marks a free slot) and its two
// buckets. A slot is occupied exactly when its tag is not 0, and an occupied
// slot holds a flow state; the debug build checks both on every slot read.
import * as ABI from "../abi";
import { DEBUG } from "../debug";
import { COUNTERS_PTR } from "../layout";
import * as E from "./entry";
import { sourceFlowEnded } from "../limits/sources";
import { KEY, K_ADDR_A, K_ADDR_B, K_FAMILY, K_ORIG_B, K_PORT_A, K_PORT_B, K_PROTO, keyHash } from "./key";

export const BUCKET_SLOTS: u32 = 8;
export const SWEEP_SLOTS: u32 = 64;

let flows: usize = 0;
let capacity: u32 = 0;
let bucketMask: u32 = 0;
let sweepAt: u32 = 0;

export function setupFlows(base: usize, cap: u32): void {
  flows = base; capacity = cap; bucketMask = (cap >> 3) - 1; sweepAt = 0;
  memory.fill(base, 0, <usize>cap * E.FLOW_SIZE);
}

export function flowCapacity(): u32 { return capacity; }
export function flowsBase(): usize { return flows; }

// @ts-ignore: decorator
@inline export function bump(counter: u32, by: i64): void {
  const p = COUNTERS_PTR + <usize>counter;
  store<i64>(p, load<i64>(p) + by);
}

// Slot i of the table. Every reader takes its slots here, so the debug build
// checks each slot as it is read.
// @ts-ignore: decorator
@inline export function flowSlot(i: u32): usize {
  const e = flows + <usize>i * E.FLOW_SIZE;
  if (DEBUG) {
    assert(i < capacity, "flow slot past the table");
    const tag = load<u32>(e + E.E_TAG), st = <u32>load<u8>(e + E.E_STATE);
    assert(tag == 0 ? st == E.State.FREE : (tag & 1) != 0 && st != E.State.FREE && st < <u32>E.State.COUNT,
      "flow slot: a free slot with a state, or an occupied one without");
  }
  return e;
}

// @ts-ignore: decorator
@inline function tagOf(h: u64): u32 { return <u32>h | 1; }
// The first slot of bucket k (0 or 1) of hash h.
// @ts-ignore: decorator
@inline function bucketOf(h: u64, k: u32): u32 {
  return (k == 0 ? <u32>(h >> 32) & bucketMask : (<u32>h >> 7) & bucketMask) << 3;
}

export function freeSlot(e: usize, counter: u32): void {
  if (load<u8>(e + E.E_FLAGS) & E.EF_OFFLOADED) bump(ABI.C_OFFLOAD_LIVE, -1);
  const s = load<u32>(e + E.E_SOURCE);
  if (s != 0) sourceFlowEnded(s);
  store<u32>(e + E.E_TAG, 0);
  store<u8>(e + E.E_STATE, 0);
  bump(ABI.C_FLOWS_LIVE, -1);
  bump(counter, 1);
}

// The live flow with KEY's key (hash h), or 0. Expired flows met on the way
// are freed.
export function lookup(h: u64, now: u64): usize {
  if (DEBUG) assert(h == keyHash(), "lookup: h is not the hash of KEY");
  const tag = tagOf(h);
  for (let k: u32 = 0; k < 2; k++) {
    const first = bucketOf(h, k);
    for (let i: u32 = 0; i < BUCKET_SLOTS; i++) {
      const e = flowSlot(first + i);
      if (load<u32>(e + E.E_TAG) != tag) continue;
      if (!keyMatches(e)) continue;
      if (load<u64>(e + E.E_EXPIRES) <= now) { freeSlot(e, ABI.C_FLOWS_EXPIRED); return 0; }
      return e;
    }
  }
  return 0;
}

function keyMatches(e: usize): bool {
  return load<u8>(e + E.E_PROTO) == load<u8>(KEY + K_PROTO) && load<u8>(e + E.E_FAMILY) == load<u8>(KEY + K_FAMILY) &&
    load<u16>(e + E.E_PORT_A) == load<u16>(KEY + K_PORT_A) && load<u16>(e + E.E_PORT_B) == load<u16>(KEY + K_PORT_B) &&
    load<u64>(e + E.E_ADDR_A) == load<u64>(KEY + K_ADDR_A) && load<u64>(e + E.E_ADDR_A + 8) == load<u64>(KEY + K_ADDR_A + 8) &&
    load<u64>(e + E.E_ADDR_B) == load<u64>(KEY + K_ADDR_B) && load<u64>(e + E.E_ADDR_B + 8) == load<u64>(KEY + K_ADDR_B + 8);
}

// A slot for KEY's key (hash h), which lookup(h) just did not find: a free
// or expired slot in either bucket, else the oldest embryonic flow's,
// evicted. 0 when both buckets hold only established flows: the new flow is
// refused.
export function claim(h: u64, now: u64): usize {
  if (DEBUG) assert(h == keyHash(), "claim: KEY changed since its lookup");
  let victim: usize = 0;
  let victimAge: u64 = 0xffffffffffffffff;
  for (let k: u32 = 0; k < 2; k++) {
    const first = bucketOf(h, k);
    for (let i: u32 = 0; i < BUCKET_SLOTS; i++) {
      const e = flowSlot(first + i);
      if (load<u32>(e + E.E_TAG) == 0) return fill(e, tagOf(h), now);
      if (load<u64>(e + E.E_EXPIRES) <= now) { freeSlot(e, ABI.C_FLOWS_EXPIRED); return fill(e, tagOf(h), now); }
      if (embryonic(e) && load<u64>(e + E.E_CREATED) < victimAge) {
        victim = e; victimAge = load<u64>(e + E.E_CREATED);
      }
    }
  }
  if (victim == 0) { bump(ABI.C_FLOWS_REFUSED, 1); return 0; }
  freeSlot(victim, ABI.C_FLOWS_EVICTED);
  return fill(victim, tagOf(h), now);
}

// Evictable under pressure: an embryonic state (entry.ts), or a picked-up
// flow nobody answered yet (conntrack/tcp.ts timeoutState).
// @ts-ignore: decorator
@inline function embryonic(e: usize): bool {
  return E.isEmbryonic(load<u8>(e + E.E_STATE)) ||
    ((load<u8>(e + E.E_FLAGS) & E.EF_PICKED_UP) != 0 && load<u32>(e + E.E_MAXWIN + 4) == 0);
}

// The caller gives the new flow its state before the next packet is read.
function fill(e: usize, tag: u32, now: u64): usize {
  memory.fill(e, 0, <usize>E.FLOW_SIZE);
  store<u32>(e + E.E_TAG, tag);
  store<u8>(e + E.E_PROTO, load<u8>(KEY + K_PROTO));
  store<u8>(e + E.E_FAMILY, load<u8>(KEY + K_FAMILY));
  store<u32>(e + E.E_PORT_A, load<u32>(KEY + K_PORT_A)); // both ports
  memory.copy(e + E.E_ADDR_A, KEY + K_ADDR_A, 32);
  store<u8>(e + E.E_FLAGS, load<u8>(KEY + K_ORIG_B) ? E.EF_ORIG_IS_B : 0);
  store<u64>(e + E.E_CREATED, now);
  bump(ABI.C_FLOWS_LIVE, 1);
  bump(ABI.C_FLOWS_CREATED, 1);
  return e;
}

// Frees expired flows among the next SWEEP_SLOTS slots: bounded work per
// batch, so the whole table is swept every capacity / SWEEP_SLOTS batches.
export function sweep(now: u64): void {
  for (let i: u32 = 0; i < SWEEP_SLOTS; i++) {
    const e = flowSlot(sweepAt);
    if (load<u32>(e + E.E_TAG) != 0 && load<u64>(e + E.E_EXPIRES) <= now) freeSlot(e, ABI.C_FLOWS_EXPIRED);
    sweepAt = (sweepAt + 1) & (capacity - 1);
  }
}
