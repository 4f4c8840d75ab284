// Validates a staged rule table completely before it can be committed: header,
// length, checksum, counts, every section's bounds and alignment, every
// bitmap id, the order of interval bounds, and every bitmap's bits against
// nrules and its summary words. Control path: runs once per reload.
import { crc32 } from "../crc32";
import * as F from "./format";
import { TableError } from "./format";

// Byte offset in the table where validation failed, for the error message.
export let faultAt: u32 = 0;

// @ts-ignore: decorator
@inline function fail(e: TableError, at: u32): TableError { faultAt = at; return e; }

// A section [off, off + size) must start after the header, be 8-aligned and
// end inside the table. Sizes are u64 so no product can wrap.
function section(off: u32, size: u64, len: u32): TableError {
  if (off < F.HDR_SIZE || <u64>off + size > <u64>len) return TableError.SECTION_OUT_OF_RANGE;
  if (off & 7) return TableError.SECTION_MISALIGNED;
  return TableError.OK;
}

function idsInRange(ids: usize, n: u32, nbitmaps: u32, t: usize): TableError {
  for (let i: u32 = 0; i < n; i++) {
    if (load<u32>(ids + (<usize>i << 2)) >= nbitmaps) return fail(TableError.BITMAP_ID_OUT_OF_RANGE, <u32>(ids - t) + (i << 2));
  }
  return TableError.OK;
}

function checkBitmaps(t: usize, nrules: u32, words: u32, aggs: u32, nbitmaps: u32, off: u32): TableError {
  const stride = <usize>(aggs + words) << 3;
  const tailBits = nrules & 63;
  const lastMask: u64 = tailBits == 0 ? (nrules == 0 ? 0xffffffffffffffff : 0) : (0xffffffffffffffff << <u64>tailBits);
  for (let b: u32 = 0; b < nbitmaps; b++) {
    const bm = t + <usize>off + <usize>b * stride;
    const rw = bm + (<usize>aggs << 3);
    if (load<u64>(rw + (<usize>(words - 1) << 3)) & lastMask) return fail(TableError.STRAY_BITS, <u32>(bm - t));
    for (let a: u32 = 0; a < aggs; a++) {
      let want: u64 = 0;
      const first = a << 6;
      const last = min(words, first + 64);
      for (let w = first; w < last; w++) {
        if (load<u64>(rw + (<usize>w << 3)) != 0) want |= (<u64>1) << <u64>(w - first);
      }
      if (load<u64>(bm + (<usize>a << 3)) != want) return fail(TableError.SUMMARY_MISMATCH, <u32>(bm - t) + (a << 3));
    }
  }
  return TableError.OK;
}

function checkIntervals(t: usize, field: u32, len: u32, nbitmaps: u32): TableError {
  const h = t + <usize>(F.T_IFIELDS + field * F.IFIELD_SIZE);
  const count = load<u32>(h + F.IF_COUNT);
  const boundsOff = load<u32>(h + F.IF_BOUNDS_OFF);
  const idsOff = load<u32>(h + F.IF_IDS_OFF);
  const wide = field >= F.IFIELD_SRC6;
  const at = F.T_IFIELDS + field * F.IFIELD_SIZE;
  if (count == 0) return fail(TableError.BAD_COUNTS, at);
  let e = section(boundsOff, <u64>count << (wide ? 4 : 2), len);
  if (e) return fail(e, at + F.IF_BOUNDS_OFF);
  e = section(idsOff, <u64>count << 2, len);
  if (e) return fail(e, at + F.IF_IDS_OFF);
  e = idsInRange(t + <usize>idsOff, count, nbitmaps, t);
  if (e) return e;
  const bounds = t + <usize>boundsOff;
  if (wide) {
    if (load<u64>(bounds) != 0 || load<u64>(bounds + 8) != 0) return fail(TableError.FIRST_BOUND_NOT_ZERO, boundsOff);
    for (let i: u32 = 1; i < count; i++) {
      const p = bounds + (<usize>i << 4);
      const hi = load<u64>(p), lo = load<u64>(p + 8);
      const phi = load<u64>(p - 16), plo = load<u64>(p - 8);
      if (hi < phi || (hi == phi && lo <= plo)) return fail(TableError.BOUNDS_NOT_ASCENDING, boundsOff + (i << 4));
    }
  } else {
    if (load<u32>(bounds) != 0) return fail(TableError.FIRST_BOUND_NOT_ZERO, boundsOff);
    for (let i: u32 = 1; i < count; i++) {
      const p = bounds + (<usize>i << 2);
      if (load<u32>(p) <= load<u32>(p - 4)) return fail(TableError.BOUNDS_NOT_ASCENDING, boundsOff + (i << 2));
    }
  }
  return TableError.OK;
}

