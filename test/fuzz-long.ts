// npm run fuzz [-- COUNT [SEED]]: the fuzz test at length (default 5,000,000
// packets), with a histogram of reasons at the end.
import { Core } from "../host/core/core.js";
import { runFuzz } from "./fuzz/gen.js";

const count = Number(process.argv[2] ?? 5_000_000);
const seed = Number(process.argv[3] ?? Date.now() & 0x7fffffff);
const core = new Core("release");
const t0 = process.hrtime.bigint();
const t = runFuzz(core, seed, count);
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const c = core.counters();
if (c.packets !== BigInt(t.packets) || c.drop.packets + c.accept.packets !== BigInt(t.packets)) {
  console.error("counters do not add up", c);
  process.exit(1);
}
console.log(`fuzz: ${t.packets} packets in ${t.batches} batches, seed ${seed}, ${secs.toFixed(1)} s, no trap, counters add up`);
for (const [name, n] of [...t.byReason].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(9)}  ${name}`);
