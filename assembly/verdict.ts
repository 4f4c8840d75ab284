// A decision: one packet's verdict record (abi.ts: verdict u8, flags u8,
// reason u16, rule u32; little-endian like all of wasm) held in one u64. The
// stage that decides a packet returns it, the batch loop stores it once; no
// verdict travels through globals. Built and taken apart only here.
import * as A from "./abi";
import { DEBUG } from "./debug";
import { Reason } from "./reasons";

export type Decision = u64;

// @ts-ignore: decorator
@inline export function decision(verdict: u8, reason: Reason, rule: u32): Decision {
  return (<u64>verdict << (<u64>A.V_VERDICT << 3)) | (<u64>(<u16>reason) << (<u64>A.V_REASON << 3)) |
    (<u64>rule << (<u64>A.V_RULE << 3));
}
// @ts-ignore: decorator
@inline export function accept(reason: Reason, rule: u32): Decision { return decision(A.VERDICT_ACCEPT, reason, rule); }
// @ts-ignore: decorator
@inline export function drop(reason: Reason): Decision { return decision(A.VERDICT_DROP, reason, A.RULE_NONE); }

// The decision with verdict flags `f` (abi.ts: VF_OFFLOAD | ctx), for an accept.
// @ts-ignore: decorator
@inline export function withFlags(d: Decision, f: u8): Decision { return d | (<u64>f << (<u64>A.V_FLAGS << 3)); }

// @ts-ignore: decorator
@inline export function verdictOf(d: Decision): u8 { return <u8>(d >> (<u64>A.V_VERDICT << 3)); }
// @ts-ignore: decorator
@inline export function reasonOf(d: Decision): Reason { return <Reason>(<u16>(d >> (<u64>A.V_REASON << 3))); }
// @ts-ignore: decorator
@inline export function ruleOf(d: Decision): u32 { return <u32>(d >> (<u64>A.V_RULE << 3)); }
// @ts-ignore: decorator
@inline export function accepted(d: Decision): bool { return verdictOf(d) == A.VERDICT_ACCEPT; }

// Writes the record at `v`: the whole VERDICT_SIZE bytes at once; flags
// only on an accept.
// @ts-ignore: decorator
@inline export function storeDecision(v: usize, d: Decision): void {
  if (DEBUG) assert(A.VERDICT_SIZE == 8 && (((d >> (<u64>A.V_FLAGS << 3)) & 0xff) == 0 || accepted(d)), "a verdict record is one u64, flags only on an accept");
  store<u64>(v, d);
}
