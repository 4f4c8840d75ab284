// Stateful verdicts, as assembly/conntrack/track.ts decides them (the order
// of the checks is the policy):
//  1. a later fragment follows its first fragment's verdict (frag.ts);
//  2. IPv6 neighbour discovery with hop limit 255 passes (RFC 4861);
//  3. an ICMP error passes when the packet it quotes belongs to a tracked
//     flow and it travels toward that packet's sender (related); any other
//     error meets only the rules that name its ICMP type, and is dropped as
//     unrelated when none matches;
//  4. a packet of a tracked flow, either direction, passes on state if the
//     flow's TCP state machine allows it, without a rule lookup;
//  5. otherwise only a packet that may open a flow (TCP SYN, UDP, an ICMP
//     query, other protocols) meets the rules, and an allowed one opens a flow.
//
// Flows live in a Map under their canonical key (endpoint A is the lower of
// (address, port), so both directions find the same flow). Time is the
// batch's, in nanoseconds. The core's state table has a fixed capacity: when
// both buckets of a new flow are full it evicts the oldest embryonic flow or
// refuses the flow (STATE_FULL). This Map never fills, so the two agree while
// the core's table has room; nothing else about capacity is mirrored.
import * as R from "./codes.js";
import { type Packet, PF_FIRST_FRAG, PF_FRAGMENT, PF_HAS_PORTS, PF_ICMP_ERROR, TH_ACK, TH_FIN, TH_RST, TH_SYN } from "./decode.js";
import { Fragments } from "./frag.js";
import { NO_MATCH, type RuleTable } from "./rules.js";
import { CTX_ERROR, XF_FROM_LIST, XF_LIMIT, XF_NOT } from "../../host/rules/format.js";
import { Limits, type RefSource } from "./limits.js";

export const enum State {
  FREE = 0,
  SYN_SENT, SYN_SENT2, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
  UDP_UNREPLIED, UDP_REPLIED,
  ICMP_QUERY, ICMP_REPLIED,
  OTHER_UNREPLIED, OTHER_REPLIED,
}

// Seconds per state (Linux conntrack's defaults); slot 0 is the fragment timeout.
export const DEFAULT_TIMEOUTS: readonly number[] = [30, 120, 120, 60, 432000, 120, 60, 30, 120, 10, 30, 120, 30, 30, 600, 600];

const ORIG = 0, REPLY = 1;
const PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58;

export class Flow {
  state: State = State.FREE;
  origIsB = false; //              the opener is endpoint B of the key
  ctx = 0; //                      interface context of the packet that opened it
  rule = R.RULE_NONE; //           the rule that admitted it
  expires = 0;
  created = 0;
  readonly end: [number, number] = [0, 0]; //    per direction: highest seq + len sent
  readonly maxwin: [number, number] = [0, 0]; // per direction: largest window offered (scaled); 0 not seen
  readonly maxend: [number, number] = [0, 0]; // per direction: highest seq the other side allows
  pickedUp = false; //             created mid-stream (pickup)
  readonly wscale: [number, number] = [0, 0]; // per direction: window scale of its SYN, 0xff none
  closer = ORIG; //                which direction sent the first FIN
  source: RefSource | null = null; // where its rule's limit counts it
}

export class Conntrack {
  readonly flows = new Map<string, Flow>();
  readonly frags = new Fragments();
  private readonly timeoutNs: number[];
  verdict = R.DROP; //  the last packet's verdict and rule, beside the reason track() returns
  rule = R.RULE_NONE;
  private key = "";
  private senderIsB = false;
  private now = 0;

  // Timeouts in seconds by state (slot 0: fragments); 0 or absent: the default.
  constructor(readonly rules: RuleTable, timeouts: readonly number[] = [], readonly limits = new Limits(),
    readonly tcp: { pickup?: boolean; liberal?: boolean } = {}) {
    this.timeoutNs = DEFAULT_TIMEOUTS.map((d, i) => (timeouts[i] || d) * 1e9);
    limits.retain(rules.lists);
  }

  private forget(key: string, f: Flow): void {
    this.flows.delete(key);
    f.source?.live.delete(f);
  }

