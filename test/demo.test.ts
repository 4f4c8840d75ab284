// `portcullis demo` as a user runs it: the package's bin in a child process,
// over the reference capture and over bad input.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { describePacket } from "../host/packets/describe.js";
import { readCaptureFile } from "../host/pcap/read.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(root, "bin", "portcullis.js");
const REFERENCE = join(root, "test", "fixtures", "reference.pcap");
const records = readCaptureFile(REFERENCE);

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmpdir(), // the default capture is found relative to the package, not the working directory
    encoding: "utf8",
    env: { ...process.env, NODE_DISABLE_COLORS: "1" },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Count { packets: number; bytes: number }
interface DemoDoc {
  capture: { path: string; format: string; records: number };
  note: string;
  packets: Array<{ index: number; tsNs: string; time: number; hook: string; summary: string; verdict: string; reason: string }>;
  counters: { reasons: Record<string, Count>; verdicts: { drop: Count; accept: Count }; batches: number; packets: number; badBatches: number };
}

// Words a finished tool never prints.
const PLACEHOLDER = /undefined|NaN|null|\[object|TODO|TBD|FIXME|XXX|lorem/i;

test("demo --json: every packet of the reference capture, each drop/no_table, counters add up", () => {
  const r = run("demo", "--json");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, "");
  const doc = JSON.parse(r.stdout) as DemoDoc;
  const n = records.length;
  assert.is(doc.capture.records, n);
  assert.is(doc.capture.format, "pcap");
  assert.is(doc.capture.path, REFERENCE);
  assert.is(doc.packets.length, n);
  doc.packets.forEach((p, i) => {
    assert.is(p.index, i + 1);
    assert.is(p.verdict, "drop", `packet ${p.index}: ${p.summary}`);
    assert.is(p.reason, "no_table", `packet ${p.index}: ${p.summary}`);
    assert.is(p.tsNs, records[i]!.ts.toString());
    assert.is(p.summary, describePacket(records[i]!.ip, records[i]!.ethertype));
    assert.ok(["in", "out", "fwd"].includes(p.hook));
  });
  assert.is(doc.packets[0]!.time, 0);
  const c = doc.counters;
  assert.equal(Object.keys(c.reasons), ["no_table"]);
  assert.is(c.reasons.no_table!.packets, n);
  assert.is(c.verdicts.drop.packets, n);
  assert.is(c.verdicts.accept.packets, 0);
  assert.is(Object.values(c.reasons).reduce((s, x) => s + x.packets, 0), n);
  assert.is(c.verdicts.drop.packets + c.verdicts.accept.packets, n);
  assert.is(c.packets, n);
  assert.is(c.badBatches, 0);
  assert.is(c.batches, Math.ceil(n / 1024));
  // wire bytes of the IP packets: the frames less their 14-byte Ethernet headers
  assert.is(c.verdicts.drop.bytes, records.reduce((s, x) => s + x.wirelen - 14, 0));
  assert.match(doc.note, /no_table/);
  assert.not.match(r.stdout, PLACEHOLDER);
});

test("demo --json: summaries name the traffic and roles follow the proxy's address", () => {
  const doc = JSON.parse(run("demo", "--json").stdout) as DemoDoc;
  const has = (re: RegExp, hook: string): void => {
    assert.ok(doc.packets.some((p) => re.test(p.summary) && p.hook === hook), `${hook} ${re}`);
  };
  has(/^203\.0\.113\.10:\d+ > 203\.0\.113\.1:80 TCP \[S\]$/, "in");
  has(/^203\.0\.113\.1:443 > 203\.0\.113\.10:\d+ TCP \[S\.\]$/, "out");
  has(/^\[2001:db8:1::10\]:\d+ > \[2001:db8:1::1\]:443 TCP \[S\]$/, "in");
  has(/^\[2001:db8:1::1\]:22 > \[2001:db8:1::10\]:\d+ TCP \[R\.\]$/, "out");
  has(/^203\.0\.113\.1 > 203\.0\.113\.10 ICMP 3\/3 destination-unreachable\/port-unreachable about UDP 203\.0\.113\.10:\d+ > 203\.0\.113\.1:9$/, "out");
  has(/^2001:db8:1::1 > 2001:db8:1::10 ICMPv6 1\/4 destination-unreachable\/port-unreachable about UDP \[2001:db8:1::10\]:\d+ > \[2001:db8:1::1\]:9$/, "out");
  has(/^203\.0\.113\.1 > 203\.0\.113\.10 ICMP 3\/4 destination-unreachable\/frag-needed \(mtu 1280\) about UDP /, "out");
  has(/^2001:db8:1::1 > 2001:db8:1::10 ICMPv6 2\/0 packet-too-big \(mtu 1280\) about UDP /, "out");
  has(/^203\.0\.113\.10 > 203\.0\.113\.1 ICMP echo-request id \d+ seq 2 \[frag id 0x[0-9a-f]+ off 0 more\]$/, "in");
  has(/^203\.0\.113\.10 > 203\.0\.113\.1 ICMP \[frag id 0x[0-9a-f]+ off 2960\]$/, "in");
  has(/^2001:db8:1::10 > 2001:db8:1::1 ICMPv6 \[frag id 0x[0-9a-f]+ off 1448 more\]$/, "in");
  has(/^203\.0\.113\.10:\d+ > 203\.0\.113\.200:5004 UDP len 1400$/, "fwd");
});

