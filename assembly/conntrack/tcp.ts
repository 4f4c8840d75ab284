// The TCP state machine of a tracked flow, after Linux conntrack: states and
// transitions by direction and segment kind, and window tracking for every
// segment (Guido van Rooij, "Real Stateful TCP Packet Filtering in IP
// Filter"; conntrack's tcp_in_window with nf_conntrack_tcp_be_liberal=0).
//
// Each direction keeps (entry.ts), for the side that sends in it:
//   end     highest seq + len it sent                      (td_end)
//   maxend  highest seq the other side's ack + window allow (td_maxend)
//   maxwin  largest window it advertised, scaled          (td_maxwin; 0: not seen)
// A segment from sender s to receiver r, with sack = max(ack, SACK right
// edges), passes when all four bounds hold:
//   I    seq  <= maxend[s]                    not beyond what r can take
//   II   end  >= end[s] - maxwin[r]           not older than r's window
//   III  sack <= end[r]                       no ACK of data r never sent
//   IV   sack >= end[r] - max(maxwin[s], 66000)  not an ACK from long ago
// A segment without data is checked by its ack alone (seq and end are taken
// as end[s]), except a RST, whose seq always counts. A segment that fails is
// dropped as tcp_out_of_window and changes nothing; one that passes moves
// end, maxend and maxwin forward. Windows are scaled only when both SYNs
// carried the option (RFC 7323 2.2).
//
// Liberal cases (nothing is refused on window grounds):
//  - a side not seen yet (a flow picked up mid-stream, tcpPickup): its first
//    segment sets its record, and while either side is unseen every segment
//    is learnt and passes; from the first segment of the second side on,
//    the bounds hold. The SYNs were not seen, so the scale is taken as 14
//    (the largest RFC 7323 allows): the windows can only be overestimated;
//    and as what a side sent before the pickup was not seen, an ACK may go
//    beyond what was seen of the other side, up to what the acking side's
//    window allowed it (bound III against maxend instead of end);
//  - a flow the kernel carried (entry.ts LIBERAL_WINDOW): the core did not
//    see its numbers advance; each segment's end is taken as it comes;
//  - CFG_TCP_LIBERAL (conntrack's be_liberal=1): the behaviour before window
//    tracking: only RST and FIN are checked, their seq against end ± one
//    window of the sender's last end; the records are kept the same way.
import * as ABI from "../abi";
import { DEBUG } from "../debug";
import { CONFIG_PTR } from "../layout";
import { getU16, getU32, getU8 } from "../decode/pkt";
import { TH_ACK, TH_FIN, TH_RST, TH_SYN } from "../decode/tcp";
import { Reason } from "../reasons";
import * as E from "./entry";
import { State } from "./entry";

// Serial-number arithmetic (RFC 1982): a is before b.
// @ts-ignore: decorator
@inline function before(a: u32, b: u32): bool { return <i32>(a - b) < 0; }
// @ts-ignore: decorator
@inline function after(a: u32, b: u32): bool { return <i32>(b - a) < 0; }

// @ts-ignore: decorator
@inline function endAt(e: usize, dir: u32): usize { return e + E.E_END + (<usize>dir << 2); }
// @ts-ignore: decorator
@inline function maxendAt(e: usize, dir: u32): usize { return e + E.E_MAXEND + (<usize>dir << 2); }
// @ts-ignore: decorator
@inline function winAt(e: usize, dir: u32): usize { return e + E.E_MAXWIN + (<usize>dir << 2); }

// Conntrack's MAXACKWINCONST: the least span an ACK may lag behind.
const MAX_ACK_WIN: u32 = 66000;
// The scale a picked-up flow's windows are taken at (its SYNs were not seen).
const PICKUP_SCALE: u8 = 14;

// The scale of `dir`'s windows: its SYN's option when both SYNs carried one.
// @ts-ignore: decorator
@inline function scaleOf(e: usize, dir: u32): u32 {
  const so = <u32>load<u8>(e + E.E_WSCALE), sr = <u32>load<u8>(e + E.E_WSCALE + 1);
  if (DEBUG) assert((so <= 14 || so == 0xff) && (sr <= 14 || sr == 0xff), "a window scale is 0..14 or none (RFC 7323)");
  if (so == 0xff || sr == 0xff) return 0;
  return dir == E.DIR_ORIG ? so : sr;
}

// @ts-ignore: decorator
@inline function carried(e: usize, dir: u32): bool { return load<u32>(winAt(e, dir ^ 1)) == E.LIBERAL_WINDOW; }

// @ts-ignore: decorator
@inline function liberalOn(): bool { return load<u32>(CONFIG_PTR + ABI.CFG_TCP_LIBERAL) != 0; }

