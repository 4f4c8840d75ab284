// The ABI as the core defines it and as the host mirrors it (both written
// from assembly/abi.ts by scripts/gen-abi.mjs); the release module's imports
// and memory; refusing a core of another ABI version.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core } from "../host/core/core.js";
import { checkAbi, CoreError, type CoreExports, readCoreBytes, readCoreString } from "../host/core/load.js";
import { REASONS } from "../host/core/reasons.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SOURCES = ["assembly/abi.ts", "assembly/conntrack/entry.ts"];
const OUTPUTS = ["assembly/abi-const.ts", "host/core/abi.ts"];
const abiId = (name: string): number => ABI.ABI_IDS.findIndex(([n]) => n === name);

// Runs the generator over a copy of the sources, `edit` applied to abi.ts.
function generateIn(edit: (abi: string) => string = (a) => a): { status: number | null; stderr: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-abi-"));
  for (const f of SOURCES) {
    mkdirSync(join(dir, f, ".."), { recursive: true });
    const text = readFileSync(join(ROOT, f), "utf8");
    writeFileSync(join(dir, f), f === SOURCES[0] ? edit(text) : text);
  }
  const r = spawnSync(process.execPath, [join(ROOT, "scripts/gen-abi.mjs"), dir], { encoding: "utf8" });
  return { status: r.status, stderr: r.stderr, dir };
}

for (const build of ["release", "debug"] as const) {
  test(`${build}: every ABI constant the host mirrors equals the core's`, () => {
    const core = new Core(build);
    assert.is(core.x.abi_const(ABI.ABI_IDS.length), ABI.ABI_IDS.length, "the id after the last answers the count");
    ABI.ABI_IDS.forEach(([name, value], id) => {
      assert.is(core.x.abi_const(id) >>> 0, value, name);
    });
    assert.is(core.x.abi_const(9999) >>> 0, 0xffffffff, "unknown id");
  });

  test(`${build}: reason names in the core equal the host's table, in order`, () => {
    const core = new Core(build);
    assert.is(core.x.reason_count(), REASONS.length);
    const names = REASONS.map((_, code) => readCoreString(core.memory, core.x.reason_name(code)));
    assert.equal(names, REASONS.map(([n]) => n));
    assert.is(core.x.reason_name(REASONS.length), 0);
    assert.ok(REASONS.length <= ABI.REASON_SLOTS);
  });

  test(`${build}: regions sit in order inside memory and do not overlap`, () => {
    const core = new Core(build);
    const x = core.x;
    const regions: Array<[string, number, number]> = [
      ["config", x.config_ptr(), ABI.CONFIG_SIZE],
      ["counters", x.counters_ptr(), ABI.COUNTERS_SIZE],
      ["pkt", x.pkt_ptr(), ABI.PKT_SIZE],
      ["batch", x.batch_ptr(), ABI.BH_SIZE],
      ["descs", x.descs_ptr(), ABI.MAX_BATCH * ABI.DESC_SIZE],
      ["verdicts", x.verdicts_ptr(), ABI.MAX_BATCH * ABI.VERDICT_SIZE],
      ["data", x.data_ptr(), ABI.DATA_CAP],
    ];
    for (let i = 1; i < regions.length; i++) {
      const [pn, pp, ps] = regions[i - 1]!;
      const [n, p] = regions[i]!;
      assert.ok(pp + ps <= p, `${pn} ends at ${pp + ps}, ${n} starts at ${p}`);
    }
    assert.ok(x.arena_ptr() <= core.memory.buffer.byteLength);
    assert.is(x.counters_ptr() % 8, 0, "u64 counters are 8-aligned");
  });
}

test("every exported constant of abi.ts and every number of the host's mirror has an abi_const id", () => {
  const source = readFileSync(join(ROOT, SOURCES[0]!), "utf8");
  const declared = [...source.matchAll(/^export const ([A-Z0-9_]+):/gm)].map((m) => m[1]!);
  const ids = ABI.ABI_IDS.map(([n]) => n);
  assert.ok(declared.length > 100, `${declared.length} constants in abi.ts`);
  assert.equal(declared.filter((n) => !ids.includes(n)), []);
  const mirrored = Object.entries(ABI).filter(([, v]) => typeof v === "number").map(([n]) => n);
  assert.equal(mirrored.filter((n) => !ids.includes(n)), []);
  for (const n of ["P_TCP_FLAGS", "P_ICMP_TYPE", "P_L4_OFF", "C_FLOWS_CREATED", "C_FRAGS_EXPIRED", "ROLE_INTERNAL", "HOOK_POSTROUTING", "RULE_NONE", "D_RESERVED", "E_STATE", "FLOW_SIZE"]) {
    assert.ok(abiId(n) >= 0, n);
  }
  assert.is(new Set(ids).size, ids.length, "no name twice");
});

