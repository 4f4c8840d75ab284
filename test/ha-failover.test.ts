// Two appliances as one (issue 17), through the real kernel with real
// keepalived: the pair topology (host/topology/pair.ts; gateway mode, the
// segments bridges in a namespace of their own), VRRPv3 with 100 ms adverts,
// the daemon with the default policy and pickup on in both appliances.
//   failover     kill -9 of the master's daemon and keepalived, its links
//                down, while 50 long-lived streams (a message every 100 ms,
//                echoed) and new connections run through the virtual
//                address: every stream survives, the largest gap is printed
//                and bounded, new connections work through the backup; the
//                old master's return (preemption on: it takes over again)
//                loses no stream
//   preempt off  the old master returns as the backup; no stream lost
//   scans        nmap SYN scans through the virtual address find exactly 80
//                and 443 before, during and after; ACK scans learn nothing
//                on either appliance
//   no pickup    the same failover kills every stream (they get no echo
//                again): pickup is what keeps them
//   offload      with offload on, conntrackd replicates the kernel's entries
//                of offloaded transfers; the backup commits and adopts them
//                at the failover and the transfers go on (a strict backup:
//                pickup off, so nothing else could carry them)
// Every process is ended by its pid (Topology.spawn, pair.ts); namespaces
// are pct-ha<pid>-*, those of dead runs cleared first.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LISTENER, PAIR_ADDRS, type PairNode } from "../host/topology/plan.js";
import { DEFAULT_POLICY, Pair } from "../host/topology/pair.js";
import type { LoadResult } from "../host/topology/stream-load.js";
import { clearStaleRuns } from "../host/topology/topology.js";
import { BULK_PORT, endProcess, nmap, reason, startTool, type Stats, TOOLS } from "./helpers/appliance.js";

const PREFIX = `pct-ha${process.pid}-`;
const VRRP = { version: 3, advertMs: 100 } as const;
// VRRPv3 at 100 ms: the backup takes over after 3 adverts and its skew
// (about 0.36 s); the bound leaves room for a loaded machine.
const MOVE_BOUND_MS = 1500;
// TCP retransmits 0.2, 0.6, 1.4, 3.0 s ... after the loss: the first one
// after the move gets through (a move within its bound: by 3 s).
const GAP_BOUND_MS = 3500;

