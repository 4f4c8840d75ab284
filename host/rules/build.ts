// Builds the binary rule table (layout: assembly/rules/format.ts) from rule
// specs: per field, the elementary intervals of its values, each pointing at
// the bitmap of rules that match there; equal bitmaps are stored once.
import { crc32 } from "./crc32.js";
import * as F from "./format.js";
import { type AddrRanges, MAX_V4, MAX_V6, type Range128, type Range32, type RuleExt, type RuleSpec, type TableSpec } from "./model.js";

// Bitmaps of rules as u32 words (bit r is rule r), stored once each.
class BitmapPool {
  readonly maps: Uint32Array[] = [];
  private readonly index = new Map<number, number[]>();
  constructor(readonly words32: number, private readonly maxBytes: number, private readonly stride: number) {}

  add(bits: Uint32Array): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i]!, 0x01000193);
    const bucket = this.index.get(h);
    if (bucket) {
      for (const id of bucket) {
        const m = this.maps[id]!;
        let same = true;
        for (let i = 0; i < m.length; i++) if (m[i] !== bits[i]) { same = false; break; }
        if (same) return id;
      }
    }
    const id = this.maps.length;
    // The bitmaps are most of a table: stop before holding more of them
    // than the table may have bytes, so a huge policy costs bounded memory.
    if ((id + 1) * this.stride > this.maxBytes) throw new TableTooLargeError((id + 1) * this.stride, this.maxBytes);
    this.maps.push(Uint32Array.from(bits));
    if (bucket) bucket.push(id); else this.index.set(h, [id]);
    return id;
  }
}

interface Interval<T> { bounds: T[]; ids: number[] }

// Sweeps the value line of one field. ranges[r] lists rule r's ranges, null
// for "every value". Returns the elementary intervals and their bitmap ids.
function sweep<T extends number | bigint>(
  pool: BitmapPool, ranges: ReadonlyArray<ReadonlyArray<readonly [T, T]> | null>, max: T, zero: T, one: T,
): Interval<T> {
  const cur = new Uint32Array(pool.words32);
  const counts = new Int32Array(ranges.length);
  const events: Array<{ pos: T; rule: number; delta: number }> = [];
  ranges.forEach((list, r) => {
    if (list === null) { cur[r >>> 5]! |= 1 << (r & 31); return; }
    for (const [lo, hi] of list) {
      events.push({ pos: lo, rule: r, delta: 1 });
      if (hi < max) events.push({ pos: (hi as never as bigint) + (one as never as bigint) as never as T, rule: r, delta: -1 });
    }
  });
  events.sort((a, b) => (a.pos < b.pos ? -1 : a.pos > b.pos ? 1 : 0));
  const out: Interval<T> = { bounds: [], ids: [] };
  let i = 0;
  let pos = zero;
  for (;;) {
    while (i < events.length && events[i]!.pos === pos) {
      const e = events[i++]!;
      const c = (counts[e.rule] = counts[e.rule]! + e.delta);
      if (c > 0) cur[e.rule >>> 5]! |= 1 << (e.rule & 31);
      else cur[e.rule >>> 5]! &= ~(1 << (e.rule & 31));
    }
    const id = pool.add(cur);
    if (out.ids.length === 0 || out.ids[out.ids.length - 1] !== id) { out.bounds.push(pos); out.ids.push(id); }
    if (i >= events.length) break;
    pos = events[i]!.pos;
  }
  return out;
}

// Per value of a small field (256 entries): the bitmap of rules that accept it.
function direct(pool: BitmapPool, rules: ReadonlyArray<RuleSpec>, size: number, accepts: (r: RuleSpec, v: number) => boolean): Uint32Array {
  const ids = new Uint32Array(size);
  const cur = new Uint32Array(pool.words32);
  for (let v = 0; v < size; v++) {
    cur.fill(0);
    rules.forEach((r, i) => { if (accepts(r, v)) cur[i >>> 5]! |= 1 << (i & 31); });
    ids[v] = pool.add(cur);
  }
  return ids;
}

