// The NFQUEUE addon through the real kernel. Two network namespaces joined by
// a veth pair: "a" sends UDP, "b" queues it (iptables-legacy -j NFQUEUE) to a
// consumer that runs INSIDE "b" (a queue binds per namespace):
// test/helpers/nfq-child.ts, the addon plus the release core with no rule
// table, so every datagram gets the default verdict the test chose.
//
//   ns pcq-<pid>-a  192.0.2.1 va ──veth── vb 192.0.2.2  ns pcq-<pid>-b
//                                            INPUT -j NFQUEUE → nfq-child
//                                            UDP listener (counts arrivals)
//
// Namespaces left by an interrupted run (their pid is gone) are removed
// first; this run's are removed at the end, and every process it started is
// killed by pid.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { explainNfqError, loadAddon, NFQ_LAYOUT, NfqQueue } from "../host/native/nfq.js";
import { parseKernelQueues } from "../host/daemon/kernel-queue.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHILD = join(root, "dist", "test", "helpers", "nfq-child.js");
const PREFIX = `pcq-${process.pid}-`;
const NS_A = `${PREFIX}a`, NS_B = `${PREFIX}b`;
const ADDR_A = "192.0.2.1", ADDR_B = "192.0.2.2";
const ADDR6_A = "2001:db8:5::1", ADDR6_B = "2001:db8:5::2";

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.error?.message ?? ""} ${r.stderr}`);
  return r.stdout;
}
const inB = (...args: string[]): string => run("ip", ["netns", "exec", NS_B, ...args]);
const ipt = (...rule: string[]): string => inB("iptables-legacy", "-w", ...rule);
const ip6t = (...rule: string[]): string => inB("ip6tables-legacy", "-w", ...rule);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function clearLeftovers(): void {
  for (const line of run("ip", ["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^pcq-(\d+)-/.exec(name);
    if (m && (Number(m[1]) === process.pid || !alive(Number(m[1])))) spawnSync("ip", ["netns", "del", name]);
  }
}

// A process with its stdout lines; killed by pid in the test's finally.
class Proc {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = "";
  exited = false;
  code: number | null = null;
  private partial = "";

  constructor(args: string[]) {
    this.child = spawn(args[0]!, args.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      const parts = (this.partial + s).split("\n");
      this.partial = parts.pop()!;
      this.lines.push(...parts);
    });
    this.child.stderr!.setEncoding("utf8").on("data", (s: string) => (this.stderr += s));
    this.child.on("exit", (code) => { this.code = code; this.exited = true; });
  }

  async waitFor(pred: (line: string) => boolean, ms: number, what: string): Promise<string> {
    const end = Date.now() + ms;
    for (let gone = 0; ; ) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (this.exited) gone++; // give the last output a moment to come through
      if (Date.now() > end || gone > 5) {
        throw new Error(`timed out waiting for ${what}; stdout: ${this.lines.slice(-5).join(" | ")}; stderr: ${this.stderr}`);
      }
      await sleep(10);
    }
  }

  last(prefix: string): string | undefined {
    for (let i = this.lines.length - 1; i >= 0; i--) if (this.lines[i]!.startsWith(prefix)) return this.lines[i];
    return undefined;
  }

  kill(): void {
    const pid = this.child.pid;
    if (pid !== undefined && !this.exited) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface ChildStats {
  packets: number; bytes: number; batches: number; wakeups: number; verdictMsgs: number; accepted: number; dropped: number;
  enobufs: number; recvErrors: number; truncated: number; nlErrors: number; rcvbuf: number;
  unique: number; duplicates: number; maxBatch: number; classifyErrors: number; verdictErrors: number;
  undecidedNoVerdict: number; undecidedUnparsed: number; undecidedSendFailed: number; sendErrors: number; sweeps: number;
  daemon?: { undecided: Record<string, number>; engine: { readErrors: number }; queues: Array<Record<string, number>> };
  first?: { capLen: number; wireLen: number; tsNs: string; hwProto: number; inRole: number; outRole: number; hook: number; queue: number; version: number };
  core: { packets: number; accept: number; drop: number };
}

const procs: Proc[] = [];

// The consumer in "b"; resolves once the queue is bound.
async function consumer(...args: string[]): Promise<Proc> {
  const p = new Proc(["ip", "netns", "exec", NS_B, process.execPath, CHILD, ...args]);
  procs.push(p);
  await p.waitFor((l) => l.startsWith("READY "), 5000, "the consumer to bind");
  return p;
}

// Cumulative packets the consumer has verdicted (its "P" lines).
const verdicted = (c: Proc): number => Number(c.last("P ")?.split(" ")[1] ?? 0);

// Ends a consumer's --stall-ms early: everything has been sent.
const unstall = (c: Proc): void => void process.kill(c.child.pid!, "SIGUSR2");

async function stats(c: Proc): Promise<ChildStats> {
  process.kill(c.child.pid!, "SIGTERM");
  const line = await c.waitFor((l) => l.startsWith("STATS "), 5000, "the consumer's stats");
  return JSON.parse(line.slice(6)) as ChildStats;
}

const LISTENER = `
const [addr, port] = process.argv.slice(1);
const s = require("node:dgram").createSocket({ type: addr.includes(":") ? "udp6" : "udp4", recvBufferSize: 4 << 20 });
let n = 0;
s.on("message", (m) => { n++; process.stdout.write("R " + n + " " + m.length + "\\n"); });
s.bind(Number(port), addr, () => process.stdout.write("READY\\n"));
process.on("SIGTERM", () => { process.stdout.write("COUNT " + n + "\\n"); process.exit(0); });`;

async function listener(port: number, addr = ADDR_B): Promise<Proc> {
  const p = new Proc(["ip", "netns", "exec", NS_B, process.execPath, "-e", LISTENER, addr, String(port)]);
  procs.push(p);
  await p.waitFor((l) => l === "READY", 5000, "the listener");
  return p;
}
const received = (l: Proc): number => Number(l.last("R ")?.split(" ")[1] ?? 0);

const SENDER = `
const [dst, port, count, size] = process.argv.slice(1).map((x, i) => (i ? Number(x) : x));
const s = require("node:dgram").createSocket(dst.includes(":") ? "udp6" : "udp4");
const b = Buffer.alloc(size, 0x61);
let done = 0;
s.bind(() => { for (let i = 0; i < count; i++) s.send(b, port, dst, () => { if (++done === count) s.close(); }); });`;

// `count` datagrams of `size` bytes from "a" to the listener port, at once.
function send(port: number, count: number, size = 16, dst = ADDR_B): void {
  run("ip", ["netns", "exec", NS_A, process.execPath, "-e", SENDER, dst, String(port), String(count), String(size)]);
}

// A queue rule for one destination port (each test has its own port and queue).
function queueRule(port: number, queue: number, chain = "INPUT", table = "filter"): void {
  ipt("-t", table, "-A", chain, "-i", "vb", "-p", "udp", "--dport", String(port), "-j", "NFQUEUE", "--queue-num", String(queue));
}

// UDP port 5000 + queue queued to `queue`, a consumer bound to it (default
// verdict accept, then args) and a listener behind it.
async function boundConsumer(queue: number, ...args: string[]): Promise<{ c: Proc; l: Proc; port: number }> {
  const port = 5000 + queue;
  queueRule(port, queue);
  const c = await consumer("--queue", String(queue), "--default", "accept", ...args);
  return { c, l: await listener(port), port };
}

function finish(): void {
  for (const p of procs.splice(0)) p.kill();
}

let vbIndex = 0;

test.before(() => {
  clearLeftovers();
  run("ip", ["netns", "add", NS_A]);
  run("ip", ["netns", "add", NS_B]);
  run("ip", ["-n", NS_A, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", NS_B]);
  run("ip", ["-n", NS_A, "addr", "add", `${ADDR_A}/24`, "dev", "va"]);
  run("ip", ["-n", NS_B, "addr", "add", `${ADDR_B}/24`, "dev", "vb"]);
  run("ip", ["-n", NS_A, "addr", "add", `${ADDR6_A}/64`, "dev", "va", "nodad"]);
  run("ip", ["-n", NS_B, "addr", "add", `${ADDR6_B}/64`, "dev", "vb", "nodad"]);
  for (const [ns, dev] of [[NS_A, "va"], [NS_B, "vb"], [NS_A, "lo"], [NS_B, "lo"]] as const) run("ip", ["-n", ns, "link", "set", dev, "up"]);
  vbIndex = (JSON.parse(run("ip", ["-n", NS_B, "-j", "link", "show", "vb"])) as Array<{ ifindex: number }>)[0]!.ifindex;
});

test.after(() => {
  finish();
  for (const ns of [NS_A, NS_B]) spawnSync("ip", ["netns", "del", ns]);
});
process.once("exit", () => {
  for (const p of procs) p.kill();
  for (const ns of [NS_A, NS_B]) spawnSync("ip", ["netns", "del", ns]);
});

test("default accept: the datagram arrives; its descriptor carries hook, ethertype, role, queue, lengths, time", async () => {
  try {
    const { c, l } = await boundConsumer(1, "--role", `${vbIndex}=${ABI.ROLE_EXTERNAL}`);
    const before = BigInt(Date.now()) * 1_000_000n;
    send(5001, 1, 100);
    await l.waitFor((x) => x.startsWith("R 1 "), 3000, "the datagram at the listener");
    assert.is(l.last("R "), "R 1 100");
    const s = await stats(c);
    assert.is(s.packets, 1);
    assert.is(s.accepted, 1);
    assert.is(s.dropped, 0);
    assert.is(s.verdictMsgs, 1);
    assert.is(s.core.accept, 1);
    const f = s.first!;
    assert.equal(
      { capLen: f.capLen, wireLen: f.wireLen, hwProto: f.hwProto, inRole: f.inRole, outRole: f.outRole, hook: f.hook, queue: f.queue, version: f.version },
      { capLen: 128, wireLen: 128, hwProto: 0x0800, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE, hook: ABI.HOOK_INPUT, queue: 1, version: 4 },
    );
    const ts = BigInt(f.tsNs);
    assert.ok(ts > before - 60_000_000_000n && ts < before + 60_000_000_000n, `timestamp ${ts} is wall-clock time near ${before}`);
  } finally {
    finish();
  }
});

test("default drop: the datagrams never arrive; the consumer counts the drops", async () => {
  try {
    queueRule(5002, 2);
    const c = await consumer("--queue", "2", "--default", "drop");
    const l = await listener(5002);
    send(5002, 3);
    await c.waitFor(() => verdicted(c) >= 3, 3000, "three verdicts");
    await sleep(200);
    assert.is(received(l), 0);
    const s = await stats(c);
    assert.equal([s.packets, s.dropped, s.accepted, s.core.drop], [3, 3, 0, 3]);
  } finally {
    finish();
  }
});

test("a burst of 2,000 datagrams: many packets per wakeup, each verdicted exactly once, all delivered", async () => {
  try {
    const { c, l } = await boundConsumer(3);
    send(5003, 2000);
    await c.waitFor(() => verdicted(c) >= 2000, 10_000, "2,000 verdicts");
    await l.waitFor(() => received(l) >= 2000, 3000, "2,000 datagrams at the listener");
    const s = await stats(c);
    assert.is(s.packets, 2000);
    assert.is(s.unique, 2000, "2,000 distinct packet ids");
    assert.is(s.duplicates, 0);
    assert.is(s.accepted + s.dropped, 2000, "one verdict per packet");
    assert.is(s.core.packets, 2000);
    assert.is(s.enobufs + s.recvErrors + s.nlErrors + s.classifyErrors, 0);
    assert.ok(s.batches < s.packets && s.wakeups < s.packets, `batches ${s.batches}, wakeups ${s.wakeups} for ${s.packets} packets`);
    assert.ok(s.maxBatch > 1);
    assert.ok(s.verdictMsgs <= s.batches, `runs of equal verdicts coalesce: ${s.verdictMsgs} messages for ${s.batches} batches`);
    assert.is(received(l), 2000);
  } finally {
    finish();
  }
});

test("IPv6 with the GSO and fail-open flags: ethertype 0x86DD, the datagram arrives", async () => {
  try {
    ip6t("-A", "INPUT", "-i", "vb", "-p", "udp", "--dport", "5011", "-j", "NFQUEUE", "--queue-num", "11");
    const c = await consumer("--queue", "11", "--default", "accept", "--gso", "--fail-open", "--role", `${vbIndex}=${ABI.ROLE_INTERNAL}`);
    const l = await listener(5011, ADDR6_B);
    send(5011, 1, 20, ADDR6_B);
    await l.waitFor((x) => x.startsWith("R 1 "), 3000, "the datagram over IPv6");
    const s = await stats(c);
    assert.equal([s.packets, s.accepted], [1, 1]);
    const f = s.first!;
    assert.equal([f.hwProto, f.version, f.capLen, f.wireLen, f.inRole, f.hook, f.queue], [0x86dd, 6, 68, 68, ABI.ROLE_INTERNAL, ABI.HOOK_INPUT, 11]);
  } finally {
    finish();
  }
});

test("a small DATA area: a packet that does not fit waits in the handle for the next call", async () => {
  try {
    const { c, l } = await boundConsumer(12, "--data-cap", "20000", "--stall-ms", "10000");
    send(5012, 300, 1000);
    unstall(c);
    await c.waitFor(() => verdicted(c) >= 300, 5000, "300 verdicts");
    await l.waitFor(() => received(l) >= 300, 3000, "300 datagrams at the listener");
    const s = await stats(c);
    assert.equal([s.packets, s.unique, s.duplicates, s.accepted], [300, 300, 0, 300]);
    // 1,028-byte packets, 8-byte aligned: 19 fit in 20,000 bytes.
    assert.is(s.maxBatch, 19);
    assert.ok(s.batches >= 16, `${s.batches} batches`);
    assert.is(received(l), 300);
  } finally {
    finish();
  }
});

test("copy range: cap_len is cut, wire_len is the real length, the packet still passes whole", async () => {
  try {
    queueRule(5004, 4);
    const c = await consumer("--queue", "4", "--default", "accept", "--copy-range", "64");
    const l = await listener(5004);
    send(5004, 1, 400);
    await l.waitFor((x) => x.startsWith("R 1 "), 3000, "the datagram");
    assert.is(l.last("R "), "R 1 400");
    const s = await stats(c);
    assert.is(s.first!.capLen, 64);
    assert.is(s.first!.wireLen, 428);
    assert.is(s.truncated, 1);
    assert.is(s.bytes, 428);
  } finally {
    finish();
  }
});

test("marks: an accepted packet carries the mark its verdict set", async () => {
  try {
    // Queued in PREROUTING; INPUT lets through only what carries mark 42.
    queueRule(5005, 5, "PREROUTING", "mangle");
    ipt("-A", "INPUT", "-p", "udp", "--dport", "5005", "-m", "mark", "--mark", "42", "-j", "ACCEPT");
    ipt("-A", "INPUT", "-p", "udp", "--dport", "5005", "-j", "DROP");
    const c = await consumer("--queue", "5", "--default", "accept", "--mark", "42");
    const l = await listener(5005);
    send(5005, 2);
    await l.waitFor(() => received(l) >= 2, 3000, "two marked datagrams");
    const s = await stats(c);
    assert.is(s.first!.hook, ABI.HOOK_PREROUTING);
    const counters = ipt("-L", "INPUT", "-v", "-x", "-n");
    const markLine = counters.split("\n").find((x) => x.includes("mark match 0x2a"));
    assert.ok(markLine && /^\s*2\s/.test(markLine), counters);
  } finally {
    finish();
  }
});

test("a queue another process holds: EBUSY (the kernel says EPERM) with what to check", async () => {
  try {
    await consumer("--queue", "6", "--default", "accept");
    const p = new Proc(["ip", "netns", "exec", NS_B, process.execPath, CHILD, "--queue", "6", "--try-open"]);
    procs.push(p);
    const r = JSON.parse((await p.waitFor((x) => x.startsWith("OPEN "), 5000, "the second bind")).slice(5));
    assert.is(r.ok, false);
    assert.ok(["EBUSY", "EEXIST"].includes(r.code), r.code);
    assert.is(r.op, "bind");
    assert.match(r.message, /queue 6/);
    assert.match(r.message, /already bound by another process/);
    assert.is(r.message, explainNfqError(r.code, "bind", 6));
  } finally {
    finish();
  }
});

test("not root: EPERM, and the message says root or CAP_NET_ADMIN", async () => {
  const msg = explainNfqError("EPERM", "bind", 3);
  assert.match(msg, /^NFQUEUE queue 3: bind failed \(EPERM\): not permitted/);
  assert.match(msg, /root or CAP_NET_ADMIN/);
  assert.match(explainNfqError("EPROTONOSUPPORT", "open netlink socket", 0), /modprobe nfnetlink_queue/);
  try {
    // The same, for real: the consumer without capabilities (still uid 0, so
    // it can read the checkout wherever CI cloned it; the kernel asks for
    // CAP_NET_ADMIN, not for uid 0).
    const p = new Proc(["ip", "netns", "exec", NS_B, "setpriv", "--inh-caps=-all", "--bounding-set=-all",
      process.execPath, CHILD, "--queue", "3", "--try-open"]);
    procs.push(p);
    const r = JSON.parse((await p.waitFor((x) => x.startsWith("OPEN "), 5000, "the unprivileged bind")).slice(5));
    assert.equal([r.ok, r.code, r.op], [false, "EPERM", "bind"]);
    assert.is(r.message, msg);
  } finally {
    finish();
  }
});

test("bad arguments are TypeErrors (code EINVAL) and no socket is opened", () => {
  const bad = (f: () => unknown, re: RegExp): void => {
    try {
      f();
    } catch (e) {
      assert.instance(e, TypeError);
      assert.is((e as { code?: string }).code, "EINVAL");
      assert.match((e as Error).message, re);
      return;
    }
    assert.unreachable("no TypeError");
  };
  bad(() => NfqQueue.open({ queue: 70000 }), /queue must be an integer in 0\.\.65535/);
  bad(() => NfqQueue.open({ queue: 1, copyRange: -1 }), /copyRange/);
  bad(() => NfqQueue.open({ queue: 1, failOpen: "yes" as unknown as boolean }), /failOpen must be a boolean/);
  const { Queue } = loadAddon();
  bad(() => new Queue({ queue: 1 }), /layout/);
  bad(() => (Queue as unknown as (o: object) => unknown)({ queue: 1, layout: NFQ_LAYOUT }), /new Queue/);
  bad(() => new Queue({ queue: 1, layout: { ...NFQ_LAYOUT, ABI_VERSION: NFQ_LAYOUT.ABI_VERSION + 1 } }), new RegExp(`ABI_VERSION ${NFQ_LAYOUT.ABI_VERSION + 1}`));
  bad(() => new Queue({ queue: 1, layout: { ...NFQ_LAYOUT, D_TS: 28 } }), /D_TS .* does not fit/);
});

test("fail-open: a 16-packet queue and a stalled reader still pass a burst of 200; fail-closed drops the rest", async () => {
  // The kernel's own counters (what the daemon's stats read, kernel-queue.ts), of namespace b.
  const kernelDropped = (queue: number): number =>
    parseKernelQueues(inB("cat", "/proc/net/netfilter/nfnetlink_queue")).get(queue)?.queueDropped ?? -1;
  try {
    queueRule(5008, 8);
    queueRule(5009, 9);
    const arrived: Record<string, number> = {};
    for (const [queue, port, failOpen] of [[8, 5008, true], [9, 5009, false]] as const) {
      const c = await consumer("--queue", String(queue), "--default", "accept", "--max-len", "16", "--stall-ms", "10000",
        ...(failOpen ? ["--fail-open"] : []));
      const l = await listener(port);
      send(port, 200);
      await sleep(50);
      unstall(c);
      await c.waitFor(() => verdicted(c) >= 16, 5000, "the stalled consumer to catch up");
      await sleep(150);
      arrived[String(failOpen)] = received(l);
      if (!failOpen) assert.ok(kernelDropped(queue) >= 100, `the kernel counts the overflow (${kernelDropped(queue)})`);
      const s = await stats(c);
      assert.ok(s.packets >= 16 && s.packets < 100, `the consumer saw only the queued packets (${s.packets})`);
    }
    assert.ok(arrived.true! >= 100, `fail-open: ${arrived.true} of 200 arrived`);
    assert.ok(arrived.false! < 100, `fail-closed: ${arrived.false} of 200 arrived`);
    assert.ok(arrived.false! < arrived.true!);
  } finally {
    finish();
  }
});

test("a receive buffer too small for the burst: ENOBUFS is counted and reading goes on", async () => {
  try {
    queueRule(5010, 10);
    const c = await consumer("--queue", "10", "--default", "accept", "--rcvbuf", "16384", "--stall-ms", "10000");
    const l = await listener(5010);
    send(5010, 400);
    await sleep(50);
    unstall(c);
    await c.waitFor(() => verdicted(c) > 0, 5000, "the first verdicts");
    await sleep(100);
    const got = received(l);
    send(5010, 5);
    await l.waitFor(() => received(l) >= got + 5, 3000, "the datagrams sent after the overflow");
    // Read while the queue is bound (the row goes when the consumer stops).
    const k = parseKernelQueues(inB("cat", "/proc/net/netfilter/nfnetlink_queue")).get(10);
    const s = await stats(c);
    assert.ok(s.enobufs >= 1, `enobufs ${s.enobufs}`);
    assert.ok(s.packets < 400, `the kernel dropped what did not fit (${s.packets} read)`);
    assert.is(s.accepted, s.packets);
    // Every one of the 405 was either read or counted by the kernel as undelivered.
    assert.equal(k && { sum: s.packets + k.userDropped, queueDropped: k.queueDropped }, { sum: 405, queueDropped: 0 });
  } finally {
    finish();
  }
});

// ── every packet received gets exactly one verdict (issue 12) ──────────────
// A batch verdict accepts every packet still queued up to its id. Each test
// leaves some packets without a verdict of their own (a failed send, an
// unreadable message, a refused batch, no verdict at all, a failed read),
// then lets later packets be accepted: the first must not arrive with them.

// Sends `count` datagrams while the consumer stalls, so they are read in
// one batch; waits until it has read `read` of them.
async function oneBatch(c: Proc, port: number, count: number, read = count): Promise<void> {
  send(port, count);
  await sleep(50);
  unstall(c);
  await c.waitFor(() => verdicted(c) >= read, 5000, `${read} packets read`);
}

const logged = (c: Proc, msg: string): Array<Record<string, unknown>> =>
  c.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.msg === msg);

test("a verdict that cannot be sent: its packets are dropped, not accepted by the batch verdict after them", async () => {
  try {
    // drop, drop, accept, accept in one batch; the DROP message for ids 1-2 fails
    // (queue 20), or that and the first sweep (queue 21, a fail-open queue:
    // undecided packets are dropped there too; README "When things go wrong").
    for (const [queue, port, fails] of [[20, 5020, 1], [21, 5021, 2]] as const) {
      queueRule(port, queue);
      const c = await consumer("--queue", String(queue), "--default", "accept", "--pattern", "d,d,a,a",
        "--stall-ms", "10000", "--fault", `send:${fails}`, ...(queue === 21 ? ["--fail-open"] : []));
      const l = await listener(port);
      await oneBatch(c, port, 4);
      await sleep(200);
      assert.is(received(l), 2, `queue ${queue}: only the two accepted datagrams arrive`);
      const s = await stats(c);
      assert.equal(
        { sendErrors: s.sendErrors, undecidedSendFailed: s.undecidedSendFailed, sweeps: s.sweeps, accepted: s.accepted, dropped: s.dropped, verdictErrors: s.verdictErrors },
        { sendErrors: fails, undecidedSendFailed: 2, sweeps: 1, accepted: 2, dropped: 0, verdictErrors: 0 }, `queue ${queue}`);
    }
  } finally {
    finish();
  }
});

test("a packet message the addon cannot read: dropped, not accepted by a later batch verdict", async () => {
  try {
    // Queue 22: the 2nd message of a batch of 4 is unreadable. Queue 23: a
    // lone packet is, and three more come in a later batch.
    queueRule(5022, 22);
    const c = await consumer("--queue", "22", "--default", "accept", "--stall-ms", "10000", "--fault", "skip:1:1");
    const l = await listener(5022);
    await oneBatch(c, 5022, 4, 3);
    await sleep(200);
    assert.is(received(l), 3);
    const s = await stats(c);
    assert.equal([s.packets, s.accepted, s.undecidedUnparsed, s.sweeps, s.recvErrors], [3, 3, 1, 1, 1]);

    queueRule(5023, 23);
    const c2 = await consumer("--queue", "23", "--default", "accept", "--fault", "skip:1");
    const l2 = await listener(5023);
    send(5023, 1);
    await c2.waitFor(() => c2.lines.some((x) => x.startsWith("P ")), 3000, "the unreadable packet's wakeup");
    send(5023, 3);
    await c2.waitFor(() => verdicted(c2) >= 3, 3000, "three packets read");
    await sleep(200);
    assert.is(received(l2), 3);
    const s2 = await stats(c2);
    assert.equal([s2.packets, s2.accepted, s2.undecidedUnparsed, s2.sweeps], [3, 3, 1, 1]);
  } finally {
    finish();
  }
});

// Two packets in one batch that the consumer (args) leaves undecided, then
// three more: exactly the three arrive. Returns the consumer and its stats.
async function twoUndecidedThenThree(queue: number, ...args: string[]): Promise<{ c: Proc; s: ChildStats }> {
  const { c, l, port } = await boundConsumer(queue, ...args, "--stall-ms", "10000");
  await oneBatch(c, port, 2);
  send(port, 3);
  await c.waitFor(() => verdicted(c) >= 5, 3000, "five packets read");
  await l.waitFor(() => received(l) >= 3, 3000, "the three later datagrams");
  await sleep(200);
  assert.is(received(l), 3);
  const s = await stats(c);
  assert.equal([s.packets, s.accepted, s.dropped], [5, 3, 2]);
  return { c, s };
}

test("packets the host gives no verdict: dropped when it reads again, not accepted with the next batch", async () => {
  try {
    const { s } = await twoUndecidedThenThree(24, "--no-verdict", "1");
    assert.is(s.undecidedNoVerdict, 2);
  } finally {
    finish();
  }
});

test("close with a batch awaiting its verdicts: DROP, counted as no_verdict", async () => {
  try {
    const { c, l, port } = await boundConsumer(29, "--stall-ms", "10000", "--no-verdict", "1");
    await oneBatch(c, port, 2);
    const s = await stats(c);
    await sleep(100);
    assert.is(received(l), 0);
    assert.equal([s.packets, s.accepted, s.dropped, s.undecidedNoVerdict], [2, 0, 2, 2]);
  } finally {
    finish();
  }
});

test("the daemon's loop: a batch the core refuses is dropped whole and counted; the next batch does not take it along", async () => {
  try {
    const { c, s } = await twoUndecidedThenThree(25, "--daemon", "--refuse-batches", "1");
    assert.is(logged(c, "core refused a batch; its packets are dropped").length, 1);
    assert.is(s.daemon!.undecided.core_refused, 2);
    assert.is(s.daemon!.queues[0]!.undecidedCoreRefused, 2);
  } finally {
    finish();
  }
});

test("the daemon's loop: a failed read is logged and counted, what it may have lost is dropped, and reading goes on", async () => {
  try {
    // The first read loses its datagram (as a failed netlink read can).
    const { c, l } = await boundConsumer(26, "--daemon", "--fault", "recv:1");
    send(5026, 1);
    await c.waitFor(() => logged(c, "reading a queue failed; reading goes on").length > 0, 3000, "the error's log line");
    send(5026, 3);
    await l.waitFor(() => received(l) >= 3, 3000, "the datagrams after the error");
    await sleep(200);
    assert.is(received(l), 3);
    assert.is(c.exited, false);
    const s = await stats(c);
    assert.equal([s.packets, s.accepted, s.recvErrors, s.sweeps], [3, 3, 1, 1]);
    assert.is(s.daemon!.engine.readErrors, 1);
    assert.is(s.daemon!.queues[0]!.readErrors, 1);
  } finally {
    finish();
  }
});

test("the daemon's loop: reads that keep failing end the daemon with status 1 (systemd restarts it), nothing passes", async () => {
  try {
    const { c, l } = await boundConsumer(27, "--daemon", "--fault", "recv:1000");
    for (let i = 0; i < 20 && !c.exited; i++) { send(5027, 1); await sleep(20); }
    await c.waitFor(() => c.exited, 3000, "the daemon to exit");
    await sleep(100);
    assert.is(c.code, 1);
    assert.is(logged(c, "reading a queue failed; reading goes on").length, 9);
    const last = logged(c, "reading a queue failed for good; exiting so that the service is restarted");
    assert.is(last.length, 1);
    assert.is(last[0]!.inARow, 10);
    assert.is(received(l), 0);
  } finally {
    finish();
  }
});

test("a socket error other than ENOBUFS: counted and logged, and polling goes on", async () => {
  try {
    const { c, l } = await boundConsumer(28, "--daemon", "--fault", "poll:1");
    send(5028, 2);
    await l.waitFor(() => received(l) >= 2, 3000, "the datagrams of the failed wakeup");
    send(5028, 2);
    await l.waitFor(() => received(l) >= 4, 3000, "the datagrams after it");
    assert.is(logged(c, "reading a queue failed; reading goes on").length, 1);
    const s = await stats(c);
    assert.equal([s.packets, s.accepted, s.recvErrors], [4, 4, 1]);
    assert.is(s.daemon!.engine.readErrors, 1);
  } finally {
    finish();
  }
});

test.run();