  // End of a batch: counted flows that expired stop counting (see limits.ts).
  sweepEnd(now: number): void {
    for (const s of this.limits.sources.values()) {
      for (const f of s.live as Set<Flow>) {
        if (f.expires <= now) { s.live.delete(f); for (const [k, g] of this.flows) if (g === f) { this.flows.delete(k); break; } }
      }
    }
  }

  private pass(reason: number, rule: number): number { this.verdict = R.ACCEPT; this.rule = rule; return reason; }
  private drop(reason: number): number { this.verdict = R.DROP; this.rule = R.RULE_NONE; return reason; }

  // Decides the decoded packet `p` of interface context `ctx` at time `now`.
  track(p: Packet, ctx: number, now: number): number {
    this.now = now;
    if ((p.flags & (PF_FRAGMENT | PF_FIRST_FRAG)) === PF_FRAGMENT) {
      const r = this.frags.follow(p, now);
      return r === R.NONE ? this.pass(R.FRAG_FOLLOWS, this.frags.followRule) : this.drop(r);
    }
    const reason = this.decide(p, ctx, now);
    if (p.flags & PF_FIRST_FRAG) this.frags.first(p, this.verdict, this.rule, now, this.timeoutNs[0]!);
    return reason;
  }

  private decide(p: Packet, ctx: number, now: number): number {
    const v6 = p.family === 6;
    const icmp = p.proto === (v6 ? PROTO_ICMPV6 : PROTO_ICMP);
    const type = p.icmpType;

    if (v6 && icmp && type >= 133 && type <= 137 && p.ttl === 255) {
      // Without neighbour discovery IPv6 does not work; with hop limit 255 it
      // cannot have come from off the link.
      return this.pass(R.ICMP6_NDP, R.RULE_NONE);
    }
    if (p.flags & PF_ICMP_ERROR) {
      // The error travels back to whoever sent the quoted packet.
      if (sameAddr(p.dst, p.inSrc)) {
        this.makeKey(p.inFamily, p.inProto, p.inSrc, p.inSport, p.inDst, p.inDport);
        const f = this.lookup(now);
        if (f) return this.pass(R.STATE_RELATED, f.rule);
      }
      return this.byRules(p, ctx, true);
    }

    let sport = 0, dport = 0;
    if (p.flags & PF_HAS_PORTS) {
      sport = p.sport; dport = p.dport;
    } else if (icmp) {
      if (!isRequest(v6, type) && !isReply(v6, type)) return this.byRules(p, ctx, false); // router discovery, MLD...: no flow
      sport = dport = p.icmpId;
    }

    this.makeKey(p.family, p.proto, p.src, sport, p.dst, dport);
    let f = this.lookup(now);
    if (f) {
      if (f.source && BigInt(f.created) < f.source.flush) { // ended by an overload's flush
        this.forget(this.key, f);
        return this.drop(R.SOURCE_BLOCKED);
      }
      const dir = this.senderIsB === f.origIsB ? ORIG : REPLY;
      if (p.proto === PROTO_TCP) {
        const r = tcpTrack(f, dir, p, this.tcp.liberal ?? false);
        if (r === TCP_REOPEN) {
          this.forget(this.key, f); // a new connection over a closed one
          f = undefined;
        } else if (r === R.PICKUP_RESET) {
          this.forget(this.key, f);
          return this.drop(r);
        } else if (r !== R.NONE) {
          return this.drop(r);
        }
      } else if (dir === REPLY) {
        if (icmp && !isReply(v6, type)) return this.drop(R.NO_FLOW);
        if (f.state === State.UDP_UNREPLIED) f.state = State.UDP_REPLIED;
        else if (f.state === State.ICMP_QUERY) f.state = State.ICMP_REPLIED;
        else if (f.state === State.OTHER_UNREPLIED) f.state = State.OTHER_REPLIED;
      } else if (icmp && !isRequest(v6, type)) {
        return this.drop(R.NO_FLOW);
      }
      if (f) {
        if (f.source && (f.state === State.TIME_WAIT || f.state === State.CLOSE)) { f.source.live.delete(f); f.source = null; } // closed: no longer counted
        f.expires = now + this.timeoutNs[timeoutState(f)]!;
        return this.pass(R.STATE_MATCH, f.rule);
      }
    }

    // No flow: only a packet that may open one meets the rules.
    const opens = p.proto === PROTO_TCP ? (p.tcpFlags & (TH_SYN | TH_ACK)) === TH_SYN : !icmp || isRequest(v6, type);
    // Pickup: a segment with ACK alone meets the rules as its flow's SYN;
    // refused, it is no_flow as without pickup.
    const pickup = !opens && p.proto === PROTO_TCP && (p.tcpFlags & (TH_SYN | TH_FIN | TH_RST | TH_ACK)) === TH_ACK && (this.tcp.pickup ?? false);
    if (!opens && !pickup) return this.drop(R.NO_FLOW);
    const reason = this.byRules(p, ctx, false, pickup ? TH_SYN : p.tcpFlags);
    if (pickup && this.verdict !== R.ACCEPT) return this.drop(R.NO_FLOW);
    if (this.verdict !== R.ACCEPT) return reason;
    const x = this.rule === R.RULE_NONE ? null : this.rules.exts[this.rule]!;
    let source: RefSource | null = null;
    if (x && (x.flags & XF_LIMIT)) {
      const a = this.limits.admit(x, p.family, p.src, BigInt(now), this.rules.lists);
      if (a.reason !== R.NONE) { this.verdict = R.DROP; return a.reason; }
      source = a.source;
    }
    f = new Flow();
    f.source = source;
    source?.live.add(f);
    f.origIsB = this.senderIsB;
    f.created = now;
    f.ctx = ctx;
    f.rule = this.rule;
    if (pickup) tcpPickup(f, p);
    else if (p.proto === PROTO_TCP) tcpOpen(f, p);
    else f.state = p.proto === PROTO_UDP ? State.UDP_UNREPLIED : icmp ? State.ICMP_QUERY : State.OTHER_UNREPLIED;
    f.expires = now + this.timeoutNs[timeoutState(f)]!;
    this.flows.set(this.key, f);
    return reason;
  }