// seq + the sequence space the segment takes (payload, SYN, FIN).
// @ts-ignore: decorator
@inline function segEnd(seq: u32, flags: u32): u32 {
  return seq + getU32(ABI.P_TCP_PAYLOAD) + ((flags & TH_SYN) ? 1 : 0) + ((flags & TH_FIN) ? 1 : 0);
}

// A side's SYN (or SYN-ACK) starts its record over: conntrack's "sender
// data initialised" (a SYN again may carry a new ISN).
function openSide(e: usize, dir: u32, seq: u32, flags: u32, win: u32): void {
  const end = segEnd(seq, flags);
  store<u32>(endAt(e, dir), end);
  store<u32>(maxendAt(e, dir), end);
  store<u32>(winAt(e, dir), max<u32>(win, 1));
  store<u8>(e + E.E_WSCALE + dir, <u8>getU8(ABI.P_TCP_WSCALE));
}

// What a passing segment from `dir` (its window `win`, already scaled) says:
// how far its sender has sent and how far the receiver may send.
function advance(e: usize, dir: u32, end: u32, ack: u32, sack: u32, win: u32): void {
  const rdir = dir ^ 1;
  const swin = win + (sack - ack);
  if (load<u32>(winAt(e, dir)) < swin) store<u32>(winAt(e, dir), swin);
  if (after(end, load<u32>(endAt(e, dir)))) store<u32>(endAt(e, dir), end);
  const rw = load<u32>(winAt(e, rdir));
  const me = load<u32>(maxendAt(e, dir));
  if (rw != 0 && after(end, me)) store<u32>(winAt(e, rdir), rw + (end - me));
  if (after(sack + win, load<u32>(maxendAt(e, rdir)) - 1)) store<u32>(maxendAt(e, rdir), sack + win + (win == 0 ? 1 : 0));
}

// The behaviour before window tracking (CFG_TCP_LIBERAL): a RST or FIN must
// lie within one window (at least 1460) of the sender's end; the records
// move as before (end: the highest seen; maxwin: the largest window).
function liberalWindow(e: usize, dir: u32, flags: u32, seq: u32, win: u32): bool {
  const sw = load<u32>(winAt(e, dir)), rw = load<u32>(winAt(e, dir ^ 1));
  if ((flags & (TH_RST | TH_FIN)) && sw != 0 && rw != 0) {
    const end = load<u32>(endAt(e, dir));
    const w = max<u32>(rw, 1460);
    if (before(seq, end - w) || !before(seq, end + w + 1)) return false;
  }
  const end = segEnd(seq, flags);
  if (sw == 0 || after(end, load<u32>(endAt(e, dir)))) store<u32>(endAt(e, dir), end);
  const w = max<u32>(win << scaleOf(e, dir), 1);
  if (w > sw) store<u32>(winAt(e, dir), w);
  return true;
}

// The window check of a segment without SYN from `dir`: true
// when it passes, and then its news is recorded; false changes nothing.
function inWindow(e: usize, dir: u32, flags: u32): bool {
  let seq = getU32(ABI.P_TCP_SEQ);
  const win = <u32>getU16(ABI.P_TCP_WIN);
  if (carried(e, dir)) { store<u32>(endAt(e, dir), segEnd(seq, flags)); return true; }
  if (liberalOn()) return liberalWindow(e, dir, flags, seq, win);
  const rdir = dir ^ 1;
  let end = segEnd(seq, flags);
  let ack = getU32(ABI.P_TCP_ACK), sack = getU32(ABI.P_TCP_SACK);
  const rst = (flags & TH_RST) != 0;
  const swin = win << scaleOf(e, dir);
  if (!(flags & TH_ACK) || (rst && ack == 0)) {
    // No ACK (or a RST with ACK and a zero ack, from broken stacks): as if
    // it acked what the receiver sent.
    ack = load<u32>(endAt(e, rdir)); sack = ack;
  }
  const sw = load<u32>(winAt(e, dir)), rw = load<u32>(winAt(e, rdir));
  if (sw == 0 || rw == 0) {
    // A side not seen yet (pickup): learn, refuse nothing. What a side
    // acks, the other has sent (perhaps before the pickup, unseen here).
    const fresh = sw == 0 && rw == 0;
    if (fresh || after(sack, load<u32>(endAt(e, rdir)))) store<u32>(endAt(e, rdir), sack);
    if (sw == 0) {
      if (rw == 0 || after(end, load<u32>(endAt(e, dir)))) store<u32>(endAt(e, dir), end);
      const w = max<u32>(swin, 1);
      store<u32>(winAt(e, dir), w);
      if (rw == 0 || after(end + w, load<u32>(maxendAt(e, dir)))) store<u32>(maxendAt(e, dir), end + w);
      if (rw == 0 || after(sack + w, load<u32>(maxendAt(e, rdir)))) store<u32>(maxendAt(e, rdir), sack + w);
    } else {
      advance(e, dir, end, ack, sack, swin);
    }
    return true;
  }
  if (seq == end && !rst) { seq = load<u32>(endAt(e, dir)); end = seq; }
  const rend = load<u32>(endAt(e, rdir));
  // A picked-up flow: the receiver may have sent, before the pickup, data
  // never seen here, up to what the sender's window let it (maxend).
  const picked = (load<u8>(e + E.E_FLAGS) & E.EF_PICKED_UP) != 0;
  const acked = picked && after(load<u32>(maxendAt(e, rdir)), rend) ? load<u32>(maxendAt(e, rdir)) : rend;
  if (after(seq, load<u32>(maxendAt(e, dir))) ||          // I
      before(end, load<u32>(endAt(e, dir)) - rw) ||       // II
      after(sack, acked) ||                               // III
      before(sack, rend - max<u32>(sw, MAX_ACK_WIN))) {   // IV
    return false;
  }
  if (after(sack, rend)) store<u32>(endAt(e, rdir), sack); // (picked up: it was sent)
  advance(e, dir, end, ack, sack, swin);
  if (DEBUG) assert(load<u32>(winAt(e, dir)) != 0 && load<u32>(winAt(e, rdir)) != 0, "a strict check leaves both sides seen");
  return true;
}

