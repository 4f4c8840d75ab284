// The last good table on disk (host/daemon/state.ts) and --recheck, with the
// real Daemon and fake packet sources.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { LAST_GOOD, LAST_GOOD_NOTE, readLastGood, saveLastGood, sha256, startDaemon } from "../host/daemon/state.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { Conn, FakeSource, IN_EXT } from "./helpers/fake-source.js";

const POLICY = "host/policy/default.yaml";
const POLICY_TEXT = readFileSync(POLICY, "utf8");
const OFF80 = POLICY_TEXT.replace("external_http_80: true", "external_http_80: false");
const BROKEN = POLICY_TEXT.replace("action: allow", "action: alow");

// assert.throws for a promise: it must reject, and `ok` must accept the error.
async function rejects(fn: () => Promise<unknown>, ok: (e: Error) => boolean): Promise<void> {
  const e = await fn().then(() => null, (x: Error) => x);
  assert.ok(e, "rejects");
  assert.ok(ok(e!), e!.message);
}
function tmp(): string { return mkdtempSync(join(tmpdir(), "pc-state-")); }
const quiet = (): { log: JsonLogger; lines: string[] } => { const lines: string[] = []; return { log: new JsonLogger((l) => lines.push(l)), lines }; };
let sport = 31000;
const syn = (dport: number): [Uint8Array, typeof IN_EXT] =>
  [ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: sport++, dport, flags: TCP_SYN }) }), IN_EXT];

