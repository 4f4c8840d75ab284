// First match over a compiled rule table (layout: assembly/rules/format.ts),
// read from the same bytes the core runs. Per field, the packet's value
// selects one bitmap of rules (a direct index for the 8- and 16-bit fields, a
// binary search over interval bounds for addresses); a rule matches when its
// bit is set in all eight; the first such rule wins. The summary words say
// which 64-rule words can hold a match at all, so only those are ANDed.
// The table is assumed valid: the core validates it before committing it,
// and every test loads the same bytes into the core first.
import * as F from "../../host/rules/format.js";
import { readExts, type RefExt } from "./limits.js";

export const NO_MATCH = -1;

export class RuleTable {
  readonly nrules: number;
  readonly defaultAllow: boolean;
  private readonly allow: Uint8Array; //   per rule: 1 allow, 0 deny
  private readonly w: Uint32Array; //      the whole table as little-endian u32 words
  private readonly bitmaps: number; //     word index of bitmap 0
  private readonly stride: number; //      words per bitmap
  private readonly summary: number; //     summary words per bitmap (2 per u64)
  private readonly ctx: Uint32Array;
  private readonly proto: Uint32Array;
  private readonly flags: Uint32Array;
  private readonly sport: Uint32Array;
  private readonly dport: Uint32Array;
  private readonly icmp: Uint32Array;
  private readonly v4: Array<{ bounds: Uint32Array; ids: Uint32Array }>;
  private readonly v6: Array<{ bounds: Uint32Array; ids: Uint32Array }>; // 4 words per bound, most significant first
  readonly exts: Array<RefExt | null>; //   per rule: its limit and list condition (limits.ts)
  readonly lists: number[]; //              list keys by index
  readonly hasConds: boolean;

  constructor(bytes: Uint8Array) {
    // A copy on a fresh buffer, so that 4-byte sections are 4-byte aligned.
    const t = Uint8Array.from(bytes);
    const dv = new DataView(t.buffer);
    const u32 = (at: number): number => dv.getUint32(at, true);
    if (t.length < F.HDR_SIZE || u32(F.T_MAGIC) !== F.TABLE_MAGIC || dv.getUint16(F.T_VERSION, true) !== F.TABLE_VERSION) {
      throw new Error("not a Portcullis rule table of this version");
    }
    this.w = new Uint32Array(t.buffer, 0, t.length >>> 2);
    this.nrules = u32(F.T_NRULES);
    const aggs = u32(F.T_AGGS), words = u32(F.T_WORDS);
    this.summary = 2 * aggs;
    this.stride = 2 * (aggs + words);
    this.bitmaps = u32(F.T_BITMAPS_OFF) >>> 2;
    this.defaultAllow = t[F.T_DEFAULT] === F.ACTION_ALLOW;
    const rules = u32(F.T_RULES_OFF);
    this.allow = new Uint8Array(this.nrules);
    for (let r = 0; r < this.nrules; r++) this.allow[r] = t[rules + r * F.RULE_SIZE + F.R_ACTION] === F.ACTION_ALLOW ? 1 : 0;
    const ids = (field: number, n: number): Uint32Array => new Uint32Array(t.buffer, u32(field), n);
    this.ctx = ids(F.T_CTX_OFF, 256);
    this.proto = ids(F.T_PROTO_OFF, 256);
    this.flags = ids(F.T_TCPFLAGS_OFF, 256);
    this.sport = ids(F.T_SPORT_OFF, F.PORT_SIZE);
    this.dport = ids(F.T_DPORT_OFF, F.PORT_SIZE);
    this.icmp = ids(F.T_ICMP_OFF, F.PORT_SIZE);
    const field = (k: number, wide: boolean): { bounds: Uint32Array; ids: Uint32Array } => {
      const h = F.T_IFIELDS + k * F.IFIELD_SIZE;
      const n = u32(h + F.IF_COUNT), b = u32(h + F.IF_BOUNDS_OFF);
      let bounds: Uint32Array;
      if (wide) {
        // Stored as the high u64 then the low u64, each little-endian.
        bounds = new Uint32Array(4 * n);
        for (let i = 0; i < n; i++) {
          const at = b + 16 * i;
          bounds[4 * i] = u32(at + 4); bounds[4 * i + 1] = u32(at); bounds[4 * i + 2] = u32(at + 12); bounds[4 * i + 3] = u32(at + 8);
        }
      } else {
        bounds = new Uint32Array(t.buffer, b, n);
      }
      return { bounds, ids: new Uint32Array(t.buffer, u32(h + F.IF_IDS_OFF), n) };
    };
    // Interval fields in order: src4, dst4, src6, dst6.
    this.v4 = [field(0, false), field(1, false)];
    this.v6 = [field(2, true), field(3, true)];
    ({ exts: this.exts, lists: this.lists } = readExts(t));
    this.hasConds = this.exts.some((x) => x !== null && (x.flags & F.XF_FROM_LIST) !== 0);
  }

