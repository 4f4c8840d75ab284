// Per-source limits and block lists, as assembly/limits/ decides them, in
// plain TypeScript: a token bucket and a set of live flows per (rule key,
// source aggregate), and block entries (list key, prefix) with an expiry.
// Both live in Maps that never fill, so the two agree while the core's
// source and block tables have room (an entry the core reuses has no live
// flows; see sources.ts for what it keeps under pressure). Bucket
// arithmetic is the core's, exactly: bigints in rate * ns units.
//
// Expired flows: the core frees a flow at its next packet, when its slot is
// taken, or at the sweep (SWEEP_SLOTS slots per batch); a source's count
// falls then. The reference frees every expired counted flow at the end of
// each batch (sweepEnd), which is the core's behaviour when the whole state
// table fits in one sweep (at most 64 slots): tests of expiry use such a table.
import * as F from "../../host/rules/format.js";
import * as R from "./codes.js";

export interface RefExt {
  key: number;
  rate: bigint; periodNs: bigint; burst: bigint; flows: number;
  pfx4: number; pfx6: number; flags: number;
  fromList: number; overload: number; blockNs: bigint;
}

// The rule extensions of a table (per rule, null for none) and its list keys.
export function readExts(t: Uint8Array): { exts: Array<RefExt | null>; lists: number[] } {
  const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
  const u32 = (at: number): number => dv.getUint32(at, true);
  const nrules = u32(F.T_NRULES), rulesOff = u32(F.T_RULES_OFF), extOff = u32(F.T_EXT_OFF);
  const lists = Array.from({ length: u32(F.T_NLISTS) }, (_, i) => u32(u32(F.T_LISTS_OFF) + i * F.LIST_SIZE));
  const exts = Array.from({ length: nrules }, (_, r): RefExt | null => {
    const x = dv.getUint16(rulesOff + r * F.RULE_SIZE + F.R_EXT, true);
    if (x === 0) return null;
    const at = extOff + (x - 1) * F.EXT_SIZE;
    return {
      key: u32(at + F.X_KEY), rate: BigInt(u32(at + F.X_RATE)), periodNs: dv.getBigUint64(at + F.X_PERIOD, true),
      burst: BigInt(u32(at + F.X_BURST)), flows: u32(at + F.X_FLOWS), pfx4: t[at + F.X_PFX4]!, pfx6: t[at + F.X_PFX6]!,
      flags: t[at + F.X_FLAGS]!, fromList: dv.getUint16(at + F.X_FROM_LIST, true), overload: dv.getUint16(at + F.X_OVERLOAD, true),
      blockNs: dv.getBigUint64(at + F.X_BLOCK_NS, true),
    };
  });
  return { exts, lists };
}

// The first `prefix` bits of an address (four words, most significant first).
function masked(a: Uint32Array, prefix: number): string {
  const out: string[] = [];
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(32, prefix - 32 * i));
    const m = bits === 0 ? 0 : bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
    out.push(((a[i]! & m) >>> 0).toString(16));
  }
  return out.join(":");
}

export class RefSource {
  tokens = 0n;
  seen = 0n;
  flush = 0n; //              1 + the time of the last flush; 0: none
  readonly live = new Set<object>(); // the flows counted here
}

const NEVER = -1n; // until removed

export class Limits {
  readonly sources = new Map<string, RefSource>();
  readonly blocks = new Map<string, { list: number; family: number; prefix: number; addr: string; expires: bigint }>();

  private blockKey(list: number, family: number, prefix: number, addr: string): string { return `${list}|${family}|${prefix}|${addr}`; }

  listed(list: number, family: number, src: Uint32Array, now: bigint): boolean {
    for (const b of this.blocks.values()) {
      if (b.list !== list || b.family !== family || (b.expires !== NEVER && b.expires <= now)) continue;
      if (masked(src, b.prefix) === b.addr) return true;
    }
    return false;
  }

  // An address's words (most significant first) on list `list` for prefix bits.
  add(list: number, family: number, prefix: number, src: Uint32Array, expires: bigint, now: bigint): void {
    const addr = masked(src, prefix);
    const k = this.blockKey(list, family, prefix, addr);
    const old = this.blocks.get(k);
    if (old && (old.expires === NEVER || old.expires > now)) {
      if (expires === NEVER || (old.expires !== NEVER && expires > old.expires)) old.expires = expires;
      return;
    }
    this.blocks.set(k, { list, family, prefix, addr, expires });
  }

  del(list: number, family: number, prefix: number, src: Uint32Array): boolean {
    return this.blocks.delete(this.blockKey(list, family, prefix, masked(src, prefix)));
  }

  // After a table load: lists the new table does not have are dropped.
  retain(lists: number[]): void {
    for (const [k, b] of this.blocks) if (!lists.includes(b.list)) this.blocks.delete(k);
  }

  // Whether extension x admits a new flow from `src` at `now`: NONE and
  // the source to count the flow in, or the reason.
  admit(x: RefExt, family: number, src: Uint32Array, now: bigint, listKeys: number[]): { reason: number; source: RefSource | null } {
    const prefix = family === 4 ? x.pfx4 : x.pfx6;
    const addr = masked(src, prefix);
    const k = `${x.key}|${family}|${prefix}|${addr}`;
    const full = x.rate === 0n ? 0n : x.burst * x.periodNs;
    let s = this.sources.get(k);
    if (!s) { s = new RefSource(); s.tokens = full; s.seen = now; this.sources.set(k, s); }
    const over = (reason: number): { reason: number; source: null } => {
      if (x.overload !== F.LIST_NONE) {
        this.add(listKeys[x.overload]!, family, prefix, src, x.blockNs === 0n ? NEVER : now + x.blockNs, now);
        if (x.flags & F.XF_FLUSH) s!.flush = now + 1n;
      }
      return { reason, source: null };
    };
    if (x.rate !== 0n) {
      if (now > s.seen) {
        const elapsed = now - s.seen;
        s.tokens = s.tokens + elapsed * x.rate >= full ? full : s.tokens + elapsed * x.rate;
        s.seen = now;
      }
      if (s.tokens < x.periodNs) return over(R.RATE_LIMITED);
    } else {
      s.seen = now;
    }
    if (x.flows !== 0 && s.live.size >= x.flows) return over(R.SOURCE_FLOWS_FULL);
    if (x.rate !== 0n) s.tokens -= x.periodNs;
    return { reason: R.NONE, source: s };
  }
}
