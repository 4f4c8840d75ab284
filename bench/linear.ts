// The plain baseline: the same ClassBench rules scanned one by one in
// TypeScript, first match wins. Typed arrays, no allocation per lookup.
import { type RuleSpec } from "../host/rules/model.js";
import { type Header } from "../host/rules/headers.js";

export class LinearScan {
  private readonly n: number;
  private readonly f: Float64Array; // 8 bounds per rule
  private readonly protoOk: Uint8Array; // 256 per rule

  constructor(rules: ReadonlyArray<RuleSpec>) {
    this.n = rules.length;
    this.f = new Float64Array(this.n * 8);
    this.protoOk = new Uint8Array(this.n * 256);
    rules.forEach((r, i) => {
      const s = r.src?.v4[0] ?? [0, 0xffffffff], d = r.dst?.v4[0] ?? [0, 0xffffffff];
      const sp = r.sport?.[0] ?? [0, 65535], dp = r.dport?.[0] ?? [0, 65535];
      this.f.set([s[0], s[1], d[0], d[1], sp[0], sp[1], dp[0], dp[1]], i * 8);
      for (let p = 0; p < 256; p++) this.protoOk[i * 256 + p] = r.protos === null || r.protos.includes(p) ? 1 : 0;
    });
  }

  // 0-based index of the first matching rule, -1 for none.
  match(src: number, dst: number, sport: number, dport: number, proto: number): number {
    const f = this.f, ok = this.protoOk;
    for (let i = 0, o = 0; i < this.n; i++, o += 8) {
      if (src >= f[o]! && src <= f[o + 1]! && dst >= f[o + 2]! && dst <= f[o + 3]! &&
          sport >= f[o + 4]! && sport <= f[o + 5]! && dport >= f[o + 6]! && dport <= f[o + 7]! &&
          ok[i * 256 + proto] === 1) return i;
    }
    return -1;
  }

  classify(headers: ReadonlyArray<Header>, out: Int32Array): void {
    for (let i = 0; i < headers.length; i++) {
      const h = headers[i]!;
      out[i] = this.match(h.src, h.dst, h.sport, h.dport, h.proto);
    }
  }
}
