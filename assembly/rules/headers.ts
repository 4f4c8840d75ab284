// Classifies bare IPv4 5-tuples (ClassBench traces) against the live table,
// without packets. Records sit in DATA, results follow them:
//
//   HEADER_SIZE = 16 bytes per record, host-order integers
//   0               4               8               10              12      13      14      16
//   ┌───────────────┬───────────────┬───────────────┬───────────────┬───────┬───────┬───────┐
//   │ src      u32  │ dst      u32  │ sport    u16  │ dport    u16  │ proto │ flags │ icmp  │
//   └───────────────┴───────────────┴───────────────┴───────────────┴───────┴───────┴───────┘
//   flags: the TCP flag byte; icmp: ICMP type << 8 | code (u16).
//   then n results, u32 each, at DATA + n * 16: the 0-based index of the first
//   matching rule, or 0xffffffff.
import * as ABI from "../abi";
import { DATA_PTR } from "../layout";
import { live } from "./active";
import { lookup4 } from "./lookup";

export const HEADER_SIZE: u32 = 16;
export const MAX_HEADERS: u32 = ABI.DATA_CAP / (HEADER_SIZE + 4);

// Returns n, or -1 when n is too large or no table is live.
export function classifyHeaders(n: u32, ctx: u32): i32 {
  if (n > MAX_HEADERS || !live || ctx > 255) return -1;
  const out = DATA_PTR + <usize>n * HEADER_SIZE;
  for (let i: u32 = 0; i < n; i++) {
    const h = DATA_PTR + <usize>i * HEADER_SIZE;
    const r = lookup4(ctx, load<u32>(h), load<u32>(h + 4), <u32>load<u8>(h + 12),
      <u32>load<u16>(h + 8), <u32>load<u16>(h + 10), <u32>load<u8>(h + 13), <u32>load<u16>(h + 14));
    store<u32>(out + (<usize>i << 2), r);
  }
  return <i32>n;
}
