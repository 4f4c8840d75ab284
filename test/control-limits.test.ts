// The control socket cannot be made to grow or stall the daemon
// (host/daemon/control.ts): a client that pipelines requests and never reads
// the answers is no longer read (its requests wait in its own socket), the
// number of connections is capped, idle ones are closed.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { CONTROL_MAX_CONNECTIONS, ControlServer, request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { METRICS_MAX_CONNECTIONS, MetricsServer } from "../host/daemon/metrics.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CHILD = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "helpers", "control-child.js");

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
}

// What the server says on `c` (its first line, or "" when it only closes), and that it closed; within `ms`.
function told(c: Socket, ms: number): Promise<{ line: string; closed: boolean }> {
  return new Promise((resolve) => {
    let buf = "";
    const done = (closed: boolean): void => { clearTimeout(t); resolve({ line: buf.split("\n")[0]!, closed }); };
    const t = setTimeout(() => done(false), ms);
    c.setEncoding("utf8");
    c.on("data", (d: string) => { buf += d; });
    c.once("close", () => done(true));
    c.once("end", () => done(true));
  });
}

const kib = (pid: number, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);

test("100,000 pipelined stats requests never read: the daemon stops reading that client, its memory stays bounded, others get answers, and every request is answered once the client reads", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-ctlmem-"));
  const sock = join(dir, "control.sock");
  let child: ChildProcess | null = null;
  let c: Socket | null = null;
  try {
    child = spawn(process.execPath, [CHILD, sock], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("the daemon child did not start")), 60_000);
      child!.stdout!.on("data", (d: Buffer) => { if (String(d).includes("ready")) { clearTimeout(t); resolve(); } });
      child!.once("exit", (code) => reject(new Error(`the daemon child exited (${code})`)));
    });
    const pid = child.pid!;
    const before = kib(pid, "VmHWM");
    c = await connect(sock);
    c.pause(); // never reads, until the end
    const N = 100_000;
    c.write('{"cmd":"stats"}\n'.repeat(N));
    // Meanwhile another client is answered.
    await sleep(1000);
    const other = request(sock, { cmd: "stats" }, 10_000).then((r) => r.ok, (e: Error) => e.message);
    await sleep(2000);
    const grew = (kib(pid, "VmHWM") - before) / 1024;
    assert.ok(grew < 64, `the daemon's peak memory grew by ${grew.toFixed(0)} MiB with a client that does not read`);
    assert.is(await other, true, "another client is answered meanwhile");
    assert.ok(c.writableLength > 0, "the daemon stopped reading: the requests wait on the client's side");
    // Once the client reads, each request has its answer, in order.
    let buf = "", lines = 0, bad = 0;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${lines} of ${N} answers within 180 s`)), 180_000);
      c!.setEncoding("utf8");
      c!.on("data", (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          if (!buf.startsWith('{"ok":true,"stats":')) bad++;
          buf = buf.slice(nl + 1);
          if (++lines === N) { clearTimeout(t); resolve(); }
        }
      });
      c!.resume();
    });
    assert.is(bad, 0);
  } finally {
    c?.destroy();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`connections over the cap (${CONTROL_MAX_CONNECTIONS}) are told so in one line and closed; a slot that frees up is served`, async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-ctlcap-"));
  const sock = join(dir, "c.sock");
  const s = new ControlServer(sock, () => ({ ok: true }));
  const conns: Socket[] = [];
  try {
    await s.listen();
    for (let i = 0; i < CONTROL_MAX_CONNECTIONS; i++) conns.push(await connect(sock));
    const over = await connect(sock);
    conns.push(over);
    const r = await told(over, 5000);
    assert.equal(r, { line: `{"ok":false,"error":"too many connections to the control socket (at most ${CONTROL_MAX_CONNECTIONS}); try again later"}`, closed: true });
    assert.is(s.refused, 1);
    conns[0]!.destroy();
    for (let i = 0; i < 100 && s.connections >= CONTROL_MAX_CONNECTIONS; i++) await sleep(10);
    assert.is((await request(sock, { cmd: "x" }, 5000)).ok, true);
  } finally {
    for (const c of conns) c.destroy();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an idle connection is closed after the timeout with one line; a request that takes longer is not cut; a client that does not read its answer is dropped", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-ctlidle-"));
  const sock = join(dir, "c.sock");
  const s = new ControlServer(sock, async (req) => {
    if (req.cmd === "slow") { await sleep(600); return { ok: true, slow: 1 }; }
    if (req.cmd === "big") return { ok: true, big: "x".repeat(8 << 20) };
    return { ok: true };
  }, { idleMs: 200 });
  const conns: Socket[] = [];
  try {
    await s.listen();
    const idle = await connect(sock);
    conns.push(idle);
    assert.equal(await told(idle, 5000), { line: '{"ok":false,"error":"idle for 200 ms: the control socket closes this connection"}', closed: true });
    // A request three times the timeout gets its answer, then the connection idles out.
    const slow = await connect(sock);
    conns.push(slow);
    slow.write('{"cmd":"slow"}\n');
    const r = await told(slow, 5000);
    assert.is(r.closed, true);
    assert.is(r.line, '{"ok":true,"slow":1}');
    // An 8 MiB answer the client never reads: closed once the timeout passes.
    const stuck = await connect(sock);
    conns.push(stuck);
    stuck.pause();
    stuck.write('{"cmd":"big"}\n');
    await sleep(100);
    assert.is(s.connections, 1, "still open while within the timeout");
    for (let i = 0; i < 500 && s.connections > 0; i++) await sleep(10);
    assert.is(s.connections, 0, "the server dropped the connection that did not read");
    assert.is(s.timedOut, 3);
  } finally {
    for (const c of conns) c.destroy();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`the metrics endpoint takes at most ${METRICS_MAX_CONNECTIONS} connections at once; one more is closed, and scrapes go on`, async () => {
  const d = new Daemon({ policy: "host/policy/default.yaml", mode: "host" }, new JsonLogger(() => {}));
  const m = new MetricsServer(d, new JsonLogger(() => {}));
  const conns: Socket[] = [];
  try {
    assert.ok((await d.reload()).ok);
    const port = await m.listen("127.0.0.1", 0);
    const tcpTo = (): Promise<Socket> => new Promise((resolve, reject) => {
      const c = createConnection({ host: "127.0.0.1", port });
      c.once("connect", () => resolve(c));
      c.once("error", reject);
    });
    for (let i = 0; i < METRICS_MAX_CONNECTIONS; i++) conns.push(await tcpTo());
    const over = await tcpTo();
    conns.push(over);
    assert.equal(await told(over, 3000), { line: "", closed: true });
    conns[0]!.destroy();
    await sleep(100);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.is(res.status, 200);
    assert.match(await res.text(), /^portcullis_table_rules /m);
  } finally {
    for (const c of conns) c.destroy();
    await m.close();
    await d.stop();
  }
});

test.run();
