// Offloaded flows at a failover (issue 17 part 1 item 3), through the real
// kernel, with one appliance standing for the backup of a pair: the
// reference topology in gateway mode (prefix pch<pid>-), the board with
// offload on and an ha: section, the kernel rules, `portcullis run`.
// conntrackd's replication is simulated as the backup's kernel sees it:
// after the hook's commit (`conntrackd -c`) the kernel holds the master's
// conntrack entries with the master's marks, whose generation is not this
// daemon's. Two real TCP streams from inet are offloaded by a first daemon
// (the "master"), which then stops; their kernel entries are deleted and
// put back with `conntrack -I`, marked with another generation, while a
// second daemon (the backup, whose policy allows only the first stream's
// port) stands by:
//   backup   the replicated entries stay (the daemon does not remove marked
//            entries it does not track while it is backup), and the
//            streams' packets, whose connmark is of a generation the rules
//            do not accept, go to the queue and meet no flow
//   master   `portcullis ha notify master`: the allowed flow is adopted and
//            re-marked to the daemon's generation, and the kernel carries
//            it again (bytes move, the queue sees next to none of them);
//            the other is refused and its entry removed (nothing moves)
import { type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { request } from "../host/daemon/control.js";
import { readBoardFile } from "../host/kernel/board.js";
import { markCtx, markGeneration, OFFLOAD_BIT, offloadMark, readGeneration } from "../host/kernel/offload.js";
import { apply, remove } from "../host/kernel/rules.js";
import { clearStaleRuns, type Topology, up } from "../host/topology/topology.js";
import { LISTENER } from "../host/topology/plan.js";
import { CLI, type Daemon, DEFAULT_POLICY, endProcess, sleep, startDaemon, startTool, type Server, TOOLS } from "./helpers/appliance.js";

const PORTS = [8443, 8444] as const;
const AFTER = 10;

interface Tuple { src: string; dst: string; sport: number; dport: number; mark: number }
interface St {
  offload: { live: number; total: number; generation: number; leftReplicated: number; removedUntracked: number };
  ha: { role: string; adopted: number; adoptRefused: number; transitions: number } | null;
  queues: Array<{ packets: number }>;
  reasons: Array<{ reason: string; packets: number }>;
}

const s = suite("offloaded flows at a failover, through the kernel");
let t: Topology | null = null;
let setupError: unknown = null;
let daemon: Daemon | null = null;
const sinks: Server[] = [];
const senders: ChildProcess[] = [];
let board = "", both = "", only8443 = "";

const T = (): Topology => { if (setupError !== null) throw setupError; if (!t) throw new Error("no topology"); return t; };
const stats = async (): Promise<St> => {
  const r = await request(daemon!.sock, { cmd: "stats" }, 3000);
  if (r.ok !== true) throw new Error(String(r.error));
  return r.stats as St;
};
const sinkBytes = (port: number): number => (JSON.parse(readFileSync(join(T().dir, `sink-${port}.json`), "utf8")) as { bytes: number }).bytes;
const queued = (st: St): number => st.queues.reduce((a, q) => a + q.packets, 0);
const until = async (what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(50)) if (await ok()) return;
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
};
// The appliance's conntrack entries toward PORT: their original tuples and marks.
const entries = (port: number): Tuple[] => T().exec("appliance", ["conntrack", "-L", "-p", "tcp", "--orig-port-dst", String(port)]).stdout
  .split("\n").filter((l) => l.includes("ESTABLISHED")).map((l) => {
    const m = /src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) .* mark=(\d+)/.exec(l)!;
    return { src: m[1]!, dst: m[2]!, sport: Number(m[3]), dport: Number(m[4]), mark: Number(m[5]) };
  });
const notify = (role: string): { status: number; stdout: string; stderr: string } =>
  T().exec("appliance", [process.execPath, CLI, "ha", "notify", role, "--control", daemon!.sock]);

s.before(async () => {
  try {
    await clearStaleRuns("pch");
    t = await up({ mode: "gateway", prefix: `pch${process.pid}-`, proxy: false });
    board = join(t.dir, "board.yaml");
    writeFileSync(board, "version: 1\nmode: gateway\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\nqueues: { first: 0, count: 1 }\n" +
      // A strict backup (pickup is on by default with ha:): only the
      // replicated entries may carry the streams, never a picked-up flow.
      "offload: { enabled: true, on_start: adopt }\ntcp: { pickup: false }\n" +
      "ha:\n  vrid: 51\n  priority: 100\n  internal: { virtual: [192.0.2.100/24] }\n");
    const def = readFileSync(DEFAULT_POLICY, "utf8").trimEnd();
    const row = (port: number): string => `  - name: test-stream-${port}\n    action: allow\n    interface: external\n    direction: forward\n` +
      `    proto: tcp\n    dst: listener\n    dport: ${port}\n    offload: true\n`;
    both = join(t.dir, "both.yaml");
    writeFileSync(both, `${def}\n${row(8443)}${row(8444)}offload:\n  after: ${AFTER}\n`);
    only8443 = join(t.dir, "only8443.yaml");
    writeFileSync(only8443, `${def}\n${row(8443)}offload:\n  after: ${AFTER}\n`);
    apply(readBoardFile(board), { backend: "auto", netns: t.ns("appliance") });
    for (const port of PORTS) {
      const f = join(t.dir, `sink-${port}.json`);
      sinks.push(await startTool(t, "proxy", `sink-${port}`, ["stream-sink", f, String(port), LISTENER.v4], f));
    }
    daemon = await startDaemon(t, { policy: both, board });
  } catch (e) {
    setupError = e;
  }
});

