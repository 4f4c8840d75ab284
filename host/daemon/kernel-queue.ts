// The kernel's own counters of the NFQUEUE queues bound in this network
// namespace, from /proc/net/netfilter/nfnetlink_queue (one line per bound
// queue, nfnetlink_queue.c seq_show):
//
//   queue_num  peer_portid  queue_total  copy_mode  copy_range  queue_dropped  user_dropped  id_sequence  1
//
//   queue_total     packets waiting for a verdict now
//   queue_dropped   packets the kernel did not queue because the queue held
//                   maxlen packets (dropped, or accepted uninspected with
//                   fail-open): the daemon never saw them
//   user_dropped    packets the kernel could not send to the socket (its
//                   receive buffer was full: the addon counts ENOBUFS once per
//                   overflow, this counts the packets)
//
// The addon only sees what reaches its socket, so these are the drops
// `portcullis stats` and the metrics would otherwise miss.
import { readFileSync } from "node:fs";

export interface KernelQueue {
  queue: number;
  portid: number; //      netlink port of the bound socket (0: none)
  waiting: number;
  copyMode: number; //    0 none, 1 meta, 2 packet (NFQNL_COPY_*)
  copyRange: number; //   bytes of each packet copied to the socket
  queueDropped: number;
  userDropped: number;
  idSequence: number; //  the last packet id handed out
}

export function parseKernelQueues(text: string): Map<number, KernelQueue> {
  const out = new Map<number, KernelQueue>();
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !f.slice(0, 8).every((x) => /^\d+$/.test(x))) continue;
    const n = f.map(Number);
    out.set(n[0]!, { queue: n[0]!, portid: n[1]!, waiting: n[2]!, copyMode: n[3]!, copyRange: n[4]!, queueDropped: n[5]!, userDropped: n[6]!, idSequence: n[7]! });
  }
  return out;
}

// This process's network namespace; an empty map when the file is missing
// (no nfnetlink_queue module loaded yet) or unreadable.
export function readKernelQueues(path = "/proc/self/net/netfilter/nfnetlink_queue"): Map<number, KernelQueue> {
  try {
    return parseKernelQueues(readFileSync(path, "utf8"));
  } catch {
    return new Map();
  }
}
