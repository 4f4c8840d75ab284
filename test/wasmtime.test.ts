// The wasmtime engine (host/native/wasmtime.c, host/native/wasmtime.ts):
// its declarations against the reference C API headers, what it refuses,
// traps under both engines (a module that traps, and the real core made to
// trap through its memory), the daemon dropping a trapped batch, the
// daemon's control path over wasmtime, replay under both engines, and the
// one-line error when the library is missing. The byte-identity of verdicts
// over the big batch set is in wasm2c.test.ts.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core } from "../host/core/core.js";
import { ENGINES, type EngineName } from "../host/core/load.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { renderMetrics } from "../host/daemon/metrics.js";
import { instantiateWasmtime, WASMTIME_ADDON_PATH } from "../host/native/wasmtime.js";
import { parseBoardText } from "../host/kernel/board.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import * as F from "../host/rules/format.js";
import { runReplay } from "../host/commands/replay.js";
import { formatStats } from "../host/commands/ctl.js";
import { FakeSource, IN_EXT } from "./helpers/fake-source.js";

const ROOT = process.cwd();
const REFERENCE_HEADERS = join(ROOT, "..", "shared", "wasmtime-c-api", "include");
const POLICY = join(ROOT, "host", "policy", "default.yaml");
const CLI = join(ROOT, "dist", "host", "cli.js");

let port = 41000;
const syn = (dport: number): Uint8Array =>
  ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: port++, dport, flags: TCP_SYN }) });

