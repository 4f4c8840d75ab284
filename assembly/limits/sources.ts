// The source table: per (rule extension key, source aggregate) a token
// bucket of new flows and a count of live flows. Fixed capacity (a power of
// two, chosen at init), two buckets of 8 entries per key by keyed hash
// (prefix.ts), so a probe reads at most 16 entries; nothing allocated on the
// packet path. Entry layout: abi.ts (S_*).
//
// The bucket is exact integer arithmetic from batch times: its level is kept
// in rate * ns units, each ns adds `rate`, a new flow costs period_ns, and it
// holds at most burst * period_ns. So with rate R per period P and burst B a
// source that starts full may open B flows at once and then one every P / R
// ns, to the nanosecond, with no rounding drift.
//
// Under pressure (a new source, both of its buckets occupied) the entry
// reused is, in this order: a free one; one with no live flows whose bucket
// is full again (it holds nothing a fresh entry would not: not an eviction);
// the least recently active one with no live flows (counted in sources
// evicted: it loses a partly drained bucket). An entry with live flows is
// never reused, so its count stays exact whatever floods of new sources
// arrive; when all 16 candidates hold live flows the new flow is refused
// (source_table_full, counted in sources refused). A flow's entry is named
// in the flow (E_SOURCE) and its count drops when the flow is freed,
// whatever ends it (close, expiry, eviction, re-check, flush).
import * as ABI from "../abi";
import { DEBUG } from "../debug";
import { bumpCounter as bump } from "../counters";
import { Reason } from "../reasons";
import * as A from "../rules/active";
import * as F from "../rules/format";
import { blockAdd, NEVER } from "./blocklist";
import { bucketPair, MASKED, maskTo, prefixHash, sameAddr } from "./prefix";

let sources: usize = 0;
let capacity: u32 = 0;
let bucketMask: u32 = 0;

// 1 + the entry the last admitted flow is counted in (admit's result).
export let admittedSlot: u32 = 0;


export function setupSources(base: usize, cap: u32): void {
  sources = base; capacity = cap; bucketMask = (cap >> 3) - 1;
  memory.fill(base, 0, <usize>cap * ABI.SOURCE_SIZE);
}

export function sourceCapacity(): u32 { return capacity; }
export function sourcesBase(): usize { return sources; }

// @ts-ignore: decorator
@inline function entry(i: u32): usize {
  if (DEBUG) assert(i < capacity, "source slot past the table");
  return sources + <usize>i * ABI.SOURCE_SIZE;
}
// @ts-ignore: decorator
@inline function bucketOf(h: u64, k: u32): u32 { return bucketPair(h, bucketMask, k); }

// The entry for (key, family, prefix, MASKED), found or claimed (fresh:
// a full bucket at `now`, no flows), or 0 when none may be reused.
function findOrClaim(h: u64, key: u32, family: u32, prefix: u32, full: u64, now: u64): usize {
  const tag = <u32>h | 1;
  let free: usize = 0, idle: usize = 0, lru: usize = 0;
  let lruSeen: u64 = NEVER;
  for (let k: u32 = 0; k < 2; k++) {
    const first = bucketOf(h, k);
    for (let i: u32 = 0; i < 8; i++) {
      const e = entry(first + i);
      const t = load<u32>(e + ABI.S_TAG);
      if (t == 0) { if (free == 0) free = e; continue; }
      if (t == tag && load<u32>(e + ABI.S_KEY) == key && load<u8>(e + ABI.S_FAMILY) == <u8>family &&
        load<u8>(e + ABI.S_PREFIX) == <u8>prefix && sameAddr(e + ABI.S_ADDR, MASKED)) return e;
      if (load<u32>(e + ABI.S_FLOWS) != 0) continue;
      if (load<u64>(e + ABI.S_FULL) <= now) { if (idle == 0) idle = e; continue; }
      const seen = load<u64>(e + ABI.S_SEEN);
      if (seen < lruSeen) { lru = e; lruSeen = seen; }
    }
  }
  let e = free;
  if (e == 0) e = idle;
  if (e == 0 && lru != 0) { e = lru; bump(ABI.C_SOURCES_EVICTED, 1); }
  if (e == 0) { bump(ABI.C_SOURCES_REFUSED, 1); return 0; }
  if (e == free) bump(ABI.C_SOURCES_LIVE, 1);
  memory.fill(e, 0, <usize>ABI.SOURCE_SIZE);
  store<u32>(e + ABI.S_TAG, tag);
  store<u32>(e + ABI.S_KEY, key);
  store<u8>(e + ABI.S_FAMILY, <u8>family);
  store<u8>(e + ABI.S_PREFIX, <u8>prefix);
  memory.copy(e + ABI.S_ADDR, MASKED, 16);
  store<u64>(e + ABI.S_TOKENS, full);
  store<u64>(e + ABI.S_SEEN, now);
  store<u64>(e + ABI.S_FULL, now);
  return e;
}

