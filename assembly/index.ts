// The core's exports. Control path: init, abi_*, reason_*, *_ptr.
// Packet path: classify.
import * as A from "./abi";
import { classifyBatch, setReady } from "./classify";
import { resetCounters } from "./counters";
import {
  ARENA_PTR, BATCH_PTR, CONFIG_PTR, COUNTERS_PTR, DATA_PTR, DESCS_PTR, PKT_PTR, VERDICTS_PTR,
} from "./layout";
import { Reason, REASON_NAMES } from "./reasons";
import { crc32Init } from "./crc32";
import { commit, liveCounters, livePtr, maxRuleCount, setupSlots, stage, stageCap, stagePtr } from "./rules/commit";
import { TABLE_ERROR_NAMES, TableError, RULE_COUNTER_SIZE } from "./rules/format";
import { faultAt } from "./rules/validate";
import { classifyHeaders } from "./rules/headers";
import { FLOW_SIZE, STATE_NAMES, State } from "./conntrack/entry";
import { fragBytes, setupFrags } from "./conntrack/frag";
import { setHashSeed } from "./conntrack/key";
import { recheckFlows } from "./conntrack/recheck";
import { offloadAdopt, offloadEnd, offloadTouch } from "./conntrack/offload";
import { flowCapacity, flowsBase, setupFlows } from "./conntrack/table";
import { blockAdd, blockCapacity, blockDel, blocksBase, NEVER, setupBlocks } from "./limits/blocklist";
import { MASKED } from "./limits/prefix";
import { setupSources, sourceCapacity, sourcesBase } from "./limits/sources";

// @ts-ignore: decorator
@inline function nextPow2(x: u32): u32 { return x <= 1 ? 1 : 1 << (32 - clz(x - 1)); }

let arenaEnd: usize = 0;

// A table capacity from CONFIG field `field` (0: `dflt`), rounded up to a
// power of two of at least `least`; 0 when over MAX_FLOWS_LIMIT.
function capacityOf(field: u32, dflt: u32, least: u32): u32 {
  let n = load<u32>(CONFIG_PTR + <usize>field);
  if (n == 0) n = dflt;
  if (n > A.MAX_FLOWS_LIMIT) return 0;
  return max<u32>(least, nextPow2(n));
}

const enum InitError {
  OK = 0,
  STATIC_DATA_TOO_LARGE = 1, // AssemblyScript's static data reaches CONFIG_PTR
  MEMORY_TOO_SMALL = 2, //      the module's memory cannot hold the regions as configured
}

export function abi_version(): u32 { return A.ABI_VERSION; }

// abi_const(id): every constant of abi.ts (and the flow entry's layout), by
// id; generated from abi.ts at build time by scripts/gen-abi.mjs.
export { abi_const } from "./abi-const";

// Lays out memory from the CONFIG block (which the host fills first; zero
// fields take the defaults) and clears the counters. Returns 0, or an InitError.
export function init(): u32 {
  setReady(false);
  if (__heap_base > CONFIG_PTR) return InitError.STATIC_DATA_TOO_LARGE;
  let cap = load<u32>(CONFIG_PTR + A.CFG_TABLE_CAP);
  if (cap == 0) cap = A.DEFAULT_TABLE_CAP;
  cap = (cap + 7) & ~7;
  let rules = load<u32>(CONFIG_PTR + A.CFG_MAX_RULES);
  if (rules == 0) rules = A.DEFAULT_MAX_RULES;
  const slot0 = <u64>ARENA_PTR;
  const slot1 = slot0 + <u64>cap;
  const counters0 = slot1 + <u64>cap;
  const counters1 = counters0 + <u64>rules * RULE_COUNTER_SIZE;
  const flows = capacityOf(A.CFG_MAX_FLOWS, A.DEFAULT_MAX_FLOWS, 16);
  const frags = capacityOf(A.CFG_MAX_FRAGS, A.DEFAULT_MAX_FRAGS, 8);
  const srcs = capacityOf(A.CFG_MAX_SOURCES, A.DEFAULT_MAX_SOURCES, 16);
  const blocks = capacityOf(A.CFG_MAX_BLOCKS, A.DEFAULT_MAX_BLOCKS, 16);
  if (flows == 0 || frags == 0 || srcs == 0 || blocks == 0) return InitError.MEMORY_TOO_SMALL;
  const flowsAt = (counters1 + <u64>rules * RULE_COUNTER_SIZE + 63) & ~63;
  const fragsAt = flowsAt + <u64>flows * FLOW_SIZE;
  const srcsAt = (fragsAt + fragBytes(frags) + 63) & ~63;
  const blocksAt = srcsAt + <u64>srcs * A.SOURCE_SIZE;
  const end = blocksAt + <u64>blocks * A.BLOCK_SIZE;
  if (end > (<u64>memory.size() << 16)) return InitError.MEMORY_TOO_SMALL;
  setupSlots(<usize>slot0, <usize>slot1, <usize>counters0, <usize>counters1, cap, rules);
  setHashSeed(load<u64>(CONFIG_PTR + A.CFG_HASH_SEED));
  setupFlows(<usize>flowsAt, flows);
  setupFrags(<usize>fragsAt, frags);
  setupSources(<usize>srcsAt, srcs);
  setupBlocks(<usize>blocksAt, blocks);
  arenaEnd = <usize>end;
  crc32Init();
  memory.fill(BATCH_PTR, 0, <usize>A.BH_SIZE);
  resetCounters();
  setReady(true);
  return InitError.OK;
}