  // unrelatedError: an ICMP error no tracked flow owns; it meets only the
  // rules that name ICMP types, and no match drops it as unrelated.
  private byRules(p: Packet, ctx: number, unrelatedError: boolean, tcpFlags = p.tcpFlags): number {
    // Rules on a block list: `from: NAME` matches only listed sources,
    // `from: not NAME` only the others; a drop after passing over the latter
    // for a listed source, or by a deny rule of the former, is the list's.
    let skipped = false;
    const bigNow = BigInt(this.now);
    const cond = (rule: number): boolean => {
      const x = this.rules.exts[rule];
      if (!x || !(x.flags & XF_FROM_LIST)) return true;
      const listed = this.limits.listed(this.rules.lists[x.fromList]!, p.family, p.src, bigNow);
      if (x.flags & XF_NOT) { if (listed) skipped = true; return !listed; }
      return listed;
    };
    const r = this.rules.match(ctx | (unrelatedError ? CTX_ERROR : 0), p.family, p.src, p.dst, p.proto, p.sport, p.dport,
      tcpFlags, (p.icmpType << 8) | p.icmpCode, cond);
    if (r === NO_MATCH && unrelatedError) return this.drop(R.ICMP_UNRELATED);
    if (r === NO_MATCH) {
      this.verdict = this.rules.defaultAllow ? R.ACCEPT : R.DROP;
      this.rule = R.RULE_NONE;
      return this.rules.defaultAllow ? R.DEFAULT_ALLOW : skipped ? R.SOURCE_BLOCKED : R.DEFAULT_DENY;
    }
    this.rule = r;
    const allow = this.rules.isAllow(r);
    this.verdict = allow ? R.ACCEPT : R.DROP;
    if (allow) return R.RULE_ALLOW;
    const x = this.rules.exts[r];
    const listRule = x !== null && x !== undefined && (x.flags & (XF_FROM_LIST | XF_NOT)) === XF_FROM_LIST;
    return skipped || listRule ? R.SOURCE_BLOCKED : R.RULE_DENY;
  }

