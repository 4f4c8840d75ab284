// Stateful verdicts (the order of the checks is the policy):
//  1. a later fragment follows its first fragment's verdict (frag.ts);
//  2. IPv6 neighbour discovery with hop limit 255 passes (RFC 4861);
//  3. an ICMP error passes when the packet it quotes belongs to a tracked
//     flow and it travels toward that packet's sender (related); any other
//     error meets only the rules that name its ICMP type, and is dropped as
//     unrelated when none matches (rules/decide.ts);
//  4. a packet of a tracked flow, either direction, passes on state if the
//     flow's state machine allows it (tcp.ts), without a rule lookup;
//  5. otherwise only a packet that may open a flow (TCP SYN, UDP, an ICMP
//     query, other protocols) is matched against the rules, and an allowed
//     one creates the flow; anything else claims a flow that does not exist.
import * as ABI from "../abi";
import { CONFIG_PTR, PKT_PTR } from "../layout";
import { Reason } from "../reasons";
import { decideByRules, decidedRule, decidedVerdict, ctxOf, icmpKey } from "../rules/decide";
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from "../decode/proto";
import { TH_ACK, TH_SYN } from "../decode/tcp";
import * as E from "./entry";
import { State } from "./entry";
import { fragFirst, fragFollow, fragRule } from "./frag";
import { KEY, K_ORIG_B, makeKey } from "./key";
import { claim, freeSlot, lookup } from "./table";
import { TCP_REOPEN, tcpOpen, tcpTrack } from "./tcp";


export let trackVerdict: u8 = 0;
export let trackRule: u32 = 0;

// @ts-ignore: decorator
@inline function pk8(f: u32): u32 { return <u32>load<u8>(PKT_PTR + <usize>f); }
// @ts-ignore: decorator
@inline function pk16(f: u32): u32 { return <u32>load<u16>(PKT_PTR + <usize>f); }

export function timeoutNs(state: u32): u64 {
  let s = load<u32>(CONFIG_PTR + ABI.CFG_TIMEOUTS + (<usize>state << 2));
  if (s == 0) s = unchecked(E.DEFAULT_TIMEOUTS[state]);
  return <u64>s * 1000000000;
}

// ICMP and ICMPv6 queries that open a flow, and their answers.
// @ts-ignore: decorator
@inline function isRequest(v6: bool, t: u32): bool { return v6 ? t == 128 : (t == 8 || t == 13 || t == 15 || t == 17); }
// @ts-ignore: decorator
@inline function isReply(v6: bool, t: u32): bool { return v6 ? t == 129 : (t == 0 || t == 14 || t == 16 || t == 18); }

// @ts-ignore: decorator
@inline function pass(reason: Reason, rule: u32): Reason { trackVerdict = ABI.VERDICT_ACCEPT; trackRule = rule; return reason; }
// @ts-ignore: decorator
@inline function drop(reason: Reason): Reason { trackVerdict = ABI.VERDICT_DROP; trackRule = ABI.RULE_NONE; return reason; }

// The tracked flow an ICMP error is about (its quoted packet's), or 0; only
// an error headed back to the quoted packet's sender can be about one.
function relatedFlow(now: u64): usize {
  if (load<u64>(PKT_PTR + ABI.P_DST) != load<u64>(PKT_PTR + ABI.P_IN_SRC) ||
      load<u64>(PKT_PTR + ABI.P_DST + 8) != load<u64>(PKT_PTR + ABI.P_IN_SRC + 8)) return 0;
  makeKey(pk8(ABI.P_IN_FAMILY), pk8(ABI.P_IN_PROTO), PKT_PTR + ABI.P_IN_SRC, pk16(ABI.P_IN_SPORT),
    PKT_PTR + ABI.P_IN_DST, pk16(ABI.P_IN_DPORT));
  return lookup(now);
}

// Decides the packet in PKT (descriptor d) with the rule table live.
export function track(d: usize, wire: u32, now: u64): Reason {
  const flags = pk8(ABI.P_FLAGS);
  if ((flags & (ABI.PF_FRAGMENT | ABI.PF_FIRST_FRAG)) == ABI.PF_FRAGMENT) {
    const r = fragFollow(now);
    return r == Reason.NONE ? pass(Reason.FRAG_FOLLOWS, fragRule) : drop(r);
  }
  const reason = decideStateful(d, wire, now);
  if (flags & ABI.PF_FIRST_FRAG) fragFirst(trackVerdict, reason, trackRule, now, timeoutNs(0));
  return reason;
}