test("the generated mirrors are what the generator writes from the sources now, byte for byte", () => {
  const { status, stderr, dir } = generateIn();
  try {
    assert.is(status, 0, stderr);
    for (const f of OUTPUTS) assert.is(readFileSync(join(dir, f), "utf8"), readFileSync(join(ROOT, f), "utf8"), f);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a line of abi.ts the generator cannot read stops the build with FILE:LINE and what", () => {
  const line = (src: string, text: string): number => src.split("\n").indexOf(text) + 1;
  const cases: Array<[string, (a: string) => string, (a: string) => RegExp]> = [
    ["no type", (a) => a + "export const X_NEW = 3;\n", (a) => new RegExp(`^gen-abi: assembly/abi.ts:${line(a + "export const X_NEW = 3;", "export const X_NEW = 3;")}: cannot read \`export const X_NEW = 3;\`: expected`)],
    ["a function", (a) => a + "export function f(): u32 { return 1; }\n", () => /^gen-abi: assembly\/abi.ts:\d+: cannot read `export function f/],
    ["u64", (a) => a + "export const X_NEW: u64 = 3;\n", () => /^gen-abi: assembly\/abi.ts:\d+: X_NEW has type u64; the ABI's constants are u8, u16 or u32$/],
    ["unknown name", (a) => a + "export const X_NEW: u32 = Y_OLD + 1;\n", () => /^gen-abi: assembly\/abi.ts:\d+: cannot read the value `Y_OLD \+ 1`: Y_OLD is not a constant defined above it$/],
    ["out of range", (a) => a + "export const X_NEW: u8 = 1 << 8;\n", () => /^gen-abi: assembly\/abi.ts:\d+: X_NEW = 1 << 8 is 256, outside u8$/],
    ["twice", (a) => a + "export const MAX_BATCH: u32 = 1;\n", () => /^gen-abi: assembly\/abi.ts:\d+: MAX_BATCH is defined twice$/],
    ["a call", (a) => a + "export const X_NEW: u32 = max(1, 2);\n", () => /^gen-abi: assembly\/abi.ts:\d+: cannot read the value `max\(1, 2\)`: unexpected `m`$/],
  ];
  for (const [what, edit, want] of cases) {
    const { status, stderr, dir } = generateIn(edit);
    try {
      assert.is(status, 1, what);
      assert.is(stderr.split("\n").length, 2, `${what}: one line: ${stderr}`);
      assert.match(stderr.trimEnd(), want(readFileSync(join(ROOT, SOURCES[0]!), "utf8")), what);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test("release module imports nothing; debug imports only env.abort", () => {
  const rel = new WebAssembly.Module(readCoreBytes("release"));
  assert.equal(WebAssembly.Module.imports(rel), []);
  const dbg = new WebAssembly.Module(readCoreBytes("debug"));
  assert.equal(WebAssembly.Module.imports(dbg), [{ module: "env", name: "abort", kind: "function" }]);
});

test("release memory is fixed: initial = maximum, declared in the module", () => {
  const bytes = readCoreBytes("release");
  const mem = new WebAssembly.Module(bytes);
  const exp = WebAssembly.Module.exports(mem).find((e) => e.name === "memory");
  assert.is(exp?.kind, "memory");
  // Growing must fail: the module declares maximum = initial.
  const core = new Core("release");
  const before = core.memory.buffer.byteLength;
  assert.throws(() => core.memory.grow(1), /Maximum|maximum|grow/);
  assert.is(core.memory.buffer.byteLength, before);
  assert.is(core.x.memory_pages() * 65536, before);
});

test("a core of another ABI version is refused at load", () => {
  const real = new Core("release").x;
  const fake = { ...real, memory: real.memory, abi_version: () => ABI.ABI_VERSION + 1 } as CoreExports;
  assert.throws(() => checkAbi(fake), (e: unknown) => e instanceof CoreError && e.code === "EABI" && e.message.includes(`version ${ABI.ABI_VERSION + 1}, host expects ${ABI.ABI_VERSION}`));
  const moved = { ...real, memory: real.memory, abi_const: (id: number) => (id === abiId("DESC_SIZE") ? 48 : real.abi_const(id)) } as CoreExports;
  assert.throws(() => checkAbi(moved), /DESC_SIZE is 48, host expects 32/);
  const renamed = { ...real, memory: real.memory, reason_count: () => REASONS.length + 1 } as CoreExports;
  assert.throws(() => checkAbi(renamed), /reason codes/);
});

test("classify before init is refused with STATUS_NOT_READY, not a trap", () => {
  const m = new WebAssembly.Module(readCoreBytes("release"));
  const x = new WebAssembly.Instance(m, {}).exports as unknown as CoreExports;
  assert.is(x.classify(), -ABI.STATUS_NOT_READY);
  assert.is(x.init(), 0);
  assert.is(x.classify(), 0);
});

test("a batch count above MAX_BATCH is refused as a whole and counted", () => {
  const core = new Core("release");
  assert.is(core.classify(ABI.MAX_BATCH + 1), -ABI.STATUS_BAD_COUNT);
  assert.is(core.view.getUint32(core.batchPtr + ABI.BH_STATUS, true), ABI.STATUS_BAD_COUNT);
  assert.is(core.view.getUint32(core.batchPtr + ABI.BH_DONE, true), 0);
  assert.is(core.classify(0xffffffff), -ABI.STATUS_BAD_COUNT);
  const c = core.counters();
  assert.is(c.badBatches, 2n);
  assert.is(c.packets, 0n);
  assert.is(c.batches, 0n);
});

test.run();