  // The live flow under `key`; an expired one is forgotten.
  private lookup(now: number): Flow | undefined {
    const f = this.flows.get(this.key);
    if (f !== undefined && f.expires <= now) {
      this.forget(this.key, f);
      return undefined;
    }
    return f;
  }

  // The canonical key of a packet src:sport -> dst:dport: endpoint A is the
  // lower (address, port), addresses compared as big-endian numbers.
  private makeKey(family: number, proto: number, src: Uint32Array, sport: number, dst: Uint32Array, dport: number): void {
    let c = 0;
    for (let i = 0; i < 4 && c === 0; i++) c = src[i]! - dst[i]!;
    const srcFirst = c !== 0 ? c < 0 : sport < dport;
    this.senderIsB = !srcFirst;
    const a = srcFirst ? src : dst, b = srcFirst ? dst : src;
    const pa = srcFirst ? sport : dport, pb = srcFirst ? dport : sport;
    this.key = flowKey(family, proto, a, pa, b, pb);
  }
}

// The key as a short string of 16-bit units (a Map hashes it as a whole):
// family and protocol, then each endpoint's address words and port.
function flowKey(family: number, proto: number, a: Uint32Array, pa: number, b: Uint32Array, pb: number): string {
  const u = String.fromCharCode;
  if (family === 4) return u((4 << 8) | proto, a[0]! >>> 16, a[0]! & 0xffff, pa, b[0]! >>> 16, b[0]! & 0xffff, pb);
  return u((6 << 8) | proto, a[0]! >>> 16, a[0]! & 0xffff, a[1]! >>> 16, a[1]! & 0xffff, a[2]! >>> 16, a[2]! & 0xffff,
    a[3]! >>> 16, a[3]! & 0xffff, pa, b[0]! >>> 16, b[0]! & 0xffff, b[1]! >>> 16, b[1]! & 0xffff, b[2]! >>> 16, b[2]! & 0xffff,
    b[3]! >>> 16, b[3]! & 0xffff, pb);
}

function sameAddr(a: Uint32Array, b: Uint32Array): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

// ICMP and ICMPv6 queries that open a flow, and their answers.
function isRequest(v6: boolean, t: number): boolean { return v6 ? t === 128 : t === 8 || t === 13 || t === 15 || t === 17; }
function isReply(v6: boolean, t: number): boolean { return v6 ? t === 129 : t === 0 || t === 14 || t === 16 || t === 18; }

// ---- TCP, after Linux conntrack -----------------------------------------
// States and transitions by direction and segment kind, and window tracking
// for every segment: the four bounds of conntrack's tcp_in_window, drawn in
// assembly/conntrack/tcp.ts. Sequence numbers are 32-bit and compared modulo
// 2^32 (RFC 1982).

export const TCP_REOPEN = -1; // a SYN that starts over a closed flow
const MAX_ACK_WIN = 66000, PICKUP_SCALE = 14, LIBERAL_WINDOW = 0x7fffffff;

const u32 = (x: number): number => x >>> 0;
function before(a: number, b: number): boolean { return ((a - b) | 0) < 0; }
function after(a: number, b: number): boolean { return ((b - a) | 0) < 0; }
function segEnd(p: Packet): number { return u32(p.tcpSeq + p.tcpPayload + (p.tcpFlags & TH_SYN ? 1 : 0) + (p.tcpFlags & TH_FIN ? 1 : 0)); }
function scaleOf(f: Flow, dir: number): number { return f.wscale[0] === 0xff || f.wscale[1] === 0xff ? 0 : f.wscale[dir]!; }

function openSide(f: Flow, dir: number, p: Packet): void {
  f.end[dir] = f.maxend[dir] = segEnd(p);
  f.maxwin[dir] = Math.max(p.tcpWin, 1);
  f.wscale[dir] = p.wscale;
}

function advance(f: Flow, dir: number, end: number, ack: number, sack: number, win: number): void {
  const r = dir ^ 1;
  const swin = u32(win + u32(sack - ack));
  if (f.maxwin[dir]! < swin) f.maxwin[dir] = swin;
  if (after(end, f.end[dir]!)) f.end[dir] = end;
  if (f.maxwin[r] !== 0 && after(end, f.maxend[dir]!)) f.maxwin[r] = u32(f.maxwin[r]! + u32(end - f.maxend[dir]!));
  if (after(u32(sack + win), u32(f.maxend[r]! - 1))) f.maxend[r] = u32(sack + win + (win === 0 ? 1 : 0));
}

