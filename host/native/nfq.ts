// Typed wrapper of the NFQUEUE addon (host/native/nfq.c, built by
// `npm run build:addon` into build/Release/nfq.node).
//
// One NfqQueue per queue number. Packets go straight from the netlink socket
// into the core's batch region; the loop the daemon runs is:
//
//   const q = NfqQueue.open({ queue: 0, failOpen: false });
//   q.setRoles({ [extIfindex]: ABI.ROLE_EXTERNAL, [intIfindex]: ABI.ROLE_INTERNAL });
//   q.onReadable(() => {              // once per wakeup, not per packet
//     let n;
//     while ((n = q.recv(core)) > 0) { // until the socket is empty
//       core.classify(n, now);
//       q.verdict(core, n);
//     }
//   });
//
// Everything runs on the JS thread that opened the queue. recv() never
// blocks; open() and close() do a few netlink round trips.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import * as ABI from "../core/abi.js";
import { type Core } from "../core/core.js";

export interface NfqOptions {
  queue: number; // NFQUEUE number, 0..65535 (iptables --queue-num)
  copyRange?: number; // bytes of each packet copied to userspace (default 65535: all)
  maxLen?: number; // kernel queue length limit (default 4096; kernel default 1024)
  failOpen?: boolean; // NFQA_CFG_F_FAIL_OPEN: accept when the queue is full (default false)
  gso?: boolean; // NFQA_CFG_F_GSO: take unsegmented GSO packets (default false)
  rcvbuf?: number; // socket receive buffer in bytes (default 8 MiB; SO_RCVBUFFORCE, else SO_RCVBUF)
  roles?: Record<number, number>; // ifindex -> ROLE_* (same as setRoles)
}

export interface NfqStats {
  packets: number; // packets written as descriptors
  bytes: number; // their wire lengths
  batches: number; // recv() calls that returned at least one packet
  wakeups: number; // onReadable callbacks
  verdictMsgs: number; // netlink verdict messages sent
  accepted: number; // packets whose ACCEPT / DROP was sent (a failed send counts in neither)
  dropped: number;
  offloaded: number; // accepts sent as NF_REPEAT with an offload mark (also in accepted)
  enobufs: number; // receive buffer overflows seen (the kernel dropped packets)
  recvErrors: number; // failed or malformed reads
  truncated: number; // packets with cap_len < wire_len (copy range)
  nlErrors: number; // error replies from the kernel (e.g. a verdict for an unknown id)
  requeuedAtSetup: number; // packets that arrived during open(), sent round again (NF_REPEAT)
  oversize: number; // packets larger than the whole DATA area, cut to it
  // Packets dropped without a verdict of the host's (each also in the daemon's
  // `undecided` counters, by cause): received but given no verdict before the
  // next recv() or close(); their message unreadable; their verdict unsendable.
  undecidedNoVerdict: number;
  undecidedUnparsed: number;
  undecidedSendFailed: number;
  sendErrors: number; // verdict messages that could not be sent
  sweeps: number; // DROP sweeps sent for packets owed a verdict (nfq.c, "verdicts")
  rcvbuf: number; // receive buffer the kernel granted (bytes, as SO_RCVBUF reports)
  rcvbufForced: boolean; // SO_RCVBUFFORCE worked (else capped by net.core.rmem_max)
}

// An error from the addon: `code` is the errno name (EPERM, EBUSY, ENOENT,
// EPROTONOSUPPORT, ...), the message says what to check.
export interface NfqError extends Error {
  code: string;
  errno?: number;
  op?: string;
  kernelCode?: string; // when code was refined (EPERM from the kernel, EBUSY reported)
}

interface NativeQueue {
  readonly fd: number;
  recv(mem: ArrayBuffer, descsOff: number, dataOff: number, dataCap: number, maxPackets: number): number;
  verdict(mem: ArrayBuffer, descsOff: number, verdictsOff: number, count: number, marks?: Uint32Array): number;
  onReadable(cb: ((err?: Error) => void) | null): void;
  setRoles(roles: Record<number, number>): void;
  stats(): NfqStats;
  close(): void;
  testHookFault(kind: NfqFault, count: number, after: number, errno: number): void;
}

// The addon's test hook (see testHookFault below).
export type NfqFault = "skip" | "send" | "recv" | "poll";

interface Addon {
  Queue: new (options: object) => NativeQueue;
  explain(code: string | number, op?: string, queue?: number): string;
  sdNotify(state: string): boolean;
  abiVersion: number;
}

export const ADDON_PATH = fileURLToPath(new URL("../../../build/Release/nfq.node", import.meta.url));

let addon: Addon | undefined;

