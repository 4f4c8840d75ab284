// `portcullis demo --ha` as a user runs it (issue 17 part 2.3): the
// package's bin in a child process, the whole demo: the pair topology
// with keepalived (VRRPv3, 0.1 s adverts), 50 streams through the
// virtual gateway, the master killed, the report. Asserted: exit 0, what
// it prints (the address move, the largest gap, 50 of 50 streams
// surviving because the backup picked them up, the new connections),
// the --report file saying the same, and nothing of it left afterwards.
// Namespaces are pcdh<pid>-*; a dead run's are cleared first, and this
// run's processes and namespaces are removed even when it fails.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { clearLeftovers, clearStaleRuns } from "../host/topology/topology.js";

const ROOT = process.cwd();
const BIN = join(ROOT, "bin", "portcullis.js");
const PREFIX = `pcdh${process.pid}-`;
const TMP = mkdtempSync(join("/var/tmp", "portcullis-demo-ha-"));
const TIMEOUT_MS = 240_000;

// A hung demo is killed (by its pid, SIGKILL) and fails the test, never the run.
function runDemo(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT, encoding: "utf8", env: { ...process.env, NODE_DISABLE_COLORS: "1" }, timeout: TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: 16 << 20,
  });
  return { status: r.status, stdout: r.stdout, stderr: `${r.stderr}${r.error ? `\n(${r.error.message})` : ""}` };
}

test.before(async () => { await clearStaleRuns("pcdh"); });

test("demo --ha: the master dies under 50 streams, the backup takes the addresses and picks every stream up; the report says the same; nothing is left", async () => {
  const report = join(TMP, "report.json");
  try {
    const r = runDemo(["demo", "--ha", "--prefix", PREFIX, "--report", report]);
    assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trimEnd().split("\n");
    const ns = (n: string): string => `${PREFIX}${n}`;
    assert.is(lines[0], `bringing up two appliances on shared segments (gateway mode), VRRPv3 with 0.1 s adverts: namespaces ${
      ["inet", "seg", "appliance-a", "appliance-b", "proxy", "lan"].map(ns).join(", ")}`);
    assert.is(lines[1], `${ns("appliance-a")} is the master: it holds 203.0.113.2 (inet's gateway to the listener 203.0.113.1) and 192.0.2.1 ` +
      `(the proxy's gateway back); ${ns("appliance-b")} is a hot standby (daemon running, queues bound, pickup on)`);
    assert.is(lines[2], "50 streams from inet to 203.0.113.1:443 through the virtual gateway, a 64-byte message every 100 ms on each, echoed by the proxy; " +
      "a new connection to port 80 every 100 ms");
    assert.is(lines[3], `killing ${ns("appliance-a")}: its ports on both segments down, kill -9 of its daemon and keepalived`);
    const moved = new RegExp(`^${ns("appliance-b")} holds the virtual addresses (\\d+) ms after the cut$`).exec(lines[4] ?? "");
    assert.ok(moved, lines[4]);
    const gap = new RegExp(`^largest gap between echoes: (\\d+) ms; 50 of 50 streams survived \\(${ns("appliance-b")} picked up (\\d+) flows it had not seen open\\)$`)
      .exec(lines[5] ?? "");
    assert.ok(gap, lines[5]);
    assert.ok(Number(gap![2]) >= 50, `picked up ${gap![2]}: each of the 50 streams is a flow the backup had not seen open`);
    const fresh = /^new connections: (\d+) worked, (\d+) failed \(while the addresses moved\)$/.exec(lines[6] ?? "");
    assert.ok(fresh && Number(fresh[1]) > 0, lines[6]);
    assert.is(lines[7], "topology removed");
    assert.is(lines.length, 8, r.stdout);
    const moveMs = Number(moved![1]);
    // VRRPv3 at 0.1 s adverts: the backup takes over after 3 adverts and skew (RFC 5798: under 0.4 s); 3 s allows a loaded machine.
    assert.ok(moveMs < 3000, `the addresses moved in ${moveMs} ms`);
    const doc = JSON.parse(readFileSync(report, "utf8")) as Record<string, number>;
    assert.equal(doc, { moveMs, gapMs: Number(gap![1]), streams: 50, survived: 50, newOk: Number(fresh![1]), newFail: Number(fresh![2]) });
    const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.startsWith(PREFIX));
    assert.equal(left, [], "the demo removed its namespaces");
  } finally {
    await clearLeftovers(PREFIX);
  }
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));

test.run();
