// TCP window tracking (assembly/conntrack/tcp.ts: the four bounds of
// conntrack's tcp_in_window) and mid-stream pickup (CFG_TCP_PICKUP), with
// crafted segments through the release core and the debug core, the
// TypeScript reference beside each (TwinHarness): every answer agrees.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { type Build, type CoreConfig } from "../host/core/load.js";
import { ipv4, PROTO_TCP, tcp } from "../host/packets/build.js";
import { compilePolicyText } from "../host/policy/compile.js";
import { sources } from "../host/core/limits.js";
import { A, CLIENT4, F_, IN_EXT, OUT_EXT, P, PROXY4, PROXY_SPEC, R, S } from "./helpers/conn.js";
import { TwinHarness } from "./helpers/twin.js";
import { type TableSpec } from "../host/rules/model.js";
import { boardProblem, parseBoardText } from "../host/kernel/board.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { renderMetrics } from "../host/daemon/metrics.js";
import { formatStats } from "../host/commands/ctl.js";
import { FakeSource, IN_EXT as FAKE_IN } from "./helpers/fake-source.js";

// A TCP conversation with explicit windows and options, each side keeping
// its own sequence number and what it has acked, as a real stack would.
class Conv {
  cseq = 1000; sseq = 50000; // next seq each side sends
  cack = 0; sack = 0; //        what each side acks of the other
  cwin = 29200; swin = 29200;
  constructor(readonly h: TwinHarness, readonly cport = 40000, readonly port = 443, readonly client = CLIENT4) {}

  seg(fromClient: boolean, flags: number, o: { len?: number; seq?: number; ack?: number; win?: number; opts?: Uint8Array } = {}): Uint8Array {
    const seg = tcp({
      sport: fromClient ? this.cport : this.port, dport: fromClient ? this.port : this.cport, flags,
      seq: o.seq ?? (fromClient ? this.cseq : this.sseq), ack: o.ack ?? ((flags & A) ? (fromClient ? this.cack : this.sack) : 0),
      win: o.win ?? (fromClient ? this.cwin : this.swin), payload: new Uint8Array(o.len ?? 0), ...(o.opts ? { options: o.opts } : {}),
    });
    return ipv4({ src: fromClient ? this.client : PROXY4, dst: fromClient ? PROXY4 : this.client, proto: PROTO_TCP, payload: seg });
  }
  // Sends and advances the sender's seq and the other side's view of it.
  c(flags: number, o: { len?: number; seq?: number; ack?: number; win?: number; opts?: Uint8Array } = {}, t = 1): string {
    const r = this.h.send(this.seg(true, flags, o), IN_EXT, t);
    if (o.seq === undefined) this.cseq = (this.cseq + (o.len ?? 0) + ((flags & (S | F_)) ? 1 : 0)) >>> 0;
    this.sack = this.cseq;
    return r;
  }
  s(flags: number, o: { len?: number; seq?: number; ack?: number; win?: number; opts?: Uint8Array } = {}, t = 1): string {
    const r = this.h.send(this.seg(false, flags, o), OUT_EXT, t);
    if (o.seq === undefined) this.sseq = (this.sseq + (o.len ?? 0) + ((flags & (S | F_)) ? 1 : 0)) >>> 0;
    this.cack = this.sseq;
    return r;
  }
  // A raw segment: nothing advanced.
  cRaw(flags: number, o: { len?: number; seq?: number; ack?: number; win?: number; opts?: Uint8Array } = {}): string {
    return this.h.send(this.seg(true, flags, o), IN_EXT, 1);
  }
  sRaw(flags: number, o: { len?: number; seq?: number; ack?: number; win?: number; opts?: Uint8Array } = {}): string {
    return this.h.send(this.seg(false, flags, o), OUT_EXT, 1);
  }
  handshake(copts?: Uint8Array, sopts?: Uint8Array): string[] {
    return [this.c(S, copts ? { opts: copts } : {}), this.s(S | A, sopts ? { opts: sopts } : {}), this.c(A)];
  }
}