const s = suite("a pair of appliances: failover through the real kernel and keepalived");
let pair: Pair | null = null;
let setupError: unknown = null;
const P = (): Pair => {
  if (setupError !== null) throw setupError;
  if (pair === null) throw new Error("the pair is not up");
  return pair;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// The ports nmap found in STATE, sorted.
function ports(scan: ReturnType<typeof nmap>, state: string): number[] {
  return [...scan.ports].filter(([, st]) => st === state).map(([p]) => p).sort((a, b) => a - b);
}
function synScan(): void {
  const scan = nmap(P().t, "inet", LISTENER.v4, ["-sS", "-p-"]);
  assert.equal(ports(scan, "open"), [80, 443], scan.raw);
  assert.equal(scan.ignored, { state: "filtered", count: 65533 }, scan.raw);
}

// Every stream alive to the end with every byte echoed; the largest gap.
function survived(r: LoadResult, what: string): number {
  assert.is(r.streams.length, 50);
  for (const [i, st] of r.streams.entries()) {
    assert.is(st.error, "", `${what}: stream ${i}`);
    assert.is(st.echoed, st.sent, `${what}: stream ${i} got every byte back`);
    assert.ok(st.lastEchoMs > r.stoppedMs - 1000, `${what}: stream ${i} moved until the end`);
  }
  return Math.max(...r.streams.map((st) => st.maxGapMs));
}

// New connections: each failure attempted within a failover window (ms
// since the load's start, [from, to]); some succeeded after each.
function newConnections(r: LoadResult, windows: Array<[number, number]>, what: string): void {
  const outside = r.newFailAtMs.filter((t) => !windows.some(([a, b]) => t >= a && t <= b));
  assert.equal(outside, [], `${what}: new connections failed outside the failovers (${r.failures.join(", ")})`);
  assert.ok(r.newOk > 20, `${what}: ${r.newOk} new connections worked`);
}

async function stats(n: PairNode): Promise<Stats> {
  return await P().stats(n) as unknown as Stats;
}
// Flows the daemon created mid-stream (stats.tcp.pickedUp).
async function pickedUp(n: PairNode): Promise<number> {
  return Number(((await P().stats(n)).tcp as { pickedUp: number }).pickedUp);
}

s.before(async () => {
  try {
    await clearStaleRuns("pct-ha");
    pair = await Pair.up({ prefix: PREFIX, vrrp: VRRP, preempt: true, pickup: true });
  } catch (e) {
    setupError = e;
  }
});

s.after(async () => {
  if (pair !== null) await pair.down();
  pair = null;
});

s("the pair: a holds both virtual addresses, b is a hot standby (its daemon up, queues bound); a SYN scan through the virtual address finds exactly 80 and 443", async () => {
  assert.is(P().master(), "a");
  await role("a", "master");
  await role("b", "backup");
  for (const n of ["a", "b"] as const) {
    const st = await stats(n);
    assert.is(st.queues.length, 2, `appliance ${n} has both queues bound`);
  }
  synScan();
});

// With pickup, an ACK to 80 or 443 is picked up and reaches the proxy, whose
// RST is dropped (pickup_reset); an ACK to any other port is no_flow.
function ackScanLearnsNothing(target: string): void {
  const scan = nmap(P().t, "inet", target, ["-sA", "-p-"]);
  assert.equal(ports(scan, "unfiltered"), [], scan.raw);
  assert.equal(scan.ignored, { state: "filtered", count: 65535 }, scan.raw);
}

s("ACK scans learn nothing on either appliance: through the virtual address (80 and 443 picked up, the proxy's RST dropped) and at each appliance's own address every port looks filtered", async () => {
  const before = await stats("a");
  ackScanLearnsNothing(LISTENER.v4);
  const after = await stats("a");
  // nmap probes an unanswered port twice (--max-retries 1).
  const resets = reason(after, "pickup_reset") - reason(before, "pickup_reset");
  assert.ok(resets >= 2 && resets <= 4, `the proxy's RSTs to the probes of the two allowed ports: ${resets}`);
  assert.ok(reason(after, "no_flow") - reason(before, "no_flow") >= 65533, "every other ACK met no flow");
  for (const n of ["a", "b"] as const) {
    const was = await stats(n);
    ackScanLearnsNothing(PAIR_ADDRS[n].external);
    assert.ok(reason(await stats(n), "no_flow") - reason(was, "no_flow") >= 65535, `appliance ${n}: every ACK met no flow`);
  }
});

// The master dies; the other takes both addresses.
async function failover(dead: PairNode): Promise<{ cutMs: number; moveMs: number }> {
  const at = await P().fail(dead);
  const moveMs = await P().waitForVirtual(P().other(dead), 10_000, at);
  assert.is(P().master(), P().other(dead), "one master");
  return { cutMs: at, moveMs };
}

// The role keepalived's hook told the daemon (stats.ha), once it has.
async function role(n: PairNode, want: string): Promise<void> {
  let got = "";
  for (let t = 0; t < 5000; t += 100) {
    got = ((await P().stats(n)).ha as { role: string }).role;
    if (got === want) return;
    await sleep(100);
  }
  assert.is(got, want, `appliance ${n}'s daemon is told it is ${want}`);
}

s("failover, preemption on: a dies under 50 streams and new connections; b takes over, every stream survives, new connections work through b; a's return takes over again and loses no stream", async () => {
  const load = await P().startLoad();
  await sleep(1500);
  const cut = await failover("a");
  await role("b", "master");
  // During: b holds the addresses, a is dead.
  synScan();
  assert.ok(await pickedUp("b") >= 50, "b picked up every stream");
  await P().revive("a");
  const back = Date.now();
  const backMs = await P().waitForVirtual("a", 10_000, back);
  await role("a", "master");
  await role("b", "backup");
  await sleep(2000);
  const r = await load.stop();
  const gap = survived(r, "preempt on");
  const rel = (t: number): number => t - r.startedAt;
  newConnections(r, [[rel(cut.cutMs) - 3100, rel(cut.cutMs) + cut.moveMs + 1500], [rel(back) - 3100, rel(back) + backMs + 1500]], "preempt on");
  process.stdout.write(`    VRRPv3 0.1 s: the addresses moved to b in ${cut.moveMs} ms and back to a in ${backMs} ms after its keepalived started; ` +
    `largest gap of 50 streams ${gap} ms; new connections ${r.newOk} ok, ${r.newFail} failed during the moves\n`);
  assert.ok(cut.moveMs < MOVE_BOUND_MS, `moved in ${cut.moveMs} ms`);
  assert.ok(gap < GAP_BOUND_MS, `largest gap ${gap} ms`);
  // After: a is the master again.
  assert.is(P().master(), "a");
  synScan();
});

s("failover, preemption off: a returns as the backup, b stays the master, no stream lost", async () => {
  await P().restart({ preempt: false });
  assert.is(P().master(), "a");
  const load = await P().startLoad();
  await sleep(1500);
  const cut = await failover("a");
  await P().revive("a");
  await role("a", "backup");
  await sleep(2000);
  assert.is(P().master(), "b", "b keeps the addresses");
  const r = await load.stop();
  const gap = survived(r, "preempt off");
  newConnections(r, [[cut.cutMs - r.startedAt - 3100, cut.cutMs - r.startedAt + cut.moveMs + 1500]], "preempt off");
  process.stdout.write(`    preemption off: moved to b in ${cut.moveMs} ms, a came back as the backup; largest gap ${gap} ms\n`);
  assert.ok(gap < GAP_BOUND_MS, `largest gap ${gap} ms`);
  // The ACK scan with b as the master learns nothing either.
  ackScanLearnsNothing(LISTENER.v4);
});

s("without pickup the same failover kills every stream: the backup meets them as no_flow and no echo comes after the cut; new connections still work", async () => {
  await P().restart({ preempt: true, pickup: false });
  const load = await P().startLoad();
  await sleep(1500);
  const before = await stats("b");
  const cut = await failover("a");
  await sleep(3000);
  const r = await load.stop();
  const cutRel = cut.cutMs - r.startedAt;
  const after = await stats("b");
  for (const [i, st] of r.streams.entries()) {
    assert.ok(st.lastEchoMs < cutRel + 50, `stream ${i}: no echo after the cut (last at ${st.lastEchoMs} ms, cut at ${cutRel} ms)`);
  }
  assert.ok(reason(after, "no_flow") - reason(before, "no_flow") >= 50, "b dropped the streams' segments as no_flow");
  assert.is(await pickedUp("b"), 0, "nothing picked up");
  newConnections(r, [[cutRel - 3100, cutRel + cut.moveMs + 1500]], "no pickup");
});

s("offload on, a strict backup (no pickup): conntrackd replicates the offloaded flows' entries, b's hook commits them and its daemon adopts them; the transfers go on across the failover", async () => {
  const policy = join(P().t.dir, "offload-policy.yaml");
  writeFileSync(policy, `${readFileSync(DEFAULT_POLICY, "utf8").trimEnd()}\n  - name: test-bulk\n    action: allow\n    interface: external\n    direction: forward\n` +
    `    proto: tcp\n    dst: listener\n    dport: ${BULK_PORT}\n    offload: true\noffload:\n  after: 10\n`);
  await P().restart({ offload: true, policy, pickup: false });
  const sinkFile = join(P().t.dir, "sink.json");
  const sink = await startTool(P().t, "proxy", "sink", ["stream-sink", sinkFile, String(BULK_PORT), LISTENER.v4], sinkFile);
  const bytes = (): number => (JSON.parse(readFileSync(sinkFile, "utf8")) as { bytes: number; reset: number }).bytes;
  const senders = [1, 2, 3].map((i) => P().t.spawn("inet", [process.execPath, TOOLS, "stream-send", LISTENER.v4, String(BULK_PORT), "60000",
    join(P().t.dir, `send-${i}.json`), "fin"], { name: `send-${i}` }));
  try {
    let off = { live: 0 };
    for (let t = 0; t < 10_000 && off.live < 3; t += 100) {
      await sleep(100);
      off = (await P().stats("a")).offload as { live: number };
    }
    assert.is(off.live, 3, "a offloaded the three transfers");
    await sleep(1000);
    const cache = P().t.exec("appliance-b", ["conntrackd", "-C", P().conntrackdConf("b"), "-e"]).stdout;
    assert.is(cache.split("\n").filter((l) => l.includes(`dport=${BULK_PORT} `) && l.includes("ESTABLISHED")).length, 3, `b's external cache: ${cache}`);
    const cut = await failover("a");
    await role("b", "master");
    await sleep(1000);
    const b1 = bytes();
    await sleep(2000);
    const b2 = bytes();
    const st = await P().stats("b");
    const ha = st.ha as { lastAdoption: { found: number; adopted: number; refused: number } | null };
    process.stdout.write(`    offload: moved in ${cut.moveMs} ms; b adopted ${ha.lastAdoption?.adopted} offloaded flows; ${((b2 - b1) / 2e6).toFixed(0)} MB/s through b after the failover\n`);
    assert.equal({ found: ha.lastAdoption?.found, adopted: ha.lastAdoption?.adopted, refused: ha.lastAdoption?.refused }, { found: 3, adopted: 3, refused: 0 });
    assert.is((st.offload as { live: number }).live, 3, "b's kernel carries them");
    assert.ok(b2 - b1 > 50e6, `the transfers went on through b (${b2 - b1} bytes in 2 s)`);
    assert.is((JSON.parse(readFileSync(sinkFile, "utf8")) as { reset: number }).reset, 0, "none was reset");
  } finally {
    for (const c of senders) await endProcess(c, "SIGKILL");
    await endProcess(sink.child);
  }
});

s.run();