function liberalWindow(f: Flow, dir: number, p: Packet): boolean {
  const sw = f.maxwin[dir]!, rw = f.maxwin[dir ^ 1]!;
  if ((p.tcpFlags & (TH_RST | TH_FIN)) && sw !== 0 && rw !== 0) {
    const end = f.end[dir]!, w = Math.max(rw, 1460);
    if (before(p.tcpSeq, u32(end - w)) || !before(p.tcpSeq, u32(end + w + 1))) return false;
  }
  const end = segEnd(p);
  if (sw === 0 || after(end, f.end[dir]!)) f.end[dir] = end;
  const w = Math.max(u32(p.tcpWin << scaleOf(f, dir)), 1);
  if (w > sw) f.maxwin[dir] = w;
  return true;
}

function inWindow(f: Flow, dir: number, p: Packet, liberal: boolean): boolean {
  if (f.maxwin[dir ^ 1] === LIBERAL_WINDOW) { f.end[dir] = segEnd(p); return true; }
  if (liberal) return liberalWindow(f, dir, p);
  const r = dir ^ 1;
  let seq = p.tcpSeq, end = segEnd(p), ack = p.tcpAck, sack = p.tcpSack;
  const rst = (p.tcpFlags & TH_RST) !== 0;
  const swin = u32(p.tcpWin << scaleOf(f, dir));
  if (!(p.tcpFlags & TH_ACK) || (rst && ack === 0)) ack = sack = f.end[r]!;
  const sw = f.maxwin[dir]!, rw = f.maxwin[r]!;
  if (sw === 0 || rw === 0) {
    // A side not seen yet (pickup): learn, refuse nothing.
    if ((sw === 0 && rw === 0) || after(sack, f.end[r]!)) f.end[r] = sack;
    if (sw === 0) {
      if (rw === 0 || after(end, f.end[dir]!)) f.end[dir] = end;
      const w = Math.max(swin, 1);
      f.maxwin[dir] = w;
      if (rw === 0 || after(u32(end + w), f.maxend[dir]!)) f.maxend[dir] = u32(end + w);
      if (rw === 0 || after(u32(sack + w), f.maxend[r]!)) f.maxend[r] = u32(sack + w);
    } else {
      advance(f, dir, end, ack, sack, swin);
    }
    return true;
  }
  if (seq === end && !rst) seq = end = f.end[dir]!;
  const rend = f.end[r]!;
  // Picked up: the receiver may have sent unseen data up to maxend.
  const acked = f.pickedUp && after(f.maxend[r]!, rend) ? f.maxend[r]! : rend;
  if (after(seq, f.maxend[dir]!) || before(end, u32(f.end[dir]! - rw)) || after(sack, acked) ||
      before(sack, u32(rend - Math.max(sw, MAX_ACK_WIN)))) return false;
  if (after(sack, rend)) f.end[r] = sack;
  advance(f, dir, end, ack, sack, swin);
  return true;
}

export function tcpOpen(f: Flow, p: Packet): void {
  f.state = State.SYN_SENT;
  f.wscale[REPLY] = 0xff;
  openSide(f, ORIG, p);
}

// A picked-up flow the other side has not answered: it lives by the
// SYN_RECV timeout (tcp.ts timeoutState).
function unanswered(f: Flow): boolean { return f.pickedUp && f.maxwin[REPLY] === 0; }
export function timeoutState(f: Flow): State { return f.state === State.ESTABLISHED && unanswered(f) ? State.SYN_RECV : f.state; }

export function tcpPickup(f: Flow, p: Packet): void {
  f.state = State.ESTABLISHED;
  f.pickedUp = true;
  f.wscale[ORIG] = f.wscale[REPLY] = PICKUP_SCALE;
  inWindow(f, ORIG, p, false);
}

