// One packet through a core: its verdict, its reason by name, and what the
// decoders found. Cores are made once per build and reused.
import { Batch } from "../../host/core/batch.js";
import { Core, type PacketMeta } from "../../host/core/core.js";
import { type Decoded, readDecoded } from "../../host/core/decoded.js";
import { type Build } from "../../host/core/load.js";
import { reasonName } from "../../host/core/reasons.js";

const cores = new Map<Build, Core>();

export function coreFor(build: Build = "release"): Core {
  let c = cores.get(build);
  if (!c) { c = new Core(build); cores.set(build, c); }
  return c;
}

export interface Judgement { verdict: number; reason: string; pkt: Decoded }

export function judge(bytes: Uint8Array, meta: PacketMeta = {}, build: Build = "release"): Judgement {
  const core = coreFor(build);
  const batch = new Batch(core);
  if (!batch.add(bytes, meta)) throw new RangeError("packet does not fit in a batch");
  const n = batch.run();
  if (n !== 1) throw new Error(`core classified ${n} packets, expected 1`);
  return { verdict: core.verdict(0), reason: reasonName(core.reason(0)), pkt: readDecoded(core) };
}

export function reasonOf(bytes: Uint8Array, meta: PacketMeta = {}, build: Build = "release"): string {
  return judge(bytes, meta, build).reason;
}

// Every prefix of `bytes` shorter than `upTo`, as its own packet (the wire
// length is the cut length too: the packet really is that short).
export function prefixes(bytes: Uint8Array, upTo = bytes.length): Array<[number, Uint8Array]> {
  const out: Array<[number, Uint8Array]> = [];
  for (let n = 0; n < upTo; n++) out.push([n, bytes.slice(0, n)]);
  return out;
}

export function hex(s: string): Uint8Array {
  const clean = s.replace(/[^0-9a-fA-F]/g, "");
  return Uint8Array.from(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}