// A new flow from the originator's SYN.
export function tcpOpen(e: usize): void {
  store<u8>(e + E.E_STATE, <u8>State.SYN_SENT);
  store<u8>(e + E.E_WSCALE + 1, 0xff);
  openSide(e, E.DIR_ORIG, getU32(ABI.P_TCP_SEQ), getU8(ABI.P_TCP_FLAGS), getU16(ABI.P_TCP_WIN));
}

// A new flow picked up mid-stream (CFG_TCP_PICKUP) from a segment with ACK
// alone, sent by the side that becomes the flow's originator: ESTABLISHED,
// its windows learnt from the segments of both directions (liberal until
// both were seen, then strict: inWindow).
export function tcpPickup(e: usize): void {
  if (DEBUG) assert((getU8(ABI.P_TCP_FLAGS) & (TH_SYN | TH_FIN | TH_RST | TH_ACK)) == TH_ACK, "pickup takes a segment with ACK alone");
  store<u8>(e + E.E_STATE, <u8>State.ESTABLISHED);
  store<u8>(e + E.E_FLAGS, load<u8>(e + E.E_FLAGS) | E.EF_PICKED_UP);
  store<u8>(e + E.E_WSCALE, PICKUP_SCALE);
  store<u8>(e + E.E_WSCALE + 1, PICKUP_SCALE);
  inWindow(e, E.DIR_ORIG, getU8(ABI.P_TCP_FLAGS));
}

export const TCP_REOPEN: i32 = -1; // a SYN that starts over a closed flow

// A picked-up flow whose other side has not answered yet.
// @ts-ignore: decorator
@inline export function unanswered(e: usize): bool {
  return (load<u8>(e + E.E_FLAGS) & E.EF_PICKED_UP) != 0 && load<u32>(winAt(e, E.DIR_REPLY)) == 0;
}

// The state whose timeout a flow lives by: a picked-up flow that no answer
// confirmed yet lives as a SYN_RECV flow does (and may be evicted as one:
// table.ts), so segments nobody answers cannot fill the table with 5-day
// established flows.
// @ts-ignore: decorator
@inline export function timeoutState(e: usize): u32 {
  const st = <u32>load<u8>(e + E.E_STATE);
  return st == State.ESTABLISHED && unanswered(e) ? State.SYN_RECV : st;
}

