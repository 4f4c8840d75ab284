// Fragments, as assembly/conntrack/frag.ts decides them: the first fragment
// of a datagram is decided like any packet and its verdict is remembered
// under (family, protocol, id, source, destination); every later fragment
// follows it. A later fragment whose first is unknown, one that overlaps
// bytes already seen (RFC 1858, RFC 5722: the whole datagram is then
// refused), or one past MAX_RANGES pieces is dropped with its own reason.
//
// The entries live in a Map. The core's tracker has a fixed capacity (8-slot
// buckets; a full bucket gives up its entry closest to expiry); this one
// never evicts, so the two agree while no bucket of the core's overflows.
import * as R from "./codes.js";
import { type Packet, PF_MORE_FRAGS } from "./decode.js";

export const MAX_RANGES = 8;

class Datagram {
  verdict = R.DROP;
  rule = R.RULE_NONE;
  expires = 0;
  poisoned = false;
  total = 0; //                        the datagram's length once its last piece is seen
  ranges: Array<[number, number]> = []; // byte ranges seen, [start, end)
}

export class Fragments {
  private readonly live = new Map<string, Datagram>();
  followRule = R.RULE_NONE; // the first fragment's rule, after follow() passed one

  get size(): number { return this.live.size; }

  private key(p: Packet): string {
    return `${p.family}|${p.proto}|${p.fragId}|${p.src.join(".")}|${p.dst.join(".")}`;
  }

  private find(key: string, now: number): Datagram | undefined {
    const d = this.live.get(key);
    if (d !== undefined && d.expires <= now) {
      this.live.delete(key);
      return undefined;
    }
    return d;
  }

  // Remembers the first fragment's verdict (a repeated first fragment
  // overlaps itself: the datagram is refused).
  first(p: Packet, verdict: number, rule: number, now: number, timeoutNs: number): void {
    const key = this.key(p);
    let d = this.find(key, now);
    if (d === undefined) {
      d = new Datagram();
      this.live.set(key, d);
    } else if (d.poisoned) {
      return;
    }
    if (addRange(d, 0, rangeEnd(p)) !== R.NONE) d.poisoned = true;
    d.verdict = verdict;
    d.rule = rule;
    d.expires = now + timeoutNs;
  }

  // A later fragment: NONE to pass it (the first's rule in followRule),
  // FRAG_DENIED when the first was refused, or why it is dropped.
  follow(p: Packet, now: number): number {
    const key = this.key(p);
    const d = this.find(key, now);
    if (d === undefined) return R.FRAG_NO_FIRST;
    if (d.poisoned) return R.FRAG_OVERLAP;
    const s = p.fragOff * 8, e = rangeEnd(p);
    const r = addRange(d, s, e);
    if (r !== R.NONE) {
      d.poisoned = true;
      return r;
    }
    if ((p.flags & PF_MORE_FRAGS) === 0) d.total = e;
    this.followRule = d.rule;
    const accept = d.verdict === R.ACCEPT;
    // Whole once one range covers [0, total): forget it.
    if (d.total !== 0 && d.ranges.length === 1 && d.ranges[0]![0] === 0 && d.ranges[0]![1] === d.total) this.live.delete(key);
    return accept ? R.NONE : R.FRAG_DENIED;
  }
}

// Where this piece ends within its datagram.
function rangeEnd(p: Packet): number { return p.fragOff * 8 + p.ipLen - p.fragData; }

function addRange(d: Datagram, s: number, e: number): number {
  for (const [rs, re] of d.ranges) if (s < re && rs < e) return R.FRAG_OVERLAP;
  if (d.ranges.length >= MAX_RANGES) return R.FRAG_TOO_MANY;
  d.ranges.push([s, e]);
  coalesce(d.ranges);
  return R.NONE;
}

// Joins ranges that touch (one's end is another's start), in the core's
// order: the first range that can be extended takes the first one it
// touches, whose place the last range then fills. The order matters for
// empty ranges ([8, 8) may or may not be absorbed), which a fragment
// without payload makes, so it is kept exactly.
function coalesce(ranges: Array<[number, number]>): void {
  let i = 0;
  while (i < ranges.length) {
    const a = ranges[i]!;
    let joined = false;
    for (let j = 0; j < ranges.length; j++) {
      const b = ranges[j]!;
      if (j === i || a[1] !== b[0]) continue;
      a[1] = b[1];
      const last = ranges.pop()!;
      if (j < ranges.length) ranges[j] = last;
      if (i === ranges.length) i = j; // a itself was the last: it now sits at j
      joined = true;
      break;
    }
    if (!joined) i++;
  }
}
