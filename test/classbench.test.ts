// ClassBench (../shared/classbench/hypersplit): every trace line classified
// by the core's first-match classifier must name the rule the trace's last
// column names. All twelve sets, 100 to 10K rules; and the command itself.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runClassBench } from "../host/commands/classbench.js";
import { MAX_OPERATOR_FILE } from "../host/io/operator-file.js";
import { ClassBenchError, maskedRanges, parseFilter, parseTrace } from "../host/rules/classbench.js";

const DIR = join(process.cwd(), "..", "shared", "classbench", "hypersplit");
const SETS = ["acl1_100", "fw1_100", "ipc1_100", "acl1_1K", "fw1_1K", "ipc1_1K", "acl1", "fw1", "ipc1", "acl1_10K", "fw1_10K", "ipc1_10K"];
const tracePath = (name: string): string => join(DIR, existsSync(join(DIR, `${name}.trace`)) ? `${name}.trace` : `${name}.trace.gz`);

test("the ClassBench data is beside the checkout", () => {
  assert.ok(existsSync(DIR), `${DIR} is missing: CI runs with ../shared beside the clone`);
});

for (const name of SETS) {
  test(`${name}: 0 mismatches over the whole trace`, () => {
    const run = runClassBench(join(DIR, `${name}.rules`), tracePath(name));
    assert.ok(run.checked > 900, `checked ${run.checked}`);
    assert.is(run.mismatched, 0, `first mismatch at line ${run.firstMismatch}`);
    if (name.endsWith("10K")) {
      assert.ok(run.tableBytes < 64 * 1024 * 1024, `table ${run.tableBytes} bytes`);
    }
  });
}

test("both filter forms: 9 tokens, and tabs with a flags field", () => {
  const a = parseFilter("@192.0.2.0/24 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF", 0);
  const b = parseFilter("@192.0.2.0/24\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0200/0x0200", 1);
  assert.equal(a.src, { v4: [[0xc0000200, 0xc00002ff]], v6: [] });
  assert.equal(a.dport, [[80, 80]]);
  assert.equal(a.protos, [6]);
  assert.is(a.tcpFlags, null);
  assert.equal(b.src, a.src);
  assert.equal(b.dport, a.dport);
  assert.is(b.tcpFlags, null, "0x0200 is outside the TCP flag byte");
  const c = parseFilter("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 0x0012/0x00ff", 2);
  assert.is(c.protos, null);
  assert.equal(c.tcpFlags, { value: 0x12, mask: 0xff });
  // Host bits below the prefix are masked.
  assert.equal(parseFilter("@10.1.2.3/8 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00", 3).src, { v4: [[0x0a000000, 0x0affffff]], v6: [] });
});

test("malformed filters and traces are refused with file:line", () => {
  const bad = [
    "192.0.2.0/24 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF",
    "@192.0.2.0/33 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF",
    "@192.0.2.300/24 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF",
    "@192.0.2.0/24 0.0.0.0/0 0 : 70000 80 : 80 0x06/0xFF",
    "@192.0.2.0/24 0.0.0.0/0 9 : 1 80 : 80 0x06/0xFF",
    "@192.0.2.0/24 0.0.0.0/0 0 : 65535 80 : 80 tcp",
    "@192.0.2.0/24 0.0.0.0/0 0 : 65535",
  ];
  for (const line of bad) {
    assert.throws(() => parseFilter(line, 4, "f.rules"), (e: unknown) => e instanceof ClassBenchError && e.code === "EBADRULE" && /^f\.rules:5: /.test(e.message), line);
  }
  assert.throws(() => parseTrace("1 2 3 4 6 1\n1 2 3\n", "t"), (e: unknown) => e instanceof ClassBenchError && /^t:2: /.test(e.message));
  assert.throws(() => parseTrace("1 2 3 4 256 1\n", "t"), /out of range/);
});

