// The host's handle on one core instance: typed-array views over its memory
// (fixed size, so they never detach), the batch region, and counters.
import * as ABI from "./abi.js";
import { type Build, type CoreConfig, CoreError, type CoreExports, type CoreMemory, DEFAULT_ENGINE, type EngineName, instantiateCore, readCoreString, stateNames, type TcpSettings, writeTcp } from "./load.js";
import { addrBytes, formatAddr } from "../packets/addr.js";
import { RULE_COUNTER_SIZE, T_VERSION, TABLE_VERSION } from "../rules/format.js";

// One tracked flow as the host reads it (layout: assembly/conntrack/entry.ts).
export interface FlowView {
  state: string;
  proto: number;
  family: 4 | 6;
  orig: { addr: string; port: number };
  reply: { addr: string; port: number };
  ctx: number;
  rule: number;
  expiresNs: bigint;
  offloaded: boolean; // the kernel carries it (offload)
  pickedUp: boolean; //  created mid-stream by pickup
  packets: number; //    packets the core passed on state
}

// A flow as the kernel's conntrack names it: its original direction.
export interface FlowTuple { family: 4 | 6; proto: number; src: string; dst: string; sport: number; dport: number }

export interface OffloadCounters {
  live: bigint; //    flows the kernel carries now
  total: bigint; //   flows handed to the kernel
  ended: bigint; //   offloaded flows ended because the kernel's entry ended
  revoked: bigint; // offloaded flows a re-check took back (ended or inspected again)
}
import { REASONS } from "./reasons.js";

export interface PacketMeta {
  inRole?: number;
  outRole?: number;
  hook?: number;
  hwProto?: number;
  packetId?: number;
  tsNs?: bigint;
  queue?: number;
  wireLen?: number;
}

// The one descriptor encoder: descriptor `index` of a batch at `at` in `view`
// (the core's batch region, or a wasm2c test vector). Defaults: wire_len =
// cap_len, packet_id = index, an inbound packet on the external side.
export function encodeDescriptor(view: DataView, at: number, index: number, dataOff: number, capLen: number, meta: PacketMeta = {}): void {
  view.setUint32(at + ABI.D_DATA_OFF, dataOff, true);
  view.setUint32(at + ABI.D_CAP_LEN, capLen, true);
  view.setUint32(at + ABI.D_WIRE_LEN, meta.wireLen ?? capLen, true);
  view.setUint32(at + ABI.D_PACKET_ID, meta.packetId ?? index, true);
  view.setBigUint64(at + ABI.D_TS, meta.tsNs ?? 0n, true);
  view.setUint16(at + ABI.D_HW_PROTO, meta.hwProto ?? 0, true);
  view.setUint8(at + ABI.D_IN_ROLE, meta.inRole ?? ABI.ROLE_EXTERNAL);
  view.setUint8(at + ABI.D_OUT_ROLE, meta.outRole ?? ABI.ROLE_NONE);
  view.setUint8(at + ABI.D_HOOK, meta.hook ?? ABI.HOOK_INPUT);
  view.setUint8(at + ABI.D_RESERVED, 0);
  view.setUint16(at + ABI.D_QUEUE, meta.queue ?? 0, true);
}

export interface PacketCount {
  packets: bigint;
  bytes: bigint;
}

export interface FlowCounters {
  live: bigint;
  created: bigint;
  expired: bigint;
  evicted: bigint;
  refused: bigint;
  ended: bigint;
  fragsLive: bigint;
  fragsExpired: bigint;
}

export interface Counters {
  reasons: Array<PacketCount & { code: number; name: string }>;
  drop: PacketCount;
  accept: PacketCount;
  batches: bigint;
  packets: bigint;
  badBatches: bigint;
  flows: FlowCounters;
  offload: OffloadCounters;
  pickedUp: bigint; // TCP flows created mid-stream by pickup (setTcp)
}

export class Core {
  readonly x: CoreExports;
  readonly engine: EngineName;
  readonly memory: CoreMemory;
  readonly u8: Uint8Array;
  readonly view: DataView;
  readonly batchPtr: number;
  readonly descsPtr: number;
  readonly verdictsPtr: number;
  readonly dataPtr: number;
  readonly countersPtr: number;
  readonly configPtr: number;
  readonly pktPtr: number;

