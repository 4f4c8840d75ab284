// Fixed addresses of the regions drawn in abi.ts. They are compile-time
// constants so every load on the packet path is `base + immediate`; `init`
// checks that the static data ends below CONFIG_PTR and that memory is large
// enough, and refuses to run otherwise.
import {
  BH_SIZE, CONFIG_SIZE, COUNTERS_SIZE, DATA_CAP, DESC_SIZE, MAX_BATCH, PKT_SIZE, VERDICT_SIZE,
} from "./abi";

// @ts-ignore: decorator
@inline function align(x: usize, a: usize): usize { return (x + a - 1) & ~(a - 1); }

export const CONFIG_PTR: usize = 0x10000;
export const COUNTERS_PTR: usize = CONFIG_PTR + <usize>CONFIG_SIZE;
export const PKT_PTR: usize = align(COUNTERS_PTR + <usize>COUNTERS_SIZE, 64);
export const BATCH_PTR: usize = PKT_PTR + <usize>PKT_SIZE;
export const DESCS_PTR: usize = BATCH_PTR + <usize>BH_SIZE;
export const VERDICTS_PTR: usize = DESCS_PTR + <usize>(MAX_BATCH * DESC_SIZE);
export const DATA_PTR: usize = align(VERDICTS_PTR + <usize>(MAX_BATCH * VERDICT_SIZE), 4096);
export const ARENA_PTR: usize = DATA_PTR + <usize>DATA_CAP;
