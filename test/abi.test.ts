// The ABI as the core defines it and as the host mirrors it; the release
// module's imports and memory; refusing a core of another ABI version.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core } from "../host/core/core.js";
import { checkAbi, CoreError, type CoreExports, readCoreBytes, readCoreString } from "../host/core/load.js";
import { REASONS } from "../host/core/reasons.js";

for (const build of ["release", "debug"] as const) {
  test(`${build}: every ABI constant the host mirrors equals the core's`, () => {
    const core = new Core(build);
    assert.is(core.x.abi_const(ABI.ABI_IDS.length), ABI.ABI_IDS.length, "AbiConst.COUNT");
    ABI.ABI_IDS.forEach(([name, value], id) => {
      assert.is(core.x.abi_const(id), value, name);
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
  assert.throws(() => checkAbi(fake), (e: unknown) => e instanceof CoreError && e.code === "EABI" && /version 2/.test(e.message));
  const moved = { ...real, memory: real.memory, abi_const: (id: number) => (id === 19 ? 48 : real.abi_const(id)) } as CoreExports;
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
