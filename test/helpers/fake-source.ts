// A packet source without the kernel, for daemon tests: packets pushed into
// `queue` are classified when `fire()` wakes the engine (as a readable
// NFQUEUE socket would); their verdicts and reason names are recorded.
import * as ABI from "../../host/core/abi.js";
import { Batch } from "../../host/core/batch.js";
import { type Core, type PacketMeta } from "../../host/core/core.js";
import { reasonName } from "../../host/core/reasons.js";
import { type PacketSource } from "../../host/daemon/engine.js";
import { ipv4, PROTO_TCP, TCP_ACK, TCP_PSH, TCP_SYN, tcp } from "../../host/packets/build.js";

export const IN_EXT: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
export const OUT_EXT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };

export class FakeSource implements PacketSource {
  queue: Array<{ bytes: Uint8Array; meta: PacketMeta }> = [];
  verdicts: number[] = [];
  reasons: string[] = [];
  closed = false;
  // Faults: the next `failRecv` recv() calls throw `error`, the next
  // `failVerdict` verdict() calls throw it (nothing recorded).
  failRecv = 0;
  failVerdict = 0;
  error: Error = Object.assign(new Error("EIO: input/output error"), { code: "EIO" });
  recvCalls = 0;
  // At most this many packets per recv() (as when the addon's DATA area is full).
  perRecv = Infinity;
  private cb: ((err?: Error) => void) | null = null;
  constructor(readonly name: string, private readonly extra: Record<string, number> = {}) {}
  recv(core: Core, max: number): number {
    this.recvCalls++;
    if (this.failRecv > 0) { this.failRecv--; throw this.error; }
    const b = new Batch(core);
    while (b.count < Math.min(max, this.perRecv) && this.queue.length) { const p = this.queue.shift()!; b.add(p.bytes, p.meta); }
    return b.count;
  }
  verdict(core: Core, n: number): void {
    if (this.failVerdict > 0) { this.failVerdict--; throw this.error; }
    for (let i = 0; i < n; i++) { this.verdicts.push(core.verdict(i)); this.reasons.push(reasonName(core.reason(i))); }
  }
  onReadable(cb: (err?: Error) => void): void { this.cb = cb; }
  // A wakeup that reports a socket error, as the addon does (cb(err)).
  fireError(err: Error): void { this.cb?.(err); }
  // Sends packets through the engine now; returns their reason names.
  send(...pkts: Array<[Uint8Array, PacketMeta]>): string[] {
    const from = this.reasons.length;
    for (const [bytes, meta] of pkts) this.queue.push({ bytes, meta });
    this.cb?.();
    return this.reasons.slice(from);
  }
  stats(): Record<string, number> { return { packets: this.verdicts.length, ...this.extra }; }
  close(): void { this.closed = true; }
}

// A TCP conversation from an Internet client to the proxy's external side.
export class Conn {
  cseq = 1000; sseq = 70000;
  constructor(readonly src: FakeSource, readonly cport: number, readonly dport: number,
    readonly client = "192.0.2.9", readonly proxy = "203.0.113.1") {}
  private pkt(fromClient: boolean, flags: number, len = 0): Uint8Array {
    const p = ipv4({
      src: fromClient ? this.client : this.proxy, dst: fromClient ? this.proxy : this.client, proto: PROTO_TCP,
      payload: tcp({
        sport: fromClient ? this.cport : this.dport, dport: fromClient ? this.dport : this.cport, flags,
        seq: fromClient ? this.cseq : this.sseq, ack: flags & TCP_ACK ? (fromClient ? this.sseq : this.cseq) : 0,
        payload: new Uint8Array(len), win: 29200,
      }),
    });
    if (fromClient) this.cseq += len + (flags & TCP_SYN ? 1 : 0); else this.sseq += len + (flags & TCP_SYN ? 1 : 0);
    return p;
  }
  // SYN, SYN-ACK, ACK; returns the three reasons.
  open(): string[] {
    return [
      ...this.src.send([this.pkt(true, TCP_SYN), IN_EXT]),
      ...this.src.send([this.pkt(false, TCP_SYN | TCP_ACK), OUT_EXT]),
      ...this.src.send([this.pkt(true, TCP_ACK), IN_EXT]),
    ];
  }
  // Data from the client; returns its reason.
  data(len = 100): string { return this.src.send([this.pkt(true, TCP_ACK | TCP_PSH, len), IN_EXT])[0]!; }
}
