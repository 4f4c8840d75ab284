// Runs bare IPv4 5-tuples through the core's classify_headers (layout in
// assembly/rules/headers.ts). Returns 0-based rule indices, -1 for no match.
import * as ABI from "../core/abi.js";
import { type Core } from "../core/core.js";
import { HEADER_SIZE } from "./format.js";

// flags: a ClassBench trace's 16-bit flags value: the TCP flag byte is its
// low byte, the ICMP type << 8 | code all of it (both 0 when absent).
export interface Header { src: number; dst: number; sport: number; dport: number; proto: number; flags?: number }

export const MAX_HEADERS = Math.floor(ABI.DATA_CAP / (HEADER_SIZE + 4));

export function classifyHeaders(core: Core, headers: ReadonlyArray<Header>, ctx = 0, chunk = MAX_HEADERS): Int32Array {
  const out = new Int32Array(headers.length);
  const v = core.view;
  const base = core.dataPtr;
  for (let start = 0; start < headers.length; start += chunk) {
    const n = Math.min(chunk, headers.length - start);
    for (let i = 0; i < n; i++) {
      const h = headers[start + i]!;
      const at = base + i * HEADER_SIZE;
      v.setUint32(at, h.src, true);
      v.setUint32(at + 4, h.dst, true);
      v.setUint16(at + 8, h.sport, true);
      v.setUint16(at + 10, h.dport, true);
      v.setUint8(at + 12, h.proto);
      v.setUint8(at + 13, (h.flags ?? 0) & 0xff);
      v.setUint16(at + 14, (h.flags ?? 0) & 0xffff, true);
    }
    const r = core.x.classify_headers(n, ctx);
    if (r !== n) throw new Error(r === -1 ? "classify_headers refused: no live table or too many headers" : `classify_headers returned ${r}`);
    const res = new Int32Array(core.memory.buffer, base + n * HEADER_SIZE, n);
    out.set(res, start);
  }
  return out;
}
