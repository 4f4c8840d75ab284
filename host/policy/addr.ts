// Addresses, prefixes and address sets for the policy compiler.
//
// IPv4 values are numbers (0 .. 2^32-1), IPv6 values bigints; a prefix is the
// inclusive range it covers. A set file lists prefixes, some as exceptions
// ("!prefix"); an address belongs to the set when the longest prefix of the
// file that covers it is not an exception. flattenLpm() turns such a list into
// sorted, disjoint, inclusive ranges (AddrRanges of host/rules/model.ts), the
// form the table builder takes, in O(n log n).
import { type AddrRanges, MAX_V4, MAX_V6, type Range128, type Range32 } from "../rules/model.js";
import { type Diagnostics, type Pos } from "../config/errors.js";

export type Prefix =
  | { family: 4; lo: number; hi: number; len: number }
  | { family: 6; lo: bigint; hi: bigint; len: number };

// Why a text is not a usable prefix; `offset` is where in the text (0-based).
export interface PrefixProblem {
  code: "bad_address" | "bad_prefix" | "host_bits";
  what: string;
  offset: number;
}

const V4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

// Strict dotted quad: four decimal octets, no leading zeros (some tools read
// them as octal), nothing else.
export function parseIPv4(text: string): number | null {
  const m = V4_RE.exec(text);
  if (!m) return null;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const o = m[i]!;
    if (o.length > 1 && o.charCodeAt(0) === 48) return null;
    const n = Number(o);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v;
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

// RFC 4291 text forms: eight groups, "::" for one or more zero groups, an
// embedded dotted quad in the last 32 bits. No zone index (%eth0).
export function parseIPv6(text: string): bigint | null {
  if (text.length < 2 || text.length > 45 || !text.includes(":")) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string): bigint[] | null => {
    if (s === "") return [];
    const parts = s.split(":");
    const out: bigint[] = [];
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIPv4(p);
        if (v4 === null) return null;
        out.push(BigInt(v4 >>> 16), BigInt(v4 & 0xffff));
      } else {
        if (!HEX_GROUP.test(p)) return null;
        out.push(BigInt(parseInt(p, 16)));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  if (head === null) return null;
  let all: bigint[];
  if (halves.length === 2) {
    const tail = groups(halves[1]!);
    if (tail === null || head.length + tail.length > 7) return null;
    // A dotted quad only ends the address.
    if (halves[0]!.includes(".")) return null;
    all = [...head, ...new Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail];
  } else {
    if (head.length !== 8) return null;
    all = head;
  }
  let v = 0n;
  for (const g of all) v = (v << 16n) | g;
  return v;
}

export function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

// RFC 5952: lower case, longest run (of two or more) of zero groups as "::".
export function formatIPv6(v: bigint): string {
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((v >> BigInt(16 * i)) & 0xffffn));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j === i ? i + 1 : j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

export function formatPrefix(p: Prefix): string {
  const full = p.family === 4 ? 32 : 128;
  const a = p.family === 4 ? formatIPv4(p.lo) : formatIPv6(p.lo);
  return p.len === full ? a : `${a}/${p.len}`;
}

// "a.b.c.d", "a.b.c.d/len", an IPv6 address, or "ipv6/len". A prefix with
// bits set past its length is refused (it is almost always a typo for a
// different network); the message says which network was probably meant.
export function parsePrefix(text: string): Prefix | PrefixProblem {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const v6 = addrText.includes(":");
  const full = v6 ? 128 : 32;
  let len = full;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > full) {
      return { code: "bad_prefix", offset: slash + 1, what: `"${text}": the prefix length must be 0 to ${full}` };
    }
    len = Number(lenText);
  }
  if (v6) {
    if (addrText.includes("%")) return { code: "bad_address", offset: 0, what: `"${text}": zone indexes (%...) are not allowed` };
    const a = parseIPv6(addrText);
    if (a === null) return { code: "bad_address", offset: 0, what: `"${addrText}" is not an IPv6 address` };
    const size = 1n << BigInt(128 - len);
    const lo = a & ~(size - 1n) & MAX_V6;
    if (lo !== a) {
      const net: Prefix = { family: 6, lo, hi: lo + size - 1n, len };
      return { code: "host_bits", offset: 0, what: `"${text}" has host bits set; the network is ${formatPrefix(net)}` };
    }
    return { family: 6, lo, hi: lo + size - 1n, len };
  }
  const a = parseIPv4(addrText);
  if (a === null) {
    const hint = /^\d+(\.\d+){3}$/.test(addrText) ? " (each of the four numbers is 0 to 255, without leading zeros)" : "";
    return { code: "bad_address", offset: 0, what: `"${addrText}" is not an IPv4 or IPv6 address${hint}` };
  }
  const size = 2 ** (32 - len);
  const lo = a - (a % size);
  if (lo !== a) {
    return { code: "host_bits", offset: 0, what: `"${text}" has host bits set; the network is ${formatIPv4(lo)}/${len}` };
  }
  return { family: 4, lo, hi: lo + size - 1, len };
}

