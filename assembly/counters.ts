// Counters per reason and per verdict, packets and bytes (layout in abi.ts).
import * as A from "./abi";
import { COUNTERS_PTR } from "./layout";

// @ts-ignore: decorator
@inline function bump(at: usize, bytes: u64): void {
  store<u64>(at, load<u64>(at) + 1);
  store<u64>(at + 8, load<u64>(at + 8) + bytes);
}

// @ts-ignore: decorator
@inline export function countPacket(reason: u32, verdict: u32, bytes: u64): void {
  bump(COUNTERS_PTR + <usize>A.C_REASONS + (<usize>reason << 4), bytes);
  bump(COUNTERS_PTR + <usize>A.C_VERDICTS + (<usize>verdict << 4), bytes);
}

// @ts-ignore: decorator
@inline export function countBatch(packets: u32): void {
  const b = COUNTERS_PTR + <usize>A.C_BATCHES;
  store<u64>(b, load<u64>(b) + 1);
  const p = COUNTERS_PTR + <usize>A.C_PACKETS;
  store<u64>(p, load<u64>(p) + <u64>packets);
}

// @ts-ignore: decorator
@inline export function countBadBatch(): void {
  const b = COUNTERS_PTR + <usize>A.C_BAD_BATCHES;
  store<u64>(b, load<u64>(b) + 1);
}

// A u64 counter of COUNTERS (by its C_* offset) moved by `by`.
// @ts-ignore: decorator
@inline export function bumpCounter(counter: u32, by: i64): void {
  const p = COUNTERS_PTR + <usize>counter;
  store<i64>(p, load<i64>(p) + by);
}

export function resetCounters(): void {
  memory.fill(COUNTERS_PTR, 0, <usize>A.COUNTERS_SIZE);
}