const WSCALE = (n: number): Uint8Array => new Uint8Array([1, 3, 3, n]); // NOP, window scale n
// NOP NOP SACK with the blocks [left, right).
function sackOpt(blocks: Array<[number, number]>): Uint8Array {
  const o = new Uint8Array(4 + 8 * blocks.length);
  const v = new DataView(o.buffer);
  o[0] = 1; o[1] = 1; o[2] = 5; o[3] = 2 + 8 * blocks.length;
  blocks.forEach(([l, r], i) => { v.setUint32(4 + 8 * i, l >>> 0); v.setUint32(8 + 8 * i, r >>> 0); });
  return o;
}

const BUILDS: Build[] = ["release", "debug"];

function twin(build: Build, config: CoreConfig = {}, spec: TableSpec = PROXY_SPEC): TwinHarness { return new TwinHarness(spec, config, build); }
function agree(h: TwinHarness): void { assert.is(h.cmp.mismatches.length, 0, h.cmp.report()); }
const oow = (h: TwinHarness): bigint => h.core.counters().reasons.find((r) => r.name === "tcp_out_of_window")!.packets;

for (const build of BUILDS) {
  // ── window tracking ────────────────────────────────────────────────────
  test(`${build}: data far ahead, far behind, an ACK of unsent data, a RST outside: tcp_out_of_window, counted, nothing changes`, () => {
    const h = twin(build);
    const c = new Conv(h);
    assert.equal(c.handshake(), ["rule_allow", "state_match", "state_match"]);
    assert.is(c.c(A | P, { len: 1000 }), "state_match");
    assert.is(c.s(A | P, { len: 1400 }), "state_match");
    assert.is(c.cRaw(A | P, { len: 100, seq: c.cseq + 1_000_000 }), "tcp_out_of_window", "data far ahead (bound I)");
    assert.is(c.cRaw(A | P, { len: 100, seq: c.cseq - 1_000_000 }), "tcp_out_of_window", "data far behind (bound II)");
    assert.is(c.sRaw(A | P, { len: 100, seq: c.sseq + 30_000 }), "tcp_out_of_window", "beyond the client's 29200-byte window");
    assert.is(c.cRaw(A, { ack: c.cack + 5000 }), "tcp_out_of_window", "an ACK of data the server never sent (bound III)");
    assert.is(c.cRaw(A, { ack: c.cack - 200_000 }), "tcp_out_of_window", "an ACK from long ago (bound IV)");
    assert.is(c.cRaw(R, { seq: c.cseq + 100_000 }), "tcp_out_of_window", "RST beyond the window");
    assert.is(c.sRaw(R | A, { seq: c.sseq - 100_000 }), "tcp_out_of_window", "RST long behind");
    assert.is(c.cRaw(F_ | A, { seq: c.cseq + 3_000_000 }), "tcp_out_of_window", "FIN outside");
    assert.is(oow(h), 8n);
    assert.equal(h.states(), ["established"]);
    assert.is(c.c(A | P, { len: 500 }), "state_match", "the next legitimate segment passes");
    assert.is(c.s(A), "state_match");
    // Bound I again, exactly at the edge: the server advertised 29200 from its ack.
    assert.is(c.cRaw(A | P, { len: 10, seq: c.sack + 29200 + 1 }), "tcp_out_of_window", "one past the window's end");
    assert.is(c.cRaw(A | P, { len: 10, seq: c.sack + 29200 - 10 }), "state_match", "the window's last bytes");
    agree(h);
  });

  test(`${build}: retransmission, keep-alive, zero-window probe, window update, dup ACKs pass`, () => {
    const h = twin(build);
    const c = new Conv(h);
    c.handshake();
    const seq0 = c.cseq;
    assert.is(c.c(A | P, { len: 1000 }), "state_match");
    assert.is(c.c(A | P, { len: 1000 }), "state_match");
    assert.is(c.cRaw(A | P, { len: 1000, seq: seq0 }), "state_match", "retransmission of acked-or-not data");
    assert.is(c.s(A), "state_match");
    assert.is(c.s(A), "state_match", "dup ACK");
    assert.is(c.s(A), "state_match", "dup ACK");
    assert.is(c.cRaw(A, { seq: c.cseq - 1 }), "state_match", "keep-alive: seq = snd.nxt - 1, no data");
    assert.is(c.cRaw(A, { seq: c.cseq - 1, len: 1 }), "state_match", "keep-alive with one byte");
    // The server's buffer fills: window 0, then the client probes.
    assert.is(c.s(A, { win: 0 }), "state_match", "zero window");
    assert.is(c.cRaw(A, { len: 1, seq: c.cseq }), "state_match", "zero-window probe");
    assert.is(c.cRaw(A, { len: 1, seq: c.cseq }), "state_match", "zero-window probe again");
    assert.is(c.s(A, { win: 65535 }), "state_match", "window update");
    assert.is(c.c(A | P, { len: 1400 }), "state_match");
    assert.is(c.c(A | P, { len: 1400 }), "state_match");
    assert.is(c.s(F_ | A), "state_match");
    assert.is(c.c(F_ | A), "state_match");
    assert.is(c.s(A), "state_match");
    assert.equal(h.states(), ["time_wait"]);
    assert.is(oow(h), 0n);
    agree(h);
  });

  test(`${build}: SACK right edges count as the ack; one beyond what was sent does not`, () => {
    const h = twin(build);
    const c = new Conv(h);
    c.handshake();
    const base = c.cseq;
    for (let i = 0; i < 5; i++) assert.is(c.c(A | P, { len: 1000 }), "state_match");
    // The server lost the first segment: it acks base and SACKs the rest.
    assert.is(c.s(A, { ack: base, opts: sackOpt([[base + 1000, base + 5000]]) }), "state_match");
    assert.is(c.s(A, { ack: base, opts: sackOpt([[base + 3000, base + 5000], [base + 1000, base + 2000]]) }), "state_match", "two blocks");
    assert.is(c.cRaw(A | P, { len: 1000, seq: base }), "state_match", "the hole filled");
    assert.is(c.sRaw(A, { ack: base, opts: sackOpt([[base + 1000, base + 9000]]) }), "tcp_out_of_window", "a SACK of data never sent");
    assert.is(c.s(A, { ack: base + 5000 }), "state_match");
    assert.is(oow(h), 1n);
    agree(h);
  });

  test(`${build}: window scaling when both SYNs carry it, not when one does`, () => {
    // Both: the server's window 1000 << 7 = 128000 bytes.
    const h = twin(build);
    const c = new Conv(h);
    c.swin = 1000;
    c.handshake(WSCALE(7), WSCALE(7));
    assert.is(c.c(A | P, { len: 1000 }), "state_match", "the SYN-ACK's window is never scaled: 1000 bytes");
    assert.is(c.s(A), "state_match", "the server's first scaled window: 1000 << 7");
    const acked = c.sack;
    for (let i = 0; i < 60; i++) assert.is(c.c(A | P, { len: 1400 }), "state_match", `segment ${i} within the scaled window`);
    assert.is(c.cRaw(A | P, { len: 1400, seq: acked + 128000 + 1 }), "tcp_out_of_window", "past the scaled window");
    assert.is(c.cRaw(A | P, { len: 1400, seq: acked + 128000 - 1400 }), "state_match", "its last bytes");
    agree(h);
    // One side only: no scaling; 1000 bytes is the window.
    const h1 = twin(build);
    const d = new Conv(h1);
    d.swin = 1000;
    d.handshake(WSCALE(7));
    assert.is(d.s(A), "state_match");
    const at = d.sack;
    assert.is(d.c(A | P, { len: 900 }), "state_match");
    assert.is(d.cRaw(A | P, { len: 100, seq: at + 1001 }), "tcp_out_of_window", "past the unscaled window");
    assert.is(d.cRaw(A | P, { len: 100, seq: at + 900 }), "state_match");
    agree(h1);
  });

  test(`${build}: tcp.liberal (window tracking off): only RST and FIN are checked`, () => {
    const h = twin(build, { tcp: { liberal: true } });
    const c = new Conv(h);
    c.handshake();
    assert.is(c.cRaw(A | P, { len: 100, seq: c.cseq + 1_000_000 }), "state_match", "data far ahead passes");
    assert.is(c.cRaw(A, { ack: c.cack + 5000 }), "state_match", "an ACK of unsent data passes");
    assert.is(c.cRaw(R, { seq: c.cseq + 3_000_000 }), "tcp_out_of_window", "a RST far outside does not");
    agree(h);
  });

  // ── pickup ─────────────────────────────────────────────────────────────
  test(`${build}: pickup on: a mid-stream ACK of an allowed 5-tuple creates the flow, established; windows strict once both sides were seen`, () => {
    const h = twin(build, { tcp: { pickup: true } });
    const c = new Conv(h);
    c.cseq = 7_000_000; c.cack = 90_000_000; c.sseq = 90_000_000; c.sack = 7_000_000;
    c.cwin = 1000; c.swin = 1000; // scaled windows of unknown factor: taken at 14 (16 MB each)
    assert.is(c.c(A | P, { len: 500 }), "rule_allow", "the first segment meets the rules as a SYN would");
    assert.is(h.core.counters().pickedUp, 1n);
    assert.equal(h.states(), ["established"]);
    assert.ok(h.core.flows()[0]!.pickedUp);
    assert.is(c.c(A | P, { len: 500 }), "state_match");
    assert.is(c.cRaw(A | P, { len: 100, seq: c.cseq - 100_000_000 }), "state_match", "liberal until the other side was seen");
    assert.is(c.s(A | P, { len: 1400 }), "state_match", "the server's first segment");
    assert.is(c.c(A), "state_match");
    assert.is(c.s(A | P, { len: 1400 }), "state_match");
    assert.is(c.cRaw(A | P, { len: 100, seq: c.cseq + 100_000_000 }), "tcp_out_of_window", "now strict: far ahead");
    assert.is(c.cRaw(A | P, { len: 100, seq: c.cseq - 100_000_000 }), "tcp_out_of_window", "far behind");
    // What the server sent before the pickup was not seen: an ACK may go
    // beyond what was, but not beyond the client's window (1000 << 14).
    assert.is(c.cRaw(A, { ack: c.cack + 100_000_000 }), "tcp_out_of_window", "an ACK of data the server cannot have sent");
    assert.is(c.c(A | P, { len: 500 }), "state_match", "the stream goes on");
    assert.is(c.c(F_ | A), "state_match");
    assert.is(c.s(F_ | A), "state_match");
    assert.is(c.c(A), "state_match");
    assert.equal(h.states(), ["time_wait"]);
    assert.is(h.core.ruleCounters(3)[0]!.packets, 1n, "the rule counted the picked-up segment once");
    agree(h);
  });

  test(`${build}: pickup on: picked up from a retransmission while the other side already had more: its ACKs beyond pass`, () => {
    const h = twin(build, { tcp: { pickup: true } });
    const c = new Conv(h);
    c.cseq = 7_000_000; c.sseq = 90_000_000; c.cack = 90_000_000;
    // The server received up to 7_000_000 + 20 * 1400 before the firewall
    // lost the flow; the client retransmits from the oldest unacked byte.
    assert.is(c.cRaw(A | P, { len: 1400, seq: 7_000_000 }), "rule_allow");
    assert.is(c.sRaw(A, { ack: 7_000_000 + 20 * 1400 }), "state_match", "the server acks all it had");
    assert.is(c.sRaw(A, { ack: 7_000_000 + 20 * 1400 }), "state_match", "and again (now strict)");
    c.cseq = 7_000_000 + 20 * 1400;
    assert.is(c.c(A | P, { len: 1400 }), "state_match", "the client goes on from there");
    assert.is(c.sRaw(A, { ack: c.cseq }), "state_match");
    assert.is(oow(h), 0n);
    agree(h);
  });

  test(`${build}: pickup on: an ACK to a port no rule allows is no_flow, and no rule counts it; SYN-ACK, FIN, RST never create a flow`, () => {
    const spec: TableSpec = { ...PROXY_SPEC, rules: [...PROXY_SPEC.rules, { ...PROXY_SPEC.rules[0]!, action: "deny", dport: [[22, 22]], info: "ssh" }] };
    const h = twin(build, { tcp: { pickup: true } }, spec);
    for (const port of [22, 23, 8080]) assert.is(new Conv(h, 40000, port).c(A), "no_flow", `ACK to ${port}`);
    assert.is(h.core.ruleCounters(4)[3]!.packets, 0n, "the deny rule of 22 did not count it");
    const c = new Conv(h);
    assert.is(c.cRaw(R), "no_flow", "RST");
    assert.is(c.cRaw(R | A), "no_flow", "RST|ACK");
    assert.is(c.cRaw(F_ | A), "no_flow", "FIN|ACK");
    assert.is(c.sRaw(S | A), "no_flow", "SYN-ACK");
    // The server's side first: its segment travels toward the client, and
    // no rule allows that direction: no_flow; the client's next one opens it.
    assert.is(c.sRaw(A | P, { len: 100 }), "no_flow", "the server's segment meets the rules in its own direction");
    assert.equal(h.states(), []);
    assert.is(h.core.counters().pickedUp, 0n);
    assert.is(c.c(A), "rule_allow");
    assert.is(h.core.counters().pickedUp, 1n);
    agree(h);
  });

  test(`${build}: pickup on: the receiver's RST answering a picked-up segment is dropped (pickup_reset) and ends the flow; unanswered flows live 60 s`, () => {
    const h = twin(build, { tcp: { pickup: true } });
    const scan = new Conv(h, 45000, 443);
    assert.is(scan.c(A, {}, 1), "rule_allow", "an ACK probe to an allowed port is picked up");
    assert.is(scan.sRaw(R, { seq: scan.cack }), "pickup_reset", "the host's RST (no such connection) does not go back");
    assert.equal(h.states(), [], "the flow ended");
    assert.is(scan.cRaw(A), "rule_allow", "the next probe is picked up again");
    assert.is(scan.sRaw(R, { seq: scan.cack }), "pickup_reset");
    // A client's own RST of a picked-up flow ends it as any RST does.
    const c = new Conv(h, 45001, 443);
    assert.is(c.c(A | P, { len: 10 }), "rule_allow");
    assert.is(c.cRaw(R, { seq: c.cseq }), "state_match");
    assert.equal(h.states(), ["close"]);
    // Nobody answers: the flow lives by the SYN_RECV timeout (60 s), not 5 days.
    const quiet = new Conv(h, 45002, 443);
    assert.is(quiet.c(A | P, { len: 10 }, 100), "rule_allow");
    assert.is(quiet.c(A | P, { len: 10 }, 159), "state_match");
    const picked = h.core.counters().pickedUp;
    assert.is(quiet.c(A | P, { len: 10 }, 220), "rule_allow", "61 s after its last segment it had expired: picked up anew");
    assert.is(h.core.counters().pickedUp, picked + 1n);
    // Answered, it is established for the established timeout.
    const ok = new Conv(h, 45003, 443);
    assert.is(ok.c(A | P, { len: 10 }, 300), "rule_allow");
    assert.is(ok.s(A, {}, 300), "state_match");
    assert.is(ok.c(A | P, { len: 10 }, 300 + 3600), "state_match", "an hour later");
    agree(h);
  });

  test(`${build}: pickup off (the default): a mid-stream ACK is no_flow`, () => {
    const h = twin(build);
    const c = new Conv(h);
    assert.is(c.c(A | P, { len: 100 }), "no_flow");
    assert.equal(h.states(), []);
    assert.is(h.core.counters().pickedUp, 0n);
    agree(h);
  });

  test(`${build}: a picked-up flow of a rule with limit: counts as a new flow of its source`, () => {
    const text = ["version: 1", "default: deny", "rules:", "  - name: https", "    action: allow", "    interface: external", "    direction: in",
      "    proto: tcp", "    dst: 203.0.113.1", "    dport: 443", "    limit:", "      flows: 1", ""].join("\n");
    const h = twin(build, { tcp: { pickup: true } }, compilePolicyText(text, "limit.yaml").spec);
    const a = new Conv(h, 41000), b = new Conv(h, 41001), syn = new Conv(h, 41002);
    assert.is(a.c(A | P, { len: 10 }), "rule_allow", "picked up: the source's one flow");
    assert.is(sources(h.core)[0]!.flows, 1);
    assert.is(b.c(A | P, { len: 10 }), "source_flows_full", "a second picked-up flow is over the limit");
    assert.is(syn.c(S), "source_flows_full", "so is a new SYN");
    assert.is(a.s(A), "state_match");
    assert.is(a.c(R), "state_match", "the picked-up flow resets");
    assert.is(sources(h.core)[0]!.flows, 0);
    assert.is(syn.c(S), "rule_allow", "its place is free again");
    agree(h);
  });
}