function decideStateful(d: usize, wire: u32, now: u64): Reason {
  const family = pk8(ABI.P_FAMILY);
  const proto = pk8(ABI.P_PROTO);
  const v6 = family == 6;
  const icmp = proto == (v6 ? PROTO_ICMPV6 : PROTO_ICMP);
  const type = pk8(ABI.P_ICMP_TYPE);

  if (v6 && icmp && type >= 133 && type <= 137 && pk8(ABI.P_TTL) == 255) {
    // Without neighbour discovery IPv6 does not work at all; with hop limit
    // 255 it cannot have come from off the link. (Any other hop limit is
    // left to the rules, which by default refuse it.)
    return pass(Reason.ICMP6_NDP, ABI.RULE_NONE);
  }
  if (pk8(ABI.P_FLAGS) & ABI.PF_ICMP_ERROR) {
    const r = relatedFlow(now);
    if (r) return pass(Reason.STATE_RELATED, load<u32>(r + E.E_RULE));
    return byRules(d, wire, true);
  }

  let sport: u32 = 0, dport: u32 = 0;
  let stateless = false;
  if (pk8(ABI.P_FLAGS) & ABI.PF_HAS_PORTS) {
    sport = pk16(ABI.P_SPORT); dport = pk16(ABI.P_DPORT);
  } else if (icmp) {
    if (isRequest(v6, type) || isReply(v6, type)) { sport = pk16(ABI.P_ICMP_ID); dport = sport; }
    else stateless = true; // router discovery, MLD, ...: the rules decide each one
  }
  if (stateless) return byRules(d, wire, false);

  makeKey(family, proto, PKT_PTR + ABI.P_SRC, sport, PKT_PTR + ABI.P_DST, dport);
  let e = lookup(now);
  if (e) {
    const senderIsB = load<u8>(KEY + K_ORIG_B) != 0;
    const origIsB = (load<u8>(e + E.E_FLAGS) & E.EF_ORIG_IS_B) != 0;
    const dir = senderIsB == origIsB ? E.DIR_ORIG : E.DIR_REPLY;
    let st = <u32>load<u8>(e + E.E_STATE);
    if (proto == PROTO_TCP) {
      const r = tcpTrack(e, dir);
      if (r == TCP_REOPEN) {
        freeSlot(e, ABI.C_FLOWS_EXPIRED);
        e = 0;
      } else if (r != Reason.NONE) {
        return drop(<Reason>r);
      }
    } else if (dir == E.DIR_REPLY) {
      if (icmp && !isReply(v6, type)) return drop(Reason.NO_FLOW);
      st = st == State.UDP_UNREPLIED ? State.UDP_REPLIED : st == State.ICMP_QUERY ? State.ICMP_REPLIED :
        st == State.OTHER_UNREPLIED ? State.OTHER_REPLIED : st;
      store<u8>(e + E.E_STATE, <u8>st);
    } else if (icmp && !isRequest(v6, type)) {
      return drop(Reason.NO_FLOW);
    }
    if (e) {
      store<u64>(e + E.E_EXPIRES, now + timeoutNs(load<u8>(e + E.E_STATE)));
      return pass(Reason.STATE_MATCH, load<u32>(e + E.E_RULE));
    }
  }

  // No flow: only a packet that may open one meets the rules.
  const tflags = pk8(ABI.P_TCP_FLAGS);
  const opens = proto == PROTO_TCP ? (tflags & (TH_SYN | TH_ACK)) == TH_SYN : !icmp || isRequest(v6, type);
  if (!opens) return drop(Reason.NO_FLOW);
  const reason = byRules(d, wire, false);
  if (trackVerdict != ABI.VERDICT_ACCEPT) return reason;
  e = claim(now);
  if (e == 0) return drop(Reason.STATE_FULL);
  store<u8>(e + E.E_CTX, <u8>ctxOf(d));
  store<u32>(e + E.E_RULE, trackRule);
  store<u16>(e + E.E_ICMP, <u16>icmpKey());
  if (proto == PROTO_TCP) tcpOpen(e);
  else store<u8>(e + E.E_STATE, <u8>(proto == PROTO_UDP ? State.UDP_UNREPLIED : icmp ? State.ICMP_QUERY : State.OTHER_UNREPLIED));
  store<u64>(e + E.E_EXPIRES, now + timeoutNs(load<u8>(e + E.E_STATE)));
  return reason;
}

function byRules(d: usize, wire: u32, unrelatedError: bool): Reason {
  const r = decideByRules(d, wire, unrelatedError);
  trackVerdict = decidedVerdict;
  trackRule = decidedRule;
  return r;
}
