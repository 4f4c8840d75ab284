// A decoded packet against the live table: its key from PKT and the
// descriptor, first match, the rule's action or the table's default, and the
// per-rule counters.
import * as ABI from "../abi";
import { PKT_PTR } from "../layout";
import { Reason } from "../reasons";
import * as A from "./active";
import * as F from "./format";
import { lookup4, lookup6, NO_MATCH } from "./lookup";

export let decidedVerdict: u8 = 0;
export let decidedRule: u32 = 0;

// The interface context of a packet: hook | in_role << 3 | out_role << 5.
// @ts-ignore: decorator
@inline export function ctxOf(d: usize): u32 {
  return <u32>load<u8>(d + ABI.D_HOOK) | (<u32>load<u8>(d + ABI.D_IN_ROLE) << 3) | (<u32>load<u8>(d + ABI.D_OUT_ROLE) << 5);
}

// @ts-ignore: decorator
@inline function pk8(f: u32): u32 { return <u32>load<u8>(PKT_PTR + <usize>f); }
// @ts-ignore: decorator
@inline function pk16(f: u32): u32 { return <u32>load<u16>(PKT_PTR + <usize>f); }

// The packet's ICMP key, type << 8 | code (0 for other protocols: the
// decoder leaves both bytes clear).
// @ts-ignore: decorator
@inline export function icmpKey(): u32 { return (pk8(ABI.P_ICMP_TYPE) << 8) | pk8(ABI.P_ICMP_CODE); }

// The rules' verdict on the packet in PKT (never a non-first fragment: it
// has no ports; conntrack/frag.ts decides those). Sets decidedVerdict and
// decidedRule; returns the reason. `unrelatedError`: an ICMP error no
// tracked flow owns; it meets only the rules that name ICMP types (the
// CTX_ERROR half of the ctx field), and when none matches it is dropped as
// ICMP_UNRELATED, whatever the default.
export function decideByRules(d: usize, wire: u32, unrelatedError: bool): Reason {
  decidedRule = ABI.RULE_NONE;
  const ctx = ctxOf(d) | (unrelatedError ? F.CTX_ERROR : 0);
  const proto = pk8(ABI.P_PROTO);
  const sport = pk16(ABI.P_SPORT);
  const dport = pk16(ABI.P_DPORT);
  const tcpFlags = pk8(ABI.P_TCP_FLAGS);
  const icmp = icmpKey();
  let r: u32;
  if (pk8(ABI.P_FAMILY) == 4) {
    r = lookup4(ctx, bswap<u32>(load<u32>(PKT_PTR + ABI.P_SRC)), bswap<u32>(load<u32>(PKT_PTR + ABI.P_DST)),
      proto, sport, dport, tcpFlags, icmp);
  } else {
    r = lookup6(ctx,
      bswap<u64>(load<u64>(PKT_PTR + ABI.P_SRC)), bswap<u64>(load<u64>(PKT_PTR + ABI.P_SRC + 8)),
      bswap<u64>(load<u64>(PKT_PTR + ABI.P_DST)), bswap<u64>(load<u64>(PKT_PTR + ABI.P_DST + 8)),
      proto, sport, dport, tcpFlags, icmp);
  }
  if (r == NO_MATCH) {
    if (unrelatedError) {
      decidedVerdict = ABI.VERDICT_DROP;
      return Reason.ICMP_UNRELATED;
    }
    const allow = A.tDefault == F.ACTION_ALLOW;
    decidedVerdict = allow ? ABI.VERDICT_ACCEPT : ABI.VERDICT_DROP;
    return allow ? Reason.DEFAULT_ALLOW : Reason.DEFAULT_DENY;
  }
  const c = A.tCounters + <usize>r * F.RULE_COUNTER_SIZE;
  store<u64>(c + F.RC_PACKETS, load<u64>(c + F.RC_PACKETS) + 1);
  store<u64>(c + F.RC_BYTES, load<u64>(c + F.RC_BYTES) + <u64>wire);
  store<u64>(c + F.RC_LAST_HIT, load<u64>(d + ABI.D_TS));
  decidedRule = r;
  const allow = load<u8>(A.tRules + <usize>r * F.RULE_SIZE + F.R_ACTION) == F.ACTION_ALLOW;
  decidedVerdict = allow ? ABI.VERDICT_ACCEPT : ABI.VERDICT_DROP;
  return allow ? Reason.RULE_ALLOW : Reason.RULE_DENY;
}
