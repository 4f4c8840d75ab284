// The daemon's packet loop with a fake packet source: batches drained per
// wakeup, one verdict per packet in order, rate-limited logs for rules that
// ask for them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core } from "../host/core/core.js";
import { Engine, READ_ERROR_LIMIT } from "../host/daemon/engine.js";
import { JsonLogger } from "../host/daemon/log.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyText } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { TableView } from "../host/rules/inspect.js";
import { type Shadow } from "../host/daemon/shadow.js";
import { FakeSource, IN_EXT } from "./helpers/fake-source.js";

const POLICY = `
version: 1
default: deny
groups:
  listener: [203.0.113.1]
rules:
  - name: web
    action: allow
    interface: external
    direction: in
    proto: tcp
    dst: listener
    dport: 443
  - name: no-ssh
    action: deny
    log: true
    interface: external
    direction: in
    proto: tcp
    dport: 22
`;


const syn = (sport: number, dport: number): Uint8Array =>
  ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport, dport, flags: TCP_SYN }) });

function setup(maxBatch = 256, write?: (line: string) => void): { core: Core; engine: Engine; src: FakeSource; lines: string[] } {
  const { spec } = compilePolicyText(POLICY, "p.yaml", { mode: "host" });
  const table = buildTable(spec).bytes;
  const core = new Core();
  core.loadTable(table);
  const lines: string[] = [];
  const engine = new Engine(core, new JsonLogger(write ?? ((l) => lines.push(l))), maxBatch, () => 1_000_000n);
  engine.setTable(new TableView(table));
  const src = new FakeSource("fake0");
  engine.attach(src);
  return { core, engine, src, lines };
}

test("one wakeup drains every queued packet in batches; one verdict each, in order", () => {
  const { engine, src } = setup(64);
  for (let i = 0; i < 1000; i++) src.queue.push({ bytes: syn(10000 + i, i % 2 ? 443 : 8443), meta: IN_EXT });
  src.send();
  assert.is(src.verdicts.length, 1000);
  assert.equal(src.verdicts.slice(0, 4), [ABI.VERDICT_DROP, ABI.VERDICT_ACCEPT, ABI.VERDICT_DROP, ABI.VERDICT_ACCEPT]);
  assert.is(src.verdicts.filter((v) => v === ABI.VERDICT_ACCEPT).length, 500);
  assert.is(engine.stats.batches, Math.ceil(1000 / 64));
  assert.is(engine.stats.wakeups, 1);
  assert.is(engine.stats.packets, 1000);
});

test("drops by a logging rule are logged as JSON lines, at most the burst, then counted as suppressed", () => {
  const { engine, src, lines } = setup();
  for (let i = 0; i < 50; i++) src.queue.push({ bytes: syn(20000 + i, 22), meta: IN_EXT });
  // An established flow's packets are never logged, nor are non-logging rules.
  src.queue.push({ bytes: syn(30000, 443), meta: IN_EXT });
  src.send();
  const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.is(recs.length, 20, "burst of 20");
  assert.equal(Object.keys(recs[0]!).sort(), ["info", "level", "msg", "packet", "reason", "rule", "source", "ts"]);
  assert.is(recs[0]!.msg, "drop");
  assert.is(recs[0]!.rule, 1);
  assert.match(String(recs[0]!.packet), /192\.0\.2\.9:20000 > 203\.0\.113\.1:22 TCP \[S\]/);
  assert.match(String(recs[0]!.info), /no-ssh/);
  assert.is(engine.stats.suppressed, 30);
});

test("after stop, wakeups are ignored", () => {
  const { engine, src } = setup();
  engine.stop();
  src.queue.push({ bytes: syn(1, 443), meta: IN_EXT });
  src.send();
  assert.is(src.verdicts.length, 0);
  // The daemon's shutdown drains explicitly: every queued packet gets a verdict.
  engine.drain(src);
  assert.equal(src.verdicts, [ABI.VERDICT_ACCEPT]);
});

// ── error paths: every packet read gets a verdict (issue 12) ───────────────

const msgs = (lines: string[]): string[] => lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
const D = ABI.VERDICT_DROP, A = ABI.VERDICT_ACCEPT;

test("a batch the core refuses: every packet gets DROP, counted as core_refused; the next batch is decided as usual", () => {
  const { core, engine, src, lines } = setup();
  const classify = core.classify.bind(core);
  let refuse = 1;
  core.classify = (n: number, now?: bigint): number => (refuse-- > 0 ? -1 : classify(n, now));
  assert.equal(src.send([syn(1, 443), IN_EXT], [syn(2, 443), IN_EXT]), ["none", "none"]);
  assert.equal(src.verdicts, [D, D]);
  assert.equal(src.send([syn(3, 443), IN_EXT]), ["rule_allow"]);
  assert.equal(src.verdicts, [D, D, A]);
  assert.equal(engine.sourceStats(src), { undecidedCoreRefused: 2, undecidedCoreError: 0, readErrors: 0 });
  assert.equal(msgs(lines), ["core refused a batch; its packets are dropped"]);
  assert.is(engine.stats.packets, 3);
});

