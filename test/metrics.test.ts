// The Prometheus endpoint (host/daemon/metrics.ts): scraped over loopback
// with fetch, exact lines asserted; addresses other than loopback and the
// internal interface refused.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { checkMetricsHost, escapeLabel, MetricsServer, parseListenAddress, renderMetrics } from "../host/daemon/metrics.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { Conn, FakeSource, IN_EXT } from "./helpers/fake-source.js";

const POLICY = "host/policy/default.yaml";
let sport = 33000;
const syn = (dport: number): [Uint8Array, typeof IN_EXT] =>
  [ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: sport++, dport, flags: TCP_SYN }) }), IN_EXT];
const SERIES = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$/;

test("scrape over loopback: exact lines for verdicts, reasons, rules, flows, queues, reloads", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-metrics-"));
  const d = new Daemon({ policy: POLICY, mode: "host" }, new JsonLogger(() => {}));
  const m = new MetricsServer(d, new JsonLogger(() => {}));
  try {
    assert.ok((await d.reload()).ok);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "version: 1\nrules: [\n");
    assert.is((await d.reload(bad)).ok, false);
    const src = new FakeSource("queue0", { enobufs: 2, bytes: 999, kernelWaiting: 1, kernelQueueDropped: 3, kernelUserDropped: 4, kernelCopyRange: 256 });
    d.addSource(src);
    assert.equal(new Conn(src, 40000, 443).open(), ["rule_allow", "state_match", "state_match"]);
    assert.equal(src.send(syn(22), syn(443)), ["default_deny", "rule_allow"]);
    const port = await m.listen("127.0.0.1", 0);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.is(res.status, 200);
    assert.is(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const lines = text.split("\n");
    assert.is(lines.pop(), "", "ends with a newline");
    const s = d.stats() as { rules: Array<{ info: string }>; verdicts: { accept: { bytes: bigint }; drop: { bytes: bigint } } };
    const rule443 = s.rules.findIndex((r) => r.info.includes("443") && r.info.includes("external"));
    assert.ok(rule443 >= 0);
    const want = [
      "# TYPE portcullis_packets_total counter",
      'portcullis_packets_total{verdict="accept"} 4',
      'portcullis_packets_total{verdict="drop"} 1',
      `portcullis_bytes_total{verdict="accept"} ${s.verdicts.accept.bytes}`,
      `portcullis_bytes_total{verdict="drop"} ${s.verdicts.drop.bytes}`,
      'portcullis_reason_packets_total{reason="rule_allow"} 2',
      'portcullis_reason_packets_total{reason="state_match"} 2',
      'portcullis_reason_packets_total{reason="default_deny"} 1',
      'portcullis_reason_packets_total{reason="frag_overlap"} 0',
      `portcullis_rule_packets_total{rule="${rule443}",name="${escapeLabel(s.rules[rule443]!.info)}"} 2`,
      `portcullis_table_rules ${s.rules.length}`,
      "# TYPE portcullis_flows gauge",
      'portcullis_flows{state="live"} 2',
      "portcullis_flows_capacity 65536",
      "portcullis_flows_created_total 2",
      "portcullis_flows_ended_total 0",
      'portcullis_queue_packets_total{queue="0"} 5',
      'portcullis_queue_bytes_total{queue="0"} 999',
      'portcullis_queue_enobufs_total{queue="0"} 2',
      'portcullis_queue_kernel_full_total{queue="0"} 3',
      'portcullis_queue_kernel_undelivered_total{queue="0"} 4',
      "# TYPE portcullis_queue_copy_range_bytes gauge",
      'portcullis_queue_copy_range_bytes{queue="0"} 256',
      'portcullis_queue_read_errors_total{queue="0"} 0',
      "# TYPE portcullis_undecided_dropped_total counter",
      'portcullis_undecided_dropped_total{queue="0",cause="core_refused"} 0',
      'portcullis_undecided_dropped_total{queue="0",cause="send_failed"} 0',
      "# TYPE portcullis_queue_kernel_waiting gauge",
      'portcullis_queue_kernel_waiting{queue="0"} 1',
      'portcullis_reloads_total{result="ok"} 1',
      'portcullis_reloads_total{result="error"} 1',
      "portcullis_recheck_flows_ended_total 0",
      "portcullis_reload_success 0",
      "portcullis_table_last_good 0",
      "portcullis_shadow_running 0",
      "portcullis_batches_total 4", // the handshake in three, the two SYNs in one
    ];
    for (const w of want) assert.ok(lines.includes(w), `missing line: ${w}\n---\n${text}`);
    for (const ph of ["compile", "stage", "commit", "total"]) {
      assert.ok(lines.some((l) => l.startsWith(`portcullis_reload_duration_seconds{phase="${ph}"} `)), ph);
    }
    // Every line is a HELP, a TYPE or a well-formed sample of a family
    // declared just before; no series twice.
    const seen = new Set<string>();
    let family = "";
    for (const l of lines) {
      if (l.startsWith("# HELP ")) continue;
      if (l.startsWith("# TYPE ")) { family = l.split(" ")[2]!; continue; }
      const mm = SERIES.exec(l);
      assert.ok(mm, `not a sample line: ${l}`);
      assert.is(mm![1], family, `sample of ${mm![1]} under the TYPE of ${family}`);
      const key = `${mm![1]}${mm![2] ?? ""}`;
      assert.not.ok(seen.has(key), `duplicate series ${key}`);
      seen.add(key);
    }
    // HEAD, another path, another method.
    assert.is((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "HEAD" })).status, 200);
    assert.is((await fetch(`http://127.0.0.1:${port}/`)).status, 404);
    assert.is((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status, 405);
    assert.is(m.scrapes, 2);
  } finally {
    await m.close();
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("packets dropped without a verdict of the core's: per cause in stats, per queue in the queue's figures, and in the metrics", async () => {
  const d = new Daemon({ policy: POLICY, mode: "host" }, new JsonLogger(() => {}));
  d.engine.onFatal = () => assert.unreachable("one failed read is not fatal");
  assert.ok((await d.reload()).ok);
  // What the addon counts itself comes with the source's figures.
  const q0 = new FakeSource("queue0", { undecidedNoVerdict: 1, undecidedUnparsed: 2, undecidedSendFailed: 3, sendErrors: 1 });
  const q1 = new FakeSource("queue1", { undecidedSendFailed: 4 });
  d.addSource(q0);
  d.addSource(q1);
  const classify = d.core.classify.bind(d.core);
  let refuse = 1;
  d.core.classify = (n: number, now?: bigint): number => (refuse-- > 0 ? -1 : classify(n, now));
  assert.equal(q0.send(syn(443), syn(443)), ["none", "none"]);
  q1.failRecv = 1;
  q1.send(syn(443));
  const s = d.stats() as { undecided: Record<string, number>; queues: Array<Record<string, number | string>> };
  assert.equal(s.undecided, { core_refused: 2, core_error: 0, no_verdict: 1, unparsed: 2, send_failed: 7 });
  assert.equal([s.queues[0]!.undecidedCoreRefused, s.queues[0]!.readErrors, s.queues[1]!.undecidedCoreRefused, s.queues[1]!.readErrors], [2, 0, 0, 1]);
  const lines = renderMetrics(d).split("\n");
  for (const w of [
    'portcullis_undecided_dropped_total{queue="0",cause="core_refused"} 2',
    'portcullis_undecided_dropped_total{queue="0",cause="core_error"} 0',
    'portcullis_undecided_dropped_total{queue="0",cause="no_verdict"} 1',
    'portcullis_undecided_dropped_total{queue="0",cause="unparsed"} 2',
    'portcullis_undecided_dropped_total{queue="0",cause="send_failed"} 3',
    'portcullis_undecided_dropped_total{queue="1",cause="send_failed"} 4',
    'portcullis_undecided_dropped_total{queue="1",cause="core_refused"} 0',
    'portcullis_queue_read_errors_total{queue="1"} 1',
    'portcullis_queue_verdict_send_errors_total{queue="0"} 1',
    'portcullis_queue_verdict_send_errors_total{queue="1"} 0',
  ]) assert.ok(lines.includes(w), `missing line: ${w}`);
  assert.is(lines.filter((l) => l.startsWith("portcullis_undecided_dropped_total{")).length, 10);
});

test("label values are escaped", () => {
  assert.is(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
});

test("--metrics ADDR:PORT: loopback and the internal interface's addresses only", () => {
  assert.equal(parseListenAddress("127.0.0.1:9464"), { host: "127.0.0.1", port: 9464 });
  assert.equal(parseListenAddress("[::1]:9464"), { host: "::1", port: 9464 });
  assert.throws(() => parseListenAddress("localhost:9464"), /numeric address/);
  assert.throws(() => parseListenAddress("127.0.0.1:0"), /port must be from 1 to 65535/);
  assert.throws(() => parseListenAddress("::1:9464"), /ADDR:PORT/);
  const ifaces = {
    lo: [{ address: "127.0.0.1", family: "IPv4" }, { address: "::1", family: "IPv6" }],
    ext0: [{ address: "203.0.113.1", family: "IPv4" }, { address: "2001:db8:1::1", family: "IPv6" }],
    int0: [{ address: "198.51.100.1", family: "IPv4" }, { address: "2001:db8:2::1", family: "IPv6" }, { address: "fe80::1", family: "IPv6", scopeid: 3 }],
  } as unknown as Parameters<typeof checkMetricsHost>[2];
  for (const ok of ["127.0.0.1", "127.0.0.53", "::1", "0:0:0:0:0:0:0:1"]) checkMetricsHost(ok, undefined, ifaces);
  for (const ok of ["198.51.100.1", "2001:db8:2::1", "2001:0db8:0002:0:0:0:0:1"]) checkMetricsHost(ok, "int0", ifaces);
  assert.throws(() => checkMetricsHost("0.0.0.0", "int0", ifaces), /every interface, the external one included/);
  assert.throws(() => checkMetricsHost("::", "int0", ifaces), /every interface/);
  assert.throws(() => checkMetricsHost("203.0.113.1", "int0", ifaces), /203\.0\.113\.1 is an address of ext0, not of the internal interface \(the internal interface is int0\)/);
  assert.throws(() => checkMetricsHost("2001:db8:1::1", "int0", ifaces), /address of ext0/);
  assert.throws(() => checkMetricsHost("198.51.100.1", undefined, ifaces), /no internal interface is named/);
  assert.throws(() => checkMetricsHost("192.0.2.77", "int0", ifaces), /not an address of this host/);
});

test("portcullis run refuses a public metrics address before binding anything", () => {
  const cli = join(process.cwd(), "dist", "host", "cli.js");
  const r = spawnSync(process.execPath, [cli, "run", "--policy", POLICY, "--metrics", "0.0.0.0:9464", "--control", "/nonexistent/x.sock",
    "--state-dir", "/nonexistent/state", "--no-watch"], { encoding: "utf8", timeout: 20_000 });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /portcullis: error: --metrics: 0\.0\.0\.0 listens on every interface, the external one included/);
  const r2 = spawnSync(process.execPath, [cli, "run", "--policy", POLICY, "--metrics", "localhost:9464"], { encoding: "utf8", timeout: 20_000 });
  assert.is(r2.status, 1);
  assert.match(r2.stderr, /give ADDR:PORT with a numeric address/);
  assert.ok(readFileSync(POLICY, "utf8").length > 0);
});

test.run();