  constructor(readonly build: Build = "release", bytes?: Uint8Array<ArrayBuffer>, config: CoreConfig = {}) {
    this.x = instantiateCore(build, bytes, config);
    this.engine = config.engine ?? DEFAULT_ENGINE;
    this.memory = this.x.memory;
    this.u8 = new Uint8Array(this.memory.buffer);
    this.view = new DataView(this.memory.buffer);
    this.batchPtr = this.x.batch_ptr();
    this.descsPtr = this.x.descs_ptr();
    this.verdictsPtr = this.x.verdicts_ptr();
    this.dataPtr = this.x.data_ptr();
    this.countersPtr = this.x.counters_ptr();
    this.configPtr = this.x.config_ptr();
    this.pktPtr = this.x.pkt_ptr();
  }

  setDefaultVerdict(verdict: number): void {
    if (verdict !== ABI.VERDICT_DROP && verdict !== ABI.VERDICT_ACCEPT) {
      throw new CoreError("EINVAL", `default verdict must be 0 (drop) or 1 (accept), not ${verdict}`);
    }
    this.u8[this.configPtr + ABI.CFG_DEFAULT_VERDICT] = verdict;
  }

  // Classifies the `count` descriptors already written. Returns the core's
  // answer: the count, or -status when it refused the batch.
  classify(count: number, nowNs: bigint = 0n): number {
    this.view.setUint32(this.batchPtr + ABI.BH_COUNT, count, true);
    this.view.setBigUint64(this.batchPtr + ABI.BH_NOW, nowNs, true);
    return this.x.classify();
  }

  // Descriptor i of the batch region (encodeDescriptor).
  writeDescriptor(i: number, dataOff: number, capLen: number, meta: PacketMeta = {}): void {
    encodeDescriptor(this.view, this.descsPtr + i * ABI.DESC_SIZE, i, dataOff, capLen, meta);
  }

  verdict(i: number): number {
    return this.u8[this.verdictsPtr + i * ABI.VERDICT_SIZE + ABI.V_VERDICT]!;
  }

  reason(i: number): number {
    return this.view.getUint16(this.verdictsPtr + i * ABI.VERDICT_SIZE + ABI.V_REASON, true);
  }

  rule(i: number): number {
    return this.view.getUint32(this.verdictsPtr + i * ABI.VERDICT_SIZE + ABI.V_RULE, true);
  }

  private count(at: number): PacketCount {
    return {
      packets: this.view.getBigUint64(at, true),
      bytes: this.view.getBigUint64(at + 8, true),
    };
  }

  counters(): Counters {
    const base = this.countersPtr;
    return {
      reasons: REASONS.map(([name], code) => ({ code, name, ...this.count(base + ABI.C_REASONS + code * 16) })),
      drop: this.count(base + ABI.C_VERDICTS + ABI.VERDICT_DROP * 16),
      accept: this.count(base + ABI.C_VERDICTS + ABI.VERDICT_ACCEPT * 16),
      batches: this.view.getBigUint64(base + ABI.C_BATCHES, true),
      packets: this.view.getBigUint64(base + ABI.C_PACKETS, true),
      badBatches: this.view.getBigUint64(base + ABI.C_BAD_BATCHES, true),
      flows: {
        live: this.view.getBigInt64(base + ABI.C_FLOWS_LIVE, true),
        created: this.view.getBigUint64(base + ABI.C_FLOWS_CREATED, true),
        expired: this.view.getBigUint64(base + ABI.C_FLOWS_EXPIRED, true),
        evicted: this.view.getBigUint64(base + ABI.C_FLOWS_EVICTED, true),
        refused: this.view.getBigUint64(base + ABI.C_FLOWS_REFUSED, true),
        ended: this.view.getBigUint64(base + ABI.C_FLOWS_ENDED, true),
        fragsLive: this.view.getBigInt64(base + ABI.C_FRAGS_LIVE, true),
        fragsExpired: this.view.getBigUint64(base + ABI.C_FRAGS_EXPIRED, true),
      },
      offload: {
        live: this.view.getBigInt64(base + ABI.C_OFFLOAD_LIVE, true),
        total: this.view.getBigUint64(base + ABI.C_OFFLOAD_TOTAL, true),
        ended: this.view.getBigUint64(base + ABI.C_OFFLOAD_ENDED, true),
        revoked: this.view.getBigUint64(base + ABI.C_OFFLOAD_REVOKED, true),
      },
      pickedUp: this.view.getBigUint64(base + ABI.C_PICKED_UP, true),
    };
  }

