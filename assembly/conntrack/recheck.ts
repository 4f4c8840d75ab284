// After a new rule table is committed, optionally re-decide every tracked
// flow as if its first packet arrived now: the same endpoints, ports,
// protocol and interface context, a SYN for TCP, the opening ICMP type. Flows the new table no
// longer allows are ended and counted. Control path: runs over the whole
// table once, between batches.
import * as ABI from "../abi";
import { lookup4, lookup6, NO_MATCH } from "../rules/lookup";
import * as A from "../rules/active";
import { PROTO_TCP, PROTO_UDP } from "../decode/proto";
import { TH_SYN } from "../decode/tcp";
import * as E from "./entry";
import { bump, flowCapacity, flowSlot, freeSlot } from "./table";
import { setCondSource } from "../limits/match";

// @ts-ignore: decorator
@inline function be64(p: usize): u64 { return bswap<u64>(load<u64>(p)); }

// Re-decides tracked flow `e` by the live table as if its first packet
// arrived now; true (and the rule that allows it recorded) when allowed.
export function recheckOne(e: usize, now: u64): bool {
  const origB = (load<u8>(e + E.E_FLAGS) & E.EF_ORIG_IS_B) != 0;
  const src = e + (origB ? E.E_ADDR_B : E.E_ADDR_A);
  const dst = e + (origB ? E.E_ADDR_A : E.E_ADDR_B);
  const proto = <u32>load<u8>(e + E.E_PROTO);
  const tcp = proto == PROTO_TCP;
  // ICMP flows carry the query id as both "ports"; the rules saw none.
  // (Only TCP and UDP flows have ports: the decoder reads no others.)
  const ports = tcp || proto == PROTO_UDP;
  const sport = ports ? <u32>load<u16>(e + (origB ? E.E_PORT_B : E.E_PORT_A)) : 0;
  const dport = ports ? <u32>load<u16>(e + (origB ? E.E_PORT_A : E.E_PORT_B)) : 0;
  const ctx = <u32>load<u8>(e + E.E_CTX);
  const flags = tcp ? TH_SYN : 0;
  const icmp = <u32>load<u16>(e + E.E_ICMP);
  if (A.tConds) setCondSource(<u32>load<u8>(e + E.E_FAMILY), src, now);
  const r = load<u8>(e + E.E_FAMILY) == 4
    ? lookup4(ctx, bswap<u32>(load<u32>(src)), bswap<u32>(load<u32>(dst)), proto, sport, dport, flags, icmp)
    : lookup6(ctx, be64(src), be64(src + 8), be64(dst), be64(dst + 8), proto, sport, dport, flags, icmp);
  if (!(r == NO_MATCH ? A.defaultAllows() : A.ruleAllows(r))) return false;
  store<u32>(e + E.E_RULE, r == NO_MATCH ? ABI.RULE_NONE : r);
  return true;
}

// Returns how many flows were ended. An offloaded flow the table refuses,
// or whose rule no longer offloads, is counted revoked: the host then has
// the kernel stop carrying it (host/kernel/offload.ts), and its packets
// meet the core again (ended: as no_flow).
export function recheckFlows(now: u64): u32 {
  if (!A.live) return 0;
  let ended: u32 = 0;
  const cap = flowCapacity();
  for (let i: u32 = 0; i < cap; i++) {
    const e = flowSlot(i);
    if (load<u32>(e + E.E_TAG) == 0) continue;
    if (load<u64>(e + E.E_EXPIRES) <= now) { freeSlot(e, ABI.C_FLOWS_EXPIRED); continue; }
    const f = load<u8>(e + E.E_FLAGS);
    const offloaded = (f & E.EF_OFFLOADED) != 0;
    if (recheckOne(e, now)) {
      if (offloaded && !A.ruleOffloads(load<u32>(e + E.E_RULE))) {
        store<u8>(e + E.E_FLAGS, f & ~E.EF_OFFLOADED);
        bump(ABI.C_OFFLOAD_LIVE, -1);
        bump(ABI.C_OFFLOAD_REVOKED, 1);
      }
    } else {
      if (offloaded) bump(ABI.C_OFFLOAD_REVOKED, 1);
      freeSlot(e, ABI.C_FLOWS_ENDED);
      ended++;
    }
  }
  return ended;
}
