// Offload (Suricata's bypass): once a TCP flow that a rule with RF_OFFLOAD
// admitted is established and has passed the table's offload_after packets,
// its next packet's accept carries VF_OFFLOAD, and the host has the kernel
// carry the rest of the flow (a connmark its rules accept before the
// queue; host/kernel/offload.ts). The core keeps the flow's entry, marked
// OFFLOADED, so that:
//  - a packet of it that still reaches the core (one already queued, or
//    every one after the host revoked the offload generation) is decided
//    on state as before, and offloaded again while its rule still says so;
//  - its expiry is a lease (CFG_OFFLOAD_LEASE) that the host renews from
//    the kernel's conntrack table (offload_touch), and the entry ends when
//    the kernel's does (offload_end): it neither leaks for the established
//    timeout nor expires while the kernel still passes the flow;
//  - a reload's re-check ends it (or takes it back for inspection) like any
//    other flow, counted as revoked (recheck.ts).
// Within a batch the VF_OFFLOAD flag sits on the flow's LAST packet: a
// later packet of the same flow takes it over, so no packet of the batch
// is verdicted after the kernel started passing the flow itself.
// The window checks of an offloaded flow become liberal (maxwin as large
// as sequence arithmetic allows): the core no longer sees its sequence
// numbers advance, and the kernel's conntrack checks them meanwhile.
import * as ABI from "../abi";
import { fieldAt, getU16, getU8 } from "../decode/pkt";
import { PROTO_TCP } from "../decode/proto";
import { CONFIG_PTR, DESCS_PTR, VERDICTS_PTR } from "../layout";
import * as A from "../rules/active";
import * as E from "./entry";
import { State } from "./entry";
import { makeKey } from "./key";
import { recheckOne } from "./recheck";
import { bump, claim, freeSlot, lookup } from "./table";


// This batch's offload verdicts: (entry, verdict index) pairs.
const pending: usize = memory.data(<i32>(ABI.MAX_BATCH * 8), 8);
let pendingN: u32 = 0;

export function offloadBatchStart(): void { pendingN = 0; }

// @ts-ignore: decorator
@inline export function offloadOn(): bool { return load<u32>(CONFIG_PTR + ABI.CFG_OFFLOAD) != 0; }

function leaseNs(): u64 {
  let s = load<u32>(CONFIG_PTR + ABI.CFG_OFFLOAD_LEASE);
  if (s == 0) s = ABI.DEFAULT_OFFLOAD_LEASE;
  return <u64>s * 1000000000;
}

// Marks `e` offloaded: counted once per hand-over, windows liberal, lease.
function markOffloaded(e: usize, now: u64): void {
  const f = load<u8>(e + E.E_FLAGS);
  if ((f & E.EF_OFFLOADED) == 0) {
    store<u8>(e + E.E_FLAGS, f | E.EF_OFFLOADED);
    bump(ABI.C_OFFLOAD_LIVE, 1);
    bump(ABI.C_OFFLOAD_TOTAL, 1);
  }
  store<u32>(e + E.E_MAXWIN, E.LIBERAL_WINDOW);
  store<u32>(e + E.E_MAXWIN + 4, E.LIBERAL_WINDOW);
  store<u64>(e + E.E_EXPIRES, now + leaseNs());
}

// A packet of tracked flow `e` (descriptor d) passed on state. Counts it, and
// returns the verdict flags: VF_OFFLOAD | ctx when the flow goes (or stays)
// with the kernel, 0 otherwise. Packet path: no allocation, no throw.
export function offloadStep(e: usize, d: usize, now: u64): u8 {
  const n = load<u32>(e + E.E_PACKETS);
  if (n != 0xffffffff) store<u32>(e + E.E_PACKETS, n + 1);
  if (!offloadOn() || load<u8>(e + E.E_PROTO) != PROTO_TCP) return 0;
  const st = <u32>load<u8>(e + E.E_STATE);
  if (st != State.ESTABLISHED || !A.ruleOffloads(load<u32>(e + E.E_RULE))) return 0;
  if ((load<u8>(e + E.E_FLAGS) & E.EF_OFFLOADED) == 0 && n + 1 < A.tOffloadAfter) return 0;
  markOffloaded(e, now);
  const i = <u32>((d - DESCS_PTR) / <usize>ABI.DESC_SIZE);
  // An earlier packet of this flow in the batch gives the flag up.
  for (let k: u32 = 0; k < pendingN; k++) {
    const p = pending + (<usize>k << 3);
    if (load<u32>(p) == <u32>e) {
      store<u8>(VERDICTS_PTR + <usize>load<u32>(p + 4) * ABI.VERDICT_SIZE + ABI.V_FLAGS, 0);
      store<u32>(p + 4, i);
      return ABI.VF_OFFLOAD | (load<u8>(e + E.E_CTX) & ABI.VF_CTX_MASK);
    }
  }
  const p = pending + (<usize>pendingN << 3);
  store<u32>(p, <u32>e);
  store<u32>(p + 4, i);
  pendingN++;
  return ABI.VF_OFFLOAD | (load<u8>(e + E.E_CTX) & ABI.VF_CTX_MASK);
}

