// Reloads compile in a worker thread (host/daemon/compiler.ts): the batches
// go on meanwhile, only the stage and the commit run on the packet loop.
// Reloads run one at a time in the order asked (at most MAX_TABLE_JOBS at
// once); a worker that dies, runs out of memory or never answers, a file
// that is not a regular one or is too large, and a stop in the middle all
// give a refused reload with the live table unchanged.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DEFAULT_MAX_RULES, DEFAULT_TABLE_CAP } from "../host/core/abi.js";
import { Daemon, MAX_TABLE_JOBS, type DaemonOptions } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { MAX_OPERATOR_FILE } from "../host/io/operator-file.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { FakeSource, IN_EXT } from "./helpers/fake-source.js";

const POLICY = "host/policy/default.yaml";
const POLICY_TEXT = readFileSync(POLICY, "utf8");
const OFF80 = POLICY_TEXT.replace("external_http_80: true", "external_http_80: false");
let sport = 33000;
const syn = (dport: number, src = "192.0.2.9"): [Uint8Array, typeof IN_EXT] =>
  [ipv4({ src, dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: sport++, dport, flags: TCP_SYN }) }), IN_EXT];

// The default policy plus a rule that drops a set of `n` /32s (10.0.0.0,
// 10.0.0.2, ...; data only, never traffic) and 192.0.2.0/24.
function bigPolicy(dir: string, n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) { const a = 0x0a000000 + i * 2; lines.push(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/32`); }
  lines.push("192.0.2.0/24");
  writeFileSync(join(dir, "big.txt"), `${lines.join("\n")}\n`);
  const p = join(dir, "big.yaml");
  writeFileSync(p, POLICY_TEXT.replace("rules:\n", "sets:\n  blocklist: { file: big.txt }\nrules:\n" +
    "  - name: block\n    action: deny\n    interface: external\n    direction: in\n    src: blocklist\n    dst: any\n"));
  return p;
}

function withDaemon(o: Partial<DaemonOptions>, fn: (d: Daemon, src: FakeSource, dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "pc-rworker-"));
    const d = new Daemon({ policy: POLICY, mode: "host", ...o }, new JsonLogger(() => {}));
    const src = new FakeSource("q0");
    try {
      assert.ok((await d.reload()).ok);
      d.addSource(src);
      await fn(d, src, dir);
    } finally {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

// The live table is still the first one: same ticket, port 80 accepted, 22 dropped.
function unchanged(d: Daemon, src: FakeSource, ticket: number | null): void {
  assert.is(d.reloads.filter((r) => r.ok).at(-1)!.ticket, ticket);
  assert.equal(src.send(syn(80), syn(22)), ["rule_allow", "default_deny"]);
}

test("batches run while the worker compiles; the new table is committed between two of them", withDaemon({}, async (d, src, dir) => {
  const big = bigPolicy(dir, 20_000);
  const batches = d.engine.stats.batches;
  let settled = false;
  const during: string[] = [];
  const pending = Promise.resolve(d.reload(big)).then((r) => { settled = true; return r; });
  for (;;) {
    await new Promise<void>((r) => setImmediate(r));
    if (settled) break;
    during.push(...src.send(syn(443)));
  }
  const rec = await pending;
  assert.ok(rec.ok, rec.error);
  assert.ok(during.length > 0, "no batch ran while the policy compiled");
  assert.is(d.engine.stats.batches - batches, during.length);
  assert.ok(during.every((r) => r === "rule_allow"), "the old table decided them");
  assert.equal(src.send(syn(443)), ["rule_deny"], "the new table drops 192.0.2.0/24");
  assert.ok(rec.ms.compile > rec.ms.stage + rec.ms.commit);
}));

test(`overlapping reloads run in the order asked; more than ${MAX_TABLE_JOBS} at once are refused`, withDaemon({}, async (d, src, dir) => {
  const on = join(dir, "on.yaml"), off = join(dir, "off.yaml");
  writeFileSync(on, POLICY_TEXT);
  writeFileSync(off, OFF80);
  const asked = [off, on, off, on, off, on];
  const recs = await Promise.all(asked.map((p) => d.reload(p, undefined, { trigger: "control" })));
  assert.equal(recs.map((r) => r.ok), [true, true, true, true, false, false]);
  assert.equal(recs.map((r) => r.path), asked);
  const tickets = recs.slice(0, 4).map((r) => r.ticket!);
  assert.ok(tickets.every((t, i) => i === 0 || t > tickets[i - 1]!), `tickets in order: ${tickets.join(", ")}`);
  assert.is(recs[4]!.error, `${MAX_TABLE_JOBS} reloads are already queued or running; try again when they finish`);
  assert.equal(src.send(syn(80)), ["rule_allow"], "the last committed (on.yaml) is live");
  assert.is(d.policy, on);
  // The history is in commit order too.
  assert.equal(d.reloads.filter((r) => r.ok).slice(-4).map((r) => r.ticket), tickets);
}));

test("a worker that never answers, exits or throws: the reload is refused, the live table stays, the next reload works", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-rworker-"));
  try {
    // The timeout is short only for the worker that hangs (a loaded machine starts a worker slowly).
    const scripts: Array<[string, string, RegExp, number]> = [
      ["hang.mjs", "setInterval(() => {}, 1000);", /^compiling .*off\.yaml took longer than 300 ms; the compiler was stopped$/, 300],
      ["exit.mjs", 'import { parentPort } from "node:worker_threads"; parentPort.on("message", () => process.exit(7));', /^the compiler exited \(code 7\) before it answered$/, 60_000],
      ["throw.mjs", 'import { parentPort } from "node:worker_threads"; parentPort.on("message", () => { throw new Error("boom"); });', /^the compiler failed: boom$/, 60_000],
    ];
    const off = join(dir, "off.yaml");
    writeFileSync(off, OFF80);
    for (const [name, code, why, timeoutMs] of scripts) {
      writeFileSync(join(dir, name), code);
      const d = new Daemon({ policy: POLICY, mode: "host", compiler: { script: pathToFileURL(join(dir, name)), timeoutMs } }, new JsonLogger(() => {}));
      const src = new FakeSource("q0");
      try {
        // The first table from the last good bytes (the worker is the broken one).
        const first = await d.reload(POLICY, await tableOf(POLICY));
        assert.ok(first.ok, first.error);
        d.addSource(src);
        const r = await d.reload(off);
        assert.is(r.ok, false, name);
        assert.match(r.error!, why);
        unchanged(d, src, first.ticket);
        // A new worker for the next job (the same broken script: refused the same way, not stuck).
        assert.match((await d.reload(off)).error!, why);
        assert.is(d.compiler.started, 2, `${name}: a worker per failed job`);
      } finally {
        await d.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The table bytes of a policy, compiled here (for a daemon whose worker is broken on purpose).
async function tableOf(policy: string): Promise<Uint8Array> {
  const { compileJob } = await import("../host/daemon/compiler.js");
  const a = compileJob({ path: policy, mode: "host", switches: {} });
  if (!a.ok) throw new Error(a.error);
  return a.bytes;
}

test("a compile over the worker's heap limit is refused; the worker is replaced and the next reload works", withDaemon({ compiler: { heapMb: 16 } }, async (d, src, dir) => {
  const ticket = d.reloads.at(-1)!.ticket;
  const r = await d.reload(bigPolicy(dir, 100_000));
  assert.is(r.ok, false);
  assert.is(r.error, "the compiler ran out of memory (its heap is limited to 16 MiB)");
  unchanged(d, src, ticket);
  const off = join(dir, "off.yaml");
  writeFileSync(off, OFF80);
  assert.ok((await d.reload(off)).ok);
  assert.equal(src.send(syn(80)), ["default_deny"]);
}));

test("a FIFO, /dev/zero, a directory and a sparse file over the size limit are refused in one line without reading them", withDaemon({}, async (d, src, dir) => {
  const ticket = d.reloads.at(-1)!.ticket;
  const fifo = join(dir, "fifo.yaml");
  assert.is(spawnSync("mkfifo", [fifo]).status, 0);
  const sparse = join(dir, "sparse.yaml");
  writeFileSync(sparse, "");
  truncateSync(sparse, 2 * 1024 * 1024 * 1024);
  const cases: Array<[string, string]> = [
    [fifo, `${fifo}: the policy or table must be a regular file, not a FIFO`],
    ["/dev/zero", "/dev/zero: the policy or table must be a regular file, not a character device"],
    [dir, `${dir}: the policy or table must be a regular file, not a directory`],
    [sparse, `${sparse}: the policy or table is ${2 * 1024 * 1024 * 1024} bytes, over the ${MAX_OPERATOR_FILE}-byte limit`],
    [join(dir, "absent.yaml"), `${join(dir, "absent.yaml")}: no such policy or table file`],
  ];
  for (const [path, error] of cases) {
    const r = await d.reload(path, undefined, { trigger: "control" });
    assert.equal([r.ok, r.error], [false, error]);
  }
  await d.startShadow(fifo).then(() => assert.unreachable("a FIFO candidate started"), (e: Error) => assert.is(e.message, cases[0]![1]));
  unchanged(d, src, ticket);
}));

test("a policy whose table is over the core's limits is refused by the compile, with the CLI's message (buildPolicyTable)", withDaemon({}, async (d, src, dir) => {
  const ticket = d.reloads.at(-1)!.ticket;
  // 16,500 rules on distinct ports: as many bitmaps of 16,500 bits, over the core's 32 MiB slot.
  const wide = join(dir, "wide.yaml");
  const rules = Array.from({ length: 16_500 }, (_, i) => `  - {action: allow, interface: external, direction: in, proto: tcp, dport: ${i + 1}}`);
  writeFileSync(wide, `version: 1\ndefault: deny\nrules:\n${rules.join("\n")}\n`);
  const r = await d.reload(wide);
  assert.is(r.ok, false);
  const esc = (x: string | number): string => String(x).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  assert.match(r.error ?? "", new RegExp(`^${esc(wide)}: the compiled table is \\d+ bytes with 16500 rules; the core takes at most ${DEFAULT_MAX_RULES} rules and ${DEFAULT_TABLE_CAP} bytes$`));
  unchanged(d, src, ticket);
}));

test("a stop while a reload compiles: the reload in flight and the one queued are refused, nothing is staged, the compile is stopped", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-rworker-"));
  const d = new Daemon({ policy: POLICY, mode: "host" }, new JsonLogger(() => {}));
  try {
    const first = await d.reload();
    assert.ok(first.ok);
    const big = bigPolicy(dir, 200_000);
    const pending = d.reload(big);
    const queued = d.reload(big);
    await new Promise((r) => setTimeout(r, 50));
    await d.stop();
    const [r, q] = await Promise.all([pending, queued]);
    assert.equal([r.ok, r.error, q.ok, q.error], [false, "the daemon is stopping", false, "the daemon is stopping"]);
    assert.is(d.reloads.filter((x) => x.ok).length, 1);
    assert.is(d.reloads.filter((x) => x.ok).at(-1)!.ticket, first.ticket);
    const after = await d.reload();
    assert.equal([after.ok, after.error], [false, "the daemon is stopping"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
