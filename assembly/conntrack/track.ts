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
//     one creates the flow; anything else claims a flow that does not exist
//     (no_flow), except, with pickup on (CFG_TCP_PICKUP), a TCP segment
//     with ACK alone: it meets the rules as its flow's SYN would, and an
//     allowed one creates the flow ESTABLISHED (tcp.ts tcpPickup). SYN-ACK,
//     FIN and RST never create a flow (conntrack's loose mode picks up
//     none of them either): a RST ends, a FIN closes, a SYN-ACK answers a
//     SYN the table would have seen.
// Each path returns its Decision (verdict.ts): no verdict is kept in globals.
import * as ABI from "../abi";
import { CONFIG_PTR } from "../layout";
import { Reason } from "../reasons";
import { ctxOf, decideByRules, decidePickup, icmpKey } from "../rules/decide";
import { isIcmpReply, isIcmpRequest } from "../decode/icmp";
import { fieldAt, getU16, getU64, getU8 } from "../decode/pkt";
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from "../decode/proto";
import { TH_ACK, TH_FIN, TH_RST, TH_SYN } from "../decode/tcp";
import { accept, accepted, Decision, drop, ruleOf, withFlags } from "../verdict";
import * as E from "./entry";
import { State } from "./entry";
import { fragFirst, fragFollow } from "./frag";
import { offloadStep } from "./offload";
import { KEY, K_ORIG_B, makeKey } from "./key";
import { bump, claim, freeSlot, lookup } from "./table";
import { TCP_REOPEN, tcpOpen, tcpPickup, tcpTrack, timeoutState } from "./tcp";
import { admitFlow, newFlowSource, releaseClosed, unadmitFlow } from "../limits/admit";
import { sourceFlushed } from "../limits/sources";

export function timeoutNs(state: u32): u64 {
  let s = load<u32>(CONFIG_PTR + ABI.CFG_TIMEOUTS + (<usize>state << 2));
  if (s == 0) s = unchecked(E.DEFAULT_TIMEOUTS[state]);
  return <u64>s * 1000000000;
}

// The tracked flow an ICMP error is about (its quoted packet's), or 0; only
// an error headed back to the quoted packet's sender can be about one.
function relatedFlow(now: u64): usize {
  if (getU64(ABI.P_DST) != getU64(ABI.P_IN_SRC) || getU64(ABI.P_DST + 8) != getU64(ABI.P_IN_SRC + 8)) return 0;
  const h = makeKey(getU8(ABI.P_IN_FAMILY), getU8(ABI.P_IN_PROTO), fieldAt(ABI.P_IN_SRC), getU16(ABI.P_IN_SPORT),
    fieldAt(ABI.P_IN_DST), getU16(ABI.P_IN_DPORT));
  return lookup(h, now);
}

// Decides the packet in PKT (descriptor d) with the rule table live.
export function track(d: usize, wire: u32, now: u64): Decision {
  const flags = getU8(ABI.P_FLAGS);
  if ((flags & (ABI.PF_FRAGMENT | ABI.PF_FIRST_FRAG)) == ABI.PF_FRAGMENT) return fragFollow(now);
  const decided = decideStateful(d, wire, now);
  if (flags & ABI.PF_FIRST_FRAG) fragFirst(decided, now, timeoutNs(0));
  return decided;
}

