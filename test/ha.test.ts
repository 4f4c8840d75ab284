// An HA pair with the real keepalived (issue 17 part 2): two appliance
// namespaces (pch<pid>-pair-a, -b) whose ext0 and int0 are on two bridges
// in a namespace of their own (the shared segments), each with the kernel
// rules of its board (queueing everything but what ha: lets through),
// `portcullis run` and keepalived with the configuration `portcullis ha
// --apply` wrote (VRRPv3, 0.1 s adverts, a sync group of both sides, the
// notify hook telling the daemon). Asserted:
//   - one master (the higher priority) and one backup, in both daemons'
//     stats, the virtual addresses on the master only: VRRP passes the
//     queue rules (were it queued, the daemon would drop it and both would
//     be master)
//   - a daemon restarted while keepalived runs takes its role from the
//     virtual addresses until keepalived speaks
//   - kill -9 of the master's keepalived: the other becomes master within
//     a bound, its stats and metrics say so with the time of the transition
//   - conntrackd (FTFW on the internal side, started before keepalived)
//     carries an entry of the master's kernel, mark included, into the
//     backup's external cache, and the hook's commit at the failover into
//     its kernel
//   - a link down: keepalived's FAULT reaches the daemon as fault
// Every process is ended by its pid and the namespaces deleted, even on
// failure; leftovers of dead runs are cleared first.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CLI, sleep } from "./helpers/appliance.js";
import { HaLab, type HaNode } from "./helpers/ha-lab.js";

const METRICS = "127.0.0.1:9464";
const BOUND_MS = 3000; // kill -9 of the master's keepalived -> the other daemon says master

interface Node extends HaNode { addr: { ext: string; int: string } }

const s = suite("an HA pair with keepalived");
const lab = new HaLab("pair");
let setupError: unknown = null;
const nodes: Node[] = [];

const hasVip = (n: Node, dev: string, vip: string): boolean => lab.hasAddr(n.ns, dev, vip);

function boardText(n: Node): string {
  return [
    "version: 1", "mode: host", "external: { dev: ext0 }", "internal: { dev: int0 }", "queues: { first: 0, count: 1 }",
    "ha:", "  vrid: 51", `  priority: ${n.priority}`, "  version: 3", "  advert: 0.1",
    "  external: { virtual: [203.0.113.10/24] }", "  internal: { virtual: [198.51.100.1/24] }",
    `  sync: { side: internal, address: ${n.addr.int}, peer: ${nodes.find((x) => x !== n)!.addr.int} }`, "",
  ].join("\n");
}

const daemonArgs = (n: Node): string[] => (n.name === "b" ? ["--metrics", METRICS] : []);
const startDaemon = (n: Node): Promise<void> => lab.startDaemon(n, daemonArgs(n));

// conntrackd in the foreground (tracked by its pid), before keepalived: the
// hook finds it running (`conntrackd -s`) and does not start another.
async function startConntrackd(n: Node): Promise<void> {
  const conf = join(n.dir, "portcullis-conntrackd.conf");
  lab.run(n.ns, ["mkdir", "-p", join(n.dir, "run")]);
  n.conntrackd = lab.spawn(n.ns, ["conntrackd", "-C", conf], `conntrackd-${n.name}`);
  for (let i = 0; i < 100; i++) {
    if (lab.run(n.ns, ["conntrackd", "-C", conf, "-s"], false).status === 0) return;
    await sleep(50);
  }
  throw new Error(`conntrackd ${n.name} did not come up: ${lab.log(`conntrackd-${n.name}`)}`);
}

// The entries of conntrackd's external cache (what it holds of the other appliance's).
const externalCache = (n: Node): string => lab.run(n.ns, ["conntrackd", "-C", join(n.dir, "portcullis-conntrackd.conf"), "-e"], false).stdout;