  isAllow(rule: number): boolean { return this.allow[rule] === 1; }

  // Index of the first rule matching the key, or NO_MATCH. Addresses are four
  // words, most significant first (IPv4: word 0). Ports 0 when the packet has
  // none; tcpFlags 0 for other protocols; icmp is type << 8 | code (0 for
  // other protocols). ctx carries CTX_ERROR for an unrelated ICMP error.
  // `cond`: whether a rule with a block-list condition matches (the first
  // match passes over one whose condition does not hold).
  match(ctx: number, family: number, src: Uint32Array, dst: Uint32Array, proto: number, sport: number, dport: number, tcpFlags: number, icmp: number,
    cond: ((r: number) => boolean) | null = null): number {
    this.cond = this.hasConds ? cond : null;
    let s: number, d: number;
    if (family === 4) {
      s = this.search4(0, src[0]!);
      d = this.search4(1, dst[0]!);
    } else {
      s = this.search6(0, src);
      d = this.search6(1, dst);
    }
    return this.first(this.bitmap(this.ctx[ctx]!), this.bitmap(this.proto[proto]!), this.bitmap(this.flags[tcpFlags]!),
      this.bitmap(this.sport[sport]!), this.bitmap(this.dport[dport]!), this.bitmap(this.icmp[icmp]!), this.bitmap(s), this.bitmap(d));
  }

  private cond: ((r: number) => boolean) | null = null;
  private bitmap(id: number): number { return this.bitmaps + id * this.stride; }

  // The lowest rule of the 32 in `bits` (from rule `base`) that the condition lets match, or NO_MATCH.
  private pick(bits: number, base: number): number {
    while (bits !== 0) {
      const r = base + lowestBit(bits);
      if (this.cond === null || this.cond(r)) return r;
      bits &= bits - 1;
    }
    return NO_MATCH;
  }

  // The bitmap id of the last interval whose lower bound is <= key.
  private search4(k: number, key: number): number {
    const { bounds, ids } = this.v4[k]!;
    let lo = 0, hi = bounds.length;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (bounds[mid]! <= key) lo = mid; else hi = mid;
    }
    return ids[lo]!;
  }

  private search6(k: number, key: Uint32Array): number {
    const { bounds, ids } = this.v6[k]!;
    let lo = 0, hi = ids.length;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (compare6(bounds, 4 * mid, key) <= 0) lo = mid; else hi = mid;
    }
    return ids[lo]!;
  }

  // The lowest rule whose bit is set in all eight bitmaps (word offsets).
  private first(b0: number, b1: number, b2: number, b3: number, b4: number, b5: number, b6: number, b7: number): number {
    const w = this.w;
    for (let a = 0; a < this.summary; a++) {
      let s = w[b0 + a]! & w[b1 + a]! & w[b2 + a]! & w[b3 + a]! & w[b4 + a]! & w[b5 + a]! & w[b6 + a]! & w[b7 + a]!;
      while (s !== 0) {
        const word = a * 32 + lowestBit(s); //    a 64-rule word that may match
        const o = this.summary + 2 * word;
        const lo = w[b0 + o]! & w[b1 + o]! & w[b2 + o]! & w[b3 + o]! & w[b4 + o]! & w[b5 + o]! & w[b6 + o]! & w[b7 + o]!;
        const a0 = this.pick(lo, word * 64);
        if (a0 !== NO_MATCH) return a0;
        const hi = w[b0 + o + 1]! & w[b1 + o + 1]! & w[b2 + o + 1]! & w[b3 + o + 1]! & w[b4 + o + 1]! & w[b5 + o + 1]! & w[b6 + o + 1]! & w[b7 + o + 1]!;
        const a1 = this.pick(hi, word * 64 + 32);
        if (a1 !== NO_MATCH) return a1;
        s &= s - 1;
      }
    }
    return NO_MATCH;
  }
}

function lowestBit(x: number): number { return 31 - Math.clz32(x & -x); }

// Compares the bound at bounds[at..at+4) with key, both most significant word first.
function compare6(bounds: Uint32Array, at: number, key: Uint32Array): number {
  for (let i = 0; i < 4; i++) {
    const a = bounds[at + i]!, b = key[i]!;
    if (a !== b) return a < b ? -1 : 1;
  }
  return 0;
}