function decideStateful(d: usize, wire: u32, now: u64): Decision {
  const family = getU8(ABI.P_FAMILY);
  const proto = getU8(ABI.P_PROTO);
  const v6 = family == 6;
  const icmp = proto == (v6 ? PROTO_ICMPV6 : PROTO_ICMP);
  const type = getU8(ABI.P_ICMP_TYPE);

  if (v6 && icmp && type >= 133 && type <= 137 && getU8(ABI.P_TTL) == 255) {
    // Without neighbour discovery IPv6 does not work at all; with hop limit
    // 255 it cannot have come from off the link. (Any other hop limit is
    // left to the rules, which by default refuse it.)
    return accept(Reason.ICMP6_NDP, ABI.RULE_NONE);
  }
  if (getU8(ABI.P_FLAGS) & ABI.PF_ICMP_ERROR) {
    const r = relatedFlow(now);
    if (r) return accept(Reason.STATE_RELATED, load<u32>(r + E.E_RULE));
    return decideByRules(d, wire, true);
  }

  let sport: u32 = 0, dport: u32 = 0;
  if (getU8(ABI.P_FLAGS) & ABI.PF_HAS_PORTS) {
    sport = getU16(ABI.P_SPORT); dport = getU16(ABI.P_DPORT);
  } else if (icmp) {
    // Router discovery, MLD, ...: no flow; the rules decide each one.
    if (!isIcmpRequest(v6, type) && !isIcmpReply(v6, type)) return decideByRules(d, wire, false);
    sport = getU16(ABI.P_ICMP_ID); dport = sport;
  }

  const h = makeKey(family, proto, fieldAt(ABI.P_SRC), sport, fieldAt(ABI.P_DST), dport);
  let e = lookup(h, now);
  if (e) {
    // An overload with flush ends the source's flows at their next packet.
    const s = load<u32>(e + E.E_SOURCE);
    if (s != 0 && sourceFlushed(s, load<u64>(e + E.E_CREATED))) {
      freeSlot(e, ABI.C_FLOWS_ENDED);
      return drop(Reason.SOURCE_BLOCKED);
    }
    const senderIsB = load<u8>(KEY + K_ORIG_B) != 0;
    const origIsB = (load<u8>(e + E.E_FLAGS) & E.EF_ORIG_IS_B) != 0;
    const dir = senderIsB == origIsB ? E.DIR_ORIG : E.DIR_REPLY;
    let st = <u32>load<u8>(e + E.E_STATE);
    if (proto == PROTO_TCP) {
      const r = tcpTrack(e, dir);
      if (r == TCP_REOPEN) {
        freeSlot(e, ABI.C_FLOWS_EXPIRED);
        e = 0;
      } else if (r == Reason.PICKUP_RESET) {
        freeSlot(e, ABI.C_FLOWS_ENDED);
        return drop(Reason.PICKUP_RESET);
      } else if (r != Reason.NONE) {
        return drop(<Reason>r);
      }
    } else if (dir == E.DIR_REPLY) {
      if (icmp && !isIcmpReply(v6, type)) return drop(Reason.NO_FLOW);
      st = st == State.UDP_UNREPLIED ? State.UDP_REPLIED : st == State.ICMP_QUERY ? State.ICMP_REPLIED :
        st == State.OTHER_UNREPLIED ? State.OTHER_REPLIED : st;
      store<u8>(e + E.E_STATE, <u8>st);
    } else if (icmp && !isIcmpRequest(v6, type)) {
      return drop(Reason.NO_FLOW);
    }
    if (e) {
      if (proto == PROTO_TCP) releaseClosed(e);
      store<u64>(e + E.E_EXPIRES, now + timeoutNs(proto == PROTO_TCP ? timeoutState(e) : load<u8>(e + E.E_STATE)));
      // (offload.ts: established flows of offloading rules go to the kernel)
      return withFlags(accept(Reason.STATE_MATCH, load<u32>(e + E.E_RULE)), offloadStep(e, d, now));
    }
  }

  // No flow: only a packet that may open one meets the rules.
  const tflags = getU8(ABI.P_TCP_FLAGS);
  const opens = proto == PROTO_TCP ? (tflags & (TH_SYN | TH_ACK)) == TH_SYN : !icmp || isIcmpRequest(v6, type);
  const pickup = !opens && proto == PROTO_TCP && (tflags & (TH_SYN | TH_FIN | TH_RST | TH_ACK)) == TH_ACK &&
    load<u32>(CONFIG_PTR + ABI.CFG_TCP_PICKUP) != 0;
  if (!opens && !pickup) return drop(Reason.NO_FLOW);
  // A picked-up flow meets its rule's per-source limits as a new flow does.
  const decided = admitFlow(pickup ? decidePickup(d, wire) : decideByRules(d, wire, false), now);
  if (!accepted(decided)) return decided;
  e = claim(h, now);
  if (e == 0) { unadmitFlow(decided); return drop(Reason.STATE_FULL); }
  store<u32>(e + E.E_SOURCE, newFlowSource);
  store<u8>(e + E.E_CTX, <u8>ctxOf(d));
  store<u32>(e + E.E_RULE, ruleOf(decided));
  store<u16>(e + E.E_ICMP, <u16>icmpKey());
  store<u32>(e + E.E_PACKETS, 1); // the opening packet
  if (pickup) { tcpPickup(e); bump(ABI.C_PICKED_UP, 1); }
  else if (proto == PROTO_TCP) tcpOpen(e);
  else store<u8>(e + E.E_STATE, <u8>(proto == PROTO_UDP ? State.UDP_UNREPLIED : icmp ? State.ICMP_QUERY : State.OTHER_UNREPLIED));
  store<u64>(e + E.E_EXPIRES, now + timeoutNs(proto == PROTO_TCP ? timeoutState(e) : load<u8>(e + E.E_STATE)));
  return decided;
}