// The rule extensions and the lists: in range, and every limit possible
// (a rate with a bucket that holds at least one flow, whose depth in
// burst * period_ns fits below 2^63; prefixes no longer than the address).
function checkExts(t: usize, len: u32): TableError {
  const extOff = load<u32>(t + F.T_EXT_OFF), next = load<u32>(t + F.T_NEXT);
  const listsOff = load<u32>(t + F.T_LISTS_OFF), nlists = load<u32>(t + F.T_NLISTS);
  let e = section(extOff, <u64>next * F.EXT_SIZE, len);
  if (e) return fail(e, F.T_EXT_OFF);
  e = section(listsOff, <u64>nlists * F.LIST_SIZE, len);
  if (e) return fail(e, F.T_LISTS_OFF);
  if (nlists >= F.LIST_NONE) return fail(TableError.BAD_LIST, F.T_NLISTS);
  for (let i: u32 = 0; i < next; i++) {
    const at = extOff + i * F.EXT_SIZE;
    const x = t + <usize>at;
    const fl = load<u8>(x + F.X_FLAGS);
    if (fl & ~F.XF_ALL) return fail(TableError.BAD_EXT, at + F.X_FLAGS);
    if (load<u8>(x + F.X_PFX4) > 32 || load<u8>(x + F.X_PFX6) > 128) return fail(TableError.BAD_EXT, at + F.X_PFX4);
    const rate = load<u32>(x + F.X_RATE), burst = load<u32>(x + F.X_BURST), period = load<u64>(x + F.X_PERIOD);
    // The full bucket, burst * period_ns, must fit below 2^63.
    if (rate != 0 && (burst == 0 || burst > F.MAX_BURST || period == 0 || period > F.MAX_PERIOD_NS ||
      period > <u64>0x7fffffffffffffff / <u64>burst)) {
      return fail(TableError.BAD_EXT, at + F.X_RATE);
    }
    const from = <u32>load<u16>(x + F.X_FROM_LIST), over = <u32>load<u16>(x + F.X_OVERLOAD);
    if ((fl & F.XF_FROM_LIST) && from >= nlists) return fail(TableError.BAD_LIST, at + F.X_FROM_LIST);
    if (over != F.LIST_NONE && over >= nlists) return fail(TableError.BAD_LIST, at + F.X_OVERLOAD);
  }
  return TableError.OK;
}

