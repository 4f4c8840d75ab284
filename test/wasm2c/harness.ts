// The wasm2c harness, beside its driver (driver.c): the release core
// translated to C by wasm2c and compiled with gcc, a second engine for the
// same module, for differential tests against V8 (test/wasm2c.test.ts,
// test/wasmtime.test.ts) and for the core benchmark (bench/core.ts,
// bench/run.ts). Test and bench machinery, not part of the product: it spawns
// tools and reads and writes files.
//
// buildWasm2cCore() turns build/release.wasm + test/wasm2c/driver.c into
// build/wasm2c/portcullis-core, again only when either input is newer than
// the binary (or the build commands changed). runWasm2cCore() feeds it a
// vector file on stdin (or names a vector file) and parses what it writes;
// `table` has the driver commit a compiled rule table after init. The
// formats are described in driver.c; in short (all little-endian):
//
//   vector file  "PCVEC001", u32 abi_version, u32 batch_count, u32 bh_size,
//                u32 config_size, u32 descs_cap, u32 data_cap, u32 verdict_size,
//                u32 counters_size, u32 pkt_size, u32 init_cfg_len, the bytes
//                copied to config_ptr before init; then per batch u32 hdr_len,
//                u32 cfg_len, u32 descs_len, u32 data_len and those bytes,
//                copied to batch_ptr, config_ptr, descs_ptr, data_ptr
//   result       "PCOUT001", u32 batch_count, u32 repeat; per batch i32 ret,
//                the batch header, PKT, max(ret,0) verdict records; then the
//                counters region
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ABI from "../../host/core/abi.js";
import { type Core, encodeDescriptor, type PacketMeta } from "../../host/core/core.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const WASM2C_RUNTIME_DIR = "/usr/src/wasm2c";
const RUNTIME_FILES = ["wasm-rt-impl.c", "wasm-rt-impl.h", "wasm-rt.h"];
const BINARY_NAME = "portcullis-core";

export interface Wasm2cBuildOptions {
  wasm?: string; //   the module to translate (default build/release.wasm)
  driver?: string; // default test/wasm2c/driver.c
  outDir?: string; // default build/wasm2c
  force?: boolean; // rebuild even when up to date
}

export interface Wasm2cBuild {
  binary: string;
  rebuilt: boolean;
}

// Exit statuses of the driver (see driver.c).
export const DRIVER_EXIT = { USAGE: 1, FORMAT: 2, TRAP: 3, INIT: 4 } as const;

export class Wasm2cError extends Error {
  constructor(message: string, readonly status: number | null = null, readonly stderr = "") {
    super(message);
    this.name = "Wasm2cError";
  }
}

function tool(name: string, pkg: string): void {
  const r = spawnSync(name, ["--version"], { stdio: "ignore" });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") {
    throw new Wasm2cError(`${name} not found on PATH: install the Debian package ${pkg} (bash host/setup/ensure.sh test)`);
  }
}

function mtime(path: string): number {
  return statSync(path).mtimeMs;
}

