// The end-to-end benchmark's harness (bench/e2e) does what its figures
// claim: in its namespaces, with each contender switched on in turn, a
// paced, counted load of the bench flow arrives whole at the sink; a flow
// the policy denies is dropped by the kernel's stateful filter (b) and by
// Portcullis (d) and passes plain forwarding (a) and the accept-all
// consumer (c); the consumer counts exactly the datagrams sent through it;
// the fw1_10K kernel rules are traversed without a single match while the
// flow still passes; and the teardown leaves no namespace and no process.
import { spawnSync } from "node:child_process";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { runOk } from "../host/kernel/detect.js";
import { apply, remove } from "../host/kernel/rules.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { board, type Contender, Contenders, DENIED_UDP_PORT, UDP_PORT, writeBenchPolicy } from "../bench/e2e/contenders.js";
import { fw1Tables } from "../bench/e2e/fw1.js";
import { connCount, startServers, udpCount } from "../bench/e2e/loads.js";
import { BenchNet } from "../bench/e2e/net.js";
import { buildTools, type Tools } from "../bench/e2e/tools.js";

const s = suite("bench e2e harness");
let net: BenchNet | null = null;
let C: Contenders | null = null;
let tools: Tools | null = null;
let setupError: unknown = null;
const list: Contender[] = [];
let fw1Kept = 0;
const pids: number[] = [];

const N = () => { if (setupError) throw setupError; return { net: net!, C: C!, tools: tools! }; };
const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };
const namespaces = (): string[] => (spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "").split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);

s.before(async () => {
  try {
    tools = buildTools();
    net = await BenchNet.up();
    C = new Contenders(net, tools);
    const policy = writeBenchPolicy(net.dir);
    const spec = compilePolicyFile(policy, { mode: "gateway" }).spec;
    const fw1 = fw1Tables(net.dir);
    fw1Kept = fw1.kept;
    const [c, d, dFw1] = await Promise.all([
      C.acceptAll("c", "c", board(10, 1), false),
      C.portcullis("d", "d", board(0, 1), policy, false),
      C.portcullis("d-fw1", "d-fw1", board(20, 1), fw1.tableFile, false),
    ]);
    list.push(C.forward(), ...C.kernel(spec, { stateful: true, chain: "PCB-POL", nftFamily: "inet", nftTable: "pcbpol", id: "b", label: "b" }), c!, d!);
    list.push(...C.kernel(fw1.spec, { stateful: false, chain: "PCB-FW1", nftFamily: "ip", nftTable: "pcbfw1", id: "b-fw1", label: "b-fw1" }), dFw1!);
    const servers = await startServers(net, tools);
    for (const p of [...servers, ...[...C.daemons.values()].map((x) => x.proc)]) pids.push(p.child.pid!);
  } catch (e) {
    setupError = e;
  }
});

s.after(async () => {
  await net?.down();
});

const byId = (id: string): Contender => {
  const k = list.find((x) => x.id === id);
  if (!k) throw new Error(`no contender ${id}`);
  return k;
};

for (const [id, passesDenied] of [["a", true], ["b-ipt", false], ["b-nft", false], ["c", true], ["d", false]] as const) {
  s(`${id}: 200 datagrams and 20 connections of the bench flow all arrive; the denied flow ${passesDenied ? "passes" : "is dropped"}`, async () => {
    const { net, C, tools } = N();
    C.switchTo(byId(id));
    const udp = await udpCount(net, tools, 200, 2000, UDP_PORT);
    assert.equal(udp, { sent: 200, delivered: 200 });
    assert.equal(await connCount(net, tools, 20), { connections: 20, failed: 0 });
    const denied = await udpCount(net, tools, 50, 1000, DENIED_UDP_PORT);
    assert.equal(denied, { sent: 50, delivered: passesDenied ? 50 : 0 });
    C.off();
  });
}

