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
import * as E from "./conntrack/entry";
import { FLOW_SIZE, STATE_NAMES, State } from "./conntrack/entry";
import { fragBytes, setupFrags } from "./conntrack/frag";
import { setHashSeed } from "./conntrack/key";
import { recheckFlows } from "./conntrack/recheck";
import { flowCapacity, flowsBase, setupFlows } from "./conntrack/table";

// @ts-ignore: decorator
@inline function nextPow2(x: u32): u32 { return x <= 1 ? 1 : 1 << (32 - clz(x - 1)); }

let arenaEnd: usize = 0;

const enum InitError {
  OK = 0,
  STATIC_DATA_TOO_LARGE = 1, // AssemblyScript's static data reaches CONFIG_PTR
  MEMORY_TOO_SMALL = 2, //      the module's memory cannot hold the regions as configured
}

export function abi_version(): u32 { return A.ABI_VERSION; }

export function abi_const(id: u32): u32 {
  switch (id) {
    case A.AbiConst.VERSION: return A.ABI_VERSION;
    case A.AbiConst.MAX_BATCH: return A.MAX_BATCH;
    case A.AbiConst.DATA_CAP: return A.DATA_CAP;
    case A.AbiConst.BH_COUNT: return A.BH_COUNT;
    case A.AbiConst.BH_FLAGS: return A.BH_FLAGS;
    case A.AbiConst.BH_NOW: return A.BH_NOW;
    case A.AbiConst.BH_DONE: return A.BH_DONE;
    case A.AbiConst.BH_STATUS: return A.BH_STATUS;
    case A.AbiConst.BH_SIZE: return A.BH_SIZE;
    case A.AbiConst.D_DATA_OFF: return A.D_DATA_OFF;
    case A.AbiConst.D_CAP_LEN: return A.D_CAP_LEN;
    case A.AbiConst.D_WIRE_LEN: return A.D_WIRE_LEN;
    case A.AbiConst.D_PACKET_ID: return A.D_PACKET_ID;
    case A.AbiConst.D_TS: return A.D_TS;
    case A.AbiConst.D_HW_PROTO: return A.D_HW_PROTO;
    case A.AbiConst.D_IN_ROLE: return A.D_IN_ROLE;
    case A.AbiConst.D_OUT_ROLE: return A.D_OUT_ROLE;
    case A.AbiConst.D_HOOK: return A.D_HOOK;
    case A.AbiConst.D_QUEUE: return A.D_QUEUE;
    case A.AbiConst.DESC_SIZE: return A.DESC_SIZE;
    case A.AbiConst.V_VERDICT: return A.V_VERDICT;
    case A.AbiConst.V_FLAGS: return A.V_FLAGS;
    case A.AbiConst.V_REASON: return A.V_REASON;
    case A.AbiConst.V_RULE: return A.V_RULE;
    case A.AbiConst.VERDICT_SIZE: return A.VERDICT_SIZE;
    case A.AbiConst.CFG_DEFAULT_VERDICT: return A.CFG_DEFAULT_VERDICT;
    case A.AbiConst.CFG_TABLE_CAP: return A.CFG_TABLE_CAP;
    case A.AbiConst.CFG_MAX_RULES: return A.CFG_MAX_RULES;
    case A.AbiConst.CFG_MAX_FLOWS: return A.CFG_MAX_FLOWS;
    case A.AbiConst.CFG_HASH_SEED: return A.CFG_HASH_SEED;
    case A.AbiConst.CFG_MAX_FRAGS: return A.CFG_MAX_FRAGS;
    case A.AbiConst.CFG_TIMEOUTS: return A.CFG_TIMEOUTS;
    case A.AbiConst.CONFIG_SIZE: return A.CONFIG_SIZE;
    case A.AbiConst.REASON_SLOTS: return A.REASON_SLOTS;
    case A.AbiConst.C_REASONS: return A.C_REASONS;
    case A.AbiConst.C_VERDICTS: return A.C_VERDICTS;
    case A.AbiConst.C_BATCHES: return A.C_BATCHES;
    case A.AbiConst.C_PACKETS: return A.C_PACKETS;
    case A.AbiConst.C_BAD_BATCHES: return A.C_BAD_BATCHES;
    case A.AbiConst.C_FLOWS_LIVE: return A.C_FLOWS_LIVE;
    case A.AbiConst.COUNTERS_SIZE: return A.COUNTERS_SIZE;
    case A.AbiConst.PKT_SIZE: return A.PKT_SIZE;
    case A.AbiConst.P_FAMILY: return A.P_FAMILY;
    case A.AbiConst.P_PROTO: return A.P_PROTO;
    case A.AbiConst.P_FLAGS: return A.P_FLAGS;
    case A.AbiConst.P_SPORT: return A.P_SPORT;
    case A.AbiConst.P_DPORT: return A.P_DPORT;
    case A.AbiConst.P_SRC: return A.P_SRC;
    case A.AbiConst.P_DST: return A.P_DST;
    case A.AbiConst.P_IN_FAMILY: return A.P_IN_FAMILY;
    case A.AbiConst.P_IN_PROTO: return A.P_IN_PROTO;
    case A.AbiConst.P_IN_SPORT: return A.P_IN_SPORT;
    case A.AbiConst.P_IN_DPORT: return A.P_IN_DPORT;
    case A.AbiConst.P_IN_SRC: return A.P_IN_SRC;
    case A.AbiConst.P_IN_DST: return A.P_IN_DST;
    case A.AbiConst.P_TCP_WSCALE: return A.P_TCP_WSCALE;
    case A.AbiConst.P_TCP_PAYLOAD: return A.P_TCP_PAYLOAD;
    case A.AbiConst.E_STATE: return <u32>E.E_STATE;
    case A.AbiConst.E_PROTO: return <u32>E.E_PROTO;
    case A.AbiConst.E_FAMILY: return <u32>E.E_FAMILY;
    case A.AbiConst.E_FLAGS: return <u32>E.E_FLAGS;
    case A.AbiConst.E_PORT_A: return <u32>E.E_PORT_A;
    case A.AbiConst.E_PORT_B: return <u32>E.E_PORT_B;
    case A.AbiConst.E_CTX: return <u32>E.E_CTX;
    case A.AbiConst.E_EXPIRES: return <u32>E.E_EXPIRES;
    case A.AbiConst.E_RULE: return <u32>E.E_RULE;
    case A.AbiConst.E_ADDR_A: return <u32>E.E_ADDR_A;
    case A.AbiConst.E_ADDR_B: return <u32>E.E_ADDR_B;
    case A.AbiConst.FLOW_SIZE: return <u32>E.FLOW_SIZE;
    case A.AbiConst.EF_ORIG_IS_B: return <u32>E.EF_ORIG_IS_B;
    case A.AbiConst.COUNT: return A.AbiConst.COUNT;
    default: return 0xffffffff;
  }
}

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
  let flows = load<u32>(CONFIG_PTR + A.CFG_MAX_FLOWS);
  if (flows == 0) flows = A.DEFAULT_MAX_FLOWS;
  if (flows > A.MAX_FLOWS_LIMIT) return InitError.MEMORY_TOO_SMALL;
  flows = max<u32>(16, nextPow2(flows));
  let frags = load<u32>(CONFIG_PTR + A.CFG_MAX_FRAGS);
  if (frags == 0) frags = A.DEFAULT_MAX_FRAGS;
  if (frags > A.MAX_FLOWS_LIMIT) return InitError.MEMORY_TOO_SMALL;
  frags = max<u32>(8, nextPow2(frags));
  const flowsAt = (counters1 + <u64>rules * RULE_COUNTER_SIZE + 63) & ~63;
  const fragsAt = flowsAt + <u64>flows * FLOW_SIZE;
  const end = fragsAt + fragBytes(frags);
  if (end > (<u64>memory.size() << 16)) return InitError.MEMORY_TOO_SMALL;
  setupSlots(<usize>slot0, <usize>slot1, <usize>counters0, <usize>counters1, cap, rules);
  setHashSeed(load<u64>(CONFIG_PTR + A.CFG_HASH_SEED));
  setupFlows(<usize>flowsAt, flows);
  setupFrags(<usize>fragsAt, frags);
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