export function classify(): i32 { return classifyBatch(); }

export function reset_counters(): void { resetCounters(); }

export function reason_count(): u32 { return Reason.COUNT; }

// Pointer to the reason's name: an AssemblyScript string in static data
// (UTF-16LE, its byte length in the u32 just before it). 0 for unknown codes.
export function reason_name(code: u32): usize {
  if (code >= <u32>Reason.COUNT) return 0;
  return changetype<usize>(unchecked(REASON_NAMES[code]));
}

export function config_ptr(): usize { return CONFIG_PTR; }
export function counters_ptr(): usize { return COUNTERS_PTR; }
export function pkt_ptr(): usize { return PKT_PTR; }
export function batch_ptr(): usize { return BATCH_PTR; }
export function descs_ptr(): usize { return DESCS_PTR; }
export function verdicts_ptr(): usize { return VERDICTS_PTR; }
export function data_ptr(): usize { return DATA_PTR; }
export function arena_ptr(): usize { return ARENA_PTR; }
export function memory_pages(): u32 { return <u32>memory.size(); }
export function arena_end(): usize { return arenaEnd; }

// Rule tables: write a candidate at table_stage_ptr(), stage it, commit the
// ticket. See rules/commit.ts.
export function table_stage_ptr(): usize { return stagePtr(); }
export function table_stage_cap(): u32 { return stageCap(); }
export function table_stage(len: u32): i32 { return stage(len); }
export function table_commit(ticket: u32): i32 { return commit(ticket); }
export function table_fault_at(): u32 { return faultAt; }
export function table_live_ptr(): usize { return livePtr(); }
export function table_max_rules(): u32 { return maxRuleCount(); }
export function rule_counters_ptr(): usize { return liveCounters(); }
export function table_error_count(): u32 { return TableError.COUNT; }
export function table_error_name(code: u32): usize {
  if (code >= <u32>TableError.COUNT) return 0;
  return changetype<usize>(unchecked(TABLE_ERROR_NAMES[code]));
}

// ClassBench-style header classification; see rules/headers.ts.
export function classify_headers(n: u32, ctx: u32): i32 { return classifyHeaders(n, ctx); }

// Connection tracking: the state table (layout in conntrack/entry.ts).
export function flow_capacity(): u32 { return flowCapacity(); }
export function flows_ptr(): usize { return flowsBase(); }
export function flow_size(): u32 { return FLOW_SIZE; }
export function state_count(): u32 { return State.COUNT; }
export function state_name(s: u32): usize {
  if (s >= <u32>State.COUNT) return 0;
  return changetype<usize>(unchecked(STATE_NAMES[s]));
}
// Re-decides every tracked flow against the live table; ends the refused.
export function state_recheck(now: u64): u32 { return recheckFlows(now); }

// Offload (conntrack/offload.ts): the host's news from the kernel's
// conntrack about the flow whose tuple it wrote into PKT.
export function offload_touch(now: u64): u32 { return offloadTouch(now); }
export function offload_end(now: u64): u32 { return offloadEnd(now); }
export function offload_adopt(ctx: u32, now: u64): u32 { return offloadAdopt(ctx, now); }
// Per-source limits and block lists (limits/; layouts in abi.ts S_*, B_*).
export function source_capacity(): u32 { return sourceCapacity(); }
export function sources_ptr(): usize { return sourcesBase(); }
export function block_capacity(): u32 { return blockCapacity(); }
export function blocks_ptr(): usize { return blocksBase(); }
// The 16 address bytes block_add and block_del read (network order; IPv4
// in bytes 0..3).
export function block_addr_ptr(): usize { return MASKED; }
// Puts the prefix at block_addr_ptr() on the list with key `list` for `ns`
// from batch time `now` (ns 0: until removed). 1, or 0 when there is no room;
// -1 for a bad family or prefix.
export function block_add(list: u32, family: u32, prefix: u32, now: u64, ns: u64): i32 {
  if (!prefixOk(family, prefix)) return -1;
  return <i32>blockAdd(list, family, prefix, MASKED, ns == 0 ? NEVER : now + ns, now);
}
// Takes it off: 1 if it was there, 0 if not, -1 for a bad family or prefix.
export function block_del(list: u32, family: u32, prefix: u32, now: u64): i32 {
  if (!prefixOk(family, prefix)) return -1;
  return <i32>blockDel(list, family, prefix, MASKED, now);
}
function prefixOk(family: u32, prefix: u32): bool {
  return (family == 4 && prefix <= 32) || (family == 6 && prefix <= 128);
}