export function isPrefix(p: Prefix | PrefixProblem): p is Prefix {
  return "family" in p;
}

// Sorts and merges overlapping or adjacent ranges.
export function unionRanges32(list: ReadonlyArray<Range32>): Range32[] {
  const s = [...list].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [lo, hi] of s) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) { if (hi > last[1]) last[1] = hi; } else out.push([lo, hi]);
  }
  return out;
}

export function unionRanges128(list: ReadonlyArray<Range128>): Range128[] {
  const s = [...list].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: Array<[bigint, bigint]> = [];
  for (const [lo, hi] of s) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1n) { if (hi > last[1]) last[1] = hi; } else out.push([lo, hi]);
  }
  return out;
}

export function unionAddr(list: ReadonlyArray<AddrRanges>): AddrRanges {
  return { v4: unionRanges32(list.flatMap((a) => a.v4)), v6: unionRanges128(list.flatMap((a) => a.v6)) };
}

export function prefixesToRanges(list: ReadonlyArray<Prefix>): AddrRanges {
  const v4: Range32[] = [], v6: Range128[] = [];
  for (const p of list) {
    if (p.family === 4) v4.push([p.lo, p.hi]); else v6.push([p.lo, p.hi]);
  }
  return { v4: unionRanges32(v4), v6: unionRanges128(v6) };
}

// Whether sorted disjoint ranges contain x (binary search).
export function rangesContain<T extends number | bigint>(ranges: ReadonlyArray<readonly [T, T]>, x: T): boolean {
  let lo = 0, hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = ranges[mid]!;
    if (x < r[0]) hi = mid - 1;
    else if (x > r[1]) lo = mid + 1;
    else return true;
  }
  return false;
}

export const FULL_V4: Range32 = [0, MAX_V4];
export const FULL_V6: Range128 = [0n, MAX_V6];

// One line of a set file, for flattening.
export interface LpmEntry<T> { lo: T; hi: T; len: number; include: boolean; tag: number }

// Longest-prefix match over prefixes (which nest or are disjoint, never
// partly overlap), flattened to sorted disjoint ranges of included addresses.
// Entries with the same prefix must agree (findLpmConflicts finds the rest).
function flatten<T extends number | bigint>(entries: Array<LpmEntry<T>>, one: T): Array<[T, T]> {
  const add = (a: T, b: T): T => ((a as never as number) + (b as never as number)) as never as T;
  const sub = (a: T, b: T): T => ((a as never as number) - (b as never as number)) as never as T;
  entries.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : a.len - b.len));
  const out: Array<[T, T]> = [];
  const emit = (lo: T, hi: T, include: boolean): void => {
    if (!include || lo > hi) return;
    const last = out[out.length - 1];
    if (last && last[1] >= sub(lo, one)) { if (hi > last[1]) last[1] = hi; } else out.push([lo, hi]);
  };
  const stack: Array<LpmEntry<T>> = [];
  let cursor: T | null = null; // first address not yet decided; null before the first prefix
  for (const e of entries) {
    while (stack.length > 0 && stack[stack.length - 1]!.hi < e.lo) {
      const top = stack.pop()!;
      if (cursor !== null && cursor <= top.hi) emit(cursor, top.hi, top.include);
      cursor = add(top.hi, one);
    }
    const top = stack[stack.length - 1];
    if (top && top.lo === e.lo && top.len === e.len) continue; // duplicate line
    if (top && cursor !== null && cursor < e.lo) emit(cursor, sub(e.lo, one), top.include);
    cursor = e.lo;
    stack.push(e);
  }
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (cursor !== null && cursor <= top.hi) emit(cursor, top.hi, top.include);
    // The last possible address has no successor; nothing is left to decide.
    if (top.hi === (typeof one === "bigint" ? MAX_V6 : MAX_V4)) break;
    cursor = add(top.hi, one);
  }
  return out;
}