// ── the setting: board config, daemon, stats, metrics ───────────────────
const BOARD = "version: 1\nmode: host\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\n";

test("board: tcp: { pickup, liberal } read; off when absent; errors name FILE:LINE:COL, unknown keys refused", () => {
  assert.is(parseBoardText(BOARD, "b.yaml").tcp, undefined);
  assert.equal(parseBoardText(`${BOARD}tcp: { pickup: true }\n`, "b.yaml").tcp, { pickup: true });
  assert.equal(parseBoardText(`${BOARD}tcp:\n  pickup: false\n  liberal: true\n`, "b.yaml").tcp, { pickup: false, liberal: true });
  assert.throws(() => parseBoardText(`${BOARD}tcp: { pickup: maybe }\n`, "b.yaml"), /b\.yaml:5:\d+: .*tcp\.pickup/);
  assert.throws(() => parseBoardText(`${BOARD}tcp: { pick_up: true }\n`, "b.yaml"), /b\.yaml:5:\d+: .*pick_up/);
  assert.throws(() => parseBoardText(`${BOARD}tcp: true\n`, "b.yaml"), /b\.yaml:5:\d+: .*tcp/);
  assert.is(boardProblem({ mode: "host", external: { dev: "a" }, internal: { dev: "b" }, tcp: { pickup: "yes" as unknown as boolean } }),
    "tcp must be { pickup: true|false, liberal: true|false }");
});

