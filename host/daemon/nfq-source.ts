// An NFQUEUE handle as the engine's PacketSource.
import { readFileSync } from "node:fs";
import * as ABI from "../core/abi.js";
import { type Core } from "../core/core.js";
import { NfqQueue, type NfqOptions } from "../native/nfq.js";
import { type PacketSource } from "./engine.js";
import { readKernelQueues } from "./kernel-queue.js";

export class NfqSource implements PacketSource {
  readonly name: string;
  constructor(private readonly q: NfqQueue) { this.name = `queue${q.queue}`; }

  static open(options: NfqOptions): NfqSource {
    return new NfqSource(NfqQueue.open(options));
  }

  recv(core: Core, max: number): number { return this.q.recv(core, max); }
  verdict(core: Core, count: number, marks?: Uint32Array): void { this.q.verdict(core, count, marks); }
  // A socket error reaches the engine (logged, counted; engine.ts).
  onReadable(cb: (err?: Error) => void): void { this.q.onReadable((err) => cb(err)); }
  stats(): Record<string, number> {
    const s = this.q.stats();
    const out = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Number(v)]));
    // What the kernel dropped before the socket, and the copy range it applies (kernel-queue.ts).
    const k = readKernelQueues().get(this.q.queue);
    if (k) Object.assign(out, { kernelWaiting: k.waiting, kernelQueueDropped: k.queueDropped, kernelUserDropped: k.userDropped, kernelCopyRange: k.copyRange });
    return out;
  }
  close(): void { this.q.close(); }
}

// ifindex of a device in this network namespace.
export function ifindexOf(dev: string): number {
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(dev)) throw new Error(`"${dev}" is not a network device name`);
  try {
    return Number(readFileSync(`/sys/class/net/${dev}/ifindex`, "utf8").trim());
  } catch {
    throw new Error(`no network device "${dev}" here (check the board config and the namespace)`);
  }
}

export function rolesFor(devs: { external?: string; internal?: string }): Record<number, number> {
  const roles: Record<number, number> = {};
  if (devs.external) roles[ifindexOf(devs.external)] = ABI.ROLE_EXTERNAL;
  if (devs.internal) roles[ifindexOf(devs.internal)] = ABI.ROLE_INTERNAL;
  return roles;
}