s.before(async () => {
  try {
    await lab.clearStale();
    const sw = lab.namespace("sw");
    for (const [name, priority, host] of [["a", 150, 2], ["b", 100, 3]] as const) {
      const n: Node = Object.assign(lab.node(name, priority), { addr: { ext: `203.0.113.${host}`, int: `198.51.100.${host}` } });
      const ns = n.ns;
      nodes.push(n);
      lab.veth(ns, "ext0", sw, `${name}-ext`);
      lab.veth(ns, "int0", sw, `${name}-int`);
      lab.run(ns, ["ip", "addr", "add", `${n.addr.ext}/24`, "dev", "ext0"]);
      lab.run(ns, ["ip", "addr", "add", `${n.addr.int}/24`, "dev", "int0"]);
    }
    lab.bridge(sw, "br-ext", ["a-ext", "b-ext"]);
    lab.bridge(sw, "br-int", ["a-int", "b-int"]);
    for (const n of nodes) {
      const out = await lab.bringUp(n, boardText(n), daemonArgs(n));
      assert.ok(out.includes("portcullis-conntrackd.conf"), out);
      await startConntrackd(n);
    }
    lab.startKeepaliveds();
  } catch (e) {
    setupError = e;
  }
});

s.after(async () => {
  await lab.down();
});

s("one master and one backup: the higher priority holds the virtual addresses, both daemons know their role", async () => {
  if (setupError) throw setupError;
  const [a, b] = nodes as [Node, Node];
  process.stdout.write(`    roles settled ${await lab.untilRoles(15_000)} ms after the second keepalived started\n`);
  assert.ok(hasVip(a, "ext0", "203.0.113.10") && hasVip(a, "int0", "198.51.100.1"), "a holds both virtual addresses");
  assert.not.ok(hasVip(b, "ext0", "203.0.113.10") || hasVip(b, "int0", "198.51.100.1"), "b holds none");
  // Stable: a second later nothing changed (no flapping from adverts lost in the queue).
  const before = await Promise.all([lab.role(a), lab.role(b)]);
  await sleep(1000);
  const after = await Promise.all([lab.role(a), lab.role(b)]);
  assert.equal(after.map((x) => [x.role, x.transitions]), before.map((x) => [x.role, x.transitions]));
  for (const n of nodes) {
    assert.equal(lab.keepalivedComplaints(n), [], `keepalived ${n.name} complains`);
  }
  const stats = lab.run(a.ns, [process.execPath, CLI, "stats", "--control", a.sock]).stdout;
  assert.ok(stats.split("\n").some((l) => /^ha: master since \d{4}-\d\d-\d\dT[\d:.]+Z, \d+ transitions?$/.test(l)), stats);
});

s("a daemon restarted while keepalived runs: until keepalived speaks, its role is what the virtual addresses say", async () => {
  if (setupError) throw setupError;
  for (const n of nodes) {
    await lab.end(n.daemon!);
    await startDaemon(n);
  }
  const [a, b] = nodes as [Node, Node];
  const [ra, rb] = [await lab.role(a), await lab.role(b)];
  assert.equal([ra.role, ra.transitions, ra.since, rb.role, rb.transitions], ["master", 0, null, "backup", 0]);
  const stats = lab.run(a.ns, [process.execPath, CLI, "stats", "--control", a.sock]).stdout;
  assert.ok(stats.split("\n").includes("ha: master (from the virtual addresses at start; keepalived has not said yet), 0 transitions"), stats);
  // ha: without tcp: in the board: pickup is on, as a hot standby needs.
  assert.ok(stats.split("\n").includes("tcp: pickup on (picked up 0), window tracking on"), stats);
});

