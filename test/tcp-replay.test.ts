// Window tracking against real TCP stacks: captures replayed through the
// release core (host/replay) must pass every legitimate segment. The
// reference capture gets the same verdict and reason, packet by packet, with
// window tracking as without it (tcp.liberal); long transfers over a link
// that loses and reorders segments (test/fixtures/capture-netem.sh: the
// committed netem.pcap, and one recorded fresh in namespaces by this test)
// are accepted whole, with no tcp_out_of_window. Each capture is checked to
// hold what makes it a test: retransmitted or reordered segments in both
// directions.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runReplay } from "../host/commands/replay.js";
import { readCaptureFile } from "../host/pcap/read.js";
import { type ReplayPacket } from "../host/replay/engine.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const POLICY = join(ROOT, "host", "policy", "default.yaml");
const FIXTURES = join(ROOT, "test", "fixtures");

function replayed(capture: string, o: { liberal?: boolean; pickup?: boolean } = {}): ReplayPacket[] {
  const packets: ReplayPacket[] = [];
  runReplay(capture, { policy: POLICY, ...o }, { packet: (p) => packets.push(p) });
  return packets;
}

const tally = (ps: ReplayPacket[]): Record<string, number> => {
  const t: Record<string, number> = {};
  for (const p of ps) t[`${p.verdict} ${p.reason}`] = (t[`${p.verdict} ${p.reason}`] ?? 0) + 1;
  return t;
};

// Segments that start before what their sender already sent (retransmitted
// or overtaken), per direction ("a>b"), from the capture's own headers.
function outOfOrder(capture: string): { segments: number; late: Map<string, number> } {
  const high = new Map<string, number>(), late = new Map<string, number>();
  let segments = 0;
  for (const r of readCaptureFile(capture)) {
    const ip = r.ip;
    const v6 = ip[0]! >> 4 === 6;
    const off = v6 ? 40 : (ip[0]! & 15) * 4;
    if ((v6 ? ip[6] : ip[9]) !== 6 || ip.length < off + 20) continue;
    const total = v6 ? 40 + ((ip[4]! << 8) | ip[5]!) : (ip[2]! << 8) | ip[3]!;
    const len = total - off - (ip[off + 12]! >> 4) * 4;
    if (len <= 0) continue;
    segments++;
    const key = `${Buffer.from(ip.subarray(v6 ? 8 : 12, v6 ? 24 : 16)).toString("hex")}:${(ip[off]! << 8) | ip[off + 1]!}`;
    const seq = ((ip[off + 4]! << 24) | (ip[off + 5]! << 16) | (ip[off + 6]! << 8) | ip[off + 7]!) >>> 0;
    const h = high.get(key);
    if (h !== undefined && ((seq - h) | 0) < 0) late.set(key, (late.get(key) ?? 0) + 1);
    if (h === undefined || ((seq + len - h) | 0) > 0) high.set(key, (seq + len) >>> 0);
  }
  return { segments, late };
}

test("reference.pcap: every packet's verdict and reason the same with window tracking as without it; no tcp_out_of_window", () => {
  const capture = join(FIXTURES, "reference.pcap");
  const strict = replayed(capture), liberal = replayed(capture, { liberal: true });
  assert.is(strict.length, 77);
  assert.equal(strict.map((p) => `${p.index} ${p.verdict} ${p.reason}`), liberal.map((p) => `${p.index} ${p.verdict} ${p.reason}`));
  assert.equal(tally(strict), {
    "accept rule_allow": 4, "accept state_match": 40, "accept icmp6_ndp": 2,
    "drop default_deny": 13, "drop no_flow": 6, "drop icmp_unrelated": 4, "drop frag_denied": 8,
  });
});

// Every packet of a capture of allowed transfers passes: on state after each
// connection's SYN.
function assertAllPass(capture: string, connections: number, keep?: string): void {
  const ps = replayed(capture);
  const refused = ps.filter((p) => p.verdict !== "accept").slice(0, 5).map((p) => `${p.index} ${p.summary} ${p.reason}`);
  if (refused.length && keep) copyFileSync(capture, keep);
  assert.equal(refused, [], `refused segments${refused.length && keep ? ` (the capture: ${keep})` : ""}`);
  assert.equal(tally(ps), { "accept rule_allow": connections, "accept state_match": ps.length - connections });
  const ooo = outOfOrder(capture);
  assert.ok(ooo.late.size >= 4, `retransmitted or reordered segments in both directions of each connection: ${JSON.stringify([...ooo.late])}`);
  assert.ok([...ooo.late.values()].reduce((a, b) => a + b, 0) >= 20, `at least 20 late segments of ${ooo.segments}`);
}

test("netem.pcap (committed, test/fixtures/capture-netem.sh): three transfers over a lossy, reordering link, every segment accepted", () => {
  assertAllPass(join(FIXTURES, "netem.pcap"), 3);
});

// A classic pcap without its first `skip` records: a capture that starts
// mid-stream.
function fromRecord(capture: string, skip: number, out: string): void {
  const b = readFileSync(capture);
  assert.is(b.readUInt32LE(0), 0xa1b2c3d4, "a classic little-endian pcap");
  let at = 24;
  for (let i = 0; i < skip; i++) at += 16 + b.readUInt32LE(at + 8);
  writeFileSync(out, Buffer.concat([b.subarray(0, 24), b.subarray(at)]));
}

test("netem.pcap from the middle of its first transfer: with pickup its flow is picked up and every segment after passes; without, none does", () => {
  const dir = mkdtempSync(join(tmpdir(), "pcw-replay-"));
  try {
    const cut = join(dir, "mid.pcap");
    fromRecord(join(FIXTURES, "netem.pcap"), 300, cut);
    const on = replayed(cut, { pickup: true });
    const first = on.findIndex((p) => p.reason === "rule_allow");
    assert.ok(first >= 0 && on[first]!.hook === "in", "the client's segment (toward 443) is picked up");
    // Before it, only the server's own segments: the rules allow no flow in
    // their direction.
    assert.equal(on.slice(0, first).filter((p) => p.hook !== "out" || p.reason !== "no_flow"), []);
    assert.equal(on.slice(first).filter((p) => p.verdict !== "accept").map((p) => `${p.index} ${p.summary} ${p.reason}`), []);
    assert.equal(tally(on.slice(first)), { "accept rule_allow": 3, "accept state_match": on.length - first - 3 }, "the pickup, then the SYNs of the other two");
    const off = replayed(cut);
    const firstSyn = off.findIndex((p) => p.reason === "rule_allow");
    assert.ok(firstSyn > first);
    assert.equal(tally(off.slice(0, firstSyn)), { "drop no_flow": firstSyn }, "without pickup the rest of the first transfer is no_flow");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a fresh recording: several MB both ways over a lossy, reordering link between namespaces, every segment accepted", () => {
  const dir = mkdtempSync(join(tmpdir(), "pcw-replay-"));
  try {
    const out = join(dir, "fresh.pcap");
    const r = spawnSync("bash", [join(FIXTURES, "capture-netem.sh"), out, "1500"], { encoding: "utf8", timeout: 120_000 });
    assert.is(r.status, 0, `capture-netem.sh: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /2001:db8:1::1: got 768000, put 768000 bytes/);
    assert.ok(statSync(out).size > 500_000);
    assertAllPass(out, 3, join(tmpdir(), "pcw-fresh-refused.pcap"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
