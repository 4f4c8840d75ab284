// The batch loop: for each descriptor, check it, decode the packet, decide
// (one Decision, verdict.ts), store its verdict record once and count it.
// Nothing here allocates or throws.
import * as A from "./abi";
import { countBadBatch, countBatch, countPacket } from "./counters";
import { DEBUG } from "./debug";
import { decodePacket } from "./decode/packet";
import { BATCH_PTR, CONFIG_PTR, DATA_PTR, DESCS_PTR, VERDICTS_PTR } from "./layout";
import { Reason } from "./reasons";
import { live } from "./rules/active";
import { track } from "./conntrack/track";
import { sweep } from "./conntrack/table";
import { offloadBatchStart } from "./conntrack/offload";
import { blockSweep } from "./limits/blocklist";
import { accept, Decision, drop, reasonOf, storeDecision, verdictOf } from "./verdict";

let ready: bool = false;

export function setReady(v: bool): void { ready = v; }

// @ts-ignore: decorator
@inline function descriptorOk(d: usize): bool {
  const off = load<u32>(d + A.D_DATA_OFF);
  const cap = load<u32>(d + A.D_CAP_LEN);
  const wire = load<u32>(d + A.D_WIRE_LEN);
  // One unsigned compare each: the sum is taken in 64 bits so it cannot wrap.
  return <u64>off + <u64>cap <= <u64>A.DATA_CAP &&
    cap <= wire &&
    load<u8>(d + A.D_IN_ROLE) <= A.ROLE_MAX &&
    load<u8>(d + A.D_OUT_ROLE) <= A.ROLE_MAX &&
    load<u8>(d + A.D_HOOK) <= A.HOOK_MAX;
}

// @ts-ignore: decorator
@inline function decideOne(d: usize, wire: u32, now: u64): Decision {
  if (!descriptorOk(d)) return drop(Reason.BAD_DESCRIPTOR);
  const r = decodePacket(
    DATA_PTR + <usize>load<u32>(d + A.D_DATA_OFF),
    load<u32>(d + A.D_CAP_LEN), wire, <u32>load<u16>(d + A.D_HW_PROTO));
  if (r != Reason.NONE) return drop(r);
  if (live) return track(d, wire, now);
  // No rule table yet: the configured default decides well-formed packets.
  return load<u8>(CONFIG_PTR + A.CFG_DEFAULT_VERDICT) == A.VERDICT_ACCEPT
    ? accept(Reason.NO_TABLE, A.RULE_NONE) : drop(Reason.NO_TABLE);
}

// @ts-ignore: decorator
@inline function classifyOne(i: u32, now: u64): void {
  const d = DESCS_PTR + (<usize>i * A.DESC_SIZE);
  const wire = load<u32>(d + A.D_WIRE_LEN);
  const decided = decideOne(d, wire, now);
  const reason = reasonOf(decided);
  if (DEBUG) assert(<u32>reason < <u32>Reason.COUNT && <u32>reason < A.REASON_SLOTS, "reason code out of the table");
  if (DEBUG) assert(verdictOf(decided) <= A.VERDICT_ACCEPT, "verdict neither drop nor accept");
  storeDecision(VERDICTS_PTR + (<usize>i * A.VERDICT_SIZE), decided);
  // A bad descriptor's lengths mean nothing: count the packet, not its bytes.
  countPacket(reason, verdictOf(decided), reason == Reason.BAD_DESCRIPTOR ? 0 : wire);
}

// Classifies the batch in BATCH/DESCS/DATA. Returns the number of packets
// classified, or -status when the batch was refused as a whole.
export function classifyBatch(): i32 {
  const n = load<u32>(BATCH_PTR + A.BH_COUNT);
  if (!ready || n > A.MAX_BATCH) {
    const status = ready ? A.STATUS_BAD_COUNT : A.STATUS_NOT_READY;
    store<u32>(BATCH_PTR + A.BH_DONE, 0);
    store<u32>(BATCH_PTR + A.BH_STATUS, status);
    if (ready) countBadBatch();
    return -<i32>status;
  }
  const now = load<u64>(BATCH_PTR + A.BH_NOW);
  offloadBatchStart();
  for (let i: u32 = 0; i < n; i++) classifyOne(i, now);
  if (live) { sweep(now); blockSweep(now); }
  store<u32>(BATCH_PTR + A.BH_DONE, n);
  store<u32>(BATCH_PTR + A.BH_STATUS, A.STATUS_OK);
  countBatch(n);
  return <i32>n;
}
