// The daemon without the kernel: fake packet sources, the reload transaction
// and the control socket (stats, reload, bad requests).
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { buildTable } from "../host/rules/build.js";
import { FakeSource } from "./helpers/fake-source.js";
import { compilePolicyFile } from "../host/policy/compile.js";

const POLICY = "host/policy/default.yaml";
const IN_EXT = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };

let port = 30000;
const syn = (dport: number): Uint8Array =>
  ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: port++, dport, flags: TCP_SYN }) });

function withDaemon(fn: (d: Daemon, src: FakeSource, dir: string, sock: string, logs: string[]) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "pc-daemon-"));
    const sock = join(dir, "ctl", "control.sock");
    const logs: string[] = [];
    const d = new Daemon({ policy: POLICY, mode: "host", control: sock }, new JsonLogger((l) => logs.push(l)));
    const src = new FakeSource("q0");
    try {
      assert.ok((await d.reload()).ok);
      d.addSource(src);
      await d.listen();
      await fn(d, src, dir, sock, logs);
    } finally {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test("stats over the control socket; the socket is owner-only", withDaemon(async (_d, src, _dir, sock) => {
  assert.is(statSync(sock).mode & 0o777, 0o600);
  assert.is(statSync(join(sock, "..")).mode & 0o777, 0o700);
  src.queue.push({ bytes: syn(443), meta: IN_EXT }, { bytes: syn(22), meta: IN_EXT });
  src.send();
  assert.equal(src.verdicts, [ABI.VERDICT_ACCEPT, ABI.VERDICT_DROP]);
  const r = await request(sock, { cmd: "stats" });
  assert.is(r.ok, true);
  const s = r.stats as { verdicts: { accept: { packets: number } }; rules: Array<{ packets: number }>; queues: Array<{ name: string }>; flows: { live: number; capacity: number } };
  assert.is(s.verdicts.accept.packets, 1);
  assert.is(s.rules[1]!.packets, 1);
  assert.equal(s.queues.map((q) => q.name), ["q0"]);
  assert.is(s.flows.live, 1);
  assert.is(s.flows.capacity, 65536);
}));

test("reload: good policy, table file, broken policy, truncated table; the live table survives failures", withDaemon(async (d, src, dir, sock) => {
  const off = join(dir, "off.yaml");
  writeFileSync(off, (await import("node:fs")).readFileSync(POLICY, "utf8").replace("external_http_80: true", "external_http_80: false"));
  let r = await request(sock, { cmd: "reload", path: off });
  assert.is(r.ok, true, JSON.stringify(r));
  src.queue.push({ bytes: syn(80), meta: IN_EXT });
  src.send();
  assert.equal(src.verdicts, [ABI.VERDICT_DROP], "port 80 switched off");
  // A compiled table file.
  const tbl = join(dir, "t.bin");
  writeFileSync(tbl, buildTable(compilePolicyFile(POLICY, { mode: "host" }).spec).bytes);
  r = await request(sock, { cmd: "reload", path: tbl });
  assert.is(r.ok, true);
  // Broken policy: refused with file:line:col, live table unchanged.
  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, "version: 1\ndefault: deny\nrules:\n  - action: alow\n    interface: external\n    direction: in\n");
  r = await request(sock, { cmd: "reload", path: bad });
  assert.is(r.ok, false);
  assert.match(String(r.error), /bad\.yaml:4:13: /);
  // Truncated table: refused by the core.
  writeFileSync(tbl, buildTable(compilePolicyFile(POLICY, { mode: "host" }).spec).bytes.slice(0, 300));
  r = await request(sock, { cmd: "reload", path: tbl });
  assert.is(r.ok, false);
  assert.match(String(r.error), /rule table refused: bad length/);
  src.queue.push({ bytes: syn(80), meta: IN_EXT });
  src.send();
  assert.equal(src.verdicts, [ABI.VERDICT_DROP, ABI.VERDICT_ACCEPT], "the table from t.bin is still live");
  const hist = d.reloads.map((x) => x.ok);
  assert.equal(hist, [true, true, true, false, false]);
  assert.ok(d.reloads.every((x) => x.ms.total >= x.ms.compile));
}));

test("bad requests get errors, the daemon keeps serving", withDaemon(async (_d, _src, _dir, sock) => {
  const raw = (line: string): Promise<string> => new Promise((resolve, reject) => {
    const c = createConnection(sock);
    let buf = "";
    c.setEncoding("utf8");
    c.on("connect", () => c.write(line));
    c.on("data", (x: string) => { buf += x; if (buf.includes("\n")) { c.end(); resolve(String((JSON.parse(buf) as { error: unknown }).error)); } });
    c.on("error", reject);
  });
  assert.match(await raw("hello\n"), /not JSON/);
  assert.match(await raw("[1,2]\n"), /"cmd"/);
  assert.match(await raw('{"cmd":"shutdown"}\n'), /unknown command "shutdown"/);
  assert.match(await raw('{"cmd":"reload","path":5}\n'), /"path" must be a string/);
  const ok = await request(sock, { cmd: "stats" });
  assert.is(ok.ok, true);
}));

test("stop: queued packets get verdicts, sources close, the socket goes away", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-daemon-"));
  const sock = join(dir, "c.sock");
  try {
    const d = new Daemon({ policy: POLICY, mode: "host", control: sock }, new JsonLogger(() => {}));
    await d.reload();
    const src = new FakeSource("q0");
    d.addSource(src);
    await d.listen();
    src.queue.push({ bytes: syn(443), meta: IN_EXT }, { bytes: syn(81), meta: IN_EXT });
    await d.stop();
    assert.equal(src.verdicts, [ABI.VERDICT_ACCEPT, ABI.VERDICT_DROP]);
    assert.is(src.closed, true);
    await request(sock, { cmd: "stats" }).then(() => assert.unreachable("socket still answers"), (e: Error) => assert.match(e.message, /no daemon is running/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
