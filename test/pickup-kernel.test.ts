// TCP pickup through the real kernel (issue 17, part 1): the reference
// topology in host mode, the kernel rules of the board, `portcullis run` in
// the appliance namespace with the board's tcp.pickup off and on, and real
// scanners and TCP stacks from inet:
//   ACK scan    nmap -sA of every port learns nothing, pickup off or on:
//               every port filtered (with pickup on an ACK to 80 or 443 is
//               picked up, and the proxy's RST answering it is dropped as
//               pickup_reset: the scanner sees silence, as for the rest)
//   SYN scan    finds exactly 80 and 443 open, pickup on
//   restart     a transfer started under the previous daemon goes on
//               through a daemon restart with pickup on (picked up mid-
//               stream); with pickup off it dies: its segments are no_flow
// Namespaces carry this worker's own prefix (pcw<pid>-), processes are ended
// by their pid, leftovers of dead runs are cleared first.
import { type ChildProcess } from "node:child_process";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { request } from "../host/daemon/control.js";
import { readBoardFile } from "../host/kernel/board.js";
import { apply } from "../host/kernel/rules.js";
import { LISTENER } from "../host/topology/plan.js";
import { clearStaleRuns, type Topology, up } from "../host/topology/topology.js";
import {
  type Daemon, DEFAULT_POLICY, endProcess, nmap, sleep, startDaemon, startTool, type Server, tearDown, TOOLS, writeBoard,
} from "./helpers/appliance.js";

const PREFIX = `pcw${process.pid}-`;
const PORT = 8443;

interface DaemonStats { tcp: { pickup: boolean; pickedUp: number }; reasons: Array<{ reason: string; packets: number }> }
interface SinkStatus { bytes: number; conns: number; open: number; fin: number; reset: number }
interface SendStatus { state: string; bytes: number; error: string | null }

const s = suite("TCP pickup through the kernel, host mode");
let t: Topology | null = null;
let setupError: unknown = null;
let daemon: Daemon | null = null;
let sink: Server | null = null;
let boardOff = "", boardOn = "", policy = "", sinkFile = "";
const senders: ChildProcess[] = [];
let nSend = 0;

const T = (): Topology => {
  if (setupError !== null) throw setupError;
  if (t === null) throw new Error("the topology is not up");
  return t;
};
const D = (): Daemon => { if (daemon === null) throw new Error("no daemon"); return daemon; };
const stats = async (): Promise<DaemonStats> => {
  const r = await request(D().sock, { cmd: "stats" }, 3000);
  if (r.ok !== true) throw new Error(`stats: ${String(r.error)}`);
  return r.stats as DaemonStats;
};
const reason = (st: DaemonStats, name: string): number => Number(st.reasons.find((r) => r.reason === name)?.packets ?? 0);
const sinkStatus = (): SinkStatus => JSON.parse(readFileSync(sinkFile, "utf8")) as SinkStatus;
// The daemon again, with no flows; the scans run under the default policy.
const restart = async (board: string, p = policy): Promise<Daemon> => {
  if (daemon !== null) await endProcess(daemon.child);
  daemon = null;
  daemon = await startDaemon(T(), { policy: p, board });
  return daemon;
};
const send = (ms: number): { status: () => SendStatus; child: ChildProcess } => {
  const file = join(T().dir, `send-${++nSend}.json`);
  const child = T().spawn("inet", [process.execPath, TOOLS, "stream-send", LISTENER.v4, String(PORT), String(ms), file, "hold"],
    { name: `send-${nSend}`, log: join(T().dir, `send-${nSend}.log`) });
  senders.push(child);
  const status = (): SendStatus => { try { return JSON.parse(readFileSync(file, "utf8")) as SendStatus; } catch { return { state: "starting", bytes: 0, error: null }; } };
  return { status, child };
};
const until = async (what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(50)) if (await ok()) return;
  throw new Error(`timed out after ${ms} ms waiting for: ${what} (sink ${readFileSync(sinkFile, "utf8").trim()})`);
};

