// The core's per-source limits and block lists, read and driven from the
// host (control path; layouts in assembly/abi.ts S_* and B_*).
import * as ABI from "./abi.js";
import { type Core } from "./core.js";
import { CoreError } from "./load.js";
import { formatAddr } from "../packets/addr.js";
import { isPrefix, parsePrefix } from "../policy/addr.js";

export interface SourceView {
  key: number; //           the rule extension's key (which limited rule)
  family: 4 | 6;
  prefix: string; //        the source aggregate, e.g. 203.0.113.10/32
  flows: number; //         live flows
  tokens: bigint; //        bucket level, rate * ns units
  seenNs: bigint; //        last new-flow attempt
  fullNs: bigint; //        when the bucket is full again
}

export interface BlockView {
  list: number; //          list key (host/rules/build.ts listKey)
  family: 4 | 6;
  prefix: string;
  expiresNs: bigint | null; // null: until removed
}

export interface LimitCounters {
  sourcesLive: bigint; sourcesEvicted: bigint; sourcesRefused: bigint; sourceCapacity: number;
  blocksLive: bigint; blocksRefused: bigint; blocksExpired: bigint; blockCapacity: number;
}

const NEVER = (1n << 64n) - 1n;

export function limitCounters(core: Core): LimitCounters {
  const v = core.view, b = core.countersPtr;
  return {
    sourcesLive: v.getBigInt64(b + ABI.C_SOURCES_LIVE, true),
    sourcesEvicted: v.getBigUint64(b + ABI.C_SOURCES_EVICTED, true),
    sourcesRefused: v.getBigUint64(b + ABI.C_SOURCES_REFUSED, true),
    sourceCapacity: core.x.source_capacity(),
    blocksLive: v.getBigInt64(b + ABI.C_BLOCKS_LIVE, true),
    blocksRefused: v.getBigUint64(b + ABI.C_BLOCKS_REFUSED, true),
    blocksExpired: v.getBigUint64(b + ABI.C_BLOCKS_EXPIRED, true),
    blockCapacity: core.x.block_capacity(),
  };
}

// Every occupied source entry.
export function sources(core: Core): SourceView[] {
  const v = core.view, base = core.x.sources_ptr(), out: SourceView[] = [];
  for (let i = 0, n = core.x.source_capacity(); i < n; i++) {
    const e = base + i * ABI.SOURCE_SIZE;
    if (v.getUint32(e + ABI.S_TAG, true) === 0) continue;
    const family = v.getUint8(e + ABI.S_FAMILY) === 6 ? 6 : 4;
    out.push({
      key: v.getUint32(e + ABI.S_KEY, true), family,
      prefix: `${formatAddr(core.u8.subarray(e + ABI.S_ADDR, e + ABI.S_ADDR + 16), family)}/${v.getUint8(e + ABI.S_PREFIX)}`,
      flows: v.getUint32(e + ABI.S_FLOWS, true), tokens: v.getBigUint64(e + ABI.S_TOKENS, true),
      seenNs: v.getBigUint64(e + ABI.S_SEEN, true), fullNs: v.getBigUint64(e + ABI.S_FULL, true),
    });
  }
  return out;
}

// Every block entry live at nowNs (all when nowNs is not given).
export function blocks(core: Core, nowNs?: bigint): BlockView[] {
  const v = core.view, base = core.x.blocks_ptr(), out: BlockView[] = [];
  for (let i = 0, n = core.x.block_capacity(); i < n; i++) {
    const e = base + i * ABI.BLOCK_SIZE;
    if (v.getUint32(e + ABI.B_TAG, true) === 0) continue;
    const exp = v.getBigUint64(e + ABI.B_EXPIRES, true);
    if (nowNs !== undefined && exp <= nowNs) continue;
    const family = v.getUint8(e + ABI.B_FAMILY) === 6 ? 6 : 4;
    out.push({
      list: v.getUint32(e + ABI.B_LIST, true), family,
      prefix: `${formatAddr(core.u8.subarray(e + ABI.B_ADDR, e + ABI.B_ADDR + 16), family)}/${v.getUint8(e + ABI.B_PREFIX)}`,
      expiresNs: exp === NEVER ? null : exp,
    });
  }
  return out;
}

// An address or prefix as the core takes it; CoreError EINVAL otherwise.
function place(core: Core, text: string): { family: number; prefix: number } {
  const p = parsePrefix(text.trim());
  if (!isPrefix(p)) throw new CoreError("EINVAL", p.what);
  const bytes = new Uint8Array(16);
  const family = p.family;
  const len = family === 4 ? 4 : 16;
  let x = BigInt(p.lo);
  for (let i = len - 1; i >= 0; i--) { bytes[i] = Number(x & 0xffn); x >>= 8n; }
  core.u8.set(bytes, core.x.block_addr_ptr());
  return { family, prefix: p.len };
}

// Puts ADDR (or a prefix) on list `listKey` for `forNs` from nowNs (0n:
// until removed). false when the block table has no room for it.
export function blockAdd(core: Core, listKey: number, text: string, nowNs: bigint, forNs = 0n): boolean {
  const { family, prefix } = place(core, text);
  const r = core.x.block_add(listKey >>> 0, family, prefix, nowNs, forNs);
  if (r < 0) throw new CoreError("EINVAL", `${text}: not an address or prefix the block lists take`);
  return r === 1;
}

// Takes it off; false when it was not on the list.
export function blockDel(core: Core, listKey: number, text: string, nowNs: bigint): boolean {
  const { family, prefix } = place(core, text);
  const r = core.x.block_del(listKey >>> 0, family, prefix, nowNs);
  if (r < 0) throw new CoreError("EINVAL", `${text}: not an address or prefix the block lists take`);
  return r === 1;
}