// A source over its limit: on the overload list (its aggregate, for
// block_ns or until removed) and, with flush, its flows of this key ended
// at their next packet.
function overloaded(x: usize, e: usize, family: u32, now: u64): void {
  const over = <u32>load<u16>(x + F.X_OVERLOAD);
  if (over == F.LIST_NONE) return;
  const ns = load<u64>(x + F.X_BLOCK_NS);
  blockAdd(A.listKey(over), family, load<u8>(e + ABI.S_PREFIX), e + ABI.S_ADDR, ns == 0 ? NEVER : now + ns, now);
  if (load<u8>(x + F.X_FLAGS) & F.XF_FLUSH) store<u64>(e + ABI.S_FLUSH, now + 1);
}

// Whether rule extension `x` admits a new flow from the source at `src`
// (family 4 or 6) at `now`: Reason.NONE and admittedSlot set, with a token
// taken and the flow counted; or the reason it is refused.
export function admit(x: usize, family: u32, src: usize, now: u64): Reason {
  admittedSlot = 0;
  const prefix = <u32>load<u8>(x + (family == 4 ? F.X_PFX4 : F.X_PFX6));
  const key = load<u32>(x + F.X_KEY);
  const rate = <u64>load<u32>(x + F.X_RATE);
  const period = load<u64>(x + F.X_PERIOD);
  const full = rate == 0 ? 0 : <u64>load<u32>(x + F.X_BURST) * period;
  maskTo(src, prefix);
  const e = findOrClaim(prefixHash(key, family, prefix, MASKED), key, family, prefix, full, now);
  if (e == 0) return Reason.SOURCE_TABLE_FULL;
  let tokens = load<u64>(e + ABI.S_TOKENS);
  if (rate != 0) {
    const seen = load<u64>(e + ABI.S_SEEN);
    if (now > seen) {
      const elapsed = now - seen;
      const deficit = full > tokens ? full - tokens : 0;
      // elapsed * rate >= deficit, without a product that could wrap.
      if (elapsed >= (deficit + rate - 1) / rate) tokens = full; else tokens += elapsed * rate;
      store<u64>(e + ABI.S_SEEN, now);
    }
    store<u64>(e + ABI.S_TOKENS, tokens);
    if (tokens < period) { overloaded(x, e, family, now); return Reason.RATE_LIMITED; }
  } else {
    store<u64>(e + ABI.S_SEEN, now);
  }
  const most = load<u32>(x + F.X_FLOWS);
  const live = load<u32>(e + ABI.S_FLOWS);
  if (most != 0 && live >= most) { overloaded(x, e, family, now); return Reason.SOURCE_FLOWS_FULL; }
  if (rate != 0) {
    tokens -= period;
    store<u64>(e + ABI.S_TOKENS, tokens);
    store<u64>(e + ABI.S_FULL, now + (full - tokens + rate - 1) / rate);
  }
  store<u32>(e + ABI.S_FLOWS, live + 1);
  admittedSlot = <u32>((e - sources) / <usize>ABI.SOURCE_SIZE) + 1;
  return Reason.NONE;
}

// Undoes admit for a flow that could not be created after all (the state
// table refused it): the count and the token back.
export function unadmit(x: usize, s: u32): void {
  const e = entry(s - 1);
  sourceFlowEnded(s);
  const rate = <u64>load<u32>(x + F.X_RATE);
  if (rate == 0) return;
  const period = load<u64>(x + F.X_PERIOD);
  const full = <u64>load<u32>(x + F.X_BURST) * period;
  const t = min<u64>(full, load<u64>(e + ABI.S_TOKENS) + period);
  store<u64>(e + ABI.S_TOKENS, t);
  store<u64>(e + ABI.S_FULL, load<u64>(e + ABI.S_SEEN) + (full - t + rate - 1) / rate);
}

// A flow counted in entry s - 1 was freed.
export function sourceFlowEnded(s: u32): void {
  const e = entry(s - 1);
  const n = load<u32>(e + ABI.S_FLOWS);
  if (DEBUG) assert(n > 0 && load<u32>(e + ABI.S_TAG) != 0, "a flow's source entry holds no flows");
  store<u32>(e + ABI.S_FLOWS, n - 1);
}

// Whether a flow of entry s - 1 created at `created` was flushed by an overload.
// @ts-ignore: decorator
@inline export function sourceFlushed(s: u32, created: u64): bool {
  return created < load<u64>(entry(s - 1) + ABI.S_FLUSH);
}
