// A decoded packet against the live table: its key from PKT and the
// descriptor, first match, the rule's action or the table's default, and the
// per-rule counters.
import * as ABI from "../abi";
import { DEBUG } from "../debug";
import { getU16, getU32, getU64, getU8 } from "../decode/pkt";
import { Reason } from "../reasons";
import { accept, Decision, decision, drop } from "../verdict";
import * as A from "./active";
import * as F from "./format";
import { lookup4, lookup6, NO_MATCH } from "./lookup";
import { BATCH_PTR } from "../layout";
import { condIsList, condSkipped, setCondSource } from "../limits/match";
import { fieldAt } from "../decode/pkt";
import { TH_SYN } from "../decode/tcp";

// The interface context of a packet: hook | in_role << 3 | out_role << 5.
// @ts-ignore: decorator
@inline export function ctxOf(d: usize): u32 {
  return <u32>load<u8>(d + ABI.D_HOOK) | (<u32>load<u8>(d + ABI.D_IN_ROLE) << 3) | (<u32>load<u8>(d + ABI.D_OUT_ROLE) << 5);
}

// The packet's ICMP key, type << 8 | code (0 for other protocols: the
// decoder leaves both bytes clear).
// @ts-ignore: decorator
@inline export function icmpKey(): u32 { return (getU8(ABI.P_ICMP_TYPE) << 8) | getU8(ABI.P_ICMP_CODE); }

// The first rule matching the packet in PKT, its TCP flags taken as
// `tcpFlags`, or NO_MATCH. Counts nothing.
function matchRules(d: usize, unrelatedError: bool, tcpFlags: u32): u32 {
  const ctx = ctxOf(d) | (unrelatedError ? F.CTX_ERROR : 0);
  const proto = getU8(ABI.P_PROTO);
  const sport = getU16(ABI.P_SPORT);
  const dport = getU16(ABI.P_DPORT);
  const icmp = icmpKey();
  if (A.tConds) setCondSource(getU8(ABI.P_FAMILY), fieldAt(ABI.P_SRC), load<u64>(BATCH_PTR + ABI.BH_NOW));
  if (getU8(ABI.P_FAMILY) == 4) {
    return lookup4(ctx, bswap<u32>(getU32(ABI.P_SRC)), bswap<u32>(getU32(ABI.P_DST)),
      proto, sport, dport, tcpFlags, icmp);
  }
  return lookup6(ctx,
    bswap<u64>(getU64(ABI.P_SRC)), bswap<u64>(getU64(ABI.P_SRC + 8)),
    bswap<u64>(getU64(ABI.P_DST)), bswap<u64>(getU64(ABI.P_DST + 8)),
    proto, sport, dport, tcpFlags, icmp);
}

// The rules' decision on the packet in PKT (never a non-first fragment: it
// has no ports; conntrack/frag.ts decides those). A matching rule is named
// in the decision whether it allows or denies; the default names none.
// `unrelatedError`: an ICMP error no tracked flow owns; it meets only the
// rules that name ICMP types (the CTX_ERROR half of the ctx field), and when
// none matches it is dropped as ICMP_UNRELATED, whatever the default.
export function decideByRules(d: usize, wire: u32, unrelatedError: bool): Decision {
  return decideMatch(d, wire, unrelatedError, matchRules(d, unrelatedError, getU8(ABI.P_TCP_FLAGS)));
}

// Pickup (conntrack/track.ts): a mid-stream TCP segment meets the rules as
// if it were its flow's SYN. Refused, by a rule or the default, it is
// no_flow, as it would be without pickup, and no rule counts it: what an
// ACK scan sees and what the counters say do not change.
export function decidePickup(d: usize, wire: u32): Decision {
  const r = matchRules(d, false, TH_SYN);
  if (!(r == NO_MATCH ? A.defaultAllows() : A.ruleAllows(r))) return drop(Reason.NO_FLOW);
  return decideMatch(d, wire, false, r);
}

function decideMatch(d: usize, wire: u32, unrelatedError: bool, r: u32): Decision {
  if (r == NO_MATCH) {
    if (unrelatedError) return drop(Reason.ICMP_UNRELATED);
    if (A.defaultAllows()) return accept(Reason.DEFAULT_ALLOW, ABI.RULE_NONE);
    return drop(A.tConds && condSkipped ? Reason.SOURCE_BLOCKED : Reason.DEFAULT_DENY);
  }
  if (DEBUG) assert(r < A.tNrules, "first match past the live table");
  const c = A.tCounters + <usize>r * F.RULE_COUNTER_SIZE;
  store<u64>(c + F.RC_PACKETS, load<u64>(c + F.RC_PACKETS) + 1);
  store<u64>(c + F.RC_BYTES, load<u64>(c + F.RC_BYTES) + <u64>wire);
  store<u64>(c + F.RC_LAST_HIT, load<u64>(d + ABI.D_TS));
  if (A.ruleAllows(r)) return decision(ABI.VERDICT_ACCEPT, Reason.RULE_ALLOW, r);
  const listed = A.tConds && (condSkipped || condIsList(r));
  return decision(ABI.VERDICT_DROP, listed ? Reason.SOURCE_BLOCKED : Reason.RULE_DENY, r);
}