s.after(async () => {
  const errors: string[] = [];
  for (const c of senders) await endProcess(c, "SIGKILL");
  if (daemon) await endProcess(daemon.child);
  for (const k of sinks) await endProcess(k.child);
  if (t) {
    try { remove({ netns: t.ns("appliance") }); } catch (e) { errors.push(String(e)); }
    try { await t.down(); } catch (e) { errors.push(String(e)); }
  }
  t = null;
  if (errors.length) throw new Error(errors.join("; "));
});

s("a backup leaves the replicated offloaded entries alone; at master it adopts the allowed flow (the kernel carries it again) and removes the refused one", async () => {
  T();
  // The "master": both streams offloaded, then it stops (the kernel carries on).
  assert.is(notify("master").status, 0);
  for (const port of PORTS) {
    const before = (await stats()).offload.total;
    const file = join(T().dir, `send-${port}.json`);
    senders.push(T().spawn("inet", [process.execPath, TOOLS, "stream-send", LISTENER.v4, String(port), "60000", file, "hold"], { name: `send-${port}` }));
    await until(`the ${port} stream is offloaded and moving`, async () => (await stats()).offload.total > before && sinkBytes(port) > 1e6);
  }
  const gen = readGeneration(T().ns("appliance"))!.gen;
  const orig = PORTS.map((p) => { const e = entries(p); assert.is(e.length, 1, `one entry toward ${p}`); return e[0]!; });
  for (const e of orig) assert.is(markGeneration(e.mark), gen);
  await endProcess(daemon!.child);
  daemon = null;
  // What the backup's kernel holds after conntrackd's commit: the entries,
  // marked by the master with another generation.
  for (const e of orig) {
    T().exec("appliance", ["conntrack", "-D", "-p", "tcp", "-s", e.src, "-d", e.dst, "--sport", String(e.sport), "--dport", String(e.dport)]);
  }
  daemon = await startDaemon(T(), { policy: only8443, board });
  // Its virtual address is not here: backup from the start, so keepalived's backup is no transition.
  assert.is(notify("backup").stdout, "portcullis ha: the daemon is backup (transition 0)\n");
  const foreign = (gen + 5) % 128;
  for (const e of orig) {
    const mark = offloadMark(foreign, markCtx(e.mark));
    const r = T().exec("appliance", ["conntrack", "-I", "-p", "tcp", "-s", e.src, "-d", e.dst, "--sport", String(e.sport), "--dport", String(e.dport),
      "--reply-src", e.dst, "--reply-dst", e.src, "--reply-port-src", String(e.dport), "--reply-port-dst", String(e.sport),
      // -u before --mark: conntrack 1.4.7 takes a later -u as the mark.
      "--state", "ESTABLISHED", "--timeout", "300", "-u", "SEEN_REPLY,ASSURED", "--mark", String(mark)]);
    assert.is(r.status, 0, r.stderr);
  }
  // Standing by: two polls later both entries are still there, and nothing moves.
  await sleep(2500);
  for (const p of PORTS) assert.is(entries(p).length, 1, `the replicated entry toward ${p} is left alone`);
  const st0 = await stats();
  assert.ok(st0.offload.leftReplicated >= 2, `left to the master: ${JSON.stringify(st0.offload)} ${JSON.stringify(PORTS.map(entries))} gen ${gen}`);
  assert.is(st0.offload.removedUntracked, 0);
  assert.is(st0.offload.live, 0);
  const stalled = PORTS.map(sinkBytes);
  await sleep(1000);
  assert.equal(PORTS.map(sinkBytes), stalled, "nothing moves while this appliance is backup");

  // The transition: the hook's `portcullis ha notify master`.
  const r = notify("master");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, "portcullis ha: the daemon is master (transition 1); offloaded flows adopted 1, refused 1\n");
  const [kept] = entries(8443);
  assert.ok(kept, "the allowed flow's entry is there");
  assert.is(kept!.mark, offloadMark(gen, markCtx(orig[0]!.mark)), "re-marked to this daemon's generation, its ctx kept");
  assert.equal(entries(8444), [], "the refused flow's entry is removed");
  const st1 = await stats();
  assert.equal([st1.ha!.role, st1.ha!.adopted, st1.ha!.adoptRefused, st1.offload.live], ["master", 1, 1, 1]);
  // The kernel carries the adopted flow again (the sender's next
  // retransmission restarts it): megabytes move, the queue sees few packets.
  const b0 = sinkBytes(8443), q0 = queued(st1);
  await until("the adopted stream moves again", () => sinkBytes(8443) > b0 + 5e6, 15_000);
  const moved = sinkBytes(8443) - b0;
  const q1 = queued(await stats());
  process.stdout.write(`    adopted stream: ${(moved / 1e6).toFixed(0)} MB after the transition, ${q1 - q0} packets through the queues\n`);
  assert.ok(q1 - q0 < 100, `${q1 - q0} packets reached the queues for ${(moved / 1448).toFixed(0)} segments`);
  const refused = sinkBytes(8444);
  await sleep(1000);
  assert.is(sinkBytes(8444), refused, "the refused stream moves nothing");
  assert.equal(entries(8444).filter((e) => (e.mark & OFFLOAD_BIT) !== 0), []);
});

s.run();