// A flow of the master's kernel (a mark as offload sets one), through
// conntrackd's FTFW to the backup's external cache over the internal
// side (the sync rule of the queue rules lets it through).
const FLOW = ["-p", "tcp", "-s", "192.0.2.50", "-d", "198.51.100.20", "--sport", "40000", "--dport", "4443"];
const MARK = 0x85030000;
s("conntrackd replicates the master's entries, marks included, to the backup's external cache", async () => {
  if (setupError) throw setupError;
  const [a, b] = nodes as [Node, Node];
  const r = lab.run(a.ns, ["conntrack", "-I", ...FLOW, "--reply-src", "198.51.100.20", "--reply-dst", "192.0.2.50", "--reply-port-src", "4443",
    "--reply-port-dst", "40000", "--state", "ESTABLISHED", "--timeout", "600", "-u", "SEEN_REPLY,ASSURED", "--mark", String(MARK)], false);
  assert.is(r.status, 0, r.stderr);
  await lab.until("the entry in b's external cache", () => externalCache(b).includes("sport=40000 dport=4443"), 5000);
  assert.match(externalCache(b), new RegExp(`sport=40000 dport=4443 .*mark=${MARK}`));
  assert.is(lab.run(b.ns, ["conntrack", "-L", ...FLOW], false).stdout, "", "not in b's kernel while it is backup");
});

s("kill -9 of the master's keepalived: the backup becomes master within the bound; stats and metrics show it with the time", async () => {
  if (setupError) throw setupError;
  const [a, b] = nodes as [Node, Node];
  const vrrpPid = Number(readFileSync(join(a.dir, "vrrp.pid"), "utf8").trim());
  const t0 = Date.now();
  for (const pid of [a.keepalived!.pid!, vrrpPid]) process.kill(pid, "SIGKILL");
  const ms = await lab.until("b master", async () => (await lab.role(b)).role === "master", BOUND_MS);
  process.stdout.write(`    b told master ${ms} ms after kill -9 of a's keepalived (VRRPv3, 0.1 s adverts)\n`);
  await lab.until("b holds the virtual addresses", () => hasVip(b, "ext0", "203.0.113.10") && hasVip(b, "int0", "198.51.100.1"), 2000);
  const st = await lab.role(b);
  assert.is(st.transitions, 1, "from backup (inferred at its restart) to master");
  // The hook committed conntrackd's external cache before telling the daemon.
  assert.match(lab.run(b.ns, ["conntrack", "-L", ...FLOW]).stdout, new RegExp(`ESTABLISHED .*sport=40000 dport=4443 .*mark=${MARK} `),
    "the replicated entry is in b's kernel, with its mark");
  const since = Date.parse(st.since!);
  assert.ok(since >= t0 && since <= Date.now(), `${st.since} is after the kill`);
  const m = lab.run(b.ns, ["curl", "-sS", "--max-time", "2", `http://${METRICS}/metrics`]).stdout;
  assert.match(m, /^portcullis_ha_role\{role="master"\} 1$/m);
  assert.match(m, /^portcullis_ha_role\{role="backup"\} 0$/m);
  assert.ok(m.includes(`\nportcullis_ha_last_transition_timestamp_seconds ${since / 1000}\n`), m.split("\n").filter((l) => l.includes("_ha_")).join("\n"));
  assert.match(m, /^portcullis_ha_transitions_total 1$/m);
  assert.ok(!existsSync(`/proc/${vrrpPid}`) || readFileSync(`/proc/${vrrpPid}/stat`, "utf8").includes(") Z"), "a's VRRP process is gone");
});

s("a link down: keepalived's fault reaches the daemon", async () => {
  if (setupError) throw setupError;
  const b = nodes[1]!;
  lab.run(b.ns, ["ip", "link", "set", "ext0", "down"]);
  const ms = await lab.until("b fault", async () => (await lab.role(b)).role === "fault", 5000);
  process.stdout.write(`    b told fault ${ms} ms after its ext0 went down\n`);
  lab.run(b.ns, ["ip", "link", "set", "ext0", "up"]);
  await lab.until("b master again (no other router)", async () => (await lab.role(b)).role === "master", 5000);
  // master, fault, then keepalived's way out of a fault: backup, master.
  assert.is((await lab.role(b)).transitions, 4);
});

s.run();