function expandPorts(iv: Interval<number>): Uint32Array {
  const ids = new Uint32Array(F.PORT_SIZE);
  iv.bounds.forEach((lo, k) => ids.fill(iv.ids[k]!, lo, k + 1 < iv.bounds.length ? iv.bounds[k + 1]! : F.PORT_SIZE));
  return ids;
}

const addrList = <K extends keyof AddrRanges>(a: AddrRanges | null, k: K): AddrRanges[K] | null => (a === null ? null : a[k]);

export interface BuildStats {
  rules: number;
  bitmaps: number;
  bytes: number;
  intervals: { src4: number; dst4: number; src6: number; dst6: number };
  ms: number;
}

export interface BuiltTable { bytes: Uint8Array; stats: BuildStats }

// Tables larger than this are not built: twice the core's default slot, and
// the largest table file readOperatorFile reads (MAX_OPERATOR_FILE).
export const MAX_BUILD_BYTES = 64 << 20;

export class TableTooLargeError extends Error {
  // `atLeast`: the table's size so far, when the build stopped.
  constructor(readonly atLeast: number, readonly limit: number) {
    super(`the table would be more than ${limit} bytes (the build stopped at ${atLeast})`);
    this.name = "TableTooLargeError";
  }
}

export function buildTable(spec: TableSpec, o: { maxBytes?: number } = {}): BuiltTable {
  const t0 = performance.now();
  const maxBytes = o.maxBytes ?? MAX_BUILD_BYTES;
  const rules = spec.rules;
  const n = rules.length;
  const words = Math.max(1, Math.ceil(n / 64));
  const aggs = Math.ceil(words / 64);
  const pool = new BitmapPool(words * 2, maxBytes, (aggs + words) * 8);

  // ctx 128..255 (CTX_ERROR set): unrelated ICMP errors, for rules that name ICMP types only.
  const ctx = direct(pool, rules, F.CTX_SIZE, (r, v) =>
    (v < F.CTX_ERROR || (r.icmp ?? null) !== null) && (r.ctx === null || r.ctx.includes(v & ~F.CTX_ERROR)));
  const proto = direct(pool, rules, 256, (r, v) => r.protos === null || r.protos.includes(v));
  const flags = direct(pool, rules, 256, (r, v) => r.tcpFlags === null || (v & r.tcpFlags.mask) === r.tcpFlags.value);
  const sport = expandPorts(sweep<number>(pool, rules.map((r) => r.sport), 0xffff, 0, 1));
  const dport = expandPorts(sweep<number>(pool, rules.map((r) => r.dport), 0xffff, 0, 1));
  const icmp = expandPorts(sweep<number>(pool, rules.map((r) => r.icmp ?? null), 0xffff, 0, 1));
  const src4 = sweep<number>(pool, rules.map((r) => addrList(r.src, "v4") as Range32[] | null), MAX_V4, 0, 1);
  const dst4 = sweep<number>(pool, rules.map((r) => addrList(r.dst, "v4") as Range32[] | null), MAX_V4, 0, 1);
  const src6 = sweep<bigint>(pool, rules.map((r) => addrList(r.src, "v6") as Range128[] | null), MAX_V6, 0n, 1n);
  const dst6 = sweep<bigint>(pool, rules.map((r) => addrList(r.dst, "v6") as Range128[] | null), MAX_V6, 0n, 1n);

  const enc = new TextEncoder();
  const infos = rules.map((r) => enc.encode(r.info));
  const lists = spec.lists ?? [];
  const names = lists.map((n) => enc.encode(n)); // after the rules' texts in the info section
  const infoLen = [...infos, ...names].reduce((s, b) => s + b.length, 0);
  const exts = rules.map((r) => r.ext ?? null).filter((x): x is NonNullable<typeof x> => x !== null);

  // Section sizes, in layout order, each 8-aligned.
  let off = F.HDR_SIZE;
  const place = (size: number): number => { const at = off; off = (off + size + 7) & ~7; return at; };
  const stride = (aggs + words) * 8;
  const bitmapsOff = place(pool.maps.length * stride);
  const rulesOff = place(n * F.RULE_SIZE);
  const infoOff = place(infoLen);
  const ctxOff = place(256 * 4), protoOff = place(256 * 4), flagsOff = place(256 * 4);
  const sportOff = place(F.PORT_SIZE * 4), dportOff = place(F.PORT_SIZE * 4), icmpOff = place(F.PORT_SIZE * 4);
  const ifields = [
    { iv: src4 as Interval<number | bigint>, wide: false }, { iv: dst4 as Interval<number | bigint>, wide: false },
    { iv: src6 as Interval<number | bigint>, wide: true }, { iv: dst6 as Interval<number | bigint>, wide: true },
  ].map((f) => ({ ...f, boundsOff: place(f.iv.bounds.length * (f.wide ? 16 : 4)), idsOff: place(f.iv.ids.length * 4) }));
  const extOff = place(exts.length * F.EXT_SIZE);
  const listsOff = place(lists.length * F.LIST_SIZE);
  const total = off;
  if (total > maxBytes) throw new TableTooLargeError(total, maxBytes);

  const bytes = new Uint8Array(total);
  const v = new DataView(bytes.buffer);
  v.setUint32(F.T_MAGIC, F.TABLE_MAGIC, true);
  v.setUint16(F.T_VERSION, F.TABLE_VERSION, true);
  v.setUint16(F.T_HDR_SIZE, F.HDR_SIZE, true);
  v.setUint32(F.T_TOTAL_LEN, total, true);
  v.setUint32(F.T_NRULES, n, true);
  v.setUint32(F.T_WORDS, words, true);
  v.setUint32(F.T_AGGS, aggs, true);
  bytes[F.T_DEFAULT] = spec.defaultAction === "allow" ? F.ACTION_ALLOW : F.ACTION_DENY;
  v.setUint16(F.T_OFFLOAD_AFTER, spec.offloadAfter ?? 10, true);
  v.setUint32(F.T_NBITMAPS, pool.maps.length, true);
  v.setUint32(F.T_BITMAPS_OFF, bitmapsOff, true);
  v.setUint32(F.T_RULES_OFF, rulesOff, true);
  v.setUint32(F.T_INFO_OFF, infoOff, true);
  v.setUint32(F.T_INFO_LEN, infoLen, true);
  v.setUint32(F.T_SERIAL, (spec.serial ?? 0) >>> 0, true);
  v.setUint32(F.T_CTX_OFF, ctxOff, true);
  v.setUint32(F.T_PROTO_OFF, protoOff, true);
  v.setUint32(F.T_TCPFLAGS_OFF, flagsOff, true);
  v.setUint32(F.T_SPORT_OFF, sportOff, true);
  v.setUint32(F.T_DPORT_OFF, dportOff, true);
  v.setUint32(F.T_ICMP_OFF, icmpOff, true);
  v.setUint32(F.T_EXT_OFF, extOff, true);
  v.setUint32(F.T_NEXT, exts.length, true);
  v.setUint32(F.T_LISTS_OFF, listsOff, true);
  v.setUint32(F.T_NLISTS, lists.length, true);
  exts.forEach((x, i) => writeExt(v, extOff + i * F.EXT_SIZE, x));

  // Bitmaps: summary words, then the rule words (two u32 halves each).
  pool.maps.forEach((m, id) => {
    const at = bitmapsOff + id * stride;
    for (let w = 0; w < words; w++) {
      const lo = m[2 * w]!, hi = m[2 * w + 1]!;
      v.setUint32(at + (aggs + w) * 8, lo, true);
      v.setUint32(at + (aggs + w) * 8 + 4, hi, true);
      if (lo !== 0 || hi !== 0) {
        const a = w >> 6, bit = w & 63;
        const p = at + a * 8 + (bit >> 5) * 4;
        v.setUint32(p, v.getUint32(p, true) | (1 << (bit & 31)), true);
      }
    }
  });
  let infoAt = 0;
  let extAt = 0;
  rules.forEach((r, i) => {
    const at = rulesOff + i * F.RULE_SIZE;
    if (r.ext) v.setUint16(at + F.R_EXT, ++extAt, true);
    bytes[at + F.R_ACTION] = r.action === "allow" ? F.ACTION_ALLOW : F.ACTION_DENY;
    bytes[at + F.R_FLAGS] = (r.log ? F.RF_LOG : 0) | (r.offload ? F.RF_OFFLOAD : 0);
    v.setUint32(at + F.R_INFO_OFF, infoAt, true);
    v.setUint32(at + F.R_INFO_LEN, infos[i]!.length, true);
    v.setUint32(at + F.R_LINE, r.line, true);
    bytes.set(infos[i]!, infoOff + infoAt);
    infoAt += infos[i]!.length;
  });
  lists.forEach((name, i) => {
    const at = listsOff + i * F.LIST_SIZE;
    v.setUint32(at, listKey(name), true);
    v.setUint32(at + F.L_NAME_OFF, infoAt, true);
    v.setUint32(at + F.L_NAME_LEN, names[i]!.length, true);
    bytes.set(names[i]!, infoOff + infoAt);
    infoAt += names[i]!.length;
  });
  const putIds = (at: number, ids: ArrayLike<number>): void => { for (let i = 0; i < ids.length; i++) v.setUint32(at + 4 * i, ids[i]!, true); };
  putIds(ctxOff, ctx); putIds(protoOff, proto); putIds(flagsOff, flags);
  putIds(sportOff, sport); putIds(dportOff, dport); putIds(icmpOff, icmp);
  const M64 = (1n << 64n) - 1n;
  ifields.forEach((f, k) => {
    const h = F.T_IFIELDS + k * F.IFIELD_SIZE;
    v.setUint32(h + F.IF_COUNT, f.iv.bounds.length, true);
    v.setUint32(h + F.IF_BOUNDS_OFF, f.boundsOff, true);
    v.setUint32(h + F.IF_IDS_OFF, f.idsOff, true);
    f.iv.bounds.forEach((b, i) => {
      if (f.wide) {
        const big = b as bigint;
        v.setBigUint64(f.boundsOff + 16 * i, big >> 64n, true);
        v.setBigUint64(f.boundsOff + 16 * i + 8, big & M64, true);
      } else {
        v.setUint32(f.boundsOff + 4 * i, b as number, true);
      }
    });
    putIds(f.idsOff, f.iv.ids);
  });
  v.setUint32(F.T_CRC, crc32(bytes, 16), true);
  return {
    bytes,
    stats: {
      rules: n,
      bitmaps: pool.maps.length,
      bytes: total,
      intervals: { src4: src4.bounds.length, dst4: dst4.bounds.length, src6: src6.bounds.length, dst6: dst6.bounds.length },
      ms: performance.now() - t0,
    },
  };
}