test("demo --pcap (text): the explanation, one line per packet, then the counters", () => {
  const r = run("demo", "--pcap", REFERENCE);
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  assert.is(lines[0], `portcullis demo: ${REFERENCE} (pcap), release core`);
  assert.ok(lines.includes("Link layers: Ethernet"));
  assert.match(lines[1]!, /^No rule table is loaded yet, so every well-formed packet gets the default verdict \(drop\) with reason no_table/);
  const packetLines = lines.filter((l) => /^\s*\d+ {2}\d+\.\d{6} {2}(in |out|fwd) {2}.+ {2}=> (drop|accept) [a-z0-9_]+$/.test(l));
  assert.is(packetLines.length, records.length);
  assert.ok(packetLines.every((l) => l.endsWith("=> drop no_table")));
  assert.ok(lines.includes(`  no_table  ${records.length} packets, ${records.reduce((s, x) => s + x.wirelen - 14, 0)} bytes`), lines.slice(-6).join("\n"));
  assert.is(lines[lines.length - 1], `${records.length} packets in 1 batch`);
  assert.not.match(r.stdout, PLACEHOLDER);
});

test("demo --pcap reads a pcapng file too", () => {
  // one section, one raw-IPv4 interface (link type 228), one EPB: a SYN to 443
  const syn = Buffer.from("450000280001000040064e6bcb00710acb007101" + "9c4001bb000003e800000000500272105bcb0000", "hex");
  const blk = (type: number, body: Buffer): Buffer => {
    const len = 12 + ((body.length + 3) & ~3);
    const b = Buffer.alloc(len);
    b.writeUInt32LE(type, 0); b.writeUInt32LE(len, 4); body.copy(b, 8); b.writeUInt32LE(len, len - 4);
    return b;
  };
  const shb = blk(0x0a0d0d0a, Buffer.from("4d3c2b1a01000000ffffffffffffffff", "hex"));
  const idb = blk(1, Buffer.from("e400000000000000", "hex"));
  const epbHead = Buffer.alloc(20);
  epbHead.writeUInt32LE(0, 0); epbHead.writeUInt32LE(0, 4); epbHead.writeUInt32LE(1_000_000, 8);
  epbHead.writeUInt32LE(syn.length, 12); epbHead.writeUInt32LE(syn.length, 16);
  const dir = mkdtempSync(join(tmpdir(), "pcx-demo-"));
  try {
    const file = join(dir, "one.pcapng");
    writeFileSync(file, Buffer.concat([shb, idb, blk(6, Buffer.concat([epbHead, syn]))]));
    const r = run("demo", "--json", "--pcap", file);
    assert.is(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as DemoDoc;
    assert.is(doc.capture.format, "pcapng");
    assert.is(doc.packets.length, 1);
    assert.is(doc.packets[0]!.summary, "203.0.113.10:40000 > 203.0.113.1:443 TCP [S]");
    assert.is(doc.packets[0]!.hook, "in");
    assert.is(doc.packets[0]!.reason, "no_table");
    assert.is(doc.packets[0]!.tsNs, "1000000000");
    // a file that is not a capture: a clear error, no stack trace
    const junk = join(dir, "junk.pcap");
    writeFileSync(junk, "this is not a capture file\n");
    const bad = run("demo", "--pcap", junk);
    assert.is(bad.status, 1);
    assert.is(bad.stdout, "");
    assert.match(bad.stderr, /^portcullis: error: .*junk\.pcap: not a usable capture: magic 0x74686973 is neither pcap nor pcapng \(at byte offset 0\)\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("demo --pcap /nonexistent: non-zero exit and a clear message", () => {
  const r = run("demo", "--pcap", "/nonexistent");
  assert.is(r.status, 1);
  assert.is(r.stdout, "");
  assert.is(r.stderr, "portcullis: error: /nonexistent: no such capture file\n");
});

test("bad command lines: unknown flag, missing value, unknown or missing subcommand", () => {
  let r = run("demo", "--bogus");
  assert.is(r.status, 1);
  assert.match(r.stderr, /error: unknown option '--bogus'/);
  assert.is(r.stdout, "");
  r = run("demo", "--pcap");
  assert.is(r.status, 1);
  assert.match(r.stderr, /error: option '--pcap <file>' argument missing/);
  r = run("demo", "--ha", "--keep", "--mode", "host");
  assert.is(r.status, 1);
  assert.is(r.stderr, "portcullis: error: --ha does not take --keep, --mode (the pair is gateway mode, and is torn down at the end)\n");
  r = run("demo", "extra");
  assert.is(r.status, 1);
  assert.match(r.stderr, /error: too many arguments/);
  r = run("frobnicate");
  assert.is(r.status, 1);
  assert.match(r.stderr, /error: unknown command 'frobnicate'/);
  r = run();
  assert.ok(r.status !== 0);
  assert.match(r.stderr, /Usage: portcullis/);
  r = run("demo", "--help");
  assert.is(r.status, 0);
  assert.match(r.stdout, /--pcap <file>/);
  assert.match(r.stdout, /--json/);
  assert.match(r.stdout, /--ha /);
});

test("packet summaries never throw and never print placeholders, however short the packet", () => {
  for (const rec of records) {
    for (let n = 0; n <= rec.ip.length; n += n < 80 ? 1 : 97) {
      const s = describePacket(rec.ip.subarray(0, n), rec.ethertype);
      assert.type(s, "string");
      assert.ok(s.length > 0);
      assert.not.match(s, PLACEHOLDER, `${n} bytes of ${describePacket(rec.ip)}: ${s}`);
    }
  }
  assert.is(describePacket(new Uint8Array([0x08, 0x06]), 0x0806), "ethertype 0x0806, 2 bytes");
  assert.is(describePacket(new Uint8Array(0)), "not IP (version 0, 0 bytes)");
});

test.run();