test("the command: indices per line, --check summary, errors", () => {
  const tmp = mkdtempSync(join(tmpdir(), "pc-cb-"));
  try {
    const rules = join(tmp, "r");
    writeFileSync(rules, "@10.0.0.0/8 0.0.0.0/0 0 : 65535 22 : 22 0x06/0xFF\n@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00\n");
    const trace = join(tmp, "t");
    // 10.0.0.1 -> any:22 tcp matches rule 1; udp to 22 matches rule 2; the third line claims rule 1 wrongly.
    writeFileSync(trace, "167772161 1 1000 22 6 1\n167772161 1 1000 22 17 2\n167772161 1 1000 23 6 1\n");
    const run = (...args: string[]) => spawnSync(process.execPath, ["bin/portcullis.js", "classbench", ...args], { encoding: "utf8" });
    const plain = run(rules, trace);
    assert.is(plain.status, 0, plain.stderr);
    assert.is(plain.stdout, "1\n2\n2\n");
    const check = run(rules, trace, "--check");
    assert.is(check.status, 1);
    assert.match(check.stdout, /^checked 3, mismatched 1$/m);
    assert.match(check.stdout, /first mismatch at trace line 3/);
    const missing = run(join(tmp, "nope"), trace);
    assert.is(missing.status, 1);
    assert.match(missing.stderr, /nope: no such filter set file/);
    // A trace that is a FIFO is refused without waiting for a writer; a gzip
    // that expands past the file limit is refused, not decompressed whole.
    const fifo = join(tmp, "fifo");
    assert.is(spawnSync("mkfifo", [fifo]).status, 0);
    const f = spawnSync(process.execPath, ["bin/portcullis.js", "classbench", rules, fifo], { encoding: "utf8", timeout: 20_000 });
    assert.is(f.status, 1);
    assert.match(f.stderr, /^portcullis: error: .*fifo: the trace must be a regular file, not a FIFO\n$/);
    const bomb = join(tmp, "bomb.gz");
    writeFileSync(bomb, gzipSync(Buffer.alloc(MAX_OPERATOR_FILE + 1, 0x31)));
    const b = run(rules, bomb);
    assert.is(b.status, 1);
    assert.match(b.stderr, new RegExp(`^portcullis: error: cannot decompress trace .*bomb\\.gz: it decompresses to more than ${MAX_OPERATOR_FILE} bytes\n$`));
    const flag = run(rules, trace, "--bogus");
    assert.is(flag.status, 1);
    assert.match(flag.stderr, /unknown option/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

// ---- the tenth field: ICMP type/code for ICMP rules, TCP flags for TCP rules ----

// A set of our own in that format and a trace with the packets' values in
// its flags column (top 16 bits), the expected column by brute force.
let seed = 20261201;
const rnd = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % n; };
const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;

interface BfRule { src: [number, number]; dst: [number, number]; sp: [number, number]; dp: [number, number]; pv: number; pm: number; fv: number | null; fm: number }
const NETS: Array<[string, number]> = [["0.0.0.0", 0], ["192.0.2.0", 24], ["192.0.2.128", 25], ["198.51.100.0", 24], ["203.0.113.0", 24], ["203.0.113.7", 32]];
const ip = (s: string): number => s.split(".").reduce((a, o) => a * 256 + Number(o), 0);
const span = ([a, len]: [string, number]): [number, number] => { const lo = ip(a); return [lo, lo + 2 ** (32 - len) - 1]; };
// ICMP value/masks: type and code, type only, code only (not a run of high bits), any.
const ICMP_FIELDS: Array<[number, number]> = [[0x0303, 0xffff], [0x0304, 0xffff], [0x0800, 0xff00], [0x0b00, 0xff00], [0x0003, 0x00ff], [0x0300, 0xff00], [0x0000, 0x0000]];
const TCP_FIELDS: Array<[number, number]> = [[0x0002, 0x0012], [0x0010, 0x0010], [0x0012, 0x00ff], [0x0000, 0x0004], [0x0000, 0x0000]];

function makeSet(n: number): { lines: string[]; rules: BfRule[] } {
  const lines: string[] = [], rules: BfRule[] = [];
  const hex = (v: number, w: number): string => `0x${v.toString(16).padStart(w, "0").toUpperCase()}`;
  for (let i = 0; i < n; i++) {
    const last = i === n - 1;
    // Narrow rules (never 0.0.0.0/0 on both ends) so that many packets reach the later ones.
    const s = last ? NETS[0]! : pick(NETS.slice(1)), d = last ? NETS[0]! : pick(NETS);
    const kind = last ? "any" : pick(["icmp", "icmp", "icmp", "tcp", "tcp", "udp"] as const);
    const sp: [number, number] = kind === "tcp" || kind === "udp" ? pick([[0, 65535], [1024, 65535]] as Array<[number, number]>) : [0, 65535];
    const dp: [number, number] = kind === "tcp" || kind === "udp" ? pick([[0, 65535], [80, 80], [443, 443], [53, 53]] as Array<[number, number]>) : [0, 65535];
    const [pv, pm] = kind === "icmp" ? [1, 0xff] : kind === "tcp" ? [6, 0xff] : kind === "udp" ? [17, 0xff] : [0, 0];
    const field = kind === "icmp" ? pick(ICMP_FIELDS) : kind === "tcp" ? pick(TCP_FIELDS) : null;
    // UDP and "any" rules come in the 9-token form, the others tab-separated with the tenth field.
    const base = [`@${s[0]}/${s[1]}`, `${d[0]}/${d[1]}`, `${sp[0]} : ${sp[1]}`, `${dp[0]} : ${dp[1]}`, `${hex(pv, 2)}/${hex(pm, 2)}`];
    lines.push(field ? [...base, `${hex(field[0], 4)}/${hex(field[1], 4)}`].join("\t") : base.join(" "));
    rules.push({ src: span(s), dst: span(d), sp, dp, pv, pm, fv: field ? field[0] : null, fm: field ? field[1] : 0 });
  }
  return { lines, rules };
}

// First match by brute force: ICMP rules compare the whole 16-bit value,
// TCP rules its low byte (the TCP flag byte).
function bruteForce(rules: BfRule[], h: { src: number; dst: number; sport: number; dport: number; proto: number; flags: number }): number {
  const inR = (v: number, [lo, hi]: [number, number]): boolean => v >= lo && v <= hi;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (!inR(h.src, r.src) || !inR(h.dst, r.dst) || !inR(h.sport, r.sp) || !inR(h.dport, r.dp) || (h.proto & r.pm) !== r.pv) continue;
    if (r.fv !== null) {
      const icmpRule = r.pv === 1 && r.pm === 0xff;
      const m = icmpRule ? r.fm : r.fm & 0xff;
      if ((h.flags & m) !== (r.fv & m)) continue;
    }
    return i + 1;
  }
  return 0;
}

test("ICMP type/code and TCP flags in the tenth field: our own set agrees with a brute-force first match, line by line", () => {
  const { lines, rules } = makeSet(200);
  const trace: string[] = [];
  const headers: Array<{ src: number; dst: number; sport: number; dport: number; proto: number; flags: number }> = [];
  const addrs = ["192.0.2.5", "192.0.2.200", "198.51.100.9", "203.0.113.7", "203.0.113.99", "10.0.0.1"].map(ip);
  const values = [0x0303, 0x0304, 0x0301, 0x0800, 0x0805, 0x0b00, 0x0b01, 0x0003, 0x0103, 0x0000, 0x0002, 0x0012, 0x0010, 0x0014, 0x0004];
  let decidedByField = 0;
  for (let i = 0; i < 3000; i++) {
    const proto = pick([1, 1, 6, 6, 17, 47]);
    const ports = proto === 6 || proto === 17;
    const h = {
      src: pick(addrs), dst: pick(addrs), sport: ports ? pick([0, 1000, 40000]) : 0, dport: ports ? pick([80, 443, 53, 22]) : 0,
      proto, flags: proto === 1 || proto === 6 ? pick(values) : 0,
    };
    const want = bruteForce(rules, h);
    if (want !== bruteForce(rules.map((r) => ({ ...r, fv: null })), h)) decidedByField++;
    headers.push(h);
    // The packet's value in the column's top 16 bits; the low 16 bits are noise the reader must ignore.
    trace.push(`${h.src} ${h.dst} ${h.sport} ${h.dport} ${h.proto} ${h.flags * 0x10000 + rnd(0x10000)} ${want}`);
  }
  assert.ok(decidedByField > 300, `the tenth field changes the answer on ${decidedByField} lines`);
  const icmpRules = lines.filter((l) => l.includes("0x01/0xFF\t")).length;
  assert.ok(icmpRules > 50, `${icmpRules} ICMP rules with the field`);
  const tmp = mkdtempSync(join(tmpdir(), "pc-cb-icmp-"));
  try {
    const rp = join(tmp, "icmp.rules"), tp = join(tmp, "icmp.trace");
    writeFileSync(rp, `${lines.join("\n")}\n`);
    writeFileSync(tp, `${trace.join("\n")}\n`);
    const run = runClassBench(rp, tp);
    assert.is(run.checked, 3000);
    assert.is(run.mismatched, 0, `first mismatch at line ${run.firstMismatch}: ${trace[(run.firstMismatch ?? 1) - 1]}`);
    const cli = spawnSync(process.execPath, ["bin/portcullis.js", "classbench", rp, tp, "--check"], { encoding: "utf8" });
    assert.is(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^checked 3000, mismatched 0$/m);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("the tenth field of an ICMP rule becomes ICMP type/code ranges; of a TCP rule, TCP flags", () => {
  const portUnreach = parseFilter("@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x01/0xFF\t0x0303/0xFFFF", 0);
  assert.equal(portUnreach.icmp, [[0x0303, 0x0303]]);
  assert.is(portUnreach.tcpFlags, null);
  assert.equal(parseFilter("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x01/0xFF 0x0800/0xFF00", 1).icmp, [[0x0800, 0x08ff]]);
  assert.equal(maskedRanges(0x0003, 0x00ff).length, 256, "code 3 of every type: one range per type");
  assert.equal(maskedRanges(0x0003, 0x00ff)[1], [0x0103, 0x0103]);
  assert.is(parseFilter("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x01/0xFF 0x0000/0x0000", 2).icmp, null);
  assert.is(parseFilter("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x01/0xFF", 3).icmp, null);
  const syn = parseFilter("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xFF 0x0002/0x0012", 4);
  assert.equal([syn.tcpFlags, syn.icmp], [{ value: 2, mask: 0x12 }, null]);
  // The trace's sixth column of seven: the packet's value in its top 16 bits.
  assert.equal(parseTrace("1 2 0 0 1 50528256 7\n1 2 3 4 6 1\n", "t").map((l) => [l.flags, l.expected]), [[0x0303, 7], [0, 1]]);
});

test.run();
