// The conntrack addon (host/native/ct.c) through the real kernel. Two network
// namespaces joined by a veth pair; "b" tracks what reaches it (an
// iptables-legacy conntrack rule, nf_conntrack_acct=1), and the addon runs
// INSIDE "b" (conntrack tables are per namespace): test/helpers/ct-child.ts,
// driven by JSON lines.
//
//   ns pct-<pid>-a  192.0.2.1 va ──veth── vb 192.0.2.2  ns pct-<pid>-b
//   2001:db8:7::1                            2001:db8:7::2
//                                   INPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
//                                   mangle PREROUTING -p icmp -j CONNMARK --set-mark 0x20
//                                   ct-child (the addon), TCP and UDP servers
//
// Namespaces left by an interrupted run (their pid is gone) are removed
// first; this run's are removed at the end, and every process it started is
// killed by pid.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { available, type CtEntry, type CtTuple } from "../host/native/ct.js";
import { alive, sleep } from "./helpers/appliance.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHILD = join(root, "dist", "test", "helpers", "ct-child.js");
const PREFIX = `pct-${process.pid}-`;
const NS_A = `${PREFIX}a`, NS_B = `${PREFIX}b`;
const A = "192.0.2.1", B = "192.0.2.2", A6 = "2001:db8:7::1", B6 = "2001:db8:7::2";

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 20_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.error?.message ?? ""} ${r.stderr}`);
  return r.stdout;
}
const inB = (...args: string[]): string => run("ip", ["netns", "exec", NS_B, ...args]);

function clearLeftovers(): void {
  for (const line of run("ip", ["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^pct-(\d+)-/.exec(name);
    if (m && (Number(m[1]) === process.pid || !alive(Number(m[1])))) spawnSync("ip", ["netns", "del", name]);
  }
}

const children: ChildProcess[] = [];
function killAll(): void {
  for (const c of children.splice(0)) if (c.pid !== undefined && c.exitCode === null) try { process.kill(c.pid, "SIGKILL"); } catch { /* gone */ }
}

interface Reply { ok: boolean; value?: unknown; error?: { name: string; code: string; message: string; removed?: number } }
interface Ev { event: CtEntry[]; overflowed: boolean }

// The addon in "b": call(op, ...args) sends one request and awaits its answer.
class Ct {
  readonly child: ChildProcess;
  readonly events: Ev[] = [];
  private buf = "";
  private next = 1;
  private waiting = new Map<number, (r: Reply) => void>();
  stderr = "";
  ready: Promise<void>;

  constructor(extra: string[] = []) {
    this.child = spawn("ip", ["netns", "exec", NS_B, process.execPath, CHILD, ...extra], { stdio: ["pipe", "pipe", "pipe"] });
    children.push(this.child);
    let ready!: () => void;
    this.ready = new Promise((r) => (ready = r));
    this.child.stderr!.setEncoding("utf8").on("data", (s: string) => (this.stderr += s));
    this.child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      const lines = (this.buf + s).split("\n");
      this.buf = lines.pop()!;
      for (const l of lines) {
        if (l === "READY") { ready(); continue; }
        const o = JSON.parse(l) as Reply & Ev & { id?: number };
        if (o.event) this.events.push({ event: o.event, overflowed: o.overflowed });
        else this.waiting.get(o.id!)?.(o);
      }
    });
  }

  // The raw answer: for the error tests.
  async raw(op: string, ...args: unknown[]): Promise<Reply> {
    const id = this.next++;
    const p = new Promise<Reply>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${op}: no answer in 30 s; stderr: ${this.stderr}`)), 30_000);
      this.waiting.set(id, (r) => { clearTimeout(t); this.waiting.delete(id); resolve(r); });
    });
    this.child.stdin!.write(JSON.stringify({ id, op, args }) + "\n");
    return p;
  }

  async call<T>(op: string, ...args: unknown[]): Promise<T> {
    const r = await this.raw(op, ...args);
    if (!r.ok) throw new Error(`${op}: ${r.error!.code}: ${r.error!.message}`);
    return r.value as T;
  }

  ended(): CtEntry[] {
    return this.events.flatMap((e) => e.event);
  }
}

// A handle in "b" over an empty table (conntrack -F: whatever an earlier
// test left).
async function openCt(extra: string[] = []): Promise<Ct> {
  inB("conntrack", "-F");
  const c = new Ct(extra);
  await Promise.race([c.ready, sleep(10_000).then(() => { throw new Error(`ct-child did not start: ${c.stderr}`); })]);
  return c;
}