// IPv4 sets are the big ones (feeds of 10^5 to 10^6 prefixes): their entries
// travel as one float per prefix, (lo * 64 + len) * 2 + include, which sorts
// natively in (lo, len) order, shortest first, and needs no objects.
export function lpmKey32(lo: number, len: number, include: boolean): number {
  return (lo * 64 + len) * 2 + (include ? 1 : 0);
}

// flatten() for sorted keys; of entries with the same prefix, the first counts.
export function flattenKeys32(keys: Float64Array): Range32[] {
  const out: Array<[number, number]> = [];
  const emit = (lo: number, hi: number): void => {
    if (lo > hi) return;
    const last = out[out.length - 1];
    if (last && last[1] >= lo - 1) { if (hi > last[1]) last[1] = hi; } else out.push([lo, hi]);
  };
  // Open prefixes: they nest, so at most 33 deep.
  const stHi = new Float64Array(34);
  const stInc = new Uint8Array(34);
  let sp = 0;
  let cursor = 0; //  first address not yet decided (below the first prefix, none are in)
  let prev = -1;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const inc = k % 2;
    const ll = (k - inc) / 2;
    if (ll === prev) continue;
    prev = ll;
    const len = ll % 64;
    const lo = (ll - len) / 64;
    const hi = lo + 2 ** (32 - len) - 1;
    while (sp > 0 && stHi[sp - 1]! < lo) {
      sp--;
      if (stInc[sp]) emit(cursor, stHi[sp]!);
      cursor = stHi[sp]! + 1;
    }
    if (sp > 0 && stInc[sp - 1] && cursor < lo) emit(cursor, lo - 1);
    cursor = lo;
    stHi[sp] = hi;
    stInc[sp] = inc;
    sp++;
  }
  while (sp > 0) {
    sp--;
    if (stInc[sp]) emit(cursor, stHi[sp]!);
    cursor = stHi[sp]! + 1;
  }
  return out;
}

export function flattenLpm32(entries: ReadonlyArray<LpmEntry<number>>): Range32[] {
  const keys = new Float64Array(entries.length);
  entries.forEach((e, i) => { keys[i] = lpmKey32(e.lo, e.len, e.include); });
  // Same prefix twice: the first listed counts, as in flatten().
  const first = new Map<number, boolean>();
  let dup = false;
  for (const e of entries) {
    const k = e.lo * 64 + e.len;
    if (first.has(k)) dup = true; else first.set(k, e.include);
  }
  if (dup) {
    let n = 0;
    for (const [ll, inc] of first) keys[n++] = ll * 2 + (inc ? 1 : 0);
    return flattenKeys32(keys.subarray(0, n).sort());
  }
  return flattenKeys32(keys.sort());
}

export function flattenLpm128(entries: Array<LpmEntry<bigint>>): Range128[] {
  return flatten<bigint>(entries, 1n);
}

// Pairs of entries naming the same prefix, one included and one excepted
// (tags of the later one and of the first one).
function conflicts<T extends number | bigint>(entries: ReadonlyArray<LpmEntry<T>>): Array<[number, number]> {
  const seen = new Map<string, LpmEntry<T>>();
  const out: Array<[number, number]> = [];
  for (const e of entries) {
    const k = `${e.lo}/${e.len}`;
    const f = seen.get(k);
    if (f === undefined) seen.set(k, e);
    else if (f.include !== e.include) out.push([e.tag, f.tag]);
  }
  return out;
}

export interface SetContents extends AddrRanges {
  includes: number; //   prefix lines
  exceptions: number; // "!prefix" lines
}