function wat(text: string): Uint8Array<ArrayBuffer> {
  const dir = mkdtempSync(join(tmpdir(), "pc-wasmtime-wat-"));
  try {
    writeFileSync(join(dir, "m.wat"), text);
    const r = spawnSync("wat2wasm", [join(dir, "m.wat"), "-o", join(dir, "m.wasm")], { encoding: "utf8" });
    assert.is(r.status, 0, `wat2wasm: ${r.error?.message ?? r.stderr}`);
    return readFileSync(join(dir, "m.wasm"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const refusal = (fn: () => unknown, code: string, re: RegExp): void => {
  assert.throws(fn, (e: unknown) => (e as { code?: string }).code === code && re.test((e as Error).message));
};

test("the addon's declarations are the reference headers' (prototypes, sizes, offsets, constants)", () => {
  // The project builds without the headers; where they are (../shared), the
  // check compiles, and every mismatch is a compile error.
  assert.ok(existsSync(join(REFERENCE_HEADERS, "wasmtime.h")), `the reference headers are expected at ${REFERENCE_HEADERS}`);
  const r = spawnSync("gcc", ["-std=gnu11", "-Wall", "-Wextra", "-Werror", `-I${REFERENCE_HEADERS}`, "-fsyntax-only", join(ROOT, "test", "wasmtime", "check-api.c")], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  // And the header alone, as the addon's build sees it, with the same warnings.
  const alone = spawnSync("gcc", ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", "c", join(ROOT, "host", "native", "wasmtime-api.h")], { encoding: "utf8" });
  assert.is(alone.status, 0, alone.stderr);
});

test("the engine refuses a module that imports, a memory that can grow, and the debug core", () => {
  refusal(() => instantiateWasmtime(wat('(module (import "env" "abort" (func (param i32))) (memory (export "memory") 1 1))')),
    "EIMPORTS", /must import nothing .* it imports env\.abort$/);
  refusal(() => instantiateWasmtime(wat('(module (memory (export "memory") 1 2))')), "EMEMORY", /not fixed-size \(1 pages initially, 2 at most\)/);
  refusal(() => instantiateWasmtime(wat('(module (memory (export "memory") 1))')), "EMEMORY", /not fixed-size \(1 pages initially and no maximum\)/);
  refusal(() => instantiateWasmtime(wat('(module (memory (export "mem") 1 1))')), "EMEMORY", /no memory named "memory"/);
  refusal(() => instantiateWasmtime(Uint8Array.of(0, 0x61, 0x73, 0x6d, 9, 0, 0, 0)), "ERR_WASMTIME", /cannot compile the module/);
  refusal(() => new Core("debug", undefined, { engine: "wasmtime" }), "EINVAL", /debug core runs under V8 only/);
  refusal(() => new Core("release", undefined, { engine: "spidermonkey" as EngineName }), "EINVAL", /unknown engine "spidermonkey"/);
});

test("the memory is the module's own, shared with JavaScript both ways; it never grows", () => {
  const core = new Core("release", undefined, { engine: "wasmtime" });
  assert.is(core.memory.buffer.byteLength, core.x.memory_pages() * 65536);
  assert.is(core.memory.grow(0), core.x.memory_pages());
  assert.throws(() => core.memory.grow(1), /fixed-size/);
  // JS writes, the module reads: the default verdict in CONFIG decides a
  // packet no table covers; the module writes, JS reads: the verdict record.
  const b = syn(443);
  for (const v of [ABI.VERDICT_ACCEPT, ABI.VERDICT_DROP]) {
    core.setDefaultVerdict(v);
    core.u8.set(b, core.dataPtr);
    core.writeDescriptor(0, 0, b.length, IN_EXT);
    assert.is(core.classify(1, 1n), 1);
    assert.is(core.verdict(0), v);
  }
  assert.is(core.counters().packets, 2n);
});

// A module whose classify traps on demand: count 1 -> unreachable, count 2
// -> a load far outside its memory.
const TRAP_WAT = `(module
  (memory (export "memory") 1 1)
  (func (export "classify") (result i32)
    (if (i32.eq (i32.load (i32.const 0)) (i32.const 1)) (then unreachable))
    (if (i32.eq (i32.load (i32.const 0)) (i32.const 2)) (then (drop (i32.load (i32.const 0xfffffff0)))))
    (i32.const 7)))`;

test("a trap becomes an Error under both engines (wasmtime: code ERR_WASM_TRAP and the trap's name)", () => {
  const bytes = wat(TRAP_WAT);
  const v8 = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as { memory: WebAssembly.Memory; classify(): number };
  const wt = instantiateWasmtime(bytes) as unknown as { memory: { buffer: ArrayBuffer }; classify(): number };
  for (const [count, v8re, trap] of [[1, /unreachable/, "unreachable_code_reached"], [2, /memory access out of bounds/, "memory_out_of_bounds"]] as const) {
    new DataView(v8.memory.buffer).setUint32(0, count, true);
    new DataView(wt.memory.buffer).setUint32(0, count, true);
    assert.throws(() => v8.classify(), (e: unknown) => e instanceof WebAssembly.RuntimeError && v8re.test((e as Error).message));
    assert.throws(() => wt.classify(), (e: unknown) => {
      const err = e as Error & { code?: string; trap?: string };
      return err.code === "ERR_WASM_TRAP" && err.trap === trap && /^wasm trap in classify \(/.test(err.message);
    });
  }
  // Both go on after a trap.
  new DataView(wt.memory.buffer).setUint32(0, 0, true);
  new DataView(v8.memory.buffer).setUint32(0, 0, true);
  assert.is(wt.classify(), 7);
  assert.is(v8.classify(), 7);
});

// The real core trusts the live table it validated at commit. A host that
// writes over it (a bug outside the core) can point a lookup outside memory:
// the TCP entry of the protocol map names a bitmap 2 GiB up.
function corruptLiveTable(core: Core): () => void {
  const t = core.x.table_live_ptr();
  assert.ok(t > 0, "a live table");
  const v = core.view;
  const proto = t + v.getUint32(t + F.T_PROTO_OFF, true);
  const bitmaps = t + v.getUint32(t + F.T_BITMAPS_OFF, true);
  const stride = (v.getUint32(t + F.T_AGGS, true) + v.getUint32(t + F.T_WORDS, true)) * 8;
  const at = proto + PROTO_TCP * 4;
  const was = v.getUint32(at, true);
  v.setUint32(at, Math.ceil((0x80000000 - bitmaps) / stride), true);
  return () => v.setUint32(at, was, true);
}

const defaultTable = (): Uint8Array => buildTable(compilePolicyFile(POLICY).spec).bytes;

test("the core itself trapping (a corrupted live table) fails the same way under V8 and wasmtime, and runs on once repaired", () => {
  const table = defaultTable();
  for (const engine of ENGINES) {
    const core = new Core("release", undefined, { engine, hashSeed: 1n });
    core.loadTable(table);
    const restore = corruptLiveTable(core);
    const b = syn(443);
    core.u8.set(b, core.dataPtr);
    core.writeDescriptor(0, 0, b.length, IN_EXT);
    assert.throws(() => core.classify(1, 1n), (e: unknown) => engine === "v8"
      ? e instanceof WebAssembly.RuntimeError && /memory access out of bounds/.test((e as Error).message)
      : (e as { trap?: string }).trap === "memory_out_of_bounds", engine);
    restore();
    assert.is(core.classify(1, 2n), 1, engine);
    assert.is(core.verdict(0), ABI.VERDICT_ACCEPT, engine);
  }
});

for (const engine of ENGINES) {
  test(`daemon (${engine}): a batch that traps is dropped whole, counted and logged; the next batch is decided`, async () => {
    const logs: string[] = [];
    const d = new Daemon({ policy: POLICY, mode: "host", core: { engine } }, new JsonLogger((l) => logs.push(l)));
    const src = new FakeSource("q0");
    try {
      assert.ok((await d.reload()).ok);
      d.addSource(src);
      // Accepted packets first, so a trap's verdict records hold accepts.
      assert.equal(src.send([syn(443), IN_EXT], [syn(80), IN_EXT]), ["rule_allow", "rule_allow"]);
      const restore = corruptLiveTable(d.core);
      src.send([syn(443), IN_EXT], [syn(443), IN_EXT], [syn(22), IN_EXT]);
      assert.equal(src.verdicts.slice(2), [ABI.VERDICT_DROP, ABI.VERDICT_DROP, ABI.VERDICT_DROP]);
      // Counted once: the batch as one trap event, its packets as undecided core_error.
      assert.is(d.engine.stats.traps, 1);
      assert.is((d.stats().undecided as Record<string, number>).core_error, 3);
      const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => /the core trapped/.test(String(l.msg)));
      assert.ok(line, "the trap is logged");
      assert.is(line!.level, "error");
      assert.is(line!.engine, engine);
      assert.is(line!.count, 3);
      const metrics = renderMetrics(d);
      assert.match(metrics, `portcullis_core_traps_total{engine="${engine}"} 1\n`);
      assert.match(metrics, `portcullis_undecided_dropped_total{queue="q0",cause="core_error"} 3\n`);
      assert.not.match(metrics, "trap_dropped");
      assert.match(formatStats(d.stats() as unknown as Parameters<typeof formatStats>[0]), `\nengine ${engine}: 1 batches trapped (3 packets dropped for it)\n`);
      restore();
      assert.equal(src.send([syn(443), IN_EXT]), ["rule_allow"]);
      assert.is(src.verdicts.at(-1), ABI.VERDICT_ACCEPT);
    } finally {
      await d.stop();
    }
  });
}

test("daemon over wasmtime: reload, stats, canary (shadow) and promote, recheck, as over V8", async () => {
  const results: Record<string, unknown>[] = [];
  for (const engine of ENGINES) {
    const d = new Daemon({ policy: POLICY, mode: "host", core: { engine, hashSeed: 9n } }, new JsonLogger(() => {}));
    const src = new FakeSource("q0");
    try {
      assert.ok((await d.reload()).ok);
      d.addSource(src);
      port = 42000;
      const reasons = src.send([syn(443), IN_EXT], [syn(22), IN_EXT], [syn(80), IN_EXT]);
      const shadow = await d.startShadow(POLICY);
      assert.is(shadow.core.engine, engine, "the canary runs on the daemon's engine");
      src.send([syn(443), IN_EXT]);
      const promoted = await d.promote();
      assert.ok(promoted.ok);
      const rec = await d.reload(undefined, undefined, { recheck: true });
      const s = d.stats() as { verdicts: unknown; reasons: unknown; flows: Record<string, unknown>; coreEngine: string };
      assert.is(s.coreEngine, engine);
      results.push({ reasons, verdicts: s.verdicts, stateReasons: s.reasons, live: s.flows.live, ended: rec.recheck?.ended });
    } finally {
      await d.stop();
    }
  }
  assert.equal(results[1], results[0]);
});

test("replay of the reference capture is identical under V8 and wasmtime", () => {
  const capture = join(ROOT, "test", "fixtures", "reference.pcap");
  const runs = ENGINES.map((engine) => {
    const packets: unknown[] = [];
    const run = runReplay(capture, { policy: POLICY, engine }, { packet: (p) => packets.push(p) });
    return JSON.stringify({ packets, summary: run.summary }, (_, v: unknown) => typeof v === "bigint" ? v.toString() : v);
  });
  assert.ok(runs[0]!.length > 10000);
  assert.is(runs[1], runs[0]);
});

test("the CLI under each engine: classbench --check, demo --pcap --json and replay --json print the same", () => {
  const DIR = join(ROOT, "..", "shared", "classbench", "hypersplit");
  const capture = join(ROOT, "test", "fixtures", "reference.pcap");
  const cli = (...args: string[]): string => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
    assert.is(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout.replace(/built in \d+ ms/, "built in N ms");
  };
  const runs = [
    ["classbench", join(DIR, "acl1_1K.rules"), join(DIR, "acl1_1K.trace"), "--check"],
    ["classbench", join(DIR, "fw1_1K.rules"), join(DIR, "fw1_1K.trace")],
    ["demo", "--pcap", capture, "--json"],
    ["replay", capture, "--policy", POLICY, "--json"],
  ];
  for (const args of runs) {
    const [v8, wt] = ENGINES.map((e) => cli(...args, "--engine", e));
    assert.ok(v8!.length > 60, args.join(" "));
    if (args.includes("--check")) assert.match(v8!, /checked \d+, mismatched 0\n/);
    assert.is(wt, v8, args.join(" "));
  }
});

test("board config: engine: v8 | wasmtime, and a wrong value is refused with its position", () => {
  const base = "version: 1\nmode: host\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\n";
  assert.is(parseBoardText(base, "b.yaml").engine, undefined);
  assert.is(parseBoardText(`${base}engine: wasmtime\n`, "b.yaml").engine, "wasmtime");
  assert.is(parseBoardText(`${base}engine: v8\n`, "b.yaml").engine, "v8");
  assert.throws(() => parseBoardText(`${base}engine: wasmtim\n`, "b.yaml"), /^b\.yaml:5:9: engine must be v8 or wasmtime, not "wasmtim" \(did you mean "wasmtime"\?\)/);
});

test("--engine wasmtime without the library or the addon: one line that says how to install it, exit 1", () => {
  // A copy of the built project with the addon but no .wasmtime/ beside it
  // (its rpath finds nothing), then with no addon at all.
  const dir = mkdtempSync(join(tmpdir(), "pc-nowasmtime-"));
  try {
    cpSync(join(ROOT, "dist"), join(dir, "dist"), { recursive: true });
    mkdirSync(join(dir, "build", "Release"), { recursive: true });
    cpSync(join(ROOT, "build", "release.wasm"), join(dir, "build", "release.wasm"));
    cpSync(WASMTIME_ADDON_PATH, join(dir, "build", "Release", "wasmtime.node"));
    cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    const capture = join(ROOT, "test", "fixtures", "reference.pcap");
    const run = (): { status: number | null; stderr: string; stdout: string } =>
      spawnSync(process.execPath, [join(dir, "dist", "host", "cli.js"), "replay", capture, "--policy", POLICY, "--summary", "--engine", "wasmtime"], { encoding: "utf8" });
    for (const detail of [/the library _libwasmtime\.so does not load/, /no .*build\/Release\/wasmtime\.node/]) {
      const r = run();
      assert.is(r.status, 1);
      assert.is(r.stdout, "");
      assert.match(r.stderr, /^portcullis: error: the wasmtime engine is not installed \(/);
      assert.match(r.stderr, detail);
      assert.match(r.stderr, /run bash host\/setup\/ensure\.sh test \(it installs wasmtime==49\.0\.0 into \.wasmtime\/ with pip/);
      assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
      rmSync(join(dir, "build", "Release", "wasmtime.node"), { force: true });
    }
    // V8 needs neither.
    const v8 = spawnSync(process.execPath, [join(dir, "dist", "host", "cli.js"), "replay", capture, "--policy", POLICY, "--summary", "--engine", "v8"], { encoding: "utf8" });
    assert.is(v8.status, 0, v8.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the CLI's --engine is checked by name", () => {
  const r = spawnSync(process.execPath, [CLI, "replay", "x.pcap", "--policy", POLICY, "--engine", "v9"], { encoding: "utf8" });
  assert.is(r.status, 1);
  assert.match(r.stderr, /argument 'v9' is invalid\. Allowed choices are v8, wasmtime\./);
});

test.run();