// Advances flow f by segment p from direction dir: NONE to pass it,
// TCP_REOPEN, or a drop reason (a drop changes nothing).
export function tcpTrack(f: Flow, dir: number, p: Packet, liberal = false): number {
  const flags = p.tcpFlags, seq = p.tcpSeq, ack = p.tcpAck, win = p.tcpWin;
  const st = f.state;
  const syn = (flags & TH_SYN) !== 0, hasAck = (flags & TH_ACK) !== 0;
  const rst = (flags & TH_RST) !== 0, fin = (flags & TH_FIN) !== 0;
  const orig = dir === ORIG;
  let next = st;

  if (rst) {
    if (!orig && unanswered(f)) return R.PICKUP_RESET; // no such connection: the flow ends
    if (st === State.SYN_SENT) {
      // Only the answer to our SYN may reset it: an ACK of exactly SYN + 1;
      // our own RST comes within a segment of our SYN.
      const end = f.end[ORIG]!;
      if (orig ? before(seq, u32(end - 1460)) || after(seq, u32(end + 1460)) : !hasAck || ack !== end) return R.TCP_OUT_OF_WINDOW;
    } else if (!inWindow(f, dir, p, liberal)) {
      return R.TCP_OUT_OF_WINDOW;
    }
    f.state = State.CLOSE;
    return R.NONE;
  }

  if (syn && !hasAck) {
    if (orig && (st === State.TIME_WAIT || st === State.CLOSE)) return TCP_REOPEN;
    if (st === State.SYN_SENT) {
      // Our SYN again (perhaps with a new ISN), or the other side's: a simultaneous open.
      openSide(f, dir, p);
      if (!orig) f.state = State.SYN_SENT2;
      return R.NONE;
    }
    if (st === State.SYN_SENT2 || (orig && st === State.SYN_RECV)) return R.NONE; // retransmission
    return R.TCP_INVALID_STATE;
  }
  if (syn) { // SYN-ACK
    if (st === State.SYN_SENT && !orig) {
      if (ack !== f.end[ORIG]) return R.TCP_OUT_OF_WINDOW;
      next = State.SYN_RECV;
    } else if (st === State.SYN_SENT2) {
      next = State.SYN_RECV;
    } else if (!orig && (st === State.SYN_RECV || st === State.ESTABLISHED)) {
      return R.NONE; // the SYN-ACK again: our ACK got lost
    } else {
      return R.TCP_INVALID_STATE;
    }
    openSide(f, dir, p);
    const o = dir ^ 1;
    if (after(u32(ack + win), u32(f.maxend[o]! - 1))) f.maxend[o] = u32(ack + win + (win === 0 ? 1 : 0));
    f.state = next;
    return R.NONE;
  }
  if (fin) {
    if (st === State.FREE || st === State.SYN_SENT || st === State.SYN_SENT2 || st === State.CLOSE) return R.TCP_INVALID_STATE;
    if (st === State.SYN_RECV || st === State.ESTABLISHED) {
      next = State.FIN_WAIT;
    } else if (st === State.FIN_WAIT || st === State.CLOSE_WAIT) {
      if (f.closer !== dir) next = State.LAST_ACK; // the other side's FIN: both have closed
    }
    if (!inWindow(f, dir, p, liberal)) return R.TCP_OUT_OF_WINDOW;
    if (next === State.FIN_WAIT && st !== State.FIN_WAIT) f.closer = dir;
  } else if (hasAck) {
    if (st === State.SYN_SENT || st === State.SYN_SENT2 || st === State.CLOSE) return R.TCP_INVALID_STATE;
    if (st === State.SYN_RECV) {
      if (orig) next = State.ESTABLISHED;
    } else if (st === State.FIN_WAIT) {
      if (f.closer !== dir) next = State.CLOSE_WAIT;
    } else if (st === State.LAST_ACK) {
      next = State.TIME_WAIT;
    }
    if (!inWindow(f, dir, p, liberal)) return R.TCP_OUT_OF_WINDOW;
  } else {
    return R.TCP_INVALID_STATE; // no SYN, ACK, FIN or RST: the decoder refuses these already
  }
  f.state = next;
  return R.NONE;
}
