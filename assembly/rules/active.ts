// The live rule table, unpacked into globals at commit so the packet path
// reads section addresses without touching the header; and the one reader
// of what a rule's action (or the default) says.
import { DEBUG } from "../debug";
import * as F from "./format";

export let live: bool = false;
export let tBase: usize = 0;
export let tRules: usize = 0;
export let tNrules: u32 = 0;
export let tBitmaps: usize = 0;
export let tStride: usize = 0;
export let tAggs: u32 = 0;
export let tDefault: u8 = 0;
export let tCtx: usize = 0;
export let tProto: usize = 0;
export let tFlags: usize = 0;
export let tSport: usize = 0;
export let tDport: usize = 0;
export let tIcmp: usize = 0;
export let tSrc4N: u32 = 0;
export let tSrc4B: usize = 0;
export let tSrc4I: usize = 0;
export let tDst4N: u32 = 0;
export let tDst4B: usize = 0;
export let tDst4I: usize = 0;
export let tSrc6N: u32 = 0;
export let tSrc6B: usize = 0;
export let tSrc6I: usize = 0;
export let tDst6N: u32 = 0;
export let tDst6B: usize = 0;
export let tDst6I: usize = 0;
export let tCounters: usize = 0;
export let tOffloadAfter: u32 = 1;
// Rule extensions and lists (limits/): tConds says whether any rule has a
// block-list condition, so first match checks none when no rule does.
export let tExt: usize = 0;
export let tLists: usize = 0;
export let tNlists: u32 = 0;
export let tConds: bool = false;

// The extension of live rule r, or 0.
// @ts-ignore: decorator
@inline export function ruleExt(r: u32): usize {
  const x = <u32>load<u16>(tRules + <usize>r * F.RULE_SIZE + F.R_EXT);
  return x == 0 ? 0 : tExt + <usize>(x - 1) * F.EXT_SIZE;
}
// @ts-ignore: decorator
@inline export function listKey(i: u32): u32 { return load<u32>(tLists + <usize>i * F.LIST_SIZE + F.L_KEY); }

// Whether live rule r allows, and whether the live default does.
// @ts-ignore: decorator
@inline export function ruleAllows(r: u32): bool {
  if (DEBUG) assert(r < tNrules, "rule index past the live table");
  return load<u8>(tRules + <usize>r * F.RULE_SIZE + F.R_ACTION) == F.ACTION_ALLOW;
}
// @ts-ignore: decorator
@inline export function defaultAllows(): bool { return tDefault == F.ACTION_ALLOW; }
// Whether flows of live rule r (RULE_NONE: the default) may be offloaded.
// @ts-ignore: decorator
@inline export function ruleOffloads(r: u32): bool {
  return r < tNrules && (load<u8>(tRules + <usize>r * F.RULE_SIZE + F.R_FLAGS) & F.RF_OFFLOAD) != 0;
}

// @ts-ignore: decorator
@inline function at(t: usize, field: u32): usize { return t + <usize>load<u32>(t + <usize>field); }

// Points the globals at a validated table `t` with its counter area.
export function activate(t: usize, counters: usize): void {
  tBase = t;
  tNrules = load<u32>(t + F.T_NRULES);
  tAggs = load<u32>(t + F.T_AGGS);
  tStride = <usize>(tAggs + load<u32>(t + F.T_WORDS)) << 3;
  tDefault = load<u8>(t + F.T_DEFAULT);
  tOffloadAfter = max<u32>(1, <u32>load<u16>(t + F.T_OFFLOAD_AFTER));
  tRules = at(t, F.T_RULES_OFF);
  tBitmaps = at(t, F.T_BITMAPS_OFF);
  tCtx = at(t, F.T_CTX_OFF);
  tProto = at(t, F.T_PROTO_OFF);
  tFlags = at(t, F.T_TCPFLAGS_OFF);
  tSport = at(t, F.T_SPORT_OFF);
  tDport = at(t, F.T_DPORT_OFF);
  tIcmp = at(t, F.T_ICMP_OFF);
  let h = t + <usize>F.T_IFIELDS;
  tSrc4N = load<u32>(h + F.IF_COUNT); tSrc4B = at(t, F.T_IFIELDS + F.IF_BOUNDS_OFF); tSrc4I = at(t, F.T_IFIELDS + F.IF_IDS_OFF);
  h += F.IFIELD_SIZE;
  tDst4N = load<u32>(h + F.IF_COUNT); tDst4B = at(t, F.T_IFIELDS + F.IFIELD_SIZE + F.IF_BOUNDS_OFF); tDst4I = at(t, F.T_IFIELDS + F.IFIELD_SIZE + F.IF_IDS_OFF);
  h += F.IFIELD_SIZE;
  tSrc6N = load<u32>(h + F.IF_COUNT); tSrc6B = at(t, F.T_IFIELDS + 2 * F.IFIELD_SIZE + F.IF_BOUNDS_OFF); tSrc6I = at(t, F.T_IFIELDS + 2 * F.IFIELD_SIZE + F.IF_IDS_OFF);
  h += F.IFIELD_SIZE;
  tDst6N = load<u32>(h + F.IF_COUNT); tDst6B = at(t, F.T_IFIELDS + 3 * F.IFIELD_SIZE + F.IF_BOUNDS_OFF); tDst6I = at(t, F.T_IFIELDS + 3 * F.IFIELD_SIZE + F.IF_IDS_OFF);
  tCounters = counters;
  tExt = at(t, F.T_EXT_OFF);
  tLists = at(t, F.T_LISTS_OFF);
  tNlists = load<u32>(t + F.T_NLISTS);
  tConds = false;
  const next = load<u32>(t + F.T_NEXT);
  for (let i: u32 = 0; i < next; i++) {
    if (load<u8>(tExt + <usize>i * F.EXT_SIZE + F.X_FLAGS) & F.XF_FROM_LIST) tConds = true;
  }
  memory.fill(counters, 0, <usize>tNrules * F.RULE_COUNTER_SIZE);
  live = true;
}
