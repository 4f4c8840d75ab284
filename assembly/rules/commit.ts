// Two table slots and a ticket, as pf does it: the host writes a candidate
// into the idle slot, `stage` validates it and hands out a ticket, `commit`
// with that ticket makes it live between two batches. A failed stage or a
// stale ticket leaves the live table as it was.
import { DEBUG } from "../debug";
import { activate } from "./active";
import { TableError } from "./format";
import { validateTable } from "./validate";
import { blocksRetain } from "../limits/blocklist";

let slot0: usize = 0;
let slot1: usize = 0;
let counters0: usize = 0;
let counters1: usize = 0;
let slotCap: u32 = 0;
let maxRules: u32 = 0;
let liveSlot: i32 = -1;
let stagedTicket: u32 = 0;
let stagedLen: u32 = 0;
let lastTicket: u32 = 0;

export function setupSlots(s0: usize, s1: usize, c0: usize, c1: usize, cap: u32, rules: u32): void {
  slot0 = s0; slot1 = s1; counters0 = c0; counters1 = c1; slotCap = cap; maxRules = rules;
  liveSlot = -1; stagedTicket = 0; stagedLen = 0;
}

// @ts-ignore: decorator
@inline function idleSlot(): i32 { return liveSlot == 0 ? 1 : 0; }

export function stagePtr(): usize { return idleSlot() == 0 ? slot0 : slot1; }
export function stageCap(): u32 { return slotCap; }
export function livePtr(): usize { return liveSlot < 0 ? 0 : (liveSlot == 0 ? slot0 : slot1); }
export function liveCounters(): usize { return liveSlot < 0 ? 0 : (liveSlot == 0 ? counters0 : counters1); }
export function maxRuleCount(): u32 { return maxRules; }

// Returns a ticket (> 0), or -TableError.
export function stage(len: u32): i32 {
  stagedTicket = 0;
  const e = validateTable(stagePtr(), len, slotCap, maxRules);
  if (e != TableError.OK) return -<i32>e;
  lastTicket = lastTicket == 0x7fffffff ? 1 : lastTicket + 1;
  stagedTicket = lastTicket;
  stagedLen = len;
  return <i32>stagedTicket;
}

// Returns 0, or -TableError.
export function commit(ticket: u32): i32 {
  if (stagedTicket == 0) return -<i32>TableError.NOTHING_STAGED;
  if (ticket != stagedTicket) return -<i32>TableError.STALE_TICKET;
  const next = idleSlot();
  if (DEBUG) assert(stagedLen <= slotCap, "the staged table is longer than its slot");
  activate(next == 0 ? slot0 : slot1, next == 0 ? counters0 : counters1);
  liveSlot = next;
  stagedTicket = 0;
  blocksRetain(); // block lists are state: kept, unless the new table drops the list
  return 0;
}