// ── control path: the host's news from the kernel's conntrack ──────────────
// The flow is named by the tuple the host writes into PKT as the decoder
// would (P_FAMILY, P_PROTO, P_SRC, P_DST, P_SPORT, P_DPORT of the flow's
// original direction).

// @ts-ignore: decorator
@inline function tupleKey(): u64 {
  return makeKey(getU8(ABI.P_FAMILY), getU8(ABI.P_PROTO), fieldAt(ABI.P_SRC), getU16(ABI.P_SPORT),
    fieldAt(ABI.P_DST), getU16(ABI.P_DPORT));
}

// @ts-ignore: decorator
@inline function tupleFlow(now: u64): usize { return lookup(tupleKey(), now); }

// The kernel still carries the flow: renew its lease.
export function offloadTouch(now: u64): u32 {
  const e = tupleFlow(now);
  if (e == 0) return ABI.TOUCH_NONE;
  if ((load<u8>(e + E.E_FLAGS) & E.EF_OFFLOADED) == 0) return ABI.TOUCH_INSPECTED;
  store<u64>(e + E.E_EXPIRES, now + leaseNs());
  return ABI.TOUCH_RENEWED;
}

// The kernel's entry of an offloaded flow ended (or is closing: FIN or RST
// seen by the kernel): the core's ends too. 1 when it did.
export function offloadEnd(now: u64): u32 {
  const e = tupleFlow(now);
  if (e == 0 || (load<u8>(e + E.E_FLAGS) & E.EF_OFFLOADED) == 0) return 0;
  freeSlot(e, ABI.C_OFFLOAD_ENDED);
  return 1;
}

// An established TCP flow the kernel carries with an offload mark of a
// previous daemon (ctx: the interface context the mark carries): decided by
// the live table as if its first packet arrived now (recheck.ts), and
// tracked, offloaded when its rule says so.
export function offloadAdopt(ctx: u32, now: u64): u32 {
  if (!A.live || getU8(ABI.P_PROTO) != PROTO_TCP || ctx > <u32>ABI.VF_CTX_MASK) return ABI.ADOPT_REFUSED;
  const h = tupleKey();
  if (lookup(h, now)) return ABI.ADOPT_KNOWN;
  const e = claim(h, now);
  if (e == 0) return ABI.ADOPT_REFUSED;
  store<u8>(e + E.E_CTX, <u8>ctx);
  store<u8>(e + E.E_STATE, <u8>State.ESTABLISHED);
  store<u8>(e + E.E_WSCALE, 0xff);
  store<u8>(e + E.E_WSCALE + 1, 0xff);
  store<u32>(e + E.E_MAXWIN, E.LIBERAL_WINDOW);
  store<u32>(e + E.E_MAXWIN + 4, E.LIBERAL_WINDOW);
  store<u32>(e + E.E_PACKETS, A.tOffloadAfter);
  store<u64>(e + E.E_EXPIRES, now + leaseNs());
  if (!recheckOne(e, now)) {
    freeSlot(e, ABI.C_FLOWS_ENDED);
    return ABI.ADOPT_REFUSED;
  }
  if (!offloadOn() || !A.ruleOffloads(load<u32>(e + E.E_RULE))) return ABI.ADOPT_INSPECTED;
  markOffloaded(e, now);
  return ABI.ADOPT_OFFLOADED;
}