test("every commit writes the table to the state dir (in the background, atomically); a refused reload writes nothing", async () => {
  const dir = tmp();
  try {
    const state = join(dir, "state");
    const pol = join(dir, "p.yaml");
    writeFileSync(pol, POLICY_TEXT);
    const { log } = quiet();
    // A temporary file left by a daemon killed in the middle of a save.
    mkdirSync(state, { recursive: true, mode: 0o700 });
    writeFileSync(join(state, `${LAST_GOOD}.tmp-999999`), "half");
    const d = new Daemon({ policy: pol, mode: "host", stateDir: state }, log);
    assert.ok(!existsSync(join(state, `${LAST_GOOD}.tmp-999999`)), "swept at start");
    const r1 = await d.reload();
    assert.ok(r1.ok);
    assert.is(r1.saved, join(state, LAST_GOOD));
    await d.lastGood!.idle();
    const want = buildTable(compilePolicyFile(pol, { mode: "host" }).spec).bytes;
    assert.equal(new Uint8Array(readFileSync(join(state, LAST_GOOD))), want);
    const note = JSON.parse(readFileSync(join(state, LAST_GOOD_NOTE), "utf8")) as { mode: string; policy: string; sha256: string; rules: number };
    assert.is(note.mode, "host");
    assert.is(note.policy, pol);
    assert.is(note.sha256, sha256(want));
    assert.is(statSync(state).mode & 0o777, 0o700);
    assert.is(statSync(join(state, LAST_GOOD)).mode & 0o777, 0o600);
    writeFileSync(pol, OFF80);
    assert.ok((await d.reload()).ok);
    await d.lastGood!.idle();
    const off = new Uint8Array(readFileSync(join(state, LAST_GOOD)));
    assert.is.not(sha256(off), sha256(want));
    writeFileSync(pol, BROKEN);
    assert.is((await d.reload()).ok, false);
    await d.lastGood!.idle();
    assert.equal(new Uint8Array(readFileSync(join(state, LAST_GOOD))), off, "a refused reload leaves the saved table");
    // Commits faster than the disk: the newest table is the one on disk.
    const on = join(dir, "on.yaml"), off2 = join(dir, "off.yaml");
    writeFileSync(on, POLICY_TEXT);
    writeFileSync(off2, OFF80);
    for (let i = 0; i < 6; i++) assert.ok((await d.reload(i % 2 ? off2 : on)).ok);
    await d.lastGood!.idle();
    const last = buildTable(compilePolicyFile(off2, { mode: "host" }).spec).bytes;
    assert.ok(readFileSync(join(state, LAST_GOOD)).equals(last), "the last commit (off.yaml) is saved");
    assert.is(d.lastGood!.failed, 0);
    assert.equal(readdirSync(state).sort(), [LAST_GOOD_NOTE, LAST_GOOD].sort(), "no temporary files left");
    await d.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a start whose policy does not load comes back with the last good table, says so loudly, and keeps the policy path", async () => {
  const dir = tmp();
  try {
    const state = join(dir, "state");
    const pol = join(dir, "p.yaml");
    writeFileSync(pol, OFF80);
    const a = new Daemon({ policy: pol, mode: "host", stateDir: state }, quiet().log);
    assert.equal(await startDaemon(a, quiet().log), { fallback: false });
    await a.stop();
    // The policy breaks while the daemon is down.
    writeFileSync(pol, BROKEN);
    const { log, lines } = quiet();
    const b = new Daemon({ policy: pol, mode: "host", stateDir: state }, log);
    assert.equal(await startDaemon(b, log), { fallback: true });
    const loud = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => String(l.msg).startsWith("RUNNING THE LAST GOOD TABLE"));
    assert.ok(loud, "the fallback is logged");
    assert.is(loud!.level, "error");
    assert.match(String(loud!.policyError), /p\.yaml:\d+:\d+: /);
    assert.is(loud!.lastGood, join(state, LAST_GOOD));
    assert.equal(b.reloads.map((r) => [r.ok, r.from ?? null]), [[false, null], [true, join(state, LAST_GOOD)]]);
    assert.is(b.policy, pol, "SIGHUP and the watch still aim at the policy");
    const src = new FakeSource("q0");
    b.addSource(src);
    assert.equal(src.send(syn(80), syn(443)), ["default_deny", "rule_allow"], "the last good table (80 off) decides");
    // Fixing the policy and reloading replaces it (and saves the new table).
    writeFileSync(pol, POLICY_TEXT);
    const r = await b.reload();
    assert.ok(r.ok);
    assert.is(r.saved, join(state, LAST_GOOD));
    assert.equal(src.send(syn(80)), ["rule_allow"]);
    await b.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("when the policy and the last good table both fail, the start is refused with both reasons", async () => {
  const dir = tmp();
  try {
    const state = join(dir, "state");
    const pol = join(dir, "p.yaml");
    writeFileSync(pol, BROKEN);
    const mk = (): Daemon => new Daemon({ policy: pol, mode: "host", stateDir: state }, quiet().log);
    // No saved table.
    await rejects(() => startDaemon(mk(), quiet().log), (e: Error) =>
      /^cannot start: the policy does not load: .*p\.yaml:\d+:\d+: .*; and no last good table in /.test(e.message));
    // A saved table that is damaged.
    const good = buildTable(compilePolicyFile(POLICY, { mode: "host" }).spec).bytes;
    saveLastGood(state, good, { policy: POLICY, mode: "host", ticket: 1, rules: 5 });
    const bad = good.slice();
    bad[200] = bad[200]! ^ 0xff;
    writeFileSync(join(state, LAST_GOOD), bad);
    await rejects(() => startDaemon(mk(), quiet().log), (e: Error) =>
      /the last good table .*last-good\.table is refused: rule table refused: bad (checksum|crc)/.test(e.message));
    // A saved table of the other mode.
    saveLastGood(state, good, { policy: POLICY, mode: "gateway", ticket: 1, rules: 5 });
    await rejects(() => startDaemon(mk(), quiet().log), (e: Error) => /was compiled for gateway mode, not host/.test(e.message));
    // No state dir at all.
    await rejects(() => startDaemon(new Daemon({ policy: pol, mode: "host" }, quiet().log), quiet().log), (e: Error) => /no --state-dir/.test(e.message));
    assert.ok(!existsSync(join(state, "nothing")));
    assert.ok("error" in readLastGood(join(dir, "none")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("reload --recheck ends exactly the flows of the removed rule (their next packet gets no_flow); others survive", async () => {
  const dir = tmp();
  const sock = join(dir, "ctl", "control.sock");
  const pol = join(dir, "p.yaml");
  writeFileSync(pol, POLICY_TEXT);
  const { log, lines } = quiet();
  const d = new Daemon({ policy: pol, mode: "host", control: sock }, log);
  try {
    assert.ok((await d.reload()).ok);
    const src = new FakeSource("q0");
    d.addSource(src);
    await d.listen();
    const http = [new Conn(src, 41000, 80), new Conn(src, 41001, 80), new Conn(src, 41002, 80)];
    const https = [new Conn(src, 42000, 443), new Conn(src, 42001, 443)];
    for (const c of [...http, ...https]) assert.equal(c.open(), ["rule_allow", "state_match", "state_match"]);
    assert.is(d.core.counters().flows.live, 5n);
    // Without --recheck, a reload keeps every flow.
    const off = join(dir, "off.yaml");
    writeFileSync(off, OFF80);
    let r = await request(sock, { cmd: "reload", path: off });
    assert.is(r.ok, true);
    assert.is((r.reload as { recheck?: unknown }).recheck, undefined);
    assert.is(http[0]!.data(), "state_match", "flows survive a plain reload");
    // Back to 80 on, then off again with the re-check.
    assert.is((await request(sock, { cmd: "reload", path: pol })).ok, true);
    r = await request(sock, { cmd: "reload", path: off, recheck: true });
    assert.is(r.ok, true, JSON.stringify(r));
    const rec = r.reload as { recheck: { ended: number; ms: number }; ms: { compile: number; stage: number; commit: number; total: number } };
    assert.is(rec.recheck.ended, 3);
    assert.ok(rec.recheck.ms >= 0 && rec.ms.total >= rec.ms.compile + rec.ms.stage + rec.ms.commit);
    for (const c of http) assert.is(c.data(), "no_flow", "an ended flow's next packet");
    for (const c of https) assert.is(c.data(), "state_match", "the others go on");
    assert.ok(src.verdicts.slice(-5).every((v, i) => v === (i < 3 ? ABI.VERDICT_DROP : ABI.VERDICT_ACCEPT)));
    // Logged and counted.
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; recheck?: { ended: number } }).filter((l) => l.msg === "table committed" && l.recheck);
    assert.is(logged.length, 1);
    assert.is(logged[0]!.recheck!.ended, 3);
    const s = (await request(sock, { cmd: "stats" })).stats as { flows: { ended: number; live: number }; reloadTotals: { ok: number; rechecks: number; recheckEnded: number } };
    assert.is(s.flows.ended, 3);
    assert.is(s.flows.live, 2);
    assert.equal(s.reloadTotals, { ok: 4, error: 0, rechecks: 1, recheckEnded: 3 });
    // A bad "recheck" is an error, not a crash.
    r = await request(sock, { cmd: "reload", recheck: "yes" });
    assert.is(r.ok, false);
    assert.match(String(r.error), /"recheck" must be true or false/);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