test("the core throws on a batch (a trap): every packet gets DROP, counted as core_error", () => {
  const { core, engine, src, lines } = setup();
  core.classify = (): number => { throw new WebAssembly.RuntimeError("unreachable"); };
  src.send([syn(1, 443), IN_EXT], [syn(2, 22), IN_EXT], [syn(3, 443), IN_EXT]);
  assert.equal(src.verdicts, [D, D, D]);
  assert.is(engine.sourceStats(src).undecidedCoreError, 3);
  assert.equal(msgs(lines), ["the core trapped; the batch's packets are dropped"]);
});

test("logging that throws, or a canary that throws: the core's verdicts are sent all the same", () => {
  let throwing = true;
  const lines: string[] = [];
  const { engine, src } = setup(256, (l) => { if (throwing && l.includes('"drop"')) throw new Error("EPIPE"); lines.push(l); });
  // 22 is denied by a rule that logs; 443 allowed.
  src.send([syn(1, 22), IN_EXT], [syn(2, 443), IN_EXT]);
  assert.equal(src.verdicts, [D, A]);
  assert.is(engine.stats.logErrors, 1);
  assert.equal(msgs(lines), ["logging a batch failed; its verdicts stand"]);
  throwing = false;
  engine.shadow = { path: "cand.yaml", observe() { throw new RangeError("offset out of bounds"); } } as unknown as Shadow;
  src.send([syn(3, 443), IN_EXT]);
  assert.equal(src.verdicts, [D, A, A]);
  assert.is(engine.shadow, null, "the failed candidate is discarded");
  assert.is(engine.stats.shadowErrors, 1);
  assert.is(msgs(lines).at(-1), "the candidate table failed and was discarded; live verdicts are unchanged");
});

test("a verdict() that throws is logged and counted, and the loop goes on", () => {
  const { engine, src, lines } = setup();
  src.failVerdict = 1;
  src.send([syn(1, 443), IN_EXT]);
  src.send([syn(2, 443), IN_EXT]);
  assert.equal(src.verdicts, [A]);
  assert.is(engine.stats.verdictErrors, 1);
  assert.equal(msgs(lines), ["sending verdicts failed; the source drops what it could not send"]);
});

test("a failed read is logged and counted and reading goes on; READ_ERROR_LIMIT in a row end the daemon (onFatal)", () => {
  const { engine, src, lines } = setup();
  const fatal: string[] = [];
  engine.onFatal = (s, e) => fatal.push(`${s.name}: ${(e as Error).message}`);
  src.failRecv = 1;
  assert.equal(src.send([syn(1, 443), IN_EXT]), []);
  assert.equal(src.send(), ["rule_allow"], "the next wakeup reads it");
  assert.equal(engine.sourceStats(src).readErrors, 1);
  // A good read between resets the run; LIMIT failures in a row do not.
  src.failRecv = READ_ERROR_LIMIT - 1;
  for (let i = 0; i < READ_ERROR_LIMIT - 1; i++) src.send();
  src.send();
  assert.equal(fatal, []);
  src.failRecv = READ_ERROR_LIMIT;
  for (let i = 0; i < READ_ERROR_LIMIT; i++) src.send();
  assert.equal(fatal, ["fake0: EIO: input/output error"]);
  assert.is(engine.stats.readErrors, 1 + 2 * READ_ERROR_LIMIT - 1);
  assert.is(msgs(lines).at(-1), "reading a queue failed for good; exiting so that the service is restarted");
  // Nothing more is read after that.
  const calls = src.recvCalls;
  src.send([syn(4, 443), IN_EXT]);
  assert.is(src.recvCalls, calls);
});

test("a wakeup that reports a socket error: logged, counted, and the source is read all the same", () => {
  const { engine, src, lines } = setup();
  src.queue.push({ bytes: syn(1, 443), meta: IN_EXT });
  src.fireError(Object.assign(new Error("NFQUEUE queue 0: poll failed (EIO)"), { code: "EIO" }));
  assert.equal(src.verdicts, [A]);
  assert.is(engine.sourceStats(src).readErrors, 1);
  assert.equal(msgs(lines), ["reading a queue failed; reading goes on"]);
  const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal([rec.code, rec.inARow, rec.source], ["EIO", 1, "fake0"]);
});

test("a source that returns fewer packets than asked while it holds more is read until it is empty", () => {
  const { src } = setup(64);
  src.perRecv = 10;
  for (let i = 0; i < 35; i++) src.queue.push({ bytes: syn(40000 + i, 443), meta: IN_EXT });
  src.send();
  assert.is(src.verdicts.length, 35);
  assert.is(src.queue.length, 0);
});

test.run();