s.before(async () => {
  try {
    await clearStaleRuns("pcw");
    t = await up({ mode: "host", prefix: PREFIX });
    boardOff = writeBoard(t, "board-off.yaml");
    boardOn = writeBoard(t, "board-on.yaml");
    appendFileSync(boardOn, "tcp:\n  pickup: true\n");
    policy = join(t.dir, "pickup-policy.yaml");
    writeFileSync(policy, `${readFileSync(DEFAULT_POLICY, "utf8").trimEnd()}\n  - name: test-stream\n    action: allow\n    interface: external\n` +
      `    direction: in\n    proto: tcp\n    dst: listener\n    dport: ${PORT}\n`);
    apply(readBoardFile(boardOff), { backend: "auto", netns: t.ns("appliance") });
    sinkFile = join(t.dir, "sink.json");
    sink = await startTool(t, "appliance", "sink", ["stream-sink", sinkFile, String(PORT), LISTENER.v4], sinkFile);
  } catch (e) {
    setupError = e;
  }
});

// Everything this suite started, by pid; the rules and namespaces.
s.after(() => {
  const down = t, stop = [daemon?.child, sink?.child];
  t = null; daemon = null;
  return tearDown(down, { kill: senders, stop });
});

for (const pickup of [false, true]) {
  s(`pickup ${pickup ? "on" : "off"}: an ACK scan of every port learns nothing (all filtered)`, async () => {
    await restart(pickup ? boardOn : boardOff, DEFAULT_POLICY);
    assert.is((await stats()).tcp.pickup, pickup);
    const scan = nmap(T(), "inet", LISTENER.v4, ["-sA", "-p-"]);
    const unfiltered = [...scan.ports].filter(([, st]) => st !== "filtered").map(([p, st]) => `${p} ${st}`);
    assert.equal(unfiltered, [], scan.raw);
    assert.ok(scan.ignored === null ? scan.ports.size === 65535 : scan.ignored.state === "filtered" && scan.ignored.count + scan.ports.size === 65535, scan.raw);
    const st = await stats();
    if (pickup) {
      // 80 and 443 were picked up, and the proxy's RST each time dropped.
      assert.ok(st.tcp.pickedUp >= 2, `picked up ${st.tcp.pickedUp}`);
      assert.is(reason(st, "pickup_reset"), st.tcp.pickedUp);
    } else {
      assert.is(st.tcp.pickedUp, 0);
    }
    assert.ok(reason(st, "no_flow") >= 65533, `no_flow ${reason(st, "no_flow")}`);
  });
}

s("pickup on: a SYN scan finds exactly 80 and 443 open", async () => {
  await restart(boardOn, DEFAULT_POLICY);
  const scan = nmap(T(), "inet", LISTENER.v4, ["-sS", "-p-"]);
  const open = [...scan.ports].filter(([, st]) => st === "open").map(([p]) => p).sort((a, b) => a - b);
  assert.equal(open, [80, 443], scan.raw);
});

for (const pickup of [true, false]) {
  s(`pickup ${pickup ? "on" : "off"}: a transfer started under the previous daemon ${pickup ? "goes on through" : "dies at"} a daemon restart`, async () => {
    await restart(pickup ? boardOn : boardOff);
    const x = send(60_000);
    const b0 = sinkStatus().bytes;
    await until("the transfer moves", () => sinkStatus().bytes > b0 + 2e6);
    await restart(pickup ? boardOn : boardOff); // the new daemon has no flows
    const b1 = sinkStatus().bytes;
    if (pickup) {
      await until("the transfer moves again after the restart", () => sinkStatus().bytes > b1 + 2e6, 15_000);
      const st = await stats();
      assert.is(st.tcp.pickedUp, 1, "picked up once, mid-stream");
      assert.is(reason(st, "tcp_out_of_window"), 0);
      assert.equal(x.status().error, null);
    } else {
      await sleep(1500);
      const b2 = sinkStatus().bytes;
      await sleep(2000);
      assert.is(sinkStatus().bytes, b2, "nothing more arrives");
      assert.ok(b2 - b1 < 2e6, `at most what was in flight arrived (${b2 - b1} bytes)`);
      const st = await stats();
      assert.is(st.tcp.pickedUp, 0);
      assert.ok(reason(st, "no_flow") > 0, "its segments are no_flow");
    }
    await endProcess(x.child, "SIGKILL");
  });
}

s.run();