// Checks the `len` bytes at `t`. `cap` is the slot size, `maxRules` the
// number of per-rule counter records available.
export function validateTable(t: usize, len: u32, cap: u32, maxRules: u32): TableError {
  faultAt = 0;
  if (len > cap) return TableError.TOO_LARGE;
  if (len < F.HDR_SIZE) return TableError.TOO_SHORT;
  if (load<u32>(t + F.T_MAGIC) != F.TABLE_MAGIC) return fail(TableError.BAD_MAGIC, F.T_MAGIC);
  if (<u32>load<u16>(t + F.T_VERSION) != F.TABLE_VERSION) return fail(TableError.BAD_VERSION, F.T_VERSION);
  if (<u32>load<u16>(t + F.T_HDR_SIZE) != F.HDR_SIZE) return fail(TableError.BAD_HEADER_SIZE, F.T_HDR_SIZE);
  if (load<u32>(t + F.T_TOTAL_LEN) != len) return fail(TableError.BAD_LENGTH, F.T_TOTAL_LEN);
  if (crc32(t + 16, <usize>(len - 16)) != load<u32>(t + F.T_CRC)) return fail(TableError.BAD_CHECKSUM, F.T_CRC);

  const nrules = load<u32>(t + F.T_NRULES);
  const words = load<u32>(t + F.T_WORDS);
  const aggs = load<u32>(t + F.T_AGGS);
  const nbitmaps = load<u32>(t + F.T_NBITMAPS);
  if (nrules > maxRules) return fail(TableError.TOO_MANY_RULES, F.T_NRULES);
  const wantWords = nrules == 0 ? 1 : (nrules + 63) >> 6;
  if (words != wantWords || aggs != (words + 63) >> 6 || nbitmaps == 0) return fail(TableError.BAD_COUNTS, F.T_WORDS);
  const dfl = load<u8>(t + F.T_DEFAULT);
  if (dfl != F.ACTION_DENY && dfl != F.ACTION_ALLOW) return fail(TableError.BAD_DEFAULT, F.T_DEFAULT);

  const bitmapsOff = load<u32>(t + F.T_BITMAPS_OFF);
  let e = section(bitmapsOff, <u64>nbitmaps * (<u64>(aggs + words) << 3), len);
  if (e) return fail(e, F.T_BITMAPS_OFF);
  const rulesOff = load<u32>(t + F.T_RULES_OFF);
  e = section(rulesOff, <u64>nrules * F.RULE_SIZE, len);
  if (e) return fail(e, F.T_RULES_OFF);
  const infoOff = load<u32>(t + F.T_INFO_OFF);
  const infoLen = load<u32>(t + F.T_INFO_LEN);
  e = section(infoOff, <u64>infoLen, len);
  if (e) return fail(e, F.T_INFO_OFF);

  // The direct fields: where each table starts, how many entries it has.
  for (let f: u32 = 0; f < F.DIRECT_FIELDS; f++) {
    const at = F.T_CTX_OFF + (f << 2);
    const off = load<u32>(t + <usize>at);
    const n = f < 3 ? F.CTX_SIZE : F.PORT_SIZE;
    e = section(off, <u64>n << 2, len);
    if (e) return fail(e, at);
    e = idsInRange(t + <usize>off, n, nbitmaps, t);
    if (e) return e;
  }
  for (let f: u32 = 0; f < 4; f++) {
    e = checkIntervals(t, f, len, nbitmaps);
    if (e) return e;
  }

  e = checkExts(t, len);
  if (e) return e;
  const listsOff = load<u32>(t + F.T_LISTS_OFF);
  for (let l: u32 = 0; l < load<u32>(t + F.T_NLISTS); l++) {
    const rec = t + <usize>listsOff + <usize>l * F.LIST_SIZE;
    if (<u64>load<u32>(rec + F.L_NAME_OFF) + <u64>load<u32>(rec + F.L_NAME_LEN) > <u64>infoLen) {
      return fail(TableError.INFO_OUT_OF_RANGE, listsOff + l * F.LIST_SIZE + F.L_NAME_OFF);
    }
  }
  const next = load<u32>(t + F.T_NEXT);
  for (let r: u32 = 0; r < nrules; r++) {
    const rec = t + <usize>rulesOff + <usize>r * F.RULE_SIZE;
    const at = rulesOff + r * F.RULE_SIZE;
    const action = load<u8>(rec + F.R_ACTION);
    if (action != F.ACTION_DENY && action != F.ACTION_ALLOW) return fail(TableError.BAD_ACTION, at);
    const x = <u32>load<u16>(rec + F.R_EXT);
    if (x > next) return fail(TableError.BAD_EXT, at + F.R_EXT);
    // A limit admits flows, so only an allow rule may carry one.
    if (x != 0 && action != F.ACTION_ALLOW &&
      (load<u8>(t + <usize>load<u32>(t + F.T_EXT_OFF) + <usize>(x - 1) * F.EXT_SIZE + F.X_FLAGS) & F.XF_LIMIT)) {
      return fail(TableError.BAD_EXT, at + F.R_EXT);
    }
    if (<u64>load<u32>(rec + F.R_INFO_OFF) + <u64>load<u32>(rec + F.R_INFO_LEN) > <u64>infoLen) {
      return fail(TableError.INFO_OUT_OF_RANGE, at + F.R_INFO_OFF);
    }
  }
  return checkBitmaps(t, nrules, words, aggs, nbitmaps, bitmapsOff);
}