  resetCounters(): void {
    this.x.reset_counters();
  }

  // Stages a compiled rule table and commits it: the transaction of
  // rules/commit.ts in one call. On refusal the live table is untouched and
  // a TableError says why.
  loadTable(table: Uint8Array): number {
    const ticket = this.stageTable(table);
    this.commitTable(ticket);
    return ticket;
  }

  stageTable(table: Uint8Array): number {
    const cap = this.x.table_stage_cap();
    if (table.length > cap) {
      throw new TableError("too_large", `table of ${table.length} bytes exceeds the ${cap}-byte slot`, 0);
    }
    this.u8.set(table, this.x.table_stage_ptr());
    const r = this.x.table_stage(table.length);
    if (r < 0) throw this.tableError(-r, table);
    return r;
  }

  commitTable(ticket: number): void {
    const r = this.x.table_commit(ticket);
    if (r < 0) throw this.tableError(-r);
  }

  tableErrorName(code: number): string {
    return readCoreString(this.memory, this.x.table_error_name(code)) || `table_error_${code}`;
  }

  private tableError(code: number, table?: Uint8Array): TableError {
    const name = this.tableErrorName(code);
    const at = this.x.table_fault_at();
    // A table of another format version (written by another release) is
    // never read: it has to be compiled again from its policy.
    const version = name === "bad_version" && table && table.length >= T_VERSION + 2
      ? `: it is format version ${table[T_VERSION]! | (table[T_VERSION + 1]! << 8)}, this core reads version ${TABLE_VERSION}; ` +
        "compile the policy again (portcullis compile POLICY -o TABLE)"
      : "";
    return new TableError(name, `rule table refused: ${name.replace(/_/g, " ")}${at ? ` (at byte ${at})` : ""}${version}`, at);
  }

  private stateNameList?: string[];

  // Every live tracked flow (control path: reads the whole table).
  flows(nowNs?: bigint): FlowView[] {
    const names = (this.stateNameList ??= stateNames(this.x));
    const base = this.x.flows_ptr(), size = ABI.FLOW_SIZE, cap = this.x.flow_capacity();
    const v = this.view, out: FlowView[] = [];
    for (let i = 0; i < cap; i++) {
      const e = base + i * size;
      if (v.getUint32(e, true) === 0) continue; //   tag 0: a free slot
      const expiresNs = v.getBigUint64(e + ABI.E_EXPIRES, true);
      if (nowNs !== undefined && expiresNs <= nowNs) continue;
      const family = v.getUint8(e + ABI.E_FAMILY) === 6 ? 6 : 4;
      const a = { addr: formatAddr(this.u8.subarray(e + ABI.E_ADDR_A, e + ABI.E_ADDR_A + 16), family), port: v.getUint16(e + ABI.E_PORT_A, true) };
      const b = { addr: formatAddr(this.u8.subarray(e + ABI.E_ADDR_B, e + ABI.E_ADDR_B + 16), family), port: v.getUint16(e + ABI.E_PORT_B, true) };
      const origB = (v.getUint8(e + ABI.E_FLAGS) & ABI.EF_ORIG_IS_B) !== 0;
      out.push({
        state: names[v.getUint8(e + ABI.E_STATE)] ?? "unknown", proto: v.getUint8(e + ABI.E_PROTO), family,
        orig: origB ? b : a, reply: origB ? a : b, ctx: v.getUint8(e + ABI.E_CTX), rule: v.getUint32(e + ABI.E_RULE, true), expiresNs,
        offloaded: (v.getUint8(e + ABI.E_FLAGS) & ABI.EF_OFFLOADED) !== 0, pickedUp: (v.getUint8(e + ABI.E_FLAGS) & ABI.EF_PICKED_UP) !== 0, packets: v.getUint32(e + ABI.E_PACKETS, true),
      });
    }
    return out;
  }

