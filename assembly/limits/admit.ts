// A new flow that a rule allowed meets that rule's per-source limit, if it
// has one (sources.ts), before the state table gives it a slot.
import * as ABI from "../abi";
import { fieldAt, getU8 } from "../decode/pkt";
import { Reason } from "../reasons";
import * as A from "../rules/active";
import * as F from "../rules/format";
import { Decision, decision, ruleOf } from "../verdict";
import * as E from "../conntrack/entry";
import { admit, admittedSlot, sourceFlowEnded, unadmit } from "./sources";

// 1 + the source entry the flow being created is counted in; 0 for none.
export let newFlowSource: u32 = 0;

// The decision for the allowed new flow `decided` of the packet in PKT:
// itself, or a drop for the limit it is over (naming its rule).
export function admitFlow(decided: Decision, now: u64): Decision {
  newFlowSource = 0;
  const r = ruleOf(decided);
  if (r == ABI.RULE_NONE) return decided;
  const x = A.ruleExt(r);
  if (x == 0 || !(load<u8>(x + F.X_FLAGS) & F.XF_LIMIT)) return decided;
  const why = admit(x, getU8(ABI.P_FAMILY), fieldAt(ABI.P_SRC), now);
  if (why != Reason.NONE) return decision(ABI.VERDICT_DROP, why, r);
  newFlowSource = admittedSlot;
  return decided;
}

// The state table refused the flow after all: give back what admitFlow took.
export function unadmitFlow(decided: Decision): void {
  if (newFlowSource == 0) return;
  unadmit(A.ruleExt(ruleOf(decided)), newFlowSource);
  newFlowSource = 0;
}

// A TCP flow that has closed (TIME_WAIT, CLOSE) no longer counts among its
// source's live flows, though its slot lives on until it times out.
// @ts-ignore: decorator
@inline export function releaseClosed(e: usize): void {
  const s = load<u32>(e + E.E_SOURCE);
  if (s == 0) return;
  const st = <u32>load<u8>(e + E.E_STATE);
  if (st == E.State.TIME_WAIT || st == E.State.CLOSE) { sourceFlowEnded(s); store<u32>(e + E.E_SOURCE, 0); }
}
