// Loads the wasm core. Release: plain WebAssembly, no imports. Debug: through
// @assemblyscript/loader, which supplies env.abort and turns a failed
// assertion into an Error with the core's message and source position.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as loader from "@assemblyscript/loader";
import * as ABI from "./abi.js";
import { REASONS } from "./reasons.js";
import { instantiateWasmtime } from "../native/wasmtime.js";

export type Build = "release" | "debug";

// The engine that runs the core: V8 (this process's WebAssembly) or wasmtime
// (Cranelift, through host/native/wasmtime.c). Same module, same bytes in and
// out (test/wasm2c.test.ts compares them); see the README, "Engines".
export const ENGINES = ["v8", "wasmtime"] as const;
export type EngineName = (typeof ENGINES)[number];
export const DEFAULT_ENGINE: EngineName = "v8";

// What the host reads of the module's memory (a WebAssembly.Memory under V8,
// a FixedMemory under wasmtime).
export interface CoreMemory {
  readonly buffer: ArrayBuffer;
  grow(delta: number): number;
}

export class CoreError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "CoreError";
  }
}

export interface CoreExports {
  memory: CoreMemory;
  abi_version(): number;
  abi_const(id: number): number;
  init(): number;
  classify(): number;
  reset_counters(): void;
  reason_count(): number;
  reason_name(code: number): number;
  config_ptr(): number;
  counters_ptr(): number;
  pkt_ptr(): number;
  batch_ptr(): number;
  descs_ptr(): number;
  verdicts_ptr(): number;
  data_ptr(): number;
  arena_ptr(): number;
  memory_pages(): number;
  arena_end(): number;
  table_stage_ptr(): number;
  table_stage_cap(): number;
  table_stage(len: number): number;
  table_commit(ticket: number): number;
  table_fault_at(): number;
  table_live_ptr(): number;
  table_max_rules(): number;
  rule_counters_ptr(): number;
  table_error_count(): number;
  table_error_name(code: number): number;
  classify_headers(n: number, ctx: number): number;
  flow_capacity(): number;
  flows_ptr(): number;
  flow_size(): number;
  state_count(): number;
  state_name(s: number): number;
  state_recheck(now: bigint): number;
  offload_touch(now: bigint): number;
  offload_end(now: bigint): number;
  offload_adopt(ctx: number, now: bigint): number;
  source_capacity(): number;
  sources_ptr(): number;
  block_capacity(): number;
  blocks_ptr(): number;
  block_addr_ptr(): number;
  block_add(list: number, family: number, prefix: number, now: bigint, ns: bigint): number;
  block_del(list: number, family: number, prefix: number, now: bigint): number;
}

// Sizes the core lays out at init (0 or absent: the core's default).
export interface CoreConfig {
  engine?: EngineName; // the engine (default DEFAULT_ENGINE); not written to the core
  tableCap?: number; // bytes per rule-table slot
  maxRules?: number; // rules a table may have (per-rule counter records)
  maxFlows?: number; // state table capacity (rounded up to a power of two)
  maxFrags?: number; // fragment tracker capacity
  hashSeed?: bigint; // key of the flow hash (default: random)
  maxSources?: number; // source table capacity, per-source limits (rounded up to a power of two)
  maxBlocks?: number; // block-list entries, all lists together (rounded up to a power of two)
  timeouts?: Partial<Record<string, number>>; // seconds, by state name ("fragment" for fragments)
  tcp?: TcpSettings; // TCP pickup and window tracking (default: both off); read per packet
}

// The board config's tcp: (host/kernel/board.ts), as the core's CONFIG
// holds it (assembly/abi.ts CFG_TCP_PICKUP, CFG_TCP_LIBERAL).
export interface TcpSettings {
  pickup?: boolean; //  a mid-stream segment of an allowed 5-tuple creates its flow
  liberal?: boolean; // window tracking off: only RST and FIN are checked
}

export function writeTcp(cfg: DataView, o: TcpSettings): void {
  cfg.setUint32(ABI.CFG_TCP_PICKUP, o.pickup ? 1 : 0, true);
  cfg.setUint32(ABI.CFG_TCP_LIBERAL, o.liberal ? 1 : 0, true);
}

const INIT_ERRORS: Record<number, string> = {
  1: "the core's static data overlaps its fixed regions (rebuild the core)",
  2: "the core's memory is too small for its regions as configured (smaller table slots or fewer rules)",
};

export function coreWasmPath(build: Build): string {
  return fileURLToPath(new URL(`../../../build/${build}.wasm`, import.meta.url));
}

export function readCoreBytes(build: Build): Uint8Array<ArrayBuffer> {
  const path = coreWasmPath(build);
  try {
    return readFileSync(path);
  } catch (e) {
    throw new CoreError("ENOCORE", `cannot read the ${build} core at ${path}: ${(e as Error).message} (run npm run build)`);
  }
}

// An AssemblyScript string in the core's static data: UTF-16LE, byte length
// in the u32 before it.
export function readCoreString(memory: CoreMemory, ptr: number): string {
  const view = new DataView(memory.buffer);
  if (ptr < 4 || ptr > memory.buffer.byteLength) return "";
  const len = view.getUint32(ptr - 4, true);
  return Buffer.from(memory.buffer, ptr, len).toString("utf16le");
}

