// First match over the live table (the structure and why: rules/format.ts).
// One bitmap per field, then the AND of their summary words picks the only
// 64-rule words worth ANDing; the lowest set bit there is the first match.
import * as A from "./active";
import { condPasses } from "../limits/match";

export const NO_MATCH: u32 = 0xffffffff;

// @ts-ignore: decorator
@inline function direct(table: usize, v: u32): usize {
  return A.tBitmaps + <usize>load<u32>(table + (<usize>v << 2)) * A.tStride;
}

// The bitmap of the last interval whose lower bound is <= key.
// @ts-ignore: decorator
@inline function search4(n: u32, bounds: usize, ids: usize, key: u32): usize {
  let lo: u32 = 0, hi = n;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (load<u32>(bounds + (<usize>mid << 2)) <= key) lo = mid; else hi = mid;
  }
  return A.tBitmaps + <usize>load<u32>(ids + (<usize>lo << 2)) * A.tStride;
}

// @ts-ignore: decorator
@inline function search6(n: u32, bounds: usize, ids: usize, khi: u64, klo: u64): usize {
  let lo: u32 = 0, hi = n;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const p = bounds + (<usize>mid << 4);
    const bhi = load<u64>(p);
    if (bhi < khi || (bhi == khi && load<u64>(p + 8) <= klo)) lo = mid; else hi = mid;
  }
  return A.tBitmaps + <usize>load<u32>(ids + (<usize>lo << 2)) * A.tStride;
}

// @ts-ignore: decorator
@inline function and8(b0: usize, b1: usize, b2: usize, b3: usize, b4: usize, b5: usize, b6: usize, b7: usize, off: usize): u64 {
  return load<u64>(b0 + off) & load<u64>(b1 + off) & load<u64>(b2 + off) & load<u64>(b3 + off) &
    load<u64>(b4 + off) & load<u64>(b5 + off) & load<u64>(b6 + off) & load<u64>(b7 + off);
}

function firstMatch(b0: usize, b1: usize, b2: usize, b3: usize, b4: usize, b5: usize, b6: usize, b7: usize): u32 {
  const aggs = A.tAggs;
  for (let a: u32 = 0; a < aggs; a++) {
    let s = and8(b0, b1, b2, b3, b4, b5, b6, b7, <usize>a << 3);
    while (s != 0) {
      const w = (a << 6) + <u32>ctz(s);
      let word = and8(b0, b1, b2, b3, b4, b5, b6, b7, <usize>(aggs + w) << 3);
      // A rule with a block-list condition that does not hold is passed over.
      while (word != 0) {
        const r = (w << 6) + <u32>ctz(word);
        if (!A.tConds || condPasses(r)) return r;
        word &= word - 1;
      }
      s &= s - 1;
    }
  }
  return NO_MATCH;
}

// IPv4 addresses and ports in host order; icmp is type << 8 | code (0 for
// other protocols).
export function lookup4(ctx: u32, src: u32, dst: u32, proto: u32, sport: u32, dport: u32, flags: u32, icmp: u32): u32 {
  return firstMatch(
    direct(A.tCtx, ctx), direct(A.tProto, proto), direct(A.tFlags, flags),
    direct(A.tSport, sport), direct(A.tDport, dport), direct(A.tIcmp, icmp),
    search4(A.tSrc4N, A.tSrc4B, A.tSrc4I, src), search4(A.tDst4N, A.tDst4B, A.tDst4I, dst));
}

// IPv6 addresses as (high, low) 64-bit halves in host order.
export function lookup6(ctx: u32, shi: u64, slo: u64, dhi: u64, dlo: u64, proto: u32, sport: u32, dport: u32, flags: u32, icmp: u32): u32 {
  return firstMatch(
    direct(A.tCtx, ctx), direct(A.tProto, proto), direct(A.tFlags, flags),
    direct(A.tSport, sport), direct(A.tDport, dport), direct(A.tIcmp, icmp),
    search6(A.tSrc6N, A.tSrc6B, A.tSrc6I, shi, slo), search6(A.tDst6N, A.tDst6B, A.tDst6I, dhi, dlo));
}