  get flowCapacity(): number {
    return this.x.flow_capacity();
  }

  // Re-decides every tracked flow against the live table (after a reload);
  // returns how many it ended.
  recheckFlows(nowNs: bigint): number {
    return this.x.state_recheck(nowNs);
  }

  // Offload (assembly/conntrack/offload.ts): on or off, and the lease in
  // seconds an offloaded flow lives without news from the kernel.
  setOffload(on: boolean, leaseS = 0): void {
    if (!Number.isInteger(leaseS) || leaseS < 0 || leaseS > 0xffffffff) throw new CoreError("EINVAL", `offload lease must be whole seconds, not ${leaseS}`);
    this.view.setUint32(this.configPtr + ABI.CFG_OFFLOAD, on ? 1 : 0, true);
    this.view.setUint32(this.configPtr + ABI.CFG_OFFLOAD_LEASE, leaseS, true);
  }

  // TCP tracking (assembly/conntrack/tcp.ts): pickup creates the flow of a
  // mid-stream segment its rules allow; liberal turns window tracking off.
  setTcp(o: TcpSettings): void {
    writeTcp(new DataView(this.memory.buffer, this.configPtr, ABI.CONFIG_SIZE), o);
  }

  get tcp(): TcpSettings {
    return { pickup: this.view.getUint32(this.configPtr + ABI.CFG_TCP_PICKUP, true) !== 0,
      liberal: this.view.getUint32(this.configPtr + ABI.CFG_TCP_LIBERAL, true) !== 0 };
  }

  // The kernel still carries this flow: ABI.TOUCH_* (renewed, inspected, none).
  offloadTouch(t: FlowTuple, nowNs: bigint): number {
    this.writeTuple(t);
    return this.x.offload_touch(nowNs);
  }

  // The kernel's entry of this flow ended: true when the core's offloaded entry ended with it.
  offloadEnd(t: FlowTuple, nowNs: bigint): boolean {
    this.writeTuple(t);
    return this.x.offload_end(nowNs) === 1;
  }

  // A flow an earlier daemon offloaded (ctx from its mark): ABI.ADOPT_*.
  offloadAdopt(t: FlowTuple, ctx: number, nowNs: bigint): number {
    this.writeTuple(t);
    return this.x.offload_adopt(ctx, nowNs);
  }

  // The tuple into PKT as the decoder writes a packet's (abi.ts).
  private writeTuple(t: FlowTuple): void {
    const p = this.pktPtr, src = addrBytes(t.src), dst = addrBytes(t.dst);
    if (src.length !== (t.family === 4 ? 4 : 16) || dst.length !== src.length) throw new CoreError("EINVAL", `tuple addresses ${t.src} and ${t.dst} are not both IPv${t.family}`);
    this.u8.fill(0, p + ABI.P_SRC, p + ABI.P_DST + 16);
    this.u8.set(src, p + ABI.P_SRC);
    this.u8.set(dst, p + ABI.P_DST);
    this.u8[p + ABI.P_FAMILY] = t.family;
    this.u8[p + ABI.P_PROTO] = t.proto;
    this.view.setUint16(p + ABI.P_SPORT, t.sport, true);
    this.view.setUint16(p + ABI.P_DPORT, t.dport, true);
  }

  get tableLive(): boolean {
    return this.x.table_live_ptr() !== 0;
  }

  // Per-rule counters of the live table.
  ruleCounters(nrules: number): Array<PacketCount & { lastHitNs: bigint }> {
    const base = this.x.rule_counters_ptr();
    const out: Array<PacketCount & { lastHitNs: bigint }> = [];
    if (base === 0) return out;
    for (let r = 0; r < nrules; r++) {
      const at = base + r * RULE_COUNTER_SIZE;
      out.push({ ...this.count(at), lastHitNs: this.view.getBigUint64(at + 16, true) });
    }
    return out;
  }
}

export class TableError extends Error {
  constructor(readonly code: string, message: string, readonly at: number) {
    super(message);
    this.name = "TableError";
  }
}
