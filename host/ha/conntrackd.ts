// conntrackd.conf from the board configuration's `ha.sync` (host/kernel/board-ha.ts):
// the kernel's conntrack entries (marks included, so offloaded flows keep
// their offload mark: host/daemon/offload.ts) replicated to the other
// appliance with FTFW over UDP on the link the operator named, as Debian's
// primary-backup example (/usr/share/doc/conntrackd/examples/sync/) does:
// the backup keeps what it receives in its external cache, and the hook
// (hook.ts) commits it into the kernel when keepalived makes it master.
//
// Only TCP is replicated: it is what the core offloads and what a strict
// backup (no pickup) would refuse mid-stream; UDP and ICMP flows the backup
// learns from their next packet. The filter ignores the appliance's own
// traffic, as Debian's example does: loopback, the virtual addresses and
// both ends of the sync link (a connection to the appliance itself ends on
// the appliance that dies; only forwarded flows can move).
// The lock file and the control socket are conntrackd's own under `runDir`,
// never the system instance's (/var/lock/conntrack.lock, /var/run/conntrackd.ctl).
import { join } from "node:path";
import { type BoardConfig } from "../kernel/board.js";
import { type HaAddress, vrrpSides } from "../kernel/board-ha.js";

export interface ConntrackdPaths { lock: string; socket: string }

export const conntrackdPaths = (runDir: string): ConntrackdPaths =>
  ({ lock: join(runDir, "conntrackd.lock"), socket: join(runDir, "conntrackd.ctl") });

// The device conntrackd sends on: the named side's NIC, or its own link.
export function syncDev(board: BoardConfig): string | null {
  const y = board.ha?.sync;
  if (!y) return null;
  return y.side ? board[y.side].dev : y.dev!;
}

const fam = (a: HaAddress): string => (a.family === 4 ? "IPv4" : "IPv6");

export function conntrackdConf(board: BoardConfig, runDir: string, header: string[]): string {
  const ha = board.ha, y = ha?.sync;
  if (!ha || !y) throw new Error("the board configuration has no ha.sync section");
  const p = conntrackdPaths(runDir);
  const ignore: HaAddress[] = [{ family: 4, addr: "127.0.0.1" }, { family: 6, addr: "::1" }];
  for (const s of vrrpSides(ha)) ignore.push(...ha[s]!.virtual);
  ignore.push(y.address, y.peer);
  const seen = new Set<string>();
  const out = [
    ...header.map((l) => `# ${l}`),
    "",
    "Sync {",
    "\tMode FTFW {",
    // The backup keeps the replicated entries in its external cache until
    // the hook commits them (conntrackd -c) at the transition to master.
    "\t\tDisableExternalCache off",
    "\t}",
    "\tUDP {",
    `\t\t${fam(y.address)}_address ${y.address.addr}`,
    `\t\t${fam(y.peer)}_Destination_Address ${y.peer.addr}`,
    `\t\tPort ${y.port}`,
    `\t\tInterface ${syncDev(board)}`,
    "\t\tSndSocketBuffer 1249280",
    "\t\tRcvSocketBuffer 1249280",
    "\t\tChecksum on",
    "\t}",
    "}",
    "",
    "General {",
    "\tHashSize 32768",
    "\tHashLimit 131072",
    "\tLogFile off",
    "\tSyslog on",
    `\tLockFile ${p.lock}`,
    "\tUNIX {",
    `\t\tPath ${p.socket}`,
    "\t}",
    "\tNetlinkBufferSize 2097152",
    "\tNetlinkBufferSizeMaxGrowth 8388608",
    "\tFilter From Userspace {",
    "\t\tProtocol Accept {",
    "\t\t\tTCP",
    "\t\t}",
    "\t\tAddress Ignore {",
    ...ignore.filter((a) => !seen.has(a.addr) && seen.add(a.addr)).map((a) => `\t\t\t${fam(a)}_address ${a.addr}`),
    "\t\t}",
    "\t}",
    "}",
  ];
  return `${out.join("\n")}\n`;
}
