// The NFQUEUE copy range: how many bytes of each queued packet the kernel
// copies to the daemon. The verdict goes back without the packet (the kernel
// keeps it), so the range only bounds what the core can read: headers. The
// default covers every header the core reads in every case it accepts, with
// room to spare:
//   IPv4 (options: 60) + TCP (options: 60)                        120
//   IPv4 60 + ICMP 8 + quoted IPv4 60 + quoted ports/id 8         136
//   IPv6 40 + TCP 60, leaving 156 bytes of extension headers      256
//   IPv6 40 + ICMPv6 8 + quoted IPv6 40 + 8, leaving 160          256
// A packet whose headers run past the range is dropped as snap_truncated
// (counted): the fail-closed answer, never a guess. IPv6 with longer
// extension chains (the core walks up to 8 headers of up to 2 KiB each) needs
// a larger range: `copy_range:` in the board config, `--copy-range` for run
// and replay. 65535 copies whole packets.
import { InvalidArgumentError } from "commander";

export const DEFAULT_COPY_RANGE = 256;
export const MIN_COPY_RANGE = 64;
export const MAX_COPY_RANGE = 65535;

export const COPY_RANGE_RULE = `a whole number of bytes from ${MIN_COPY_RANGE} to ${MAX_COPY_RANGE}`;

// True for a whole number the kernel and the addon take as a copy range here.
export function isCopyRange(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= MIN_COPY_RANGE && n <= MAX_COPY_RANGE;
}

// --copy-range BYTES, the flag's parser for run and replay.
export function parseCopyRangeArg(v: string): number {
  if (!/^\d{1,6}$/.test(v) || !isCopyRange(Number(v))) throw new InvalidArgumentError(`the copy range must be ${COPY_RANGE_RULE}`);
  return Number(v);
}
