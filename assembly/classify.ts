// The batch loop: for each descriptor, check it, decode the packet, decide,
// write one verdict record and count it. Nothing here allocates or throws.
import * as A from "./abi";
import { countBadBatch, countBatch, countPacket } from "./counters";
import { decodePacket } from "./decode/packet";
import { BATCH_PTR, CONFIG_PTR, DATA_PTR, DESCS_PTR, VERDICTS_PTR } from "./layout";
import { Reason } from "./reasons";
import { live } from "./rules/active";
import { track, trackRule, trackVerdict } from "./conntrack/track";
import { sweep } from "./conntrack/table";

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
@inline function classifyOne(i: u32, now: u64): void {
  const d = DESCS_PTR + (<usize>i * A.DESC_SIZE);
  const v = VERDICTS_PTR + (<usize>i * A.VERDICT_SIZE);
  const wire = load<u32>(d + A.D_WIRE_LEN);
  let reason: Reason;
  let verdict: u8 = A.VERDICT_DROP;
  let rule: u32 = A.RULE_NONE;
  if (!descriptorOk(d)) {
    reason = Reason.BAD_DESCRIPTOR;
  } else {
    reason = decodePacket(
      DATA_PTR + <usize>load<u32>(d + A.D_DATA_OFF),
      load<u32>(d + A.D_CAP_LEN), wire, <u32>load<u16>(d + A.D_HW_PROTO));
    if (reason == Reason.NONE) {
      if (live) {
        reason = track(d, wire, now);
        verdict = trackVerdict;
        rule = trackRule;
      } else {
        // No rule table yet: the configured default decides well-formed packets.
        reason = Reason.NO_TABLE;
        verdict = load<u8>(CONFIG_PTR + A.CFG_DEFAULT_VERDICT) == A.VERDICT_ACCEPT ? A.VERDICT_ACCEPT : A.VERDICT_DROP;
      }
    }
  }
  assert(<u32>reason < <u32>Reason.COUNT && <u32>reason < A.REASON_SLOTS, "reason code out of the table");
  store<u8>(v + A.V_VERDICT, verdict);
  store<u8>(v + A.V_FLAGS, 0);
  store<u16>(v + A.V_REASON, <u16>reason);
  store<u32>(v + A.V_RULE, rule);
  // A bad descriptor's lengths mean nothing: count the packet, not its bytes.
  countPacket(reason, verdict, reason == Reason.BAD_DESCRIPTOR ? 0 : wire);
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
  assert(n <= A.MAX_BATCH, "batch count checked above");
  const now = load<u64>(BATCH_PTR + A.BH_NOW);
  for (let i: u32 = 0; i < n; i++) classifyOne(i, now);
  if (live) sweep(now);
  store<u32>(BATCH_PTR + A.BH_DONE, n);
  store<u32>(BATCH_PTR + A.BH_STATUS, A.STATUS_OK);
  countBatch(n);
  return <i32>n;
}
