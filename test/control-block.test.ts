// The operator's hand on per-source limits (issue 19) through a daemon with
// a fake packet source: `block list|add|del` and `sources` over the control
// socket (and through the CLI), the stats and metrics they add.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { renderMetrics } from "../host/daemon/metrics.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { FakeSource, IN_EXT } from "./helpers/fake-source.js";
import { limitedDefaultPolicy } from "./helpers/limited-policy.js";

const CLI = join(process.cwd(), "bin", "portcullis.js");
let port = 30000;
const syn = (src: string): [Uint8Array, typeof IN_EXT] =>
  [ipv4({ src, dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: port++, dport: 443, flags: TCP_SYN }) }), IN_EXT];
// The CLI in a child process, asynchronously (the daemon answers from this one).
const cli = (...args: string[]): Promise<{ status: number | null; out: string; err: string }> => new Promise((res) => {
  execFile(process.execPath, [CLI, ...args], { encoding: "utf8" }, (e, out, err) => res({ status: e ? (e as { code?: number }).code ?? 1 : 0, out, err }));
});

test("block list, add, del and sources over the control socket and the CLI; stats and metrics", async () => {
  const dir = mkdtempSync(join(tmpdir(), "plim-ctl-"));
  const policy = join(dir, "policy.yaml");
  writeFileSync(policy, limitedDefaultPolicy());
  const sock = join(dir, "ctl", "control.sock");
  const d = new Daemon({ policy, mode: "host", control: sock }, new JsonLogger(() => {}));
  const src = new FakeSource("q0");
  try {
    assert.ok((await d.reload()).ok);
    d.addSource(src);
    await d.listen();
    // Burst 5: the sixth SYN at once is over, and the source is listed.
    const got = src.send(...Array.from({ length: 7 }, () => syn("192.0.2.9")));
    assert.equal(got, ["rule_allow", "rule_allow", "rule_allow", "rule_allow", "rule_allow", "rate_limited", "source_blocked"]);
    assert.equal(src.send(syn("192.0.2.10")), ["rule_allow"], "another client is served");
    let r = await request(sock, { cmd: "block", op: "list" });
    const rows = r.blocks as Array<{ list: string; prefix: string; expiresInS: number }>;
    assert.equal(rows.map((b) => [b.list, b.prefix]), [["abusers", "192.0.2.9/32"]]);
    assert.ok(rows[0]!.expiresInS > 590 && rows[0]!.expiresInS <= 600, String(rows[0]!.expiresInS));
    // The CLI's view of it.
    let c = await cli("block", "list", "--control", sock);
    assert.is(c.status, 0, c.err);
    assert.match(c.out, /^abusers\s+192\.0\.2\.9\/32\s+\d+ s left\n$/);
    // Release it: served again.
    c = await cli("block", "del", "192.0.2.9", "--control", sock);
    assert.is(c.status, 0, c.err);
    assert.is(c.out, "released 192.0.2.9 from abusers\n");
    c = await cli("block", "del", "192.0.2.9", "--control", sock);
    assert.is(c.status, 1);
    assert.is(c.err, "portcullis: 192.0.2.9 is not on abusers\n");
    // An entry by hand, for a time, on a prefix.
    c = await cli("block", "add", "198.51.100.0/24", "--for", "90s", "--control", sock);
    assert.is(c.status, 0, c.err);
    assert.is(c.out, "blocked 198.51.100.0/24 on abusers (90s)\n");
    assert.equal(src.send(syn("198.51.100.77")), ["source_blocked"]);
    r = await request(sock, { cmd: "block", op: "add", addr: "192.0.2.300" });
    assert.is(r.ok, false);
    r = await request(sock, { cmd: "block", op: "add", addr: "192.0.2.1", list: "nope" });
    assert.equal(r, { ok: false, error: 'no block list named "nope" in the live table (its lists: abusers)' });
    c = await cli("block", "add", "192.0.2.1", "--for", "soon", "--control", sock);
    assert.is(c.status, 1);
    assert.match(c.err, /"soon" is not a duration/);
    // Sources: the busiest first.
    r = await request(sock, { cmd: "sources", top: 1 });
    const top = r.sources as Array<{ prefix: string; flows: number; rule: string }>;
    assert.equal(top.map((s) => [s.prefix, s.flows]), [["192.0.2.9/32", 5]]);
    assert.match(top[0]!.rule, /ext-https-443: .* limit rate 5\/s burst 5 flows 20 per \/32,\/64 overload abusers for 10m flush/);
    c = await cli("stats", "--sources", "2", "--control", sock);
    assert.is(c.status, 0, c.err);
    assert.match(c.out, /^source table: 2 of 16384 entries \(evicted 0, refused 0\); block lists: 1 of 4096 entries/);
    assert.match(c.out, /\n  192\.0\.2\.9\/32 +5 flows/);
    // Metrics.
    const m = renderMetrics(d).split("\n");
    for (const line of ["portcullis_sources 2", "portcullis_sources_capacity 16384", "portcullis_sources_evicted_total 0",
      "portcullis_sources_refused_total 0", 'portcullis_block_list_entries{list="abusers"} 1', "portcullis_blocks_capacity 4096",
      'portcullis_reason_packets_total{reason="rate_limited"} 1', 'portcullis_reason_packets_total{reason="source_blocked"} 2']) {
      assert.ok(m.includes(line), `${line}\n${m.filter((l) => /sources|block|rate_limited/.test(l)).join("\n")}`);
    }
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
