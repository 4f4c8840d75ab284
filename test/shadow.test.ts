// The canary table: a candidate runs beside the live table on the same
// packets, decides nothing, and reports where the verdicts would differ;
// then it is promoted or discarded.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { type PacketMeta } from "../host/core/core.js";
import { request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { type ShadowReport } from "../host/daemon/shadow.js";
import { ipv4, PROTO_TCP, TCP_ACK, TCP_PSH, TCP_SYN, tcp } from "../host/packets/build.js";
import { FakeSource } from "./helpers/fake-source.js";

const POLICY = "host/policy/default.yaml";
const IN = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
const OUT = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };

// The verdicts the live table gave these packets, in order.
function send(src: FakeSource, ...pkts: Array<[Uint8Array, PacketMeta]>): number[] {
  const from = src.verdicts.length;
  src.send(...pkts);
  return src.verdicts.slice(from);
}

const seg = (fromClient: boolean, cport: number, sport: number, flags: number): Uint8Array => ipv4({
  src: fromClient ? "192.0.2.7" : "203.0.113.1", dst: fromClient ? "203.0.113.1" : "192.0.2.7", proto: PROTO_TCP,
  payload: tcp({ sport: fromClient ? cport : sport, dport: fromClient ? sport : cport, flags, seq: fromClient ? 100 : 900, ack: flags & TCP_ACK ? (fromClient ? 901 : 101) : 0 }),
});
const A = ABI.VERDICT_ACCEPT, D = ABI.VERDICT_DROP;

test("a canary sees the same packets, enforces nothing, and reports every difference", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-shadow-"));
  const sock = join(dir, "c.sock");
  const d = new Daemon({ policy: POLICY, mode: "host", control: sock }, new JsonLogger(() => {}));
  try {
    assert.ok((await d.reload()).ok);
    const src = new FakeSource("q0");
    d.addSource(src);
    await d.listen();
    // An HTTPS connection open before the canary starts.
    assert.equal(send(src, [seg(true, 1000, 443, TCP_SYN), IN], [seg(false, 1000, 443, TCP_SYN | TCP_ACK), OUT], [seg(true, 1000, 443, TCP_ACK), IN]), [A, A, A]);
    // The candidate: port 80 switched off, SSH allowed.
    const cand = join(dir, "cand.yaml");
    writeFileSync(cand, readFileSync(POLICY, "utf8").replace("external_http_80: true", "external_http_80: false")
      .replace("rules:\n", "rules:\n  - name: ssh\n    action: allow\n    interface: external\n    direction: in\n    proto: tcp\n    dst: listener\n    dport: 22\n"));
    const started = await request(sock, { cmd: "shadow", path: cand });
    assert.is(started.ok, true, JSON.stringify(started));
    // Live decides: 80 passes, 22 does not; the old 443 flow goes on in both.
    assert.equal(send(src, [seg(true, 1001, 80, TCP_SYN), IN], [seg(false, 1001, 80, TCP_SYN | TCP_ACK), OUT]), [A, A]);
    assert.equal(send(src, [seg(true, 1002, 22, TCP_SYN), IN]), [D]);
    assert.equal(send(src, [seg(true, 1000, 443, TCP_ACK | TCP_PSH), IN], [seg(false, 1000, 443, TCP_ACK | TCP_PSH), OUT]), [A, A]);
    const rep = (await request(sock, { cmd: "stats" })).stats as { shadow: ShadowReport };
    const s = rep.shadow;
    assert.is(s.packets, 5);
    assert.is(s.differ, 3, "the 80 SYN, its SYN-ACK, and the SSH SYN");
    assert.is(s.liveAcceptCandidateDrop, 2);
    assert.is(s.liveDropCandidateAccept, 1);
    assert.equal(s.byReasons, { "rule_allow -> default_deny": 1, "state_match -> no_flow": 1, "default_deny -> rule_allow": 1 });
    assert.is(s.samples.length, 3);
    assert.match(s.samples[0]!.packet, /192\.0\.2\.7:1001 > 203\.0\.113\.1:80 TCP \[S\]/);
    assert.match(String(s.samples[2]!.candidate.rule), /ssh: allow tcp external in any -> listener dport 22/);
    // Promote: the candidate decides from now on; the canary is gone.
    const p = await request(sock, { cmd: "promote" });
    assert.is(p.ok, true);
    assert.equal(send(src, [seg(true, 1003, 80, TCP_SYN), IN], [seg(true, 1004, 22, TCP_SYN), IN]), [D, A]);
    assert.is(((await request(sock, { cmd: "stats" })).stats as { shadow: unknown }).shadow, null);
    const again = await request(sock, { cmd: "promote" });
    assert.is(again.ok, false);
    assert.match(String(again.error), /no candidate table is running/);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("discard leaves the live table as it was; a broken candidate is refused with its position", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pc-shadow-"));
  const d = new Daemon({ policy: POLICY, mode: "host" }, new JsonLogger(() => {}));
  try {
    await d.reload();
    const src = new FakeSource("q0");
    d.addSource(src);
    const cand = join(dir, "c.yaml");
    writeFileSync(cand, readFileSync(POLICY, "utf8").replace("dport: 443", "dport: 444"));
    await d.startShadow(cand);
    assert.equal(send(src, [seg(true, 2000, 443, TCP_SYN), IN]), [A]);
    assert.is(d.engine.shadow!.report().liveAcceptCandidateDrop, 1);
    d.discard();
    assert.is(d.engine.shadow, null);
    assert.equal(send(src, [seg(true, 2001, 443, TCP_SYN), IN]), [A]);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "version: 1\ndefault: deny\nrules:\n  - action: allow\n    interface: outside\n    direction: in\n");
    await d.startShadow(bad).then(() => assert.unreachable("a broken candidate started"), (e: Error) => assert.match(e.message, /bad\.yaml:5:16/));
    assert.throws(() => d.discard(), /no candidate/);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
