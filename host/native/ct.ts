// Typed wrapper of the conntrack addon (host/native/ct.c, built by
// `npm run build:addon` into build/Release/ct.node): the kernel's connection
// tracking table of the caller's network namespace over ctnetlink, for flow
// offload (issue 15). Revocation and adoption go by connmark:
//
//   const ct = Conntrack.open({ events: true });
//   ct.onDestroy({ mark: 0x1, mask: 0x1 }, (ended, overflowed) => {
//     if (overflowed) resync(ct.dump({ mark: 0x1, mask: 0x1 })); // events were lost
//     for (const e of ended) endCoreEntry(e);                     // the kernel's entry ended
//   });
//   const { removed, ms } = ct.removeMarked({ mark: 0x1, mask: 0x1 });
//
// Every call but the events runs synchronously on the JS thread (netlink
// round trips: a dump or removal of 10,000 entries takes a few hundred ms at
// most). Needs root or CAP_NET_ADMIN in the namespace.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// The ORIGINAL direction of an entry. Ports are 0 for protocols without
// them; ICMP entries are reached by mark only (dump, removeMarked).
export interface CtTuple {
  family: 4 | 6;
  proto: number; // IP protocol number (6 TCP, 17 UDP, ...)
  src: string; // IPv4 dotted decimal, IPv6 RFC 5952 (compressed, lower case)
  dst: string;
  sport: number;
  dport: number;
}

export interface CtEntry extends CtTuple {
  mark: number; // the connmark
  id: number; // the kernel's entry id (CTA_ID)
  tcpState: string | null; // "ESTABLISHED", "TIME_WAIT", ...; null for non-TCP
  timeout: number; // seconds left
  packets: [number, number]; // [original, reply]; 0 while net.netfilter.nf_conntrack_acct is 0
  bytes: [number, number];
}

export interface CtNewEntry extends CtTuple {
  timeout: number; // seconds, 1..2^31-1
  mark?: number;
  tcpState?: string; // required for TCP: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2
}

export interface CtOptions {
  events?: boolean; // also a socket for destroy events (onDestroy); default false
  // Receive buffer of both sockets in bytes (SO_RCVBUFFORCE, else SO_RCVBUF;
  // 4096..2^30). Default 8 MiB for events, 1 MiB for requests.
  rcvbuf?: number;
}

export interface CtMarkFilter {
  mark: number; // entries with (connmark & mask) === mark
  mask: number;
}

export interface CtStats {
  events: number; // destroy events read (before the mark filter)
  overflows: number; // ENOBUFS on the event socket: events were lost, resync with dump()
  dumps: number; // dump requests sent (dump, removeMarked)
  errors: number; // requests the kernel refused or left unanswered, unreadable messages
  rcvbuf: number; // the event socket's receive buffer (bytes; 0 without events)
  rcvbufForced: boolean; // SO_RCVBUFFORCE worked (else capped by net.core.rmem_max)
}

// An error from the addon: `code` is the errno name (EPERM, ENOENT, EEXIST,
// ENOBUFS, ...) or ECLOSED (a call after close()); the message is one line.
export interface CtError extends Error {
  code: string;
  errno?: number;
  op?: string;
  removed?: number; // removeMarked: what was removed before the failure
}

export type CtDestroyCallback = (ended: CtEntry[], overflowed: boolean) => void;

interface NativeConntrack {
  dump(filter?: CtMarkFilter): CtEntry[];
  create(e: CtNewEntry | CtNewEntry[]): number;
  setMark(t: CtTuple, mark: number): void;
  remove(t: CtTuple & { id?: number }): boolean;
  removeMarked(filter: CtMarkFilter): { removed: number; ms: number };
  onDestroy(filter: CtMarkFilter | null, cb: CtDestroyCallback | null): void;
  stats(): CtStats;
  close(): void;
}

interface Addon {
  Conntrack: new (options: CtOptions) => NativeConntrack;
}

