// Offload through the real kernel (issue 15 step 2), in host and gateway
// mode: the reference topology, the board with offload on, the kernel rules
// with the offload chain, `portcullis run` in the appliance namespace, and
// real TCP streams from inet to the listener (port 8443, a rule with
// offload: true):
//   offloaded   after offload.after packets the queue stops seeing the
//               flow, the kernel's conntrack holds it marked, and the
//               transfer completes; its FIN ends the core's entry
//   denied      a denied flow is never offloaded (no marked entry)
//   revoked     a reload with --recheck that forbids the flow stops it: no
//               byte of it reaches the server after the reload's answer
//   reset       an RST of an offloaded flow ends the core's entry
//   restart     the daemon stops: the offloaded transfer goes on in the
//               kernel while new connections fail closed; the new daemon
//               adopts the flow; with on_start: end it cuts it instead
//   scan        nmap from inet finds exactly 80 and 443 with offload on
// Every process is ended by its pid; namespaces carry this process's prefix
// and are deleted in the after hook; leftovers of dead runs are cleared first.
import { type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { request } from "../host/daemon/control.js";
import { readBoardFile } from "../host/kernel/board.js";
import { OFFLOAD_BIT } from "../host/kernel/offload.js";
import { apply, remove } from "../host/kernel/rules.js";
import { type Mode } from "../host/policy/compile.js";
import { LISTENER } from "../host/topology/plan.js";
import { type Topology, up } from "../host/topology/topology.js";
import {
  CLI, type Daemon, DEFAULT_POLICY, endProcess, nmap, sleep, startDaemon, startTool, type Server, tearDown, TOOLS, writeBoard,
} from "./helpers/appliance.js";
import { clearStaleTestTopologies, TEST_PREFIX } from "./helpers/topology.js";

const PORT = 8443;
const AFTER = 10;

interface OffloadStats { live: number; total: number; ended: number; revoked: number; adopted: number; endedAtStart: number; revocations: number; bytes: number }
interface DaemonStats { offload: OffloadStats | null; queues: Array<{ packets: number; offloaded: number }>; reasons: Array<{ reason: string; packets: number }> }
interface SinkStatus { bytes: number; conns: number; open: number; fin: number; reset: number }
interface SendStatus { state: string; bytes: number; error: string | null }

function offloadSuite(mode: Mode): void {
  const s = suite(`offload through the kernel, ${mode} mode`);
  let t: Topology | null = null;
  let setupError: unknown = null;
  let daemon: Daemon | null = null;
  let sink: Server | null = null;
  let board = "", boardEnd = "", policy = "", forbid = "", all = "";
  const senders: ChildProcess[] = [];
  let sinkFile = "", nSend = 0;

  const T = (): Topology => {
    if (setupError !== null) throw setupError;
    if (t === null) throw new Error("the topology is not up");
    return t;
  };
  const D = (): Daemon => { if (daemon === null) throw new Error("no daemon"); return daemon; };
  const proxyNs = (): "appliance" | "proxy" => T().plan.proxyNs as "appliance" | "proxy";
  const stats = async (): Promise<DaemonStats> => {
    const r = await request(D().sock, { cmd: "stats" }, 3000);
    if (r.ok !== true) throw new Error(`stats: ${String(r.error)}`);
    return r.stats as DaemonStats;
  };
  const queued = (st: DaemonStats): number => st.queues.reduce((a, q) => a + q.packets, 0);
  const sinkStatus = (): SinkStatus => JSON.parse(readFileSync(sinkFile, "utf8")) as SinkStatus;
  const restart = async (b = board, p = policy): Promise<Daemon> => {
    if (daemon !== null) await endProcess(daemon.child);
    daemon = null;
    daemon = await startDaemon(T(), { policy: p, board: b });
    return daemon;
  };
  // One stream from inet; its status file.
  const send = (ms: number, end: "fin" | "rst" | "hold"): { file: string; status: () => SendStatus; child: ChildProcess } => {
    const file = join(T().dir, `send-${++nSend}.json`);
    const child = T().spawn("inet", [process.execPath, TOOLS, "stream-send", LISTENER.v4, String(PORT), String(ms), file, end], { name: `send-${nSend}`, log: join(T().dir, `send-${nSend}.log`) });
    senders.push(child);
    const status = (): SendStatus => { try { return JSON.parse(readFileSync(file, "utf8")) as SendStatus; } catch { return { state: "starting", bytes: 0, error: null }; } };
    return { file, status, child };
  };
  const until = async (what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(50)) if (await ok()) return;
    const st = daemon ? JSON.stringify((await stats()).offload) : "no daemon";
    throw new Error(`timed out after ${ms} ms waiting for: ${what} (offload ${st}; sink ${readFileSync(sinkFile, "utf8").trim()})`);
  };
  // A new stream (held open) once the daemon has offloaded it and it moves.
  const offloadedStream = async (): Promise<ReturnType<typeof send>> => {
    const before = (await stats()).offload!.total;
    const x = send(30_000, "hold");
    await until("the new stream is offloaded and moving", async () => (await stats()).offload!.total > before && x.status().state === "sending" && x.status().bytes > 1e6);
    return x;
  };
  // Marked (offloaded) conntrack entries toward PORT in the appliance namespace.
  const marked = (): string[] => {
    const r = T().exec("appliance", ["conntrack", "-L", "--mark", `${OFFLOAD_BIT}/${OFFLOAD_BIT}`]);
    return r.stdout.split("\n").filter((l) => l.includes(`dport=${PORT} `) || l.includes(`dport=8080 `));
  };

  s.before(async () => {
    try {
      await clearStaleTestTopologies();
      t = await up({ mode, prefix: TEST_PREFIX });
      board = writeBoard(t, "board.yaml", { offload: "adopt" });
      boardEnd = writeBoard(t, "board-end.yaml", { offload: "end" });
      const def = readFileSync(DEFAULT_POLICY, "utf8").trimEnd();
      policy = join(t.dir, "offload-policy.yaml");
      writeFileSync(policy, `${def}\n  - name: test-stream\n    action: allow\n    interface: external\n    direction: ${mode === "host" ? "in" : "forward"}\n` +
        `    proto: tcp\n    dst: listener\n    dport: ${PORT}\n    offload: true\noffload:\n  after: ${AFTER}\n`);
      forbid = join(t.dir, "forbid-policy.yaml");
      writeFileSync(forbid, `${def}\noffload:\n  after: ${AFTER}\n`);
      all = join(t.dir, "all-policy.yaml");
      writeFileSync(all, `${def}\noffload:\n  all: true\n`);
      // Window tracking by the kernel's conntrack for what it carries.
      T().exec("appliance", ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_be_liberal=0", "net.netfilter.nf_conntrack_acct=1"]);
      apply(readBoardFile(board), { backend: "auto", netns: t.ns("appliance") });
      sinkFile = join(t.dir, "sink.json");
      sink = await startTool(t, proxyNs(), "sink", ["stream-sink", sinkFile, String(PORT), LISTENER.v4], sinkFile);
      await restart();
    } catch (e) {
      setupError = e;
    }
  });

  s.after(async () => {
    const down = t;
    t = null;
    await tearDown(down, { kill: senders, stop: [daemon?.child, sink?.child] });
    daemon = null;
  });

  s("the setup: kernel rules with the offload chain, the daemon with offload on", async () => {
    T();
    const st = await stats();
    assert.ok(st.offload, "stats has offload");
    assert.is(st.offload!.live, 0);
  });

  s("a bulk flow is offloaded after its first packets: the queue stops seeing it, the transfer completes, its FIN ends the core's entry", async () => {
    const before = await stats();
    const sink0 = sinkStatus();
    const x = send(1500, "fin");
    let markedSeen = 0;
    await until("the stream is offloaded", async () => (await stats()).offload!.live === 1);
    markedSeen = marked().length;
    await until("the sender is done", () => ["done", "closed"].includes(x.status().state), 15_000);
    await until("the sink has every byte", () => sinkStatus().bytes - sink0.bytes === x.status().bytes && sinkStatus().fin > sink0.fin);
    const after = await stats();
    const sent = x.status().bytes;
    const segments = sent / 1448;
    const throughQueue = queued(after) - queued(before);
    process.stdout.write(`    ${mode}: ${(sent / 1e6).toFixed(0)} MB in 1.5 s, ${throughQueue} packets through the queues (>= ${Math.round(segments)} segments on the wire)\n`);
    assert.is(markedSeen, 1, "one marked conntrack entry while it ran");
    assert.ok(sent > 20e6, `the stream moved ${sent} bytes`);
    assert.ok(throughQueue < 200, `${throughQueue} packets reached the queues`);
    assert.ok(throughQueue >= AFTER, `at least the first ${AFTER} packets were decided by the core (${throughQueue})`);
    assert.is(after.offload!.total - before.offload!.total, 1);
    assert.ok(after.queues.reduce((a, q) => a + q.offloaded, 0) >= 1, "an NF_REPEAT verdict with the mark");
    // The kernel saw the FIN: the next poll ends the core's entry.
    await until("the FIN ended the core's entry", async () => (await stats()).offload!.live === 0, 5000);
    assert.is((await stats()).offload!.ended - before.offload!.ended, 1);
  });

  s("a denied flow is never offloaded", async () => {
    const before = await stats();
    const r = T().exec("inet", ["curl", "-sS", "--connect-timeout", "1", `http://${LISTENER.v4}:8080/`]);
    assert.is(r.status, 28, "8080 from inet times out (dropped)");
    const after = await stats();
    assert.is(after.offload!.total, before.offload!.total);
    assert.equal(marked().filter((l) => l.includes("dport=8080 ")), []);
  });

  s("an RST of an offloaded flow ends the core's entry", async () => {
    const before = await stats();
    const x = send(800, "rst");
    await until("offloaded", async () => (await stats()).offload!.total > before.offload!.total);
    await until("the sender reset", () => ["done", "closed", "error"].includes(x.status().state), 10_000);
    await until("the RST ended the core's entry", async () => (await stats()).offload!.live === 0, 5000);
    const after = await stats();
    assert.is(after.offload!.ended - before.offload!.ended, 1);
  });

  s("a reload with --recheck that forbids the flow stops it: nothing of it reaches the server after the answer", async () => {
    const before = await stats();
    const x = await offloadedStream();
    const r = await request(D().sock, { cmd: "reload", path: forbid, recheck: true }, 10_000);
    assert.is(r.ok, true, String(r.error));
    const rec = (r.reload as { recheck: { ended: number; revoked: number; revokeMs: number } }).recheck;
    process.stdout.write(`    ${mode}: revoked ${rec.revoked} offloaded flow in ${rec.revokeMs.toFixed(1)} ms\n`);
    assert.is(rec.revoked, 1);
    assert.ok(rec.ended >= 1);
    // What the sink's socket had taken before the revocation, it reads
    // within a moment; after that nothing more arrives.
    await sleep(300);
    const settled = sinkStatus().bytes;
    await sleep(1000);
    assert.is(sinkStatus().bytes, settled, "no byte after the revocation");
    const st = await stats();
    assert.is(st.offload!.revocations - before.offload!.revocations, 1);
    assert.is(st.offload!.live, 0);
    assert.ok((st.reasons.find((q) => q.reason === "no_flow")?.packets ?? 0) > 0, "its packets come back to the core and meet no flow");
    await endProcess(x.child, "SIGKILL");
    const back = await request(D().sock, { cmd: "reload", path: policy }, 10_000);
    assert.is(back.ok, true);
  });

  s("a daemon restart: the kernel carries the offloaded transfer while new flows fail closed; the new daemon adopts it", async () => {
    const x = await offloadedStream();
    await endProcess(D().child);
    daemon = null;
    const b0 = sinkStatus().bytes;
    await sleep(300);
    const b1 = sinkStatus().bytes;
    assert.ok(b1 > b0, `the transfer goes on without a daemon (${b0} -> ${b1})`);
    const fresh = T().exec("inet", ["curl", "-sS", "--connect-timeout", "1", `http://${LISTENER.v4}:443/`]);
    assert.is(fresh.status, 28, "a new connection fails closed");
    await restart();
    const st = await stats();
    assert.is(st.offload!.adopted, 1);
    assert.is(st.offload!.live, 1);
    assert.equal(marked().length, 1, "one marked entry, of this generation");
    const b2 = sinkStatus().bytes;
    await sleep(300);
    assert.ok(sinkStatus().bytes > b2, "still moving after the adoption");
    assert.equal(x.status().error, null);
    await endProcess(x.child, "SIGKILL");
  });

  s("on_start: end cuts the flows an earlier daemon offloaded", async () => {
    const x = await offloadedStream();
    await restart(boardEnd);
    const st = await stats();
    assert.ok(st.offload!.endedAtStart >= 1, `ended at start: ${st.offload!.endedAtStart}`);
    await sleep(100);
    const b0 = sinkStatus().bytes;
    await sleep(1000);
    assert.is(sinkStatus().bytes, b0, "the cut flow moves nothing");
    await endProcess(x.child, "SIGKILL");
    await restart();
  });

  s("nmap from inet finds exactly 80 and 443 open with every allow rule offloading", async () => {
    const r = await request(D().sock, { cmd: "reload", path: all }, 10_000);
    assert.is(r.ok, true, String(r.error));
    const scan = nmap(T(), "inet", LISTENER.v4, ["-sS", "-p-"]);
    const open = [...scan.ports].filter(([, st]) => st === "open").map(([p]) => p).sort((a, b) => a - b);
    assert.equal(open, [80, 443], scan.raw);
    const back = await request(D().sock, { cmd: "reload", path: policy }, 10_000);
    assert.is(back.ok, true);
  });

  s("offload on without the kernel's offload chain: the daemon refuses to start, in one line", async () => {
    if (daemon !== null) await endProcess(daemon.child);
    daemon = null;
    remove({ netns: T().ns("appliance") });
    const log = join(T().dir, "no-chain.log");
    const child = T().spawn("appliance", [process.execPath, CLI, "run", "--policy", policy, "--board", board, "--control", join(T().dir, "no-chain.sock"),
      "--state-dir", join(T().dir, "state-no-chain")], { name: "no-chain", log });
    const code = await new Promise<number | null>((res) => child.on("exit", (c) => res(c)));
    const lines = readFileSync(log, "utf8").split("\n").filter((l) => l.startsWith("portcullis: error:"));
    assert.is(code, 1);
    assert.equal(lines, ["portcullis: error: offload is on, but the kernel rules have no offload chain: load them with `portcullis rules apply --board BOARD` (offload: { enabled: true })"]);
  });

  s.run();
}

if (process.env.OFFLOAD_MODE !== "gateway") offloadSuite("host");
if (process.env.OFFLOAD_MODE !== "host") offloadSuite("gateway");