const key = (e: CtTuple): string => `${e.family} ${e.proto} ${e.src} ${e.sport} > ${e.dst} ${e.dport}`;
const tupleOf = (e: CtEntry): CtTuple => ({ family: e.family, proto: e.proto, src: e.src, dst: e.dst, sport: e.sport, dport: e.dport });
const byKey = (l: CtEntry[]): CtEntry[] => [...l].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
// Entries without what changes by itself (timeout, id) for exact comparison.
const fixed = (l: CtEntry[]): Array<Omit<CtEntry, "timeout" | "id">> =>
  byKey(l).map(({ timeout: _t, id: _i, ...rest }) => rest);
const udp = (sport: number, dport = 53, src = "198.51.100.1", dst = "198.51.100.2"): CtTuple => ({ family: 4, proto: 17, src, dst, sport, dport });

test.before(() => {
  clearLeftovers();
  run("ip", ["netns", "add", NS_A]);
  run("ip", ["netns", "add", NS_B]);
  run("ip", ["-n", NS_A, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", NS_B]);
  run("ip", ["-n", NS_A, "addr", "add", `${A}/24`, "dev", "va"]);
  run("ip", ["-n", NS_B, "addr", "add", `${B}/24`, "dev", "vb"]);
  run("ip", ["-n", NS_A, "addr", "add", `${A6}/64`, "dev", "va", "nodad"]);
  run("ip", ["-n", NS_B, "addr", "add", `${B6}/64`, "dev", "vb", "nodad"]);
  for (const [ns, dev] of [[NS_A, "va"], [NS_B, "vb"], [NS_A, "lo"], [NS_B, "lo"]] as const) run("ip", ["-n", ns, "link", "set", dev, "up"]);
  inB("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1");
  for (const t of ["iptables-legacy", "ip6tables-legacy"]) inB(t, "-w", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT");
  inB("iptables-legacy", "-w", "-t", "mangle", "-A", "PREROUTING", "-p", "icmp", "-j", "CONNMARK", "--set-mark", "0x20");
});

test.after(() => {
  killAll();
  for (const ns of [NS_A, NS_B]) spawnSync("ip", ["netns", "del", ns]);
});
process.once("exit", () => {
  killAll();
  for (const ns of [NS_A, NS_B]) spawnSync("ip", ["netns", "del", ns]);
});

// Servers in "b": a UDP echo on 5300 (v4 and v6) and a TCP server on 8080
// that reads until the client ends, then ends too.
const SERVERS = `
const net = require("node:net"), dgram = require("node:dgram");
let up = 0; const ok = () => { if (++up === 3) process.stdout.write("READY\\n"); };
for (const [t, a] of [["udp4", "${B}"], ["udp6", "${B6}"]]) {
  const s = dgram.createSocket(t); s.on("message", (m, r) => s.send(m, r.port, r.address)); s.bind(5300, a, ok);
}
net.createServer((c) => { c.on("data", () => {}); c.on("end", () => c.end()); }).listen(8080, "${B}", ok);`;

// A client in "a": one UDP exchange of 100 bytes from port 40001 (v4) and
// 40002 (v6), then a TCP connection from port 40003 that sends 1000 bytes,
// prints "OPEN", and on a line on stdin ends and exits once closed.
const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
let n = 0;
for (const [t, a, p] of [["udp4", "${B}", 40001], ["udp6", "${B6}", 40002]]) {
  const s = dgram.createSocket(t);
  s.on("message", () => { s.close(); if (++n === 2) tcp(); });
  s.bind(p, () => s.send(Buffer.alloc(100, 1), 5300, a));
}
function tcp() {
  const c = net.connect({ host: "${B}", port: 8080, localPort: 40003 }, () => { c.write(Buffer.alloc(1000, 2), () => process.stdout.write("OPEN\\n")); });
  c.on("data", () => {});
  process.stdin.once("data", () => c.end());
  c.on("close", () => { process.stdout.write("CLOSED\\n"); process.exit(0); });
}`;

function spawnLines(args: string[]): { child: ChildProcess; lines: string[]; waitFor(l: string): Promise<void> } {
  const child = spawn(args[0]!, args.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  const lines: string[] = [];
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => lines.push(...s.split("\n").filter(Boolean)));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  return {
    child, lines,
    async waitFor(l: string) {
      for (const end = Date.now() + 10_000; !lines.includes(l); await sleep(10)) if (Date.now() > end) throw new Error(`no ${l}: ${err}`);
    },
  };
}

// conntrack -L in "b" (IPv4 and IPv6), as the entries the addon reports:
// the ORIGINAL tuple, mark, id and TCP state of each line.
function cliList(): Array<{ key: string; mark: number; id: number; tcpState: string | null }> {
  const out: Array<{ key: string; mark: number; id: number; tcpState: string | null }> = [];
  for (const fam of ["ipv4", "ipv6"]) {
    for (const line of inB("conntrack", "-L", "-f", fam, "-o", "id").split("\n").filter(Boolean)) {
      const w = line.split(/\s+/);
      const proto = Number(w[1]);
      const get = (k: string): string | undefined => w.find((x) => x.startsWith(`${k}=`))?.slice(k.length + 1);
      const tcpState = proto === 6 ? w[3]! : null;
      const t = { family: (fam === "ipv4" ? 4 : 6) as 4 | 6, proto, src: get("src")!, dst: get("dst")!, sport: Number(get("sport") ?? 0), dport: Number(get("dport") ?? 0) };
      // The entry's id is the last id= (an ICMP tuple has its own id= first).
      out.push({ key: key(t), mark: Number(get("mark")), id: Number([...w].reverse().find((x) => x.startsWith("id="))!.slice(3)), tcpState });
    }
  }
  return out.sort((x, y) => (x.key < y.key ? -1 : 1));
}

test("real traffic: UDP (v4, v6) and TCP entries dumped with exact tuples, states and counters; conntrack -L agrees", async () => {
  const ct = await openCt();
  try {
    const srv = spawnLines(["ip", "netns", "exec", NS_B, process.execPath, "-e", SERVERS]);
    await srv.waitFor("READY");
    const cl = spawnLines(["ip", "netns", "exec", NS_A, process.execPath, "-e", CLIENT]);
    await cl.waitFor("OPEN");
    run("ip", ["netns", "exec", NS_A, "ping", "-c", "1", "-W", "2", "-s", "56", B]);
    await sleep(100); // the server's ACK of the data
    const all = await ct.call<CtEntry[]>("dump");
    const u4 = { family: 4, proto: 17, src: A, dst: B, sport: 40001, dport: 5300 };
    const u6 = { family: 6, proto: 17, src: A6, dst: B6, sport: 40002, dport: 5300 };
    const t4 = { family: 4, proto: 6, src: A, dst: B, sport: 40003, dport: 8080 };
    const i4 = { family: 4, proto: 1, src: A, dst: B, sport: 0, dport: 0 };
    assert.equal(all.map(key).sort(), [u4, u6, t4, i4].map((t) => key(t as CtTuple)).sort());
    const get = (t: object): CtEntry => all.find((e) => key(e) === key(t as CtTuple))!;
    // One datagram each way: 20 + 8 + 100 bytes over IPv4, 40 + 8 + 100 over IPv6.
    assert.equal({ ...get(u4), id: 0, timeout: 0 }, { ...u4, mark: 0, id: 0, tcpState: null, timeout: 0, packets: [1, 1], bytes: [128, 128] });
    assert.equal({ ...get(u6), id: 0, timeout: 0 }, { ...u6, mark: 0, id: 0, tcpState: null, timeout: 0, packets: [1, 1], bytes: [148, 148] });
    // The echo request and reply: 20 + 8 + 56 bytes each; the connmark the rule set.
    assert.equal({ ...get(i4), id: 0, timeout: 0 }, { ...i4, mark: 0x20, id: 0, tcpState: null, timeout: 0, packets: [1, 1], bytes: [84, 84] });
    const t = get(t4);
    assert.is(t.tcpState, "ESTABLISHED");
    assert.ok(t.packets[0] >= 3 && t.packets[1] >= 2, `TCP packets ${t.packets}`);
    assert.ok(t.bytes[0] >= 1000 + 3 * 40 && t.bytes[1] >= 2 * 40, `TCP bytes ${t.bytes}`);
    assert.ok(t.timeout > 400_000 && t.timeout <= 432_000, `established timeout ${t.timeout}`); // 5 days
    assert.ok(all.every((e) => e.id > 0));
    // The CLI sees the same entries: tuples, marks, ids, states.
    const mine = byKey(all).map((e) => ({ key: key(e), mark: e.mark, id: e.id, tcpState: e.tcpState }));
    assert.equal(mine, cliList());
    // The kernel's own entry re-marked (as offload marks a decided flow).
    await ct.call("setMark", t4, 0x1);
    assert.equal((await ct.call<CtEntry[]>("dump", { mark: 0x1, mask: 0x1 })).map((e) => [key(e), e.tcpState]), [[key(t4 as CtTuple), "ESTABLISHED"]]);
    // Both ends close: the entry goes to TIME_WAIT.
    cl.child.stdin!.write("x\n");
    await cl.waitFor("CLOSED");
    await sleep(100);
    const after = (await ct.call<CtEntry[]>("dump")).find((e) => key(e) === key(t4 as CtTuple))!;
    assert.equal([after.tcpState, after.mark], ["TIME_WAIT", 0x1]);
    assert.ok(after.timeout <= 120, `TIME_WAIT timeout ${after.timeout}`);
    // The ICMP entry (no ports), marked by the CONNMARK rule: removeMarked reaches it by mark.
    assert.equal((await ct.call<CtEntry[]>("dump", { mark: 0x20, mask: 0x20 })).map(key), [key(i4 as CtTuple)]);
    assert.is((await ct.call<{ removed: number }>("removeMarked", { mark: 0x20, mask: 0x20 })).removed, 1);
    assert.equal((await ct.call<CtEntry[]>("dump")).map(key).sort(), [u4, u6, t4].map((t) => key(t as CtTuple)).sort());
    await ct.call("removeMarked", { mark: 0, mask: 0 });
  } finally {
    killAll();
  }
});

test("created entries: exact tuples (IPv4, IPv6 compressed per RFC 5952), marks, TCP states; the mark filter returns exactly the marked ones", async () => {
  const ct = await openCt();
  try {
    const made = [
      { ...udp(1001), mark: 0x1, timeout: 300 },
      { ...udp(1002), mark: 0x3, timeout: 300 },
      { ...udp(1003), timeout: 300 },
      { family: 6, proto: 6, src: "2001:db8:0:0:1:0:0:1", dst: "2001:DB8::2", sport: 2000, dport: 443, mark: 0x101, timeout: 600, tcpState: "ESTABLISHED" },
      { family: 4, proto: 6, src: "203.0.113.7", dst: "198.51.100.2", sport: 2001, dport: 80, mark: 0x100, timeout: 60, tcpState: "SYN_SENT" },
      { family: 4, proto: 6, src: "203.0.113.7", dst: "198.51.100.2", sport: 2002, dport: 80, timeout: 60, tcpState: "TIME_WAIT" },
    ];
    for (const e of made) await ct.call("create", e);
    const all = await ct.call<CtEntry[]>("dump");
    const z = { packets: [0, 0], bytes: [0, 0] };
    assert.equal(fixed(all), byKey([
      { ...udp(1001), mark: 1, tcpState: null, ...z },
      { ...udp(1002), mark: 3, tcpState: null, ...z },
      { ...udp(1003), mark: 0, tcpState: null, ...z },
      { family: 6, proto: 6, src: "2001:db8::1:0:0:1", dst: "2001:db8::2", sport: 2000, dport: 443, mark: 0x101, tcpState: "ESTABLISHED", ...z },
      { family: 4, proto: 6, src: "203.0.113.7", dst: "198.51.100.2", sport: 2001, dport: 80, mark: 0x100, tcpState: "SYN_SENT", ...z },
      { family: 4, proto: 6, src: "203.0.113.7", dst: "198.51.100.2", sport: 2002, dport: 80, mark: 0, tcpState: "TIME_WAIT", ...z },
    ] as unknown as CtEntry[]).map(({ timeout: _t, id: _i, ...r }) => r));
    const tw = all.find((e) => e.sport === 2000)!;
    assert.ok(tw.timeout > 590 && tw.timeout <= 600, `timeout ${tw.timeout}`);
    const ports = async (f: object): Promise<number[]> => (await ct.call<CtEntry[]>("dump", f)).map((e) => e.sport).sort();
    assert.equal(await ports({ mark: 0x1, mask: 0x1 }), [1001, 1002, 2000]);
    assert.equal(await ports({ mark: 0x1, mask: 0xff }), [1001, 2000]);
    assert.equal(await ports({ mark: 0x1, mask: 0xffffffff }), [1001]);
    assert.equal(await ports({ mark: 0x100, mask: 0x100 }), [2000, 2001]);
    assert.equal(await ports({ mark: 0, mask: 0xffffffff }), [1003, 2002]);
    assert.equal(await ports({ mark: 0x2, mask: 0x2 }), [1002]);
    assert.equal(await ports({ mark: 0x8, mask: 0x8 }), []);
    // A tuple taken already: EEXIST.
    const dup = await ct.raw("create", { ...udp(1001), timeout: 5 });
    assert.equal([dup.ok, dup.error!.code, dup.error!.message], [false, "EEXIST", "conntrack: create failed (EEXIST): an entry with this tuple exists already"]);
    const s = await ct.call<{ dumps: number; errors: number }>("stats");
    assert.equal([s.dumps, s.errors], [8, 1]);
    await ct.call("removeMarked", { mark: 0, mask: 0 });
  } finally {
    killAll();
  }
});

test("setMark changes exactly one entry; ENOENT for an absent tuple", async () => {
  const ct = await openCt();
  try {
    for (let p = 1; p <= 5; p++) await ct.call("create", { ...udp(p), mark: 7, timeout: 300 });
    await ct.call("setMark", udp(3), 0x42);
    const marks = (await ct.call<CtEntry[]>("dump")).map((e) => [e.sport, e.mark]).sort((x, y) => x[0]! - y[0]!);
    assert.equal(marks, [[1, 7], [2, 7], [3, 0x42], [4, 7], [5, 7]]);
    const r = await ct.raw("setMark", udp(6), 1);
    assert.equal([r.ok, r.error!.code, r.error!.message], [false, "ENOENT", "conntrack: setMark failed (ENOENT): no such conntrack entry"]);
    await ct.call("setMark", udp(3), 0xffffffff);
    assert.equal((await ct.call<CtEntry[]>("dump", { mark: 0xffffffff, mask: 0xffffffff })).map((e) => e.sport), [3]);
    await ct.call("removeMarked", { mark: 0, mask: 0 });
  } finally {
    killAll();
  }
});

test("remove deletes exactly the entry named (by tuple, or tuple and id); false when absent", async () => {
  const ct = await openCt();
  try {
    for (let p = 1; p <= 4; p++) await ct.call("create", { ...udp(p), timeout: 300 });
    await ct.call("create", { family: 6, proto: 6, src: A6, dst: B6, sport: 9, dport: 443, timeout: 300, tcpState: "ESTABLISHED" });
    assert.is(await ct.call("remove", udp(2)), true);
    assert.is(await ct.call("remove", udp(2)), false);
    assert.is(await ct.call("remove", udp(2, 54)), false); // another destination port
    // By the id of a dumped entry: a wrong id removes nothing, the right one that entry.
    const e3 = (await ct.call<CtEntry[]>("dump")).find((e) => e.sport === 3)!;
    assert.is(await ct.call("remove", { ...udp(3), id: (e3.id + 1) >>> 0 || 1 }), false);
    assert.equal((await ct.call<CtEntry[]>("dump")).filter((e) => e.sport === 3).map((e) => e.id), [e3.id]);
    assert.is(await ct.call("remove", e3), true);
    assert.is(await ct.call("remove", { family: 6, proto: 6, src: A6, dst: B6, sport: 9, dport: 443 }), true);
    assert.equal((await ct.call<CtEntry[]>("dump")).map((e) => e.sport).sort(), [1, 4]);
    await ct.call("removeMarked", { mark: 0, mask: 0 });
    assert.equal(await ct.call("dump"), []);
  } finally {
    killAll();
  }
});

test("removeMarked: 10,000 marked entries removed, count exact, the unmarked untouched", async () => {
  const ct = await openCt();
  try {
    const marked = Array.from({ length: 10_000 }, (_, i) => ({ ...udp(1 + (i % 5000), 1000 + Math.floor(i / 5000)), mark: 0x10001, timeout: 600 }));
    const others = Array.from({ length: 100 }, (_, i) => ({ ...udp(1 + i, 2000), mark: i % 2 ? 0x10000 : 0, timeout: 600 }));
    assert.is(await ct.call("createMany", marked), 10_000);
    assert.is(await ct.call("createMany", others), 100);
    assert.is((await ct.call<CtEntry[]>("dump", { mark: 0x1, mask: 0x1 })).length, 10_000);
    const r = await ct.call<{ removed: number; ms: number }>("removeMarked", { mark: 0x1, mask: 0x1 });
    console.log(`  removeMarked: 10,000 entries in ${r.ms.toFixed(1)} ms`);
    assert.is(r.removed, 10_000);
    const left = await ct.call<CtEntry[]>("dump");
    assert.equal(left.map((e) => [e.dport, e.sport, e.mark]).sort((x, y) => x[1]! - y[1]!), others.map((o) => [2000, o.sport, o.mark]));
    // Nothing left to remove: 0, not an error.
    assert.equal((await ct.call<{ removed: number }>("removeMarked", { mark: 0x1, mask: 0x1 })).removed, 0);
    assert.equal((await ct.call<{ removed: number }>("removeMarked", { mark: 0, mask: 0 })).removed, 100);
    const s = await ct.call<{ errors: number }>("stats");
    assert.is(s.errors, 0);
  } finally {
    killAll();
  }
});

test("destroy events: removed and expired marked entries are reported, unmarked ones are not", async () => {
  const ct = await openCt();
  try {
    await ct.call("onDestroy", { mark: 0x4, mask: 0x4 });
    await ct.call("create", { ...udp(1), mark: 0x4, timeout: 300 });
    await ct.call("create", { ...udp(2), mark: 0x5, timeout: 300 });
    await ct.call("create", { ...udp(3), mark: 0x1, timeout: 300 });
    await ct.call("create", { ...udp(4), timeout: 300 });
    await ct.call("create", { ...udp(5), mark: 0x4, timeout: 1 }); // expires
    await ct.call("create", { ...udp(6), timeout: 1 }); // expires, unmarked
    await ct.call("create", { family: 4, proto: 6, src: A, dst: B, sport: 7, dport: 80, mark: 0xc, timeout: 300, tcpState: "ESTABLISHED" });
    assert.is(await ct.call("remove", udp(1)), true);
    assert.is(await ct.call("remove", udp(3)), true);
    assert.is((await ct.call<{ removed: number }>("removeMarked", { mark: 0x5, mask: 0x7 })).removed, 1); // udp(2)
    assert.is(await ct.call("remove", udp(4)), true);
    assert.is(await ct.call("remove", { family: 4, proto: 6, src: A, dst: B, sport: 7, dport: 80 }), true);
    // The expired ones: the kernel's garbage collection or the next dump ends them.
    for (const end = Date.now() + 15_000; ct.ended().length < 4 && Date.now() < end; await sleep(250)) await ct.call("dump");
    await sleep(300);
    const ended = byKey(ct.ended());
    assert.equal(ended.map((e) => [e.sport, e.mark]), [[1, 0x4], [2, 0x5], [5, 0x4], [7, 0xc]]);
    assert.equal(tupleOf(ended[3]!), { family: 4, proto: 6, src: A, dst: B, sport: 7, dport: 80 });
    assert.is(ended[3]!.tcpState, "ESTABLISHED");
    assert.ok(ct.events.every((e) => e.event.length > 0 && !e.overflowed));
    // Every destroy was read (the unmarked ones too), only the marked ones reported.
    for (const end = Date.now() + 10_000; Date.now() < end; await sleep(100)) {
      if ((await ct.call<{ events: number }>("stats")).events >= 7) break;
    }
    const s = await ct.call<{ events: number; overflows: number; rcvbuf: number; rcvbufForced: boolean }>("stats");
    assert.equal([s.events, s.overflows, s.rcvbufForced], [7, 0, true]);
    assert.ok(s.rcvbuf >= 8 << 20, `rcvbuf ${s.rcvbuf}`);
    // Stopped: no more callbacks.
    await ct.call("onDestroy", null, null);
    const before = ct.events.length;
    await ct.call("create", { ...udp(8), mark: 0x4, timeout: 300 });
    assert.is(await ct.call("remove", udp(8)), true);
    await sleep(300);
    assert.is(ct.events.length, before);
    // Started again with no filter: every destroy, the one missed meanwhile included.
    await ct.call("onDestroy", null);
    await ct.call("create", { ...udp(9), timeout: 300 });
    assert.is(await ct.call("remove", udp(9)), true);
    for (const end = Date.now() + 5000; ct.ended().length < 6 && Date.now() < end; ) await sleep(20);
    assert.equal(ct.ended().slice(4).map((e) => e.sport), [8, 9]);
  } finally {
    killAll();
  }
});

test("overflow: with a 4 KiB receive buffer ACKs and events are lost; removeMarked still counts exactly, the callback says overflowed", async () => {
  const ct = await openCt();
  try {
    assert.is(await ct.call("createMany", Array.from({ length: 3000 }, (_, i) => ({ ...udp(1 + i), mark: 0x2, timeout: 600 }))), 3000);
    await ct.call("create", { ...udp(1, 99), timeout: 600 });
    await ct.call("reopen", { events: true, rcvbuf: 4096 });
    const r = await ct.call<{ removed: number }>("removeMarked", { mark: 0x2, mask: 0x2 });
    assert.is(r.removed, 3000);
    assert.equal((await ct.call<CtEntry[]>("dump")).map(key), [key(udp(1, 99))]);
    const s0 = await ct.call<{ errors: number; dumps: number }>("stats");
    assert.ok(s0.errors >= 1 && s0.dumps >= 2, `ACKs lost and settled by a second dump: ${JSON.stringify(s0)}`);
    // 3000 destroy events into a socket that holds a few: the first callback says so.
    await ct.call("onDestroy", { mark: 0x2, mask: 0x2 });
    for (const end = Date.now() + 5000; ct.events.length === 0 && Date.now() < end; ) await sleep(20);
    await sleep(200);
    const s = await ct.call<{ events: number; overflows: number }>("stats");
    assert.is(ct.events[0]?.overflowed, true);
    assert.ok(s.overflows >= 1, `overflows ${s.overflows}`);
    assert.ok(s.events < 3000 && ct.ended().length === s.events, `events ${s.events}, reported ${ct.ended().length}`);
    assert.ok(ct.ended().every((e) => e.mark === 0x2 && e.dport === 53));
    await ct.call("removeMarked", { mark: 0, mask: 0 });
  } finally {
    killAll();
  }
});

test("bad arguments: TypeErrors with one clear line, nothing sent", async () => {
  const ct = await openCt();
  try {
    const good = { ...udp(1), timeout: 30 };
    const cases: Array<[string, unknown[], string]> = [
      ["create", [], "create(entry): entry must be an object"],
      ["create", [{ ...good, family: 5 }], "create(entry): family must be 4 or 6"],
      ["create", [{ ...good, family: "4" }], "create(entry): family must be 4 or 6"],
      ["create", [{ ...good, proto: 256 }], "create(entry): proto must be an integer in 0..255"],
      ["create", [{ ...good, src: "198.51.100.01" }], "create(entry): src must be an IPv4 address as text"],
      ["create", [{ ...good, src: "198.51.100" }], "create(entry): src must be an IPv4 address as text"],
      ["create", [{ ...good, dst: "2001:db8::1" }], "create(entry): dst must be an IPv4 address as text"],
      ["create", [{ ...good, family: 6, dst: "2001:db8::1" }], "create(entry): src must be an IPv6 address as text"],
      ["create", [{ ...good, sport: 0 }], "create(entry): sport must be an integer in 1..65535"],
      ["create", [{ ...good, dport: 65536 }], "create(entry): dport must be an integer in 1..65535"],
      ["create", [{ ...good, dport: 1.5 }], "create(entry): dport must be an integer in 1..65535"],
      ["create", [{ ...good, sport: undefined }], "create(entry): sport is required"],
      ["create", [{ ...good, timeout: 0 }], "create(entry): timeout must be an integer in 1..2147483647"],
      ["create", [{ ...good, mark: -1 }], "create(entry): mark must be an integer in 0..4294967295"],
      ["create", [{ ...good, tcpState: "ESTABLISHED" }], "create(entry): tcpState is for TCP entries only (proto 6)"],
      ["create", [{ ...good, proto: 6, tcpState: "OPEN" }], "create(entry): a TCP entry needs tcpState, one of SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2"],
      ["create", [{ ...good, proto: 1 }], "create(entry): ICMP entries have no ports to address them by (use a mark filter)"],
      ["create", [{ ...good, proto: 47, sport: 5 }], "create(entry): sport and dport must be 0 for protocol 47 (it has no ports)"],
      ["create", [[good]], "create(entry): one entry (createMany(entries) for a list)"],
      ["createMany", [[good, 3]], "create(entries): every entry must be an object"],
      ["createMany", [good], "createMany(entries): entries must be an array"],
      ["setMark", [udp(1)], "setMark(tuple, mark): mark must be an integer in 0..4294967295"],
      ["setMark", [udp(1), 2 ** 32], "setMark(tuple, mark): mark must be an integer in 0..4294967295"],
      ["setMark", [null, 1], "setMark(tuple, mark): tuple must be an object"],
      ["remove", ["198.51.100.1"], "remove(tuple): tuple must be an object"],
      ["remove", [{ ...udp(1), dst: "::ffff:198.51.100.2" }], "remove(tuple): dst must be an IPv4 address as text"],
      ["remove", [{ ...udp(1), id: -1 }], "remove(tuple): id must be an integer in 0..4294967295"],
      ["dump", [{ mark: 1 }], "dump(filter): mask is required"],
      ["dump", [5], "dump(filter): filter ({mark, mask}) must be an object"],
      ["removeMarked", [], "removeMarked(filter): filter ({mark, mask}) must be an object"],
      ["removeMarked", [{ mark: "1", mask: 1 }], "removeMarked(filter): mark must be an integer in 0..4294967295"],
      ["onDestroy", [{ mark: 1, mask: -1 }], "onDestroy(filter, cb): mask must be an integer in 0..4294967295"],
      ["onDestroy", [7], "onDestroy(filter, cb): filter must be {mark, mask} or null"],
      ["badCallback", [null, 5], "onDestroy(filter, cb): cb must be a function (or null to stop)"],
    ];
    const got: string[] = [], want: string[] = [];
    for (const [op, args, msg] of cases) {
      const r = await ct.raw(op, ...args);
      got.push(r.ok ? `${op}: no error` : `${r.error!.name} ${r.error!.code} ${r.error!.message}`);
      want.push(`TypeError EINVAL ${msg}`);
    }
    assert.equal(got, want);
    assert.equal(await ct.call("dump"), []);
    const s = await ct.call<{ events: number; overflows: number; dumps: number; errors: number }>("stats");
    assert.equal([s.events, s.overflows, s.dumps, s.errors], [0, 0, 1, 0]);
  } finally {
    killAll();
  }
});

test("close: idempotent; every call after it throws ECLOSED; onDestroy without events says so", async () => {
  const ct = await openCt(["--no-events"]);
  try {
    const r = await ct.raw("onDestroy", null);
    assert.equal([r.ok, r.error!.code, r.error!.message], [false, "EINVAL", "conntrack: onDestroy needs a handle opened with { events: true }"]);
    assert.equal((await ct.call<{ rcvbuf: number }>("stats")).rcvbuf, 0);
    await ct.call("close");
    await ct.call("close");
    const calls: Array<[string, unknown[]]> = [
      ["dump", []], ["create", [{ ...udp(1), timeout: 5 }]], ["setMark", [udp(1), 1]], ["remove", [udp(1)]],
      ["removeMarked", [{ mark: 0, mask: 0 }]], ["onDestroy", [null]], ["stats", []],
    ];
    const got: string[] = [];
    for (const [op, args] of calls) {
      const x = await ct.raw(op, ...args);
      got.push(x.ok ? `${op}: no error` : `${x.error!.code} ${x.error!.message}`);
    }
    assert.equal(got, calls.map(([op]) => `ECLOSED conntrack: ${op} failed (ECLOSED): the conntrack handle is closed`));
    // A new handle works.
    await ct.call("reopen", {});
    assert.equal(await ct.call("dump"), []);
    const bad = await ct.raw("reopen", { events: 1 });
    assert.equal([bad.error!.name, bad.error!.message], ["TypeError", "open: option events must be a boolean"]);
    const small = await ct.raw("reopen", { rcvbuf: 100 });
    assert.equal([small.error!.name, small.error!.message], ["TypeError", "open: rcvbuf must be an integer in 4096..1073741824"]);
  } finally {
    killAll();
  }
});

test("without CAP_NET_ADMIN: open fails with EPERM and says what is needed", () => {
  const got: string[] = [];
  for (const extra of [[], ["--no-events"]]) {
    inB("conntrack", "-F");
    const out = inB("setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", process.execPath, CHILD, ...extra);
    got.push(out);
  }
  const msg = "conntrack: open failed (EPERM): not permitted: ctnetlink needs root or CAP_NET_ADMIN in this network namespace";
  assert.equal(got, [0, 1].map(() => JSON.stringify({ openFailed: { name: "Error", code: "EPERM", message: msg } }) + "\n"));
});

test("available(): true with the addon built, false (no throw) where build/Release/ct.node is missing", () => {
  assert.is(available(), true);
  // The compiled wrapper alone, three directories deep in an empty tree.
  const dir = mkdtempSync(join(tmpdir(), "pct-"));
  try {
    mkdirSync(join(dir, "a", "b", "c"), { recursive: true });
    copyFileSync(join(root, "dist", "host", "native", "ct.js"), join(dir, "a", "b", "c", "ct.js"));
    writeFileSync(join(dir, "package.json"), '{"type":"module"}\n');
    const out = run(process.execPath, ["--input-type=module", "-e", `import("${join(dir, "a", "b", "c", "ct.js")}").then((m) => { const w = (x) => process.stdout.write(String(x) + "\\n"); w(m.available()); try { m.Conntrack.open(); } catch (e) { w(e.code); } })`]);
    assert.is(out, "false\nENOADDON\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
