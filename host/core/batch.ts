// Fills the batch region packet by packet (for tools and tests; the NFQUEUE
// addon writes the same region directly) and runs it through the core.
import * as ABI from "./abi.js";
import { type Core, type PacketMeta } from "./core.js";

export class Batch {
  count = 0;
  private dataUsed = 0;

  constructor(readonly core: Core) {}

  clear(): void {
    this.count = 0;
    this.dataUsed = 0;
  }

  // Copies one packet in. False when the batch has no room for it.
  add(bytes: Uint8Array, meta: PacketMeta = {}): boolean {
    if (this.count >= ABI.MAX_BATCH || this.dataUsed + bytes.length > ABI.DATA_CAP) return false;
    this.core.u8.set(bytes, this.core.dataPtr + this.dataUsed);
    this.core.writeDescriptor(this.count, this.dataUsed, bytes.length, meta);
    this.count++;
    this.dataUsed = (this.dataUsed + bytes.length + 7) & ~7;
    return true;
  }

  run(nowNs: bigint = 0n): number {
    return this.core.classify(this.count, nowNs);
  }
}

export interface Decision {
  verdict: number;
  reason: number;
  rule: number;
}

// Classifies packets in as few batches as they fit in; one decision each.
export function classifyAll(core: Core, packets: ReadonlyArray<Uint8Array>, meta: PacketMeta = {}): Decision[] {
  const out: Decision[] = [];
  const batch = new Batch(core);
  const flush = (): void => {
    const n = batch.run();
    for (let i = 0; i < n; i++) out.push({ verdict: core.verdict(i), reason: core.reason(i), rule: core.rule(i) });
    batch.clear();
  };
  for (const p of packets) {
    if (!batch.add(p, meta)) {
      flush();
      if (!batch.add(p, meta)) throw new RangeError(`packet of ${p.length} bytes does not fit in a batch`);
    }
  }
  flush();
  return out;
}
