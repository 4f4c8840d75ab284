// ClassBench filter sets and header traces (Taylor & Turner). Filters:
//   @srcIP/len dstIP/len spLo : spHi dpLo : dpHi proto/mask [flags/mask]
// separated by spaces or tabs; the position of a line is its priority. The
// tenth field is 16 bits: for an ICMP rule (protocol 0x01/0xFF) the ICMP
// type << 8 | code (sets generated from the acl seeds: 0x0303/0xFFFF is
// type 3, code 3), matched as (value & mask) == rule value; for other rules
// the TCP flags, of which the core matches the low byte (the TCP flag byte).
// Traces: "src dst sport dport proto [flags ...] matchId", decimal; plain or
// gzip. With 7 or more columns the sixth holds the packet's 16-bit value in
// its top 16 bits (value >>> 16): the ICMP type/code or the TCP flags.
import { MAX_OPERATOR_FILE, OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { gunzipSync } from "node:zlib";
import { type Range32, type RuleSpec, type TableSpec } from "./model.js";

export class ClassBenchError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "ClassBenchError";
  }
}

function ipv4(text: string, where: string): number {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new ClassBenchError("EBADRULE", `${where}: "${text}" is not a dotted-quad IPv4 address`);
  }
  return parts.reduce((a, p) => a * 256 + Number(p), 0);
}

function prefixRange(text: string, where: string): [number, number] {
  const [addr, lenText] = text.split("/");
  const len = Number(lenText);
  if (addr === undefined || !/^\d+$/.test(lenText ?? "") || len > 32) {
    throw new ClassBenchError("EBADRULE", `${where}: "${text}" is not an IPv4 prefix`);
  }
  const a = ipv4(addr, where);
  const size = 2 ** (32 - len);
  const lo = a - (a % size);
  return [lo, lo + size - 1];
}

function port(text: string, where: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) throw new ClassBenchError("EBADRULE", `${where}: "${text}" is not a port`);
  return Number(text);
}

function hexPair(text: string, max: number, what: string, where: string): { value: number; mask: number } {
  const m = /^0x([0-9a-f]+)\/0x([0-9a-f]+)$/i.exec(text);
  if (!m) throw new ClassBenchError("EBADRULE", `${where}: "${text}" is not a hex ${what} value/mask`);
  const value = parseInt(m[1]!, 16), mask = parseInt(m[2]!, 16);
  if (value > max || mask > max) throw new ClassBenchError("EBADRULE", `${where}: ${what} "${text}" out of range`);
  return { value: value & mask, mask };
}

// The 16-bit values v with (v & mask) == value, as sorted inclusive ranges:
// one range when the mask is a run of high bits, else every value's.
export function maskedRanges(value: number, mask: number): Range32[] {
  const low = ~mask & 0xffff;
  if ((low & (low + 1)) === 0) return [[value, value | low]];
  const out: Array<[number, number]> = [];
  for (let v = 0; v <= 0xffff; v++) {
    if ((v & mask) !== value) continue;
    const last = out[out.length - 1];
    if (last && last[1] === v - 1) last[1] = v; else out.push([v, v]);
  }
  return out;
}

