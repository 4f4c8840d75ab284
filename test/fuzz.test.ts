// At least 200,000 random and mutated packets per run through the release
// core (and a share through the debug core, whose assertions are live): no
// trap, one verdict and a valid reason each, memory size unchanged, and the
// counters add up to what was sent. `npm run fuzz` runs many more.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core } from "../host/core/core.js";
import { type FuzzTotals, runFuzz } from "./fuzz/gen.js";

function checkCounters(core: Core, t: FuzzTotals): void {
  const c = core.counters();
  assert.is(c.packets, BigInt(t.packets), "packets counted");
  assert.is(c.batches, BigInt(t.batches), "batches counted");
  assert.is(c.badBatches, 0n);
  assert.is(c.reasons.reduce((n, r) => n + r.packets, 0n), BigInt(t.packets), "per-reason packets sum");
  assert.is(c.reasons.reduce((n, r) => n + r.bytes, 0n), t.bytes, "per-reason bytes sum");
  assert.is(c.drop.packets + c.accept.packets, BigInt(t.packets), "per-verdict packets sum");
  assert.is(c.drop.bytes + c.accept.bytes, t.bytes, "per-verdict bytes sum");
  for (const r of c.reasons) assert.is(r.packets, BigInt(t.byReason.get(r.name) ?? 0), `count of ${r.name}`);
}

const SEED = Number(process.env.FUZZ_SEED ?? 0x20261125);

test("release: 200,000 fuzz packets, default drop", () => {
  const core = new Core("release");
  const t = runFuzz(core, SEED, 200_000);
  assert.is(t.packets, 200_000);
  checkCounters(core, t);
  // The fuzz must reach deep: well-formed packets and many distinct reasons.
  assert.ok((t.byReason.get("no_table") ?? 0) > 1000, "some fuzz packets are well-formed");
  assert.ok(t.byReason.size >= 25, `reasons reached: ${[...t.byReason.keys()].join(" ")}`);
  assert.ok(t.badDescriptors > 0, "bad descriptors were tried");
});

test("release: fuzz with default accept: only well-formed packets pass", () => {
  const core = new Core("release");
  core.setDefaultVerdict(ABI.VERDICT_ACCEPT);
  const t = runFuzz(core, SEED + 1, 50_000, ABI.VERDICT_ACCEPT);
  checkCounters(core, t);
  assert.is(core.counters().accept.packets, BigInt(t.byReason.get("no_table") ?? 0));
});

test("debug: 20,000 fuzz packets with assertions live", () => {
  const core = new Core("debug");
  const t = runFuzz(core, SEED + 2, 20_000);
  checkCounters(core, t);
});

test.run();
