// Repeated measurements: median with min and max.
export interface Figure { median: number; min: number; max: number; runs: number }

export function figure(samples: number[]): Figure {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs: s.length };
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export function fmt(f: Figure, digits = 2): string {
  return `${f.median.toFixed(digits)} (${f.min.toFixed(digits)}-${f.max.toFixed(digits)})`;
}

// Nearest-rank percentile (p in 0..100) of the samples.
export function percentile(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