function instantiate(build: Build, bytes: Uint8Array<ArrayBuffer>, engine: EngineName): CoreExports {
  if (engine === "wasmtime") {
    if (build === "debug") throw new CoreError("EINVAL", "the debug core runs under V8 only (it imports env.abort); use the release build with wasmtime");
    try {
      return instantiateWasmtime(bytes) as unknown as CoreExports;
    } catch (e) {
      const err = e as Error & { code?: string };
      throw new CoreError(err.code ?? "EWASMTIME", err.message);
    }
  }
  if (engine !== "v8") throw new CoreError("EINVAL", `unknown engine ${JSON.stringify(engine)} (one of ${ENGINES.join(", ")})`);
  const module = new WebAssembly.Module(bytes);
  if (build === "debug") {
    return loader.instantiateSync<Record<string, unknown>>(module, {}).exports as unknown as CoreExports;
  }
  const imports = WebAssembly.Module.imports(module);
  if (imports.length !== 0) {
    const names = imports.map((i) => `${i.module}.${i.name}`).join(", ");
    throw new CoreError("EIMPORTS", `the release core must import nothing, it imports ${names}`);
  }
  return new WebAssembly.Instance(module, {}).exports as unknown as CoreExports;
}

// Refuses a core whose ABI is not the one this host was built for.
export function checkAbi(x: CoreExports): void {
  const version = x.abi_version();
  if (version !== ABI.ABI_VERSION) {
    throw new CoreError("EABI", `core ABI version ${version}, host expects ${ABI.ABI_VERSION}`);
  }
  ABI.ABI_IDS.forEach(([name, value], id) => {
    const got = x.abi_const(id) >>> 0; // a u32 (RULE_NONE is 0xffffffff)
    if (got !== value) {
      throw new CoreError("EABI", `core ABI constant ${name} is ${got}, host expects ${value}`);
    }
  });
  const n = x.reason_count();
  if (n !== REASONS.length) {
    throw new CoreError("EABI", `core has ${n} reason codes, host knows ${REASONS.length}`);
  }
  for (let code = 0; code < n; code++) {
    const name = readCoreString(x.memory, x.reason_name(code));
    if (name !== REASONS[code]![0]) {
      throw new CoreError("EABI", `core reason ${code} is "${name}", host expects "${REASONS[code]![0]}"`);
    }
  }
}

export function instantiateCore(build: Build = "release", bytes?: Uint8Array<ArrayBuffer>, config: CoreConfig = {}): CoreExports {
  const x = instantiate(build, bytes ?? readCoreBytes(build), config.engine ?? DEFAULT_ENGINE);
  checkAbi(x);
  const cfg = new DataView(x.memory.buffer, x.config_ptr(), ABI.CONFIG_SIZE);
  cfg.setUint32(ABI.CFG_TABLE_CAP, config.tableCap ?? 0, true);
  cfg.setUint32(ABI.CFG_MAX_RULES, config.maxRules ?? 0, true);
  cfg.setUint32(ABI.CFG_MAX_FLOWS, config.maxFlows ?? 0, true);
  cfg.setUint32(ABI.CFG_MAX_FRAGS, config.maxFrags ?? 0, true);
  cfg.setUint32(ABI.CFG_MAX_SOURCES, config.maxSources ?? 0, true);
  cfg.setUint32(ABI.CFG_MAX_BLOCKS, config.maxBlocks ?? 0, true);
  cfg.setBigUint64(ABI.CFG_HASH_SEED, config.hashSeed ?? randomBytes(8).readBigUInt64LE(), true);
  setTimeouts(x, config.timeouts ?? {});
  writeTcp(cfg, config.tcp ?? {});
  const err = x.init();
  if (err !== 0) throw new CoreError("EINIT", INIT_ERRORS[err] ?? `core init failed with code ${err}`);
  const mem = x.memory.buffer.byteLength;
  if (x.arena_ptr() > mem) throw new CoreError("EINIT", "core regions exceed its memory");
  return x;
}

// The state names the core uses for timeouts (conntrack/entry.ts); slot 0
// holds the fragment timeout.
export function stateNames(x: CoreExports): string[] {
  return Array.from({ length: x.state_count() }, (_, i) => readCoreString(x.memory, x.state_name(i)));
}

// Sets per-state timeouts (seconds; 0 restores the default). Takes effect
// from the next batch. Unknown names are errors.
export function setTimeouts(x: CoreExports, timeouts: Partial<Record<string, number>>): void {
  const names = stateNames(x);
  const cfg = new DataView(x.memory.buffer, x.config_ptr(), ABI.CONFIG_SIZE);
  for (const [name, secs] of Object.entries(timeouts)) {
    const i = name === "fragment" ? 0 : names.indexOf(name);
    if (i <= 0 && name !== "fragment") throw new CoreError("EINVAL", `unknown timeout "${name}" (one of fragment, ${names.slice(1).join(", ")})`);
    if (secs === undefined || !Number.isInteger(secs) || secs < 0 || secs > 0xffffffff) {
      throw new CoreError("EINVAL", `timeout ${name} must be a whole number of seconds, not ${secs}`);
    }
    cfg.setUint32(ABI.CFG_TIMEOUTS + 4 * i, secs, true);
  }
}