// One ClassBench filter as a rule spec. `index` is 0-based.
export function parseFilter(line: string, index: number, file = "rules"): RuleSpec {
  const where = `${file}:${index + 1}`;
  const text = line.trim();
  if (!text.startsWith("@")) throw new ClassBenchError("EBADRULE", `${where}: a filter starts with "@"`);
  // "lo : hi" has spaces around the colon in the 9-token form; normalise.
  const tokens = text.slice(1).replace(/\s*:\s*/g, ":").split(/\s+/);
  if (tokens.length !== 5 && tokens.length !== 6) {
    throw new ClassBenchError("EBADRULE", `${where}: expected src dst sport dport proto [flags], found ${tokens.length} fields`);
  }
  const [src, dst, sp, dp, pr, fl] = tokens as [string, string, string, string, string, string | undefined];
  const ports = (t: string): [number, number] => {
    const [lo, hi] = t.split(":");
    if (lo === undefined || hi === undefined) throw new ClassBenchError("EBADRULE", `${where}: "${t}" is not a port range lo : hi`);
    const l = port(lo, where), h = port(hi, where);
    if (l > h) throw new ClassBenchError("EBADRULE", `${where}: port range ${l} : ${h} is empty`);
    return [l, h];
  };
  const proto = hexPair(pr, 0xff, "protocol", where);
  const protos: number[] = [];
  for (let v = 0; v < 256; v++) if ((v & proto.mask) === proto.value) protos.push(v);
  const flags = fl === undefined ? null : hexPair(fl, 0xffff, "flags", where);
  const icmp = proto.value === 1 && proto.mask === 0xff;
  return {
    action: index % 2 === 0 ? "allow" : "deny",
    log: false,
    ctx: null,
    src: { v4: [prefixRange(src, where)], v6: [] },
    dst: { v4: [prefixRange(dst, where)], v6: [] },
    protos: protos.length === 256 ? null : protos,
    sport: [ports(sp)],
    dport: [ports(dp)],
    // ClassBench flags are 16-bit; the core matches the TCP flag byte, or
    // for ICMP rules the whole value as the ICMP type/code.
    tcpFlags: icmp || flags === null || (flags.mask & 0xff) === 0 ? null : { value: flags.value & 0xff, mask: flags.mask & 0xff },
    icmp: icmp && flags !== null && flags.mask !== 0 ? maskedRanges(flags.value, flags.mask) : null,
    line: index + 1,
    info: `${file}:${index + 1} ${text}`,
  };
}

export function readFilters(path: string): TableSpec {
  let text: string;
  try {
    text = readOperatorFile(path, "filter set").toString("utf8");
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    throw new ClassBenchError("ENOENT", e.message);
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  return { rules: lines.map((l, i) => parseFilter(l, i, path)), defaultAction: "deny" };
}

// flags: the packet's 16-bit flags value (ICMP type/code or TCP flags), 0
// when the trace has no flags column.
export interface TraceLine { src: number; dst: number; sport: number; dport: number; proto: number; flags: number; expected: number | null }

export function parseTrace(text: string, file = "trace"): TraceLine[] {
  const out: TraceLine[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === "") return;
    const f = t.split(/\s+/);
    if (f.length < 5 || f.some((x) => !/^\d+$/.test(x))) {
      throw new ClassBenchError("EBADTRACE", `${file}:${i + 1}: expected 5 or more decimal fields: src dst sport dport proto [... matchId]`);
    }
    const n = f.map(Number);
    const flags = f.length >= 7 ? n[5]! : 0;
    if (n[0]! > 0xffffffff || n[1]! > 0xffffffff || n[2]! > 0xffff || n[3]! > 0xffff || n[4]! > 0xff || flags > 0xffffffff) {
      throw new ClassBenchError("EBADTRACE", `${file}:${i + 1}: a field is out of range`);
    }
    out.push({
      src: n[0]!, dst: n[1]!, sport: n[2]!, dport: n[3]!, proto: n[4]!, flags: Math.floor(flags / 0x10000),
      expected: f.length >= 6 ? n[f.length - 1]! : null,
    });
  });
  return out;
}

export function readTrace(path: string): TraceLine[] {
  let raw: Buffer;
  try {
    raw = readOperatorFile(path, "trace");
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    throw new ClassBenchError("ENOENT", e.message);
  }
  const gz = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b;
  let text: string;
  try {
    // Decompressed, a trace is held to the same limit as a file: a small
    // gzip can expand to gigabytes.
    text = (gz ? gunzipSync(raw, { maxOutputLength: MAX_OPERATOR_FILE }) : raw).toString("utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ERR_BUFFER_TOO_LARGE" ? `it decompresses to more than ${MAX_OPERATOR_FILE} bytes` : err.message;
    throw new ClassBenchError("EBADTRACE", `cannot decompress trace ${path}: ${why}`);
  }
  return parseTrace(text, path);
}
