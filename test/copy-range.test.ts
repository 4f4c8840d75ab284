// The header-only copy range (host/kernel/copy-range.ts): the daemon's queues
// copy DEFAULT_COPY_RANGE bytes of each packet, and the core must decide
// every packet as it does with the whole packet, or drop it as
// snap_truncated when its headers run past the range (never accept it, never
// pick another rule):
//  - packets at the boundary: the longest IPv4 headers, an IPv6 chain that
//    ends just inside the range and one that ends just past it;
//  - the reference capture replayed (host and gateway mode) with the range
//    and with whole packets: the same answer for every packet;
//  - 100,000 fuzz packets through two cores in step, one given whole
//    packets, the other the first DEFAULT_COPY_RANGE bytes of each.
// The daemon asks the kernel for the default, the board's copy_range: or
// --copy-range (read back from /proc/net/netfilter/nfnetlink_queue); a
// range the kernel does not take is refused in one line. The appliance
// tests (appliance.test.ts) run the daemon with the default through the
// kernel, and check the queues' copy range there.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core, type PacketMeta } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { parseKernelQueues } from "../host/daemon/kernel-queue.js";
import { parseBoardText } from "../host/kernel/board.js";
import { DEFAULT_COPY_RANGE } from "../host/kernel/copy-range.js";
import { ipv4, ipv6, NH_DSTOPTS, optionsExt, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { runReplay } from "../host/commands/replay.js";
import { readCaptureFile } from "../host/pcap/read.js";
import { type ReplayPacket } from "../host/replay/engine.js";
import { descriptorIsBad, Fuzzer, rng } from "./fuzz/gen.js";
import { IN_EXT } from "./helpers/conn.js";

const root = process.cwd();
const DEFAULT_POLICY = join(root, "host", "policy", "default.yaml");
const REFERENCE_PCAP = join(root, "test", "fixtures", "reference.pcap");

// Packets of reference.pcap longer than the default range.
const LONGER_IN_CAPTURE = 13;

// The default policy's table (host mode), compiled once for every test here.
const HOST_TABLE = buildTable(compilePolicyFile(DEFAULT_POLICY, { mode: "host" }).spec).bytes;

// One packet through a fresh core with the default policy, its first `range` bytes copied.
function decide(bytes: Uint8Array, range: number, meta: PacketMeta = IN_EXT): string {
  const core = new Core("release");
  core.loadTable(HOST_TABLE);
  const cap = Math.min(bytes.length, range);
  core.u8.set(bytes.subarray(0, cap), core.dataPtr);
  core.writeDescriptor(0, 0, cap, { ...meta, wireLen: bytes.length });
  assert.is(core.classify(1, 1_000_000_000n), 1);
  return `${core.verdict(0) === ABI.VERDICT_ACCEPT ? "accept" : "drop"} ${reasonName(core.reason(0))}`;
}

const payload = new Uint8Array(1200).fill(0x5a);
// A SYN from the Internet to the listener's 443 (rule ext-https-443).
const syn = (options = 0): Uint8Array =>
  tcp({ sport: 40000, dport: 443, flags: TCP_SYN, options: new Uint8Array(options).fill(1), payload });

test("the longest IPv4 headers (60-byte IP header, 60-byte TCP header) fit in the default range", () => {
  const p = ipv4({ src: "192.0.2.10", dst: "203.0.113.1", proto: PROTO_TCP, options: new Uint8Array(40).fill(1), payload: syn(40) });
  assert.is(p.length, 60 + 60 + payload.length);
  assert.is(decide(p, DEFAULT_COPY_RANGE), "accept rule_allow");
  assert.is(decide(p, 65535), "accept rule_allow");
});

test("IPv6: a chain that ends inside the range is decided as whole; one past it is dropped as snap_truncated, and fits one range up", () => {
  // 40 + destination options + 20 (TCP): 252 bytes with 192 of options, 260 with 200.
  const six = (optBytes: number): Uint8Array => ipv6({
    src: "2001:db8:9::10", dst: "2001:db8:1::1", proto: PROTO_TCP, ext: [optionsExt(NH_DSTOPTS, optBytes / 8)], payload: syn(),
  });
  const inside = six(192), past = six(200);
  assert.is(inside.length - payload.length, 252);
  assert.is(past.length - payload.length, 260);
  assert.is(decide(inside, 65535), "accept rule_allow");
  assert.is(decide(inside, DEFAULT_COPY_RANGE), "accept rule_allow");
  assert.is(decide(past, 65535), "accept rule_allow");
  assert.is(decide(past, DEFAULT_COPY_RANGE), "drop snap_truncated");
  assert.is(decide(past, 259), "drop snap_truncated");
  assert.is(decide(past, 260), "accept rule_allow");
});

for (const mode of ["host", "gateway"] as const) {
  test(`reference.pcap replayed in ${mode} mode: the default range decides every packet as whole packets do`, () => {
    const run = (copyRange: number): ReplayPacket[] => {
      const got: ReplayPacket[] = [];
      const r = runReplay(REFERENCE_PCAP, {
        policy: DEFAULT_POLICY, mode, copyRange,
        externalIp: [], internalIp: [], externalNet: [], internalNet: [],
      }, { packet: (p) => got.push(p) });
      assert.is(r.source.copyRange, copyRange);
      return got;
    };
    const whole = run(65535), cut = run(DEFAULT_COPY_RANGE);
    assert.is(whole.length, 77);
    assert.equal(cut.map((p) => [p.index, p.verdict, p.reason, p.rule]), whole.map((p) => [p.index, p.verdict, p.reason, p.rule]));
    // The capture has packets the range cuts (else this says nothing).
    assert.is([...readCaptureFile(REFERENCE_PCAP)].filter((rec) => rec.ip.length > DEFAULT_COPY_RANGE).length, LONGER_IN_CAPTURE);
  });
}

test("100,000 fuzz packets: with the default range a packet gets the whole packet's answer, or snap_truncated (IPv6 only), never an accept the whole packet did not get", () => {
  const t = HOST_TABLE;
  const whole = new Core("release", undefined, { maxFlows: 1 << 18, maxFrags: 1 << 16 });
  const cut = new Core("release", undefined, { maxFlows: 1 << 18, maxFrags: 1 << 16 });
  whole.loadTable(t);
  cut.loadTable(t);
  const SEED = 0x5eed2612;
  const f = new Fuzzer(SEED);
  const r = rng(SEED ^ 0x33);
  let sent = 0, batches = 0, longer = 0, truncated = 0;
  const differ: string[] = [];
  while (sent < 100_000) {
    const n = Math.min(100_000 - sent, 1 + Math.floor(r() * ABI.MAX_BATCH));
    let usedW = 0, usedC = 0, k = 0;
    const family: number[] = [];
    for (; k < n; k++) {
      const p = f.next();
      // Broken descriptors (aimed outside the data area, cap_len over wire_len:
      // never from the kernel) are not a copy-range matter.
      if (p.dataOff !== undefined || descriptorIsBad(p, 0)) continue;
      if (usedW + p.bytes.length > ABI.DATA_CAP - 16) break;
      const meta: PacketMeta = { wireLen: p.wireLen, hwProto: p.hwProto, inRole: p.inRole, outRole: p.outRole, hook: p.hook };
      const cap = Math.min(p.bytes.length, DEFAULT_COPY_RANGE);
      if (cap < p.bytes.length) longer++;
      whole.u8.set(p.bytes, whole.dataPtr + usedW);
      whole.writeDescriptor(family.length, usedW, p.bytes.length, meta);
      cut.u8.set(p.bytes.subarray(0, cap), cut.dataPtr + usedC);
      cut.writeDescriptor(family.length, usedC, cap, meta); // the wire length stays the packet's
      usedW = (usedW + p.bytes.length + 7) & ~7;
      usedC = (usedC + cap + 7) & ~7;
      family.push(p.bytes[0]! >> 4);
    }
    const now = BigInt(batches) * 1_000_000_000n;
    const count = family.length;
    assert.is(whole.classify(count, now), count);
    assert.is(cut.classify(count, now), count);
    for (let i = 0; i < count; i++) {
      const w = `${whole.verdict(i)} ${reasonName(whole.reason(i))} ${whole.rule(i)}`;
      const c = `${cut.verdict(i)} ${reasonName(cut.reason(i))} ${cut.rule(i)}`;
      if (w === c) continue;
      if (cut.verdict(i) === ABI.VERDICT_DROP && reasonName(cut.reason(i)) === "snap_truncated" && family[i] === 6) { truncated++; continue; }
      differ.push(`batch ${batches} packet ${i}: whole ${w}, cut ${c}`);
    }
    sent += count;
    batches++;
  }
  assert.equal(differ.slice(0, 5), [], `${differ.length} packets answered otherwise than snap_truncated`);
  assert.ok(longer > 1000, `only ${longer} fuzz packets were longer than the range`);
  console.log(`  fuzz: ${longer} of ${sent} packets longer than ${DEFAULT_COPY_RANGE} bytes; ${truncated} IPv6 packets dropped as snap_truncated with the range`);
});

// The daemon in a namespace of its own with a veth pair for NICs: the copy range
// it asks the kernel for, as the kernel reports it.
async function daemonCopyRange(board: string, extra: string[]): Promise<number> {
  const ns = `pccr${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), "pc-copy-range-"));
  spawnSync("ip", ["netns", "del", ns]);
  let daemon: ChildProcess | null = null;
  try {
    assert.is(spawnSync("ip", ["netns", "add", ns]).status, 0);
    assert.is(spawnSync("ip", ["-n", ns, "link", "add", "ext0", "type", "veth", "peer", "name", "int0"]).status, 0);
    const file = join(dir, "board.yaml");
    writeFileSync(file, `version: 1\nmode: host\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\nqueues: { first: 30, count: 1 }\n${board}`);
    const sock = join(dir, "c.sock");
    daemon = spawn("ip", ["netns", "exec", ns, process.execPath, "dist/host/cli.js", "run", "--policy", DEFAULT_POLICY, "--board", file,
      "--control", sock, "--state-dir", join(dir, "state"), "--no-watch", ...extra], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    daemon.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
    for (let t = 0; ; t += 100) {
      const k = parseKernelQueues(spawnSync("ip", ["netns", "exec", ns, "cat", "/proc/net/netfilter/nfnetlink_queue"], { encoding: "utf8" }).stdout ?? "");
      if (k.has(30) && k.has(31)) {
        assert.is(k.get(31)!.copyRange, k.get(30)!.copyRange, "both sides' queues alike");
        return k.get(30)!.copyRange;
      }
      if (daemon.exitCode !== null || t > 30_000) throw new Error(`the daemon did not bind queues 30 and 31: ${err.trim().slice(-400)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    if (daemon && daemon.exitCode === null) {
      const exited = new Promise((r) => daemon!.once("exit", r));
      daemon.kill("SIGTERM");
      await exited;
    }
    spawnSync("ip", ["netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the daemon's queues: the default range, the board's copy_range:, --copy-range over it (as the kernel reports them)", async () => {
  assert.is(await daemonCopyRange("", []), DEFAULT_COPY_RANGE);
  assert.is(await daemonCopyRange("copy_range: 1500\n", []), 1500);
  // The kernel keeps at most NFQNL_MAX_COPY_RANGE, 0xffff less a netlink attribute header: whole packets.
  assert.is(await daemonCopyRange("copy_range: 1500\n", ["--copy-range", "65535"]), 65531);
});

test("board config and flag: a copy range the kernel does not take is refused with what is allowed", () => {
  const base = "version: 1\nmode: host\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\n";
  assert.is(parseBoardText(base, "b.yaml").copyRange, undefined);
  assert.is(parseBoardText(`${base}copy_range: 2048\n`, "b.yaml").copyRange, 2048);
  assert.throws(() => parseBoardText(`${base}copy_range: 70000\n`, "b.yaml"), /^b\.yaml:5:13: copy_range \(bytes\) must be a whole number 64-65535$/);
  for (const bad of ["63", "65536", "1e3", "-1", "256b"]) {
    const r = spawnSync(process.execPath, ["dist/host/cli.js", "replay", REFERENCE_PCAP, "--policy", DEFAULT_POLICY, "--copy-range", bad], { encoding: "utf8" });
    assert.is(r.status, 1, `--copy-range ${bad}`);
    assert.is(r.stdout, "");
    assert.match(r.stderr, /^error: option '--copy-range <bytes>' argument '.*' is invalid\. the copy range must be a whole number of bytes from 64 to 65535\n/);
  }
});

test.run();
