// The daemon's packet loop with a fake packet source: batches drained per
// wakeup, one verdict per packet in order, rate-limited logs for rules that
// ask for them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core } from "../host/core/core.js";
import { Engine } from "../host/daemon/engine.js";
import { JsonLogger } from "../host/daemon/log.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { compilePolicyText } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { TableView } from "../host/rules/inspect.js";
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

function setup(maxBatch = 256): { core: Core; engine: Engine; src: FakeSource; lines: string[] } {
  const { spec } = compilePolicyText(POLICY, "p.yaml", { mode: "host" });
  const table = buildTable(spec).bytes;
  const core = new Core();
  core.loadTable(table);
  const lines: string[] = [];
  const engine = new Engine(core, new JsonLogger((l) => lines.push(l)), maxBatch, () => 1_000_000n);
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

test.run();