export const CT_ADDON_PATH = fileURLToPath(new URL("../../../build/Release/ct.node", import.meta.url));

let addon: Addon | undefined;

// A TypeError as the addon throws them (code EINVAL).
function typeError(msg: string): TypeError {
  return Object.assign(new TypeError(msg), { code: "EINVAL" });
}

function load(): Addon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(CT_ADDON_PATH) as Addon;
  } catch (e) {
    const err = new Error(
      `the conntrack addon is not built or does not load (${CT_ADDON_PATH}): run npm run build:addon ` +
        `(it needs libnetfilter-conntrack-dev: bash host/setup/ensure.sh installs it) — ${(e as Error).message.split("\n")[0]}`,
    ) as CtError;
    err.code = "ENOADDON";
    throw err;
  }
  return addon;
}

// False (never a throw) when build/Release/ct.node is missing or does not load.
export function available(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

export class Conntrack {
  private constructor(private readonly c: NativeConntrack) {}

  // A ctnetlink handle in the caller's network namespace; with events, also
  // a socket subscribed to destroy events from now on (read once onDestroy
  // is given a callback).
  static open(opts: CtOptions = {}): Conntrack {
    const { Conntrack: Native } = load();
    if (typeof opts !== "object" || opts === null) throw typeError("open(options): options must be an object");
    return new Conntrack(new Native({ ...opts, events: opts.events ?? false }));
  }

  // Every entry (IPv4 and IPv6), or with a filter only those whose
  // (mark & mask) === filter.mark, filtered by the kernel.
  dump(filter?: CtMarkFilter): CtEntry[] {
    return this.c.dump(filter);
  }

  // Inserts an entry (like conntrack -I; the reply tuple is the inverse).
  // EEXIST when the tuple is taken.
  create(e: CtNewEntry): void {
    if (Array.isArray(e)) throw typeError("create(entry): one entry (createMany(entries) for a list)");
    this.c.create(e);
  }

  // Inserts many entries in windows of 256 per netlink send (the benchmark's
  // 10,000 flows); returns how many. All are tried; the first error throws.
  createMany(entries: CtNewEntry[]): number {
    if (!Array.isArray(entries)) throw typeError("createMany(entries): entries must be an array");
    return this.c.create(entries);
  }

  // Sets one entry's connmark; ENOENT when there is none with this tuple.
  setMark(t: CtTuple, mark: number): void {
    this.c.setMark(t, mark);
  }

  // Deletes one entry; false when there was none. Given an entry with its id
  // (from dump or an event), only the entry with that id: false when another
  // entry has the tuple now (the kernel's id hashes the entry's address and
  // tuples, so one that reuses the freed memory too has the same id).
  remove(t: CtTuple & { id?: number }): boolean {
    return this.c.remove(t);
  }

  // Deletes every entry whose (mark & mask) === filter.mark: a filtered dump,
  // then one DELETE per entry (by tuple and id), 256 per send. Deletes whose
  // answer was lost (ENOBUFS) are settled by a second dump. `removed` counts
  // the entries this call deleted; `ms` is the time it took.
  removeMarked(filter: CtMarkFilter): { removed: number; ms: number } {
    return this.c.removeMarked(filter);
  }

  // cb(ended, overflowed) once per wakeup of the event socket, with every
  // destroyed entry read whose (mark & mask) === filter.mark (all with a null
  // filter); not called when none matched and nothing was lost. overflowed:
  // the socket overflowed (ENOBUFS, counted in stats().overflows) and events
  // were lost: resync with dump(). onDestroy(null, null) stops.
  onDestroy(filter: CtMarkFilter | null, cb: CtDestroyCallback | null): void {
    this.c.onDestroy(filter, cb);
  }

  stats(): CtStats {
    return this.c.stats();
  }

  // Closes both sockets; idempotent. Any other call afterwards throws
  // (code ECLOSED).
  close(): void {
    this.c.close();
  }
}
