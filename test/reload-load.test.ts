// Reload under load, through the real kernel: 50 long-lived TCP streams and
// a steady stream of new connections through the appliance while the table
// is reloaded 100 times, alternating two policies that both allow them. No
// stream is reset or stalls, every new connection succeeds and was opened
// by a rule of a whole table, and every packet the kernel queued got an
// accept from the daemon (kernel counters against the daemon's).
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { request } from "../host/daemon/control.js";
import { apply } from "../host/kernel/rules.js";
import { type Topology, up } from "../host/topology/topology.js";
import { ENGINES } from "../host/core/load.js";
import { clearStaleTestTopologies, TEST_PREFIX } from "./helpers/topology.js";

const POLICY = readFileSync("host/policy/default.yaml", "utf8");
const STREAM_RULE = "  - name: load-stream\n    action: allow\n    interface: external\n    direction: in\n    proto: tcp\n    dst: listener\n    dport: 9000\n";
// A: the stream rule last. B: first, and an unrelated deny before the rest.
const POLICY_A = POLICY.replace(/rules:\n/, "rules:\n") + STREAM_RULE;
const POLICY_B = POLICY.replace(/rules:\n/, `rules:\n${STREAM_RULE}  - name: no-telnet\n    action: deny\n    interface: external\n    direction: in\n    proto: tcp\n    dport: 23\n`);
const LOAD = "dist/host/topology/stream-load.js";

type Stats = {
  verdicts: { accept: { packets: number }; drop: { packets: number } };
  reasons: Array<{ reason: string; packets: number }>;
  queues: Array<{ name: string; packets: number; accepted: number; dropped: number }>;
  reloads: Array<{ ok: boolean; ticket: number | null }>;
};

const reason = (s: Stats, r: string): number => s.reasons.find((x) => x.reason === r)?.packets ?? 0;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Packets the kernel queued, every queue rule of both families.
function kernelQueued(t: Topology): number {
  let total = 0;
  for (const tool of ["iptables-legacy", "ip6tables-legacy"]) {
    for (const chain of ["PORTCULLIS-IN", "PORTCULLIS-OUT", "PORTCULLIS-FWD"]) {
      const out = t.exec("appliance", [tool, "-w", "-L", chain, "-n", "-v", "-x"]).stdout;
      for (const line of out.split("\n")) {
        if (/NFQUEUE/.test(line)) total += Number(line.trim().split(/\s+/)[0]);
      }
    }
  }
  return total;
}

const queuedByDaemon = (s: Stats): number => s.queues.reduce((n, q) => n + q.packets, 0);

// The kernel's and the daemon's counters at a moment when no packet is in
// flight between them: both unchanged across 300 ms.
async function settled(t: Topology, sock: string): Promise<{ kernel: number; stats: Stats }> {
  let prev: { kernel: number; stats: Stats } | null = null;
  for (let i = 0; i < 30; i++) {
    const cur = { kernel: kernelQueued(t), stats: (await request(sock, { cmd: "stats" })).stats as Stats };
    if (prev && prev.kernel === cur.kernel && queuedByDaemon(prev.stats) === queuedByDaemon(cur.stats)) return cur;
    prev = cur;
    await sleep(300);
  }
  throw new Error("the counters never settled");
}

for (const engine of ENGINES) test(`100 reloads under 50 streams and new connections, engine ${engine}: nothing reset, stalled, dropped or mixed`, async () => {
  await clearStaleTestTopologies();
  const t = await up({ mode: "host", prefix: TEST_PREFIX, proxy: false, services: false });
  try {
    const a = join(t.dir, "a.yaml"), b = join(t.dir, "b.yaml");
    writeFileSync(a, POLICY_A);
    writeFileSync(b, POLICY_B);
    const board = join(t.dir, "board.yaml");
    writeFileSync(board, "version: 1\nmode: host\nexternal: {dev: ext0}\ninternal: {dev: int0}\n");
    apply(t.board, { backend: "iptables", netns: t.ns("appliance") });
    const sock = join(t.dir, "control.sock");
    t.spawn("appliance", [process.execPath, "dist/host/cli.js", "run", "--policy", a, "--board", board, "--control", sock, "--state-dir", join(t.dir, "state"), "--engine", engine], { name: "daemon" });
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(existsSync(sock), "the daemon came up");
    t.spawn("appliance", [process.execPath, LOAD, "server", "203.0.113.1", "9000"], { name: "echo" });
    await new Promise((r) => setTimeout(r, 500));
    const { kernel: queuedBefore, stats: before } = await settled(t, sock);
    assert.is((before as Stats & { coreEngine?: string }).coreEngine, engine);

    // The load: 8 s of traffic from inet.
    const client = spawn("ip", ["netns", "exec", t.ns("inet"), process.execPath, LOAD, "client", "203.0.113.1", "9000", "50", "8"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    client.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    const done = new Promise<number>((r) => client.on("exit", (c) => r(c ?? -1)));
    await new Promise((r) => setTimeout(r, 1000));
    // 100 reloads, alternating, while it runs.
    const results: boolean[] = [];
    for (let i = 0; i < 100; i++) {
      const r = await request(sock, { cmd: "reload", path: i % 2 === 0 ? b : a });
      results.push(r.ok === true);
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.is(await done, 0, "the load client exited cleanly");
    const load = JSON.parse(out.trim()) as { streams: Array<{ sent: number; echoed: number; maxGapMs: number; error: string }>; newOk: number; newFail: number; failures: string[] };
    const { kernel: queuedAfter, stats: after } = await settled(t, sock);

    assert.ok(results.every(Boolean), "every reload committed");
    assert.is(after.reloads.filter((x) => x.ok).length, Math.min(100, 101));
    assert.is(load.streams.length, 50);
    for (const [i, s] of load.streams.entries()) {
      assert.is(s.error, "", `stream ${i}`);
      assert.ok(s.sent > 10_000, `stream ${i} sent ${s.sent}`);
      assert.is(s.echoed, s.sent, `stream ${i}: every byte came back`);
      assert.ok(s.maxGapMs < 1500, `stream ${i} stalled ${s.maxGapMs} ms`);
    }
    assert.is(load.newFail, 0, `failed new connections: ${load.failures.join(", ")}`);
    assert.ok(load.newOk > 150, `new connections ${load.newOk}`);
    // Every flow (50 streams + the new connections) was opened by a rule of
    // a whole table: each SYN met rule_allow, none a default or a mix.
    assert.is(reason(after, "rule_allow") - reason(before, "rule_allow"), 50 + load.newOk);
    assert.is(after.verdicts.drop.packets - before.verdicts.drop.packets, 0, "no packet dropped during the load");
    // The kernel queued exactly what the daemon decided (and accepted).
    const queued = queuedAfter - queuedBefore;
    assert.is(queuedByDaemon(after) - queuedByDaemon(before), queued, "kernel queue counters equal the daemon's");
    assert.is(after.verdicts.accept.packets - before.verdicts.accept.packets, queued);
  } finally {
    await t.down();
  }
});

test.run();
