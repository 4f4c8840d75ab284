// The TCP state machine of a tracked flow, after Linux conntrack: states and
// transitions by direction and segment kind, and sequence sanity for RST and
// FIN (they change state only when their sequence number lies in the window
// the other side allowed, at least as strict as conntrack's loose mode).
import * as ABI from "../abi";
import { getU16, getU32, getU8 } from "../decode/pkt";
import { TH_ACK, TH_FIN, TH_RST, TH_SYN } from "../decode/tcp";
import { Reason } from "../reasons";
import * as E from "./entry";
import { State } from "./entry";

// Serial-number arithmetic (RFC 1982): a is before b.
// @ts-ignore: decorator
@inline function before(a: u32, b: u32): bool { return <i32>(a - b) < 0; }

// @ts-ignore: decorator
@inline function endAt(e: usize, dir: u32): usize { return e + E.E_END + (<usize>dir << 2); }
// @ts-ignore: decorator
@inline function winAt(e: usize, dir: u32): usize { return e + E.E_MAXWIN + (<usize>dir << 2); }

// The window a side may send into: what the other side advertised, scaled
// when both SYNs carried the option, and never below one segment's worth.
function window(e: usize, receiver: u32): u32 {
  return max<u32>(load<u32>(winAt(e, receiver)), 1460);
}

// @ts-ignore: decorator
@inline function liberal(e: usize, dir: u32): bool { return load<u32>(winAt(e, dir ^ 1)) == E.LIBERAL_WINDOW; }

// Is `seq` from `dir` inside what the receiver would accept? (Always, for a
// flow the kernel carried: entry.ts, LIBERAL_WINDOW.)
function inWindow(e: usize, dir: u32, seq: u32): bool {
  if (liberal(e, dir)) return true;
  const end = load<u32>(endAt(e, dir));
  const w = window(e, dir ^ 1);
  return !before(seq, end - w) && before(seq, end + w + 1);
}

// @ts-ignore: decorator
@inline function scaled(e: usize, dir: u32, win: u32): u32 {
  const so = load<u8>(e + E.E_WSCALE), sr = load<u8>(e + E.E_WSCALE + 1);
  if (so == 0xff || sr == 0xff) return win;
  return win << (dir == E.DIR_ORIG ? so : sr);
}

// Records what a segment from `dir` says about its sender: how far it has
// sent and the largest window it offered.
function note(e: usize, dir: u32, seq: u32, flags: u32, win: u32, syn: bool): void {
  const len = getU32(ABI.P_TCP_PAYLOAD) + ((flags & TH_SYN) ? 1 : 0) + ((flags & TH_FIN) ? 1 : 0);
  const end = seq + len;
  const p = endAt(e, dir);
  if (syn || before(load<u32>(p), end)) store<u32>(p, end);
  const w = syn ? win : scaled(e, dir, win);
  const q = winAt(e, dir);
  if (w > load<u32>(q)) store<u32>(q, w);
}

// A new flow from the originator's SYN.
export function tcpOpen(e: usize): void {
  const flags = getU8(ABI.P_TCP_FLAGS);
  store<u8>(e + E.E_STATE, <u8>State.SYN_SENT);
  store<u8>(e + E.E_WSCALE, <u8>getU8(ABI.P_TCP_WSCALE));
  store<u8>(e + E.E_WSCALE + 1, 0xff);
  note(e, E.DIR_ORIG, getU32(ABI.P_TCP_SEQ), flags, getU16(ABI.P_TCP_WIN), true);
}

export const TCP_REOPEN: i32 = -1; // a SYN that starts over a closed flow

// Advances the flow `e` by the segment in PKT from direction `dir`. Returns
// Reason.NONE to pass it, TCP_REOPEN, or a drop reason.
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

  if (rst) {
    if (st == State.SYN_SENT) {
      // Only the answer to our SYN may reset it: an ACK of exactly SYN + 1.
      if (orig ? !inWindow(e, dir, seq) : (!hasAck || ack != load<u32>(endAt(e, E.DIR_ORIG)))) return Reason.TCP_OUT_OF_WINDOW;
    } else if (!inWindow(e, dir, seq)) {
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
      store<u8>(e + E.E_WSCALE + dir, <u8>getU8(ABI.P_TCP_WSCALE));
      note(e, dir, seq, flags, win, true);
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
    store<u8>(e + E.E_WSCALE + dir, <u8>getU8(ABI.P_TCP_WSCALE));
    note(e, dir, seq, flags, win, true);
    store<u8>(e + E.E_STATE, <u8>next);
    return Reason.NONE;
  } else if (fin) {
    if (st <= <u32>State.SYN_SENT2) return Reason.TCP_INVALID_STATE;
    if (!inWindow(e, dir, seq)) return Reason.TCP_OUT_OF_WINDOW;
    if (st == State.SYN_RECV || st == State.ESTABLISHED) {
      next = State.FIN_WAIT;
      store<u8>(e + E.E_CLOSER, <u8>dir);
    } else if (st == State.FIN_WAIT || st == State.CLOSE_WAIT) {
      // The other side's FIN: both have now closed.
      if (<u32>load<u8>(e + E.E_CLOSER) != dir) next = State.LAST_ACK;
    } else if (st == State.CLOSE) {
      return Reason.TCP_INVALID_STATE;
    }
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
  } else {
    return Reason.TCP_INVALID_STATE; // no SYN, ACK, FIN or RST: the decoder refuses these already
  }
  if (inWindow(e, dir, seq) || st == State.SYN_RECV) note(e, dir, seq, flags, win, liberal(e, dir));
  store<u8>(e + E.E_STATE, <u8>next);
  return Reason.NONE;
}
