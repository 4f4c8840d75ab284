// The text forms of a limit's values, shared by the policy parser (limit:)
// and the operator's commands (block add --for): one reader each.
//   rate      N/s, N/m, N/h   (new flows per second, minute, hour)
//   duration  N with s, m, h or d (10m, 1h, 90s, 2d)

const UNIT_NS: Readonly<Record<string, bigint>> = { s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n, d: 86_400_000_000_000n };
export const MAX_RATE = 1_000_000; //            flows per period
export const MAX_DURATION_NS = 366n * UNIT_NS.d!; // a block of at most a year (0: until removed)

export interface Rate { count: number; periodNs: bigint; text: string }

// A rate, or a message saying why the text is not one.
export function parseRate(text: string): Rate | string {
  const m = /^\s*(\d+)\s*\/\s*(s|m|h)\s*$/.exec(text);
  if (!m) return `"${text}" is not a rate: write flows per time, like 20/s, 300/m or 1000/h`;
  const count = Number(m[1]);
  if (count === 0) return `rate "${text}" admits no flow at all: use a deny rule instead`;
  if (count > MAX_RATE) return `rate "${text}" is over ${MAX_RATE} per ${m[2]}: too high to be a limit`;
  return { count, periodNs: UNIT_NS[m[2]!]!, text: `${count}/${m[2]}` };
}

// A duration in ns, or a message.
export function parseDuration(text: string): bigint | string {
  const m = /^\s*(\d+)\s*(s|m|h|d)\s*$/.exec(text);
  if (!m) return `"${text}" is not a duration: write a number and s, m, h or d, like 90s, 10m or 1h`;
  const ns = BigInt(m[1]!) * UNIT_NS[m[2]!]!;
  if (ns === 0n) return `duration "${text}" is zero`;
  if (ns > MAX_DURATION_NS) return `duration "${text}" is over a year`;
  return ns;
}

// A duration as the shortest text that says it exactly (for check and explain).
export function durationText(ns: bigint): string {
  for (const u of ["d", "h", "m", "s"] as const) if (ns % UNIT_NS[u]! === 0n) return `${ns / UNIT_NS[u]!}${u}`;
  return `${Number(ns) / 1e9}s`;
}
