// Structured logs: one JSON object per line, with a time and a level. Drop
// logs of rules that ask for logging are rate-limited per rule (a token
// bucket), and what was suppressed is reported when logging resumes.

export type Level = "debug" | "info" | "warn" | "error";

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

export class JsonLogger implements Logger {
  constructor(private readonly write: (line: string) => void = (l) => process.stdout.write(l)) {}
  log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    const rec = { ts: new Date().toISOString(), level, msg, ...fields };
    this.write(`${JSON.stringify(rec, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`);
  }
}

export class RateLimiter {
  private readonly buckets = new Map<number, { tokens: number; at: number; suppressed: number }>();
  constructor(private readonly perSecond = 10, private readonly burst = 20) {}

  // True when an event for `key` may be logged at `nowMs`; `suppressed` says
  // how many were dropped since the last one that was.
  take(key: number, nowMs: number): { ok: boolean; suppressed: number } {
    let b = this.buckets.get(key);
    if (!b) { b = { tokens: this.burst, at: nowMs, suppressed: 0 }; this.buckets.set(key, b); }
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.at) / 1000) * this.perSecond);
    b.at = nowMs;
    if (b.tokens < 1) { b.suppressed++; return { ok: false, suppressed: 0 }; }
    b.tokens -= 1;
    const suppressed = b.suppressed;
    b.suppressed = 0;
    return { ok: true, suppressed };
  }
}