// The key of a block list in the table and in the core's entries: a hash of
// its name, so a reload that keeps the name keeps the list's entries.
export function listKey(name: string): number {
  return crc32(new TextEncoder().encode(`list:${name}`), 0);
}

function writeExt(v: DataView, at: number, x: RuleExt): void {
  v.setUint32(at + F.X_KEY, x.key >>> 0, true);
  let flags = 0;
  const l = x.limit;
  if (l) {
    flags |= F.XF_LIMIT | (l.flush ? F.XF_FLUSH : 0);
    v.setUint32(at + F.X_RATE, l.rate, true);
    v.setBigUint64(at + F.X_PERIOD, l.periodNs, true);
    v.setUint32(at + F.X_BURST, l.burst, true);
    v.setUint32(at + F.X_FLOWS, l.flows, true);
    v.setBigUint64(at + F.X_BLOCK_NS, l.blockNs, true);
    v.setUint8(at + F.X_PFX4, l.prefix4);
    v.setUint8(at + F.X_PFX6, l.prefix6);
  }
  v.setUint16(at + F.X_OVERLOAD, l?.overload ?? F.LIST_NONE, true);
  if (x.fromList) {
    flags |= F.XF_FROM_LIST | (x.fromList.not ? F.XF_NOT : 0);
    v.setUint16(at + F.X_FROM_LIST, x.fromList.list, true);
  }
  v.setUint8(at + F.X_FLAGS, flags);
}