// Advances the flow `e` by the segment in PKT from direction `dir`. Returns
// Reason.NONE to pass it, TCP_REOPEN, or a drop reason; a drop changes
// nothing in the flow, but PICKUP_RESET ends it (track.ts).
export function tcpTrack(e: usize, dir: u32): i32 {
  const flags = getU8(ABI.P_TCP_FLAGS);
  const seq = getU32(ABI.P_TCP_SEQ);
  const ack = getU32(ABI.P_TCP_ACK);
  const win = getU16(ABI.P_TCP_WIN);
  const st = <u32>load<u8>(e + E.E_STATE);
  const syn = (flags & TH_SYN) != 0, hasAck = (flags & TH_ACK) != 0;
  const rst = (flags & TH_RST) != 0, fin = (flags & TH_FIN) != 0;
  const orig = dir == E.DIR_ORIG;
  let next = st;
  if (DEBUG) assert(st >= <u32>State.SYN_SENT && st <= <u32>State.CLOSE, "a TCP flow in a TCP state");
  if (DEBUG) assert(load<u32>(winAt(e, E.DIR_ORIG)) != 0, "the originator's side is seen from the flow's first segment");

  if (rst) {
    // The first answer to a picked-up segment is a RST: the receiver has
    // no such connection (an ACK scan, or a flow that died meanwhile). The
    // RST is dropped and the flow ended (track.ts), so the scan sees the
    // silence of a filtered port, as without pickup.
    if (!orig && unanswered(e)) return Reason.PICKUP_RESET;
    if (st == State.SYN_SENT) {
      // Only the answer to our SYN may reset it: an ACK of exactly SYN + 1;
      // our own RST comes within a segment of our SYN.
      const end = load<u32>(endAt(e, E.DIR_ORIG));
      if (orig ? before(seq, end - 1460) || after(seq, end + 1460) : (!hasAck || ack != end)) return Reason.TCP_OUT_OF_WINDOW;
    } else if (!inWindow(e, dir, flags)) {
      return Reason.TCP_OUT_OF_WINDOW;
    }
    store<u8>(e + E.E_STATE, <u8>State.CLOSE);
    return Reason.NONE;
  }

  if (syn && !hasAck) {
    if (orig && (st == State.TIME_WAIT || st == State.CLOSE)) return TCP_REOPEN;
    if (st == State.SYN_SENT) {
      // Our SYN again (perhaps with a new ISN), or the other side's SYN:
      // a simultaneous open.
      openSide(e, dir, seq, flags, win);
      if (!orig) store<u8>(e + E.E_STATE, <u8>State.SYN_SENT2);
      return Reason.NONE;
    } else if (st == State.SYN_SENT2 || (orig && st == State.SYN_RECV)) {
      return Reason.NONE; // retransmission
    } else {
      return Reason.TCP_INVALID_STATE;
    }
  } else if (syn) { // SYN-ACK
    if (st == State.SYN_SENT && !orig) {
      if (ack != load<u32>(endAt(e, E.DIR_ORIG))) return Reason.TCP_OUT_OF_WINDOW;
      next = State.SYN_RECV;
    } else if (st == State.SYN_SENT2) {
      next = State.SYN_RECV;
    } else if (!orig && (st == State.SYN_RECV || st == State.ESTABLISHED)) {
      return Reason.NONE; // the SYN-ACK again: our ACK got lost
    } else {
      return Reason.TCP_INVALID_STATE;
    }
    openSide(e, dir, seq, flags, win);
    // The SYN-ACK's (unscaled) window bounds what the SYN's sender may send.
    const p = maxendAt(e, dir ^ 1);
    if (after(ack + win, load<u32>(p) - 1)) store<u32>(p, ack + win + (win == 0 ? 1 : 0));
    store<u8>(e + E.E_STATE, <u8>next);
    return Reason.NONE;
  } else if (fin) {
    if (st <= <u32>State.SYN_SENT2) return Reason.TCP_INVALID_STATE;
    if (st == State.CLOSE) return Reason.TCP_INVALID_STATE;
    if (st == State.SYN_RECV || st == State.ESTABLISHED) {
      next = State.FIN_WAIT;
    } else if (st == State.FIN_WAIT || st == State.CLOSE_WAIT) {
      // The other side's FIN: both have now closed.
      if (<u32>load<u8>(e + E.E_CLOSER) != dir) next = State.LAST_ACK;
    }
    if (!inWindow(e, dir, flags)) return Reason.TCP_OUT_OF_WINDOW;
    if (next == State.FIN_WAIT && st != State.FIN_WAIT) store<u8>(e + E.E_CLOSER, <u8>dir);
  } else if (hasAck) {
    if (st == State.SYN_SENT || st == State.SYN_SENT2) return Reason.TCP_INVALID_STATE;
    if (st == State.CLOSE) return Reason.TCP_INVALID_STATE;
    if (st == State.SYN_RECV) {
      if (orig) next = State.ESTABLISHED;
    } else if (st == State.FIN_WAIT) {
      if (<u32>load<u8>(e + E.E_CLOSER) != dir) next = State.CLOSE_WAIT;
    } else if (st == State.LAST_ACK) {
      next = State.TIME_WAIT;
    }
    if (!inWindow(e, dir, flags)) return Reason.TCP_OUT_OF_WINDOW;
  } else {
    return Reason.TCP_INVALID_STATE; // no SYN, ACK, FIN or RST: the decoder refuses these already
  }
  store<u8>(e + E.E_STATE, <u8>next);
  return Reason.NONE;
}