test("daemon with pickup on: a mid-stream ACK picked up; stats, `portcullis stats` and the metrics say so", async () => {
  const d = new Daemon({ policy: "host/policy/default.yaml", mode: "host", core: { tcp: { pickup: true } } }, new JsonLogger(() => {}));
  try {
    assert.ok((await d.reload()).ok);
    const src = new FakeSource("queue0");
    d.addSource(src);
    const ack = (dport: number): [Uint8Array, typeof FAKE_IN] =>
      [ipv4({ src: "192.0.2.9", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 33000 + dport, dport, flags: A, seq: 5, ack: 9 }) }), FAKE_IN];
    assert.equal(src.send(ack(443), ack(22)), ["rule_allow", "no_flow"]);
    const st = d.stats() as unknown as Parameters<typeof formatStats>[0];
    assert.equal((st as { tcp?: unknown }).tcp, { pickup: true, liberal: false, pickedUp: 1n });
    assert.ok(formatStats(JSON.parse(JSON.stringify(st, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v)))).split("\n")
      .includes("tcp: pickup on (picked up 1), window tracking on"));
    const lines = renderMetrics(d).split("\n");
    for (const w of ["portcullis_tcp_pickup 1", "portcullis_flows_picked_up_total 1", "portcullis_tcp_window_tracking 1"]) assert.ok(lines.includes(w), w);
  } finally {
    await d.stop();
  }
});

test.run();