// A set file: one prefix per line, "!prefix" for an exception, "#" starts a
// comment, blank lines ignored. Problems go to `diag` with the set file's
// line and column; the ranges are only meaningful when there were none.
export function parseSetText(text: string, file: string, diag: Diagnostics, maxErrors = 10): SetContents {
  let v4keys = new Float64Array(1024);
  let n4 = 0;
  const v6: Array<LpmEntry<bigint>> = [];
  let includes = 0, exceptions = 0, errors = 0, firstBad = 0, foreign = 0;
  // Bad lines are quoted only if the file is a set file (its bad lines look
  // like addresses, or are fewer than its good ones): a policy may name any
  // file the daemon can read, and errors go to replies, logs and stats.
  const held: Array<[string, Pos, string]> = [];
  const lines = text.split("\n");
  const fail = (code: string, line: number, col: number, what: string): void => {
    errors++;
    firstBad ||= line;
    const t = lines[line - 1]!.replace(/#.*/, "");
    if (!(/^[0-9A-Fa-f:./%!\s]*$/.test(t) && /[.:]/.test(t))) foreign++;
    if (errors <= maxErrors) held.push([code, { file, line, col }, what]);
    else if (errors === maxErrors + 1) held.push(["too_many_errors", { file, line, col }, "more bad lines in this set file; stopping here"]);
  };
  const report = (): void => {
    if (errors === 0) return;
    if (foreign === 0 || errors <= includes + exceptions) { for (const [c, p, w] of held) diag.error(c, p, w); return; }
    diag.error("not_a_set", { file, line: 0, col: 0 },
      `not a set file: ${errors} of its lines are not addresses or prefixes and ${includes + exceptions} are (the first bad one is line ${firstBad})`);
  };
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i]!;
    const hash = l.indexOf("#");
    if (hash >= 0) l = l.slice(0, hash);
    if (l.endsWith("\r")) l = l.slice(0, -1);
    let start = 0;
    while (start < l.length && (l[start] === " " || l[start] === "\t")) start++;
    let end = l.length;
    while (end > start && (l[end - 1] === " " || l[end - 1] === "\t" || l[end - 1] === "\r")) end--;
    if (start === end) continue;
    let tok = l.slice(start, end);
    let include = true;
    if (tok[0] === "!") {
      include = false;
      start++;
      while (start < end && (l[start] === " " || l[start] === "\t")) start++;
      tok = l.slice(start, end);
      if (tok === "") { fail("set_bad_line", i + 1, start + 1, `"!" must be followed by a prefix`); continue; }
    }
    const ws = tok.search(/[ \t]/);
    if (ws >= 0) {
      fail("set_bad_line", i + 1, start + ws + 1 + tok.slice(ws).search(/[^ \t]/),
        `one prefix per line; unexpected "${tok.slice(ws).trim()}" after "${tok.slice(0, ws)}" (comments start with #)`);
      continue;
    }
    const p = parsePrefix(tok);
    if (!isPrefix(p)) { fail(p.code, i + 1, start + p.offset + 1, p.what); continue; }
    if (include) includes++; else exceptions++;
    if (p.family === 4) {
      if (n4 === v4keys.length) { const grown = new Float64Array(n4 * 2); grown.set(v4keys); v4keys = grown; }
      v4keys[n4++] = lpmKey32(p.lo, p.len, include);
    } else {
      v6.push({ lo: p.lo, hi: p.hi, len: p.len, include, tag: i + 1 });
    }
  }
  const keys = v4keys.subarray(0, n4).sort();
  // The same prefix included and excepted: sorted, the two keys are adjacent.
  let conflicted = false;
  for (let i = 1; i < keys.length; i++) {
    if (keys[i]! - keys[i - 1]! === 1 && keys[i - 1]! % 2 === 0) { conflicted = true; break; }
  }
  if (conflicted) {
    // Rare: parse again, slowly, for the line numbers.
    const again: Array<LpmEntry<number>> = [];
    lines.forEach((raw, i) => {
      const t = raw.replace(/#.*/, "").trim();
      const inc = !t.startsWith("!");
      const pr = parsePrefix(inc ? t : t.slice(1).trim());
      if (t !== "" && isPrefix(pr) && pr.family === 4) again.push({ lo: pr.lo, hi: pr.hi, len: pr.len, include: inc, tag: i + 1 });
    });
    for (const [line, first] of conflicts(again)) fail("set_conflict", line, 1, `this prefix is both included and excepted (see line ${first})`);
  }
  for (const [line, first] of conflicts(v6)) {
    fail("set_conflict", line, 1, `this prefix is both included and excepted (see line ${first})`);
  }
  report();
  return { v4: flattenKeys32(keys), v6: flattenLpm128(v6), includes, exceptions };
}

// The number of addresses ranges cover (for summaries).
export function countAddresses(r: AddrRanges): { v4: number; v6: bigint } {
  return {
    v4: r.v4.reduce((n, [lo, hi]) => n + (hi - lo + 1), 0),
    v6: r.v6.reduce((n, [lo, hi]) => n + (hi - lo + 1n), 0n),
  };
}