// Loads the addon on first use, so that importing this module never fails.
export function loadAddon(): Addon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  try {
    addon = require(ADDON_PATH) as Addon;
  } catch (e) {
    const err = new Error(
      `the NFQUEUE addon is not built or does not load (${ADDON_PATH}): run npm run build:addon ` +
        `(it needs libnetfilter-queue-dev: bash host/setup/ensure.sh installs it) — ${(e as Error).message}`,
    ) as NfqError;
    err.code = "ENOADDON";
    throw err;
  }
  if (addon.abiVersion !== ABI.ABI_VERSION) {
    const v = addon.abiVersion;
    addon = undefined;
    const err = new Error(`the NFQUEUE addon writes ABI version ${v} descriptors, the host expects ${ABI.ABI_VERSION}: run npm run build:addon`) as NfqError;
    err.code = "EABI";
    throw err;
  }
  return addon;
}

// The message an addon error with this errno name (or number) carries.
export function explainNfqError(code: string | number, op = "open", queue = -1): string {
  return loadAddon().explain(code, op, queue);
}

// The descriptor layout handed to the addon: the C file hard-codes none.
export const NFQ_LAYOUT = {
  ABI_VERSION: ABI.ABI_VERSION,
  DESC_SIZE: ABI.DESC_SIZE,
  D_DATA_OFF: ABI.D_DATA_OFF,
  D_CAP_LEN: ABI.D_CAP_LEN,
  D_WIRE_LEN: ABI.D_WIRE_LEN,
  D_PACKET_ID: ABI.D_PACKET_ID,
  D_TS: ABI.D_TS,
  D_HW_PROTO: ABI.D_HW_PROTO,
  D_IN_ROLE: ABI.D_IN_ROLE,
  D_OUT_ROLE: ABI.D_OUT_ROLE,
  D_HOOK: ABI.D_HOOK,
  D_QUEUE: ABI.D_QUEUE,
  VERDICT_SIZE: ABI.VERDICT_SIZE,
  V_VERDICT: ABI.V_VERDICT,
  V_FLAGS: ABI.V_FLAGS,
  VF_OFFLOAD: ABI.VF_OFFLOAD,
} as const;

export class NfqQueue {
  private constructor(private readonly q: NativeQueue, readonly queue: number) {}

  // Binds the queue (needs root or CAP_NET_ADMIN in the network namespace).
  static open(options: NfqOptions): NfqQueue {
    const { Queue } = loadAddon();
    const { roles, ...rest } = options;
    const q = new NfqQueue(new Queue({ ...rest, layout: NFQ_LAYOUT }), options.queue);
    if (roles) q.setRoles(roles);
    return q;
  }

  // The netlink socket (-1 once closed); the addon polls it itself.
  get fd(): number {
    return this.q.fd;
  }

  // Interface index -> ROLE_*; replaces the whole table. Unlisted: ROLE_NONE.
  // For bridged ports the physical device's role wins over the bridge's.
  setRoles(roles: Record<number, number>): void {
    this.q.setRoles(roles);
  }

  // Calls cb once per wakeup of the socket (level-triggered: again on the next
  // loop turn if recv() left packets behind). null stops polling. A socket
  // error other than ENOBUFS comes as cb(err) (op "poll"), and polling goes
  // on; err.pollStopped is set when it could not (reading has ended).
  onReadable(cb: ((err?: Error) => void) | null): void {
    this.q.onReadable(cb);
  }

  // Receives up to maxPackets packets into the core's batch region (descriptors
  // and DATA); returns how many. 0: the socket is empty. A packet that does
  // not fit in the rest of DATA (dataCap bytes at most) waits in the handle
  // for the next call. The packets of the previous call that never got a
  // verdict() are dropped first (counted undecidedNoVerdict).
  recv(core: Core, maxPackets: number = ABI.MAX_BATCH, dataCap: number = ABI.DATA_CAP): number {
    return this.q.recv(core.memory.buffer, core.descsPtr, core.dataPtr, Math.min(dataCap, ABI.DATA_CAP), Math.min(maxPackets, ABI.MAX_BATCH));
  }

  // Sends the verdicts the core wrote for the first `count` packets of the
  // last recv() (the rest of them get DROP); marks[i] != 0 also sets that
  // packet's mark. Returns netlink messages sent. A message that cannot be
  // sent is counted (sendErrors, undecidedSendFailed) and its packets are
  // dropped, never accepted by a later batch verdict; it does not throw.
  verdict(core: Core, count: number, marks?: Uint32Array): number {
    return this.q.verdict(core.memory.buffer, core.descsPtr, core.verdictsPtr, count, marks);
  }

  stats(): NfqStats {
    return this.q.stats();
  }

  // Stops polling and unbinds: a batch still awaiting its verdicts gets DROP
  // (undecidedNoVerdict), and the kernel drops what is still queued.
  close(): void {
    this.q.close();
  }

  // TEST HOOK, for test/helpers/nfq-child.ts only: the next `count` events of
  // `kind` fail, once `after` more have gone through ("skip": a packet
  // message unreadable; "send": a verdict message fails with errno; "recv":
  // a datagram lost, recv() fails with errno; "poll": a wakeup reports the
  // socket error errno). Nothing in host/ calls it; no option reaches it.
  testHookFault(kind: NfqFault, count: number, o: { after?: number; errno?: number } = {}): void {
    this.q.testHookFault(kind, count, o.after ?? 0, o.errno ?? 5 /* EIO */);
  }
}