s("the queue rules the bench switches are the ones `portcullis rules --apply` loads", () => {
  const { net, C } = N();
  const netns = net.ns("appliance");
  const save = (): string[][] => ["iptables-legacy-save", "ip6tables-legacy-save"].map((x) =>
    runOk([x, "-t", "filter"], { netns }).split("\n").filter((l) => /^(-A |:)/.test(l)).map((l) => l.replace(/ \[\d+:\d+\]$/, "")));
  C.switchTo(byId("d"));
  const bench = save();
  C.off();
  const idle = save();
  apply(board(0, 1), { backend: "iptables", netns });
  const applied = save();
  remove({ netns });
  assert.equal(bench, applied);
  assert.ok(bench[0]!.some((l) => /^-A PORTCULLIS-FWD -i ext0 -j NFQUEUE --queue-num 0$/.test(l)), bench[0]!.join("\n"));
  assert.equal(save(), idle);
  assert.not.equal(bench, idle);
});

s("the accept-all consumer counted exactly the 250 datagrams sent through it", async () => {
  const { C } = N();
  const r = await C.consumers.get("c")!.stop();
  assert.ok(r, "the consumer printed its counters");
  assert.is(r!.udp4, 250);
  assert.ok(r!.packets! >= 250 && r!.verdicts! >= 1 && r!.verdicts! <= r!.packets!);
});

s("Portcullis counted the denied datagrams as drops", async () => {
  const { C } = N();
  const st = await C.daemonStats("d") as { verdicts: { drop: { packets: number }; accept: { packets: number } } };
  assert.ok(st.verdicts.drop.packets >= 50, `drops ${st.verdicts.drop.packets}`);
  assert.ok(st.verdicts.accept.packets >= 200 + 20 * 3, `accepts ${st.verdicts.accept.packets}`);
});

s("fw1_10K in iptables-legacy: the flow traverses every kept rule without a match and passes", async () => {
  const { net, C, tools } = N();
  C.switchTo(byId("b-fw1-ipt"));
  assert.equal(await udpCount(net, tools, 200, 2000, UDP_PORT), { sent: 200, delivered: 200 });
  C.off();
  const out = runOk(["iptables-legacy", "-w", "-L", "PCB-FW1", "-v", "-x", "-n"], { netns: net.ns("appliance") });
  const counts = out.trim().split("\n").slice(2).map((l) => Number(l.trim().split(/\s+/)[0]));
  assert.is(counts.length, fw1Kept + 2, "kept rules, the bench flow's accept, the default drop");
  assert.is(counts.slice(0, fw1Kept).reduce((a, b) => a + b, 0), 0, "no kept rule matched");
  assert.is(counts[fw1Kept], 200, "the bench flow's rule took every datagram");
});

s("fw1_10K in nftables: no kept rule's counter moves, the flow passes", async () => {
  const { net, C, tools } = N();
  C.switchTo(byId("b-fw1-nft"));
  assert.equal(await udpCount(net, tools, 200, 2000, UDP_PORT), { sent: 200, delivered: 200 });
  C.off();
  const r = spawnSync("ip", ["netns", "exec", net.ns("appliance"), "nft", "-j", "list", "chain", "ip", "pcbfw1", "rules"], { encoding: "utf8", maxBuffer: 256 << 20 });
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { nftables: Array<{ rule?: { expr: Array<{ counter?: { packets: number } }> } }> };
  const counts = j.nftables.flatMap((x) => (x.rule ? [x.rule.expr.find((e) => e.counter)?.counter?.packets ?? -1] : []));
  assert.is(counts.length, fw1Kept + 2);
  assert.is(counts.slice(0, fw1Kept).reduce((a, b) => a + b, 0), 0);
  assert.is(counts[fw1Kept], 200);
});

s("fw1_10K in Portcullis: the flow passes", async () => {
  const { net, C, tools } = N();
  C.switchTo(byId("d-fw1"));
  assert.equal(await udpCount(net, tools, 200, 2000, UDP_PORT), { sent: 200, delivered: 200 });
  C.off();
});

s("teardown: no namespace, no process left", async () => {
  const { net } = N();
  const prefix = net.ns("inet").replace(/inet$/, "");
  assert.ok(pids.length === 4 && pids.every(alive), "the servers and daemons ran until now");
  await net.down();
  assert.equal(namespaces().filter((n) => n.startsWith(prefix)), []);
  assert.equal(pids.filter(alive), []);
});

s.run();
