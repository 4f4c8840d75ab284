// The file-watch trigger (host/daemon/watch.ts) with the real Daemon and a
// fake packet source: a policy written in pieces, a slow writer, a table
// written in two parts, an editor's rename-replace, a broken save then a
// fixed one, saves that change nothing.
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { incomplete, PolicyWatcher } from "../host/daemon/watch.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { FakeSource, IN_EXT } from "./helpers/fake-source.js";

const POLICY_TEXT = readFileSync("host/policy/default.yaml", "utf8");
const OFF80 = POLICY_TEXT.replace("external_http_80: true", "external_http_80: false");
const DEBOUNCE = 60;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

let port = 20000;
const syn = (dport: number): Uint8Array =>
  ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: port++, dport, flags: TCP_SYN }) });

interface Ctx { d: Daemon; w: PolicyWatcher; src: FakeSource; dir: string; file: string; logs: string[] }

function withWatch(name: string, fn: (c: Ctx) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "pc-watch-"));
    const file = join(dir, name);
    const logs: string[] = [];
    const log = new JsonLogger((l) => logs.push(l));
    if (name.endsWith(".yaml")) writeFileSync(file, POLICY_TEXT);
    else writeFileSync(file, buildTable(compilePolicyFile("host/policy/default.yaml", { mode: "host" }).spec).bytes);
    const d = new Daemon({ policy: file, mode: "host" }, log);
    const src = new FakeSource("q0");
    const w = new PolicyWatcher(d, log, { debounceMs: DEBOUNCE, maxWaits: 5 });
    try {
      assert.ok((await d.reload()).ok);
      d.addSource(src);
      w.start();
      await fn({ d, w, src, dir, file, logs });
    } finally {
      w.stop();
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const port80 = (src: FakeSource): number => { src.send([syn(80), IN_EXT]); return src.verdicts[src.verdicts.length - 1]!; };

test("incomplete(): a table shorter than its header says, YAML without its last newline or that does not parse", () => {
  const t = buildTable(compilePolicyFile("host/policy/default.yaml", { mode: "host" }).spec).bytes;
  assert.is(incomplete(t), null);
  assert.match(String(incomplete(t.slice(0, 300))), new RegExp(`table of 300 bytes whose header says ${t.length}`));
  assert.match(String(incomplete(t.slice(0, 40))), /shorter than its header/);
  assert.is(incomplete(Buffer.from(POLICY_TEXT)), null);
  assert.match(String(incomplete(Buffer.from(POLICY_TEXT.slice(0, 1000)))), /newline/);
  assert.match(String(incomplete(Buffer.from("rules:\n  - [a, b\n"))), /does not parse as YAML at \d+:\d+/);
  assert.is(incomplete(new Uint8Array(0)), "empty");
});

test("a policy written in pieces is loaded once, whole", withWatch("policy.yaml", async ({ d, w, src, file }) => {
  assert.is(port80(src), ABI.VERDICT_ACCEPT);
  const fd = openSync(file, "w");
  const step = Math.ceil(OFF80.length / 6);
  for (let i = 0; i < OFF80.length; i += step) {
    writeSync(fd, OFF80.slice(i, i + step));
    await sleep(DEBOUNCE / 2);
  }
  closeSync(fd);
  await waitFor("the reload", () => d.reloads.length === 2);
  await sleep(DEBOUNCE * 5);
  assert.equal(d.reloads.map((r) => [r.ok, r.trigger ?? null]), [[true, null], [true, "watch"]]);
  assert.is(port80(src), ABI.VERDICT_DROP, "the new policy (80 off) is live");
  assert.ok(w.stats.events >= 6);
}));

test("a slow writer stopping mid-line is waited for, not loaded", withWatch("policy.yaml", async ({ d, w, src, file }) => {
  const cut = OFF80.indexOf("external_http_80: false") + 10; // mid-line
  writeFileSync(file, OFF80.slice(0, cut));
  await sleep(DEBOUNCE * 4); // two stable reads, then "incomplete": waits
  assert.is(d.reloads.length, 1, "nothing loaded from the half-written file");
  writeFileSync(file, OFF80);
  await waitFor("the reload", () => d.reloads.length === 2);
  assert.ok(d.reloads[1]!.ok);
  assert.ok(w.stats.incomplete >= 1);
  assert.is(port80(src), ABI.VERDICT_DROP);
}));

test("a table written in two parts with a pause is loaded whole", withWatch("policy.table", async ({ d, w, src, file }) => {
  const off = buildTable(compilePolicyFile("host/policy/default.yaml", { mode: "host", switches: { external_http_80: false } }).spec).bytes;
  const fd = openSync(file, "w");
  writeSync(fd, off, 0, 300);
  await sleep(DEBOUNCE * 4);
  assert.is(d.reloads.length, 1);
  writeSync(fd, off, 300, off.length - 300);
  closeSync(fd);
  await waitFor("the reload", () => d.reloads.length === 2);
  assert.ok(d.reloads[1]!.ok, d.reloads[1]!.error);
  assert.ok(w.stats.incomplete >= 1);
  assert.is(port80(src), ABI.VERDICT_DROP);
}));

test("an editor's rename-replace is seen (the watch is on the directory)", withWatch("policy.yaml", async ({ d, src, dir, file }) => {
  for (let i = 0; i < 2; i++) {
    const tmp = join(dir, ".policy.yaml.swp");
    writeFileSync(tmp, i === 0 ? OFF80 : POLICY_TEXT);
    renameSync(tmp, file);
    await waitFor(`reload ${i + 2}`, () => d.reloads.length === i + 2);
    assert.ok(d.reloads[i + 1]!.ok);
    assert.is(port80(src), i === 0 ? ABI.VERDICT_DROP : ABI.VERDICT_ACCEPT);
  }
}));

test("a broken save is refused with file:line:col and the live table stays; the fixed save loads", withWatch("policy.yaml", async ({ d, w, src, dir, file, logs }) => {
  writeFileSync(file, OFF80.replace("action: allow", "action: alow"));
  await waitFor("the refused reload", () => d.reloads.length === 2);
  const bad = d.reloads[1]!;
  assert.is(bad.ok, false);
  assert.match(String(bad.error), /policy\.yaml:\d+:\d+: /);
  assert.ok(logs.some((l) => l.includes("reload refused") && /policy\.yaml:\d+:\d+/.test(l)));
  assert.is(port80(src), ABI.VERDICT_ACCEPT, "the old table is live");
  // The same broken content again (a touch) is not tried again.
  utimesSync(file, new Date(), new Date());
  await sleep(DEBOUNCE * 4);
  assert.is(d.reloads.length, 2);
  const tmp = join(dir, "policy.yaml.new");
  writeFileSync(tmp, OFF80);
  renameSync(tmp, file);
  await waitFor("the fixed reload", () => d.reloads.length === 3);
  assert.ok(d.reloads[2]!.ok);
  assert.is(port80(src), ABI.VERDICT_DROP);
  assert.is(w.stats.refused, 1);
}));

test("saves that change nothing (same bytes, or back to the live content) do not reload", withWatch("policy.yaml", async ({ d, w, file, dir }) => {
  writeFileSync(file, POLICY_TEXT);
  await sleep(DEBOUNCE * 4);
  // Another file in the directory is no event for the watch.
  writeFileSync(join(dir, "notes.txt"), "x");
  await sleep(DEBOUNCE * 4);
  assert.is(d.reloads.length, 1);
  assert.ok(w.stats.unchanged >= 1);
}));

test("the watch follows the daemon to the file of a control reload", withWatch("policy.yaml", async ({ d, w, dir }) => {
  const other = join(dir, "other.yaml");
  writeFileSync(other, POLICY_TEXT);
  assert.ok((await d.reload(other)).ok);
  await waitFor("the watch to follow", () => w.watching === other, 3000);
  writeFileSync(other, OFF80);
  await waitFor("the reload", () => d.reloads.length === 3);
  assert.ok(d.reloads[2]!.ok);
  assert.is(d.reloads[2]!.path, other);
}));

test("a FIFO saved over the policy is refused without a read (no stall), the live table stays; a real file after it loads", withWatch("policy.yaml", async ({ d, w, src, file, logs }) => {
  assert.is(port80(src), ABI.VERDICT_ACCEPT);
  rmSync(file);
  const mk = spawnSync("mkfifo", [file]);
  assert.is(mk.status, 0, String(mk.stderr));
  await waitFor("the refusal in the log", () => logs.some((l) => l.includes("must be a regular file, not a FIFO")));
  assert.is(w.stats.reloads, 0);
  assert.is(port80(src), ABI.VERDICT_ACCEPT, "the live table stays");
  rmSync(file);
  writeFileSync(file, OFF80);
  // The reload compiles in the worker: wait for its record, not its start.
  await waitFor("the reload", () => w.stats.reloads === 1 && d.reloads.length === 2);
  assert.ok(d.reloads[d.reloads.length - 1]!.ok);
  assert.is(port80(src), ABI.VERDICT_DROP);
}));

test.run();