function run(cmd: string, args: string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Wasm2cError(`${what}: cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const how = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
    const hint = cmd === "wasm2c" && r.signal === "SIGABRT"
      ? " (wasm2c 1.0.32 aborts on instructions it cannot translate, SIMD among them)" : "";
    throw new Wasm2cError(`${what}: ${cmd} ${how}${hint}\n${cmd} ${args.join(" ")}\n${(r.stderr ?? "").trim()}`, r.status);
  }
}

// Compiles the module and the driver into one executable, when stale.
export function buildWasm2cCore(opts: Wasm2cBuildOptions = {}): Wasm2cBuild {
  const wasm = opts.wasm ?? join(ROOT, "build", "release.wasm");
  const driver = opts.driver ?? join(ROOT, "test", "wasm2c", "driver.c");
  const outDir = opts.outDir ?? join(ROOT, "build", "wasm2c");
  const binary = join(outDir, BINARY_NAME);
  const stampPath = `${binary}.stamp`;
  if (!existsSync(wasm)) throw new Wasm2cError(`no module at ${wasm} (run npm run build)`);
  if (!existsSync(driver)) throw new Wasm2cError(`no driver at ${driver}`);

  const gccArgs = (dir: string): string[] => [
    "-O2", "-w", `-I${dir}`, `-I${WASM2C_RUNTIME_DIR}`,
    driver, join(WASM2C_RUNTIME_DIR, "wasm-rt-impl.c"), "-lm", "-o", join(dir, BINARY_NAME),
  ];
  const inputs = [wasm, driver].map((p) => `${p} ${mtime(p)} ${statSync(p).size}`);
  const stamp = [...inputs, `wasm2c ${wasm} -n core -o core.c`, `gcc ${gccArgs("DIR").join(" ")}`].join("\n");
  if (!opts.force && existsSync(binary) && existsSync(stampPath)) {
    const t = mtime(binary);
    if (mtime(wasm) <= t && mtime(driver) <= t && readFileSync(stampPath, "utf8") === stamp) {
      return { binary, rebuilt: false };
    }
  }

  tool("wasm2c", "wabt");
  tool("gcc", "gcc");
  for (const f of RUNTIME_FILES) {
    if (!existsSync(join(WASM2C_RUNTIME_DIR, f))) {
      throw new Wasm2cError(`the wasm2c runtime is missing: no ${join(WASM2C_RUNTIME_DIR, f)} (install the Debian package wabt)`);
    }
  }
  const bytes = readFileSync(wasm);
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(bytes));
  if (imports.length !== 0) {
    const names = imports.map((i) => `${i.module}.${i.name}`).join(", ");
    throw new Wasm2cError(`${wasm} imports ${names}: the driver supplies no imports (use the release build)`);
  }
  // wasm2c 1.0.32 dies on SIMD without a word; wasm-validate names the opcode.
  if (spawnSync("wasm-validate", ["--version"], { stdio: "ignore" }).error === undefined) {
    run("wasm-validate", ["--disable-simd", wasm], `${wasm} uses SIMD, which wasm2c 1.0.32 cannot translate`);
  }

  mkdirSync(outDir, { recursive: true });
  const tmp = mkdtempSync(join(outDir, ".tmp-"));
  try {
    run("wasm2c", [wasm, "-n", "core", "-o", join(tmp, "core.c")], `translating ${wasm}`);
    run("gcc", gccArgs(tmp), `compiling ${driver}`);
    // The generated sources stay next to the binary for reading and debugging.
    renameSync(join(tmp, "core.c"), join(outDir, "core.c"));
    renameSync(join(tmp, "core.h"), join(outDir, "core.h"));
    writeFileSync(stampPath, stamp);
    renameSync(join(tmp, BINARY_NAME), binary);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { binary, rebuilt: true };
}

// ---------------------------------------------------------------------------
// Batches as bytes.

// One batch as the host leaves it in the core's memory before `classify`.
export interface VectorBatch {
  header: Uint8Array; //  copied to batch_ptr (at most BH_SIZE bytes)
  config?: Uint8Array; // copied to config_ptr (absent: config unchanged)
  descs: Uint8Array; //   copied to descs_ptr (at most MAX_BATCH * DESC_SIZE)
  data: Uint8Array; //    copied to data_ptr (at most DATA_CAP)
}

export function batchHeader(count: number, nowNs = 0n, flags = 0): Uint8Array {
  const h = new Uint8Array(ABI.BH_SIZE);
  const v = new DataView(h.buffer);
  v.setUint32(ABI.BH_COUNT, count >>> 0, true);
  v.setUint32(ABI.BH_FLAGS, flags >>> 0, true);
  v.setBigUint64(ABI.BH_NOW, nowNs, true);
  return h;
}

export interface PacketIn {
  bytes: Uint8Array;
  meta?: PacketMeta;
  dataOff?: number; // place it here (default: after the previous one, 8-aligned)
  capLen?: number; //  descriptor cap_len (default: bytes.length)
}

export interface PackOptions {
  count?: number; //   header count (default: the number of packets)
  nowNs?: bigint;
  flags?: number;
  config?: Uint8Array;
  align?: number; //   alignment of packets placed one after another (default 8)
}

// Lays packets out in DATA and writes one descriptor each. A packet whose
// bytes would not fit inside DATA_CAP gets its descriptor but no bytes (for
// descriptors that are meant to be refused).
export function packBatch(packets: ReadonlyArray<PacketIn>, opts: PackOptions = {}): VectorBatch {
  if (packets.length > ABI.MAX_BATCH) throw new RangeError(`${packets.length} packets: the descriptor region holds ${ABI.MAX_BATCH}`);
  const descs = new Uint8Array(packets.length * ABI.DESC_SIZE);
  const dv = new DataView(descs.buffer);
  const align = opts.align ?? 8;
  const placed: Array<[number, Uint8Array]> = [];
  let next = 0, end = 0;
  packets.forEach((p, i) => {
    const off = p.dataOff ?? next;
    if (p.dataOff === undefined) next = Math.ceil((off + p.bytes.length) / align) * align;
    if (off + p.bytes.length <= ABI.DATA_CAP) {
      placed.push([off, p.bytes]);
      end = Math.max(end, off + p.bytes.length);
    }
    encodeDescriptor(dv, i * ABI.DESC_SIZE, i, off, p.capLen ?? p.bytes.length, p.meta);
  });
  if (end > ABI.DATA_CAP) throw new RangeError(`packets need ${end} bytes of DATA, it has ${ABI.DATA_CAP}`);
  const data = new Uint8Array(end);
  for (const [off, bytes] of placed) data.set(bytes, off);
  const batch: VectorBatch = { header: batchHeader(opts.count ?? packets.length, opts.nowNs, opts.flags), descs, data };
  if (opts.config) batch.config = opts.config;
  return batch;
}

function checkBatch(b: VectorBatch, i: number): void {
  const limits: Array<[string, number, number]> = [
    ["header", b.header.length, ABI.BH_SIZE], ["config", b.config?.length ?? 0, ABI.CONFIG_SIZE],
    ["descs", b.descs.length, ABI.MAX_BATCH * ABI.DESC_SIZE], ["data", b.data.length, ABI.DATA_CAP],
  ];
  for (const [name, len, max] of limits) {
    if (len > max) throw new RangeError(`batch ${i}: ${name} is ${len} bytes, its region ${max}`);
  }
}

export interface VectorOptions {
  // CONFIG as init should find it (the driver's core starts from zeroed
  // memory, as a fresh instance does). A Core compared with the driver must
  // have had the same bytes in CONFIG when it ran init.
  initConfig?: Uint8Array;
}

export function encodeVectors(batches: ReadonlyArray<VectorBatch>, opts: VectorOptions = {}): Uint8Array {
  batches.forEach(checkBatch);
  const init = opts.initConfig ?? new Uint8Array(0);
  if (init.length > ABI.CONFIG_SIZE) throw new RangeError(`init config is ${init.length} bytes, CONFIG ${ABI.CONFIG_SIZE}`);
  const size = batches.reduce((n, b) => n + 16 + b.header.length + (b.config?.length ?? 0) + b.descs.length + b.data.length, 48 + init.length);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  out.set(Buffer.from("PCVEC001", "latin1"), 0);
  const head = [ABI.ABI_VERSION, batches.length, ABI.BH_SIZE, ABI.CONFIG_SIZE, ABI.MAX_BATCH * ABI.DESC_SIZE,
    ABI.DATA_CAP, ABI.VERDICT_SIZE, ABI.COUNTERS_SIZE, ABI.PKT_SIZE, init.length];
  head.forEach((x, i) => v.setUint32(8 + 4 * i, x, true));
  out.set(init, 48);
  let o = 48 + init.length;
  for (const b of batches) {
    const parts = [b.header, b.config ?? new Uint8Array(0), b.descs, b.data];
    parts.forEach((p, i) => v.setUint32(o + 4 * i, p.length, true));
    o += 16;
    for (const p of parts) { out.set(p, o); o += p.length; }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Results.

export interface BatchResult {
  ret: number; //          classify's return value
  header: Uint8Array; //   batch header after classify
  pkt: Uint8Array; //      PKT after classify (the last packet decoded)
  verdicts: Uint8Array; // max(ret, 0) verdict records
}

export interface Timing {
  batch: number;
  count: number;
  iters: number;
  ns: bigint;
}

export interface RunResult {
  batches: BatchResult[];
  counters: Uint8Array;
  repeat: number;
  timings: Timing[]; // one per batch with --repeat, else empty
}

export function decodeResults(bytes: Uint8Array): Omit<RunResult, "timings"> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (o: number, n: number, what: string): void => {
    if (o + n > bytes.length) throw new Wasm2cError(`driver output ends inside ${what} (${bytes.length} bytes)`);
  };
  need(0, 16, "its header");
  if (Buffer.from(bytes.subarray(0, 8)).toString("latin1") !== "PCOUT001") throw new Wasm2cError("driver output: bad magic");
  const n = v.getUint32(8, true);
  const repeat = v.getUint32(12, true);
  let o = 16;
  const batches: BatchResult[] = [];
  for (let i = 0; i < n; i++) {
    need(o, 4 + ABI.BH_SIZE + ABI.PKT_SIZE, `batch ${i}`);
    const ret = v.getInt32(o, true);
    o += 4;
    const header = bytes.slice(o, o + ABI.BH_SIZE); o += ABI.BH_SIZE;
    const pkt = bytes.slice(o, o + ABI.PKT_SIZE); o += ABI.PKT_SIZE;
    const vlen = Math.max(ret, 0) * ABI.VERDICT_SIZE;
    need(o, vlen, `the verdicts of batch ${i}`);
    const verdicts = bytes.slice(o, o + vlen); o += vlen;
    batches.push({ ret, header, pkt, verdicts });
  }
  need(o, ABI.COUNTERS_SIZE, "the counters");
  const counters = bytes.slice(o, o + ABI.COUNTERS_SIZE);
  o += ABI.COUNTERS_SIZE;
  if (o !== bytes.length) throw new Wasm2cError(`driver output has ${bytes.length - o} bytes after the counters`);
  return { batches, counters, repeat };
}

export interface RunOptions extends VectorOptions {
  binary?: string; // default: buildWasm2cCore().binary
  repeat?: number; // classify calls per batch (timing loop)
  table?: string; //  a compiled rule table file, committed after init
  vectorFile?: string; // read the vectors from this file instead (the bytes argument is then ignored)
}

// Runs encoded vectors (encodeVectors, or a file's bytes) through the binary.
export function runWasm2cVectors(vectors: Uint8Array, opts: RunOptions = {}): RunResult {
  const binary = opts.binary ?? buildWasm2cCore().binary;
  const args = opts.repeat !== undefined ? ["--repeat", String(opts.repeat)] : [];
  if (opts.table !== undefined) args.push("--table", opts.table);
  const r = opts.vectorFile !== undefined
    ? spawnSync(binary, [...args, opts.vectorFile], { maxBuffer: 1 << 30 })
    : spawnSync(binary, [...args, "-"], { input: vectors, maxBuffer: 1 << 30 });
  if (r.error) throw new Wasm2cError(`cannot run ${binary}: ${r.error.message}`);
  const stderr = r.stderr.toString("utf8");
  if (r.status !== 0) {
    const how = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
    throw new Wasm2cError(`${binary} ${how}: ${stderr.trim()}`, r.status, stderr);
  }
  const timings: Timing[] = [];
  for (const m of stderr.matchAll(/^repeat batch=(\d+) count=(-?\d+) iters=(\d+) ns=(\d+)$/gm)) {
    timings.push({ batch: Number(m[1]), count: Number(m[2]), iters: Number(m[3]), ns: BigInt(m[4]!) });
  }
  return { ...decodeResults(new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.byteLength)), timings };
}

export function runWasm2cCore(batches: ReadonlyArray<VectorBatch>, opts: RunOptions = {}): RunResult {
  return runWasm2cVectors(encodeVectors(batches, opts), opts);
}

// The same batches through a Core in this process (V8), answered in the
// same shape, for comparison. The core keeps its counters across calls; it
// must have been initialised from the CONFIG the driver got (initConfig).
export function runInCore(core: Core, batches: ReadonlyArray<VectorBatch>): RunResult {
  const out: BatchResult[] = [];
  batches.forEach((b, i) => {
    checkBatch(b, i);
    core.u8.set(b.header, core.batchPtr);
    if (b.config) core.u8.set(b.config, core.configPtr);
    core.u8.set(b.descs, core.descsPtr);
    core.u8.set(b.data, core.dataPtr);
    const ret = core.x.classify();
    const vlen = Math.max(ret, 0) * ABI.VERDICT_SIZE;
    out.push({
      ret,
      header: core.u8.slice(core.batchPtr, core.batchPtr + ABI.BH_SIZE),
      pkt: core.u8.slice(core.pktPtr, core.pktPtr + ABI.PKT_SIZE),
      verdicts: core.u8.slice(core.verdictsPtr, core.verdictsPtr + vlen),
    });
  });
  return { batches: out, counters: core.u8.slice(core.countersPtr, core.countersPtr + ABI.COUNTERS_SIZE), repeat: 1, timings: [] };
}
