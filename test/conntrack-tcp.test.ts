// TCP through the state table: handshakes and teardowns in both directions,
// simultaneous close, RST in and out of window, retransmitted SYNs, timeouts
// driven by batch time, and segments that claim flows that do not exist.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { A, F_, Harness, P, R, S, Tcp } from "./helpers/conn.js";

test("handshake, data both ways, client closes: every packet passes on state", () => {
  const h = new Harness();
  const t = new Tcp(h);
  assert.equal(t.handshake(), ["rule_allow", "state_match", "state_match"]);
  assert.equal(h.states(), ["established"]);
  assert.is(t.c(A | P, 1, 300), "state_match");
  assert.is(t.s(A | P, 1, 1400), "state_match");
  assert.is(t.c(A, 1), "state_match");
  assert.is(t.c(F_ | A, 2), "state_match");
  assert.equal(h.states(), ["fin_wait"]);
  assert.is(t.s(A, 2), "state_match");
  assert.equal(h.states(), ["close_wait"]);
  assert.is(t.s(F_ | A, 2), "state_match");
  assert.equal(h.states(), ["last_ack"]);
  assert.is(t.c(A, 2), "state_match");
  assert.equal(h.states(), ["time_wait"]);
  // The rule counted only the SYN; state carried the rest.
  assert.is(h.core.ruleCounters(3)[0]!.packets, 1n);
});

test("the server closes first, over IPv6", () => {
  const h = new Harness();
  const t = new Tcp(h, 6, 40001, 80);
  assert.equal(t.handshake(), ["rule_allow", "state_match", "state_match"]);
  assert.is(t.s(A | P, 1, 500), "state_match");
  assert.is(t.s(F_ | A, 1), "state_match");
  assert.is(t.c(A, 1), "state_match");
  assert.equal(h.states(), ["close_wait"]);
  assert.is(t.c(A | P, 1, 10), "state_match", "the half-closed side may still send");
  assert.is(t.c(F_ | A, 2), "state_match");
  assert.is(t.s(A, 2), "state_match");
  assert.equal(h.states(), ["time_wait"]);
});

test("simultaneous close: both FINs cross, then both ACKs", () => {
  const h = new Harness();
  const t = new Tcp(h);
  t.handshake();
  assert.is(t.c(F_ | A, 1), "state_match");
  assert.is(t.s(F_ | A, 1), "state_match");
  assert.equal(h.states(), ["last_ack"]);
  assert.is(t.c(A, 1), "state_match");
  assert.is(t.s(A, 1), "state_match");
  assert.equal(h.states(), ["time_wait"]);
});

test("RST in window closes the flow; out of window it is dropped and changes nothing", () => {
  const h = new Harness();
  const t = new Tcp(h);
  t.handshake();
  assert.is(t.cRaw(R, 1, t.cseq + 1_000_000), "tcp_out_of_window");
  assert.is(t.sRaw(R | A, 1, t.sseq - 500_000), "tcp_out_of_window");
  assert.equal(h.states(), ["established"]);
  assert.is(t.c(A | P, 1, 10), "state_match", "the flow still carries data");
  assert.is(t.cRaw(R, 2, t.cseq + 100), "state_match", "within the window");
  assert.equal(h.states(), ["close"]);
  assert.is(t.c(A, 2), "tcp_invalid_state", "nothing but a new SYN after a reset");
});

test("a FIN out of window is refused; the connection goes on", () => {
  const h = new Harness();
  const t = new Tcp(h);
  t.handshake();
  assert.is(t.cRaw(F_ | A, 1, t.cseq + 3_000_000, t.sseq), "tcp_out_of_window");
  assert.equal(h.states(), ["established"]);
});

test("answering a SYN with RST: only with the exact ACK", () => {
  const h = new Harness();
  const t = new Tcp(h);
  assert.is(t.c(S, 0), "rule_allow");
  assert.is(t.sRaw(R | A, 0, 0, t.cseq + 7), "tcp_out_of_window", "wrong ACK");
  assert.is(t.sRaw(R, 0, 0, 0), "tcp_out_of_window", "no ACK");
  assert.is(t.sRaw(R | A, 0, 0, t.cseq), "state_match");
  assert.equal(h.states(), ["close"]);
});

test("a retransmitted SYN passes on state; a SYN-ACK must acknowledge the SYN", () => {
  const h = new Harness();
  const t = new Tcp(h);
  assert.is(t.c(S, 0), "rule_allow");
  t.cseq--; // the same SYN again
  assert.is(t.c(S, 1), "state_match");
  assert.is(t.sRaw(S | A, 1, t.sseq, t.cseq + 99), "tcp_out_of_window");
  assert.is(t.s(S | A, 1), "state_match");
  assert.is(h.core.ruleCounters(3)[0]!.packets, 1n);
});

test("simultaneous open: a SYN from the other side, then SYN-ACKs", () => {
  const h = new Harness();
  const t = new Tcp(h);
  assert.is(t.c(S, 0), "rule_allow");
  assert.is(t.s(S, 0), "state_match");
  assert.equal(h.states(), ["syn_sent2"]);
  assert.is(t.c(S | A, 0), "state_match");
  assert.equal(h.states(), ["syn_recv"]);
  assert.is(t.c(A, 0), "state_match");
  assert.equal(h.states(), ["established"]);
});

test("segments that claim a flow that does not exist are dropped: ACK, FIN, RST, data, SYN-ACK", () => {
  const h = new Harness();
  const t = new Tcp(h);
  assert.is(t.c(A, 0), "no_flow");
  assert.is(t.c(F_ | A, 0), "no_flow");
  assert.is(t.c(R, 0), "no_flow");
  assert.is(t.c(A | P, 0, 100), "no_flow");
  assert.is(t.s(S | A, 0), "no_flow");
  assert.is(t.c(R | A, 0), "no_flow");
  assert.equal(h.states(), []);
});

test("out-of-order segments in the handshake are invalid", () => {
  const h = new Harness();
  const t = new Tcp(h);
  t.c(S, 0);
  assert.is(t.c(A, 0), "tcp_invalid_state", "ACK before the SYN-ACK");
  assert.is(t.c(F_ | A, 0), "tcp_invalid_state", "FIN before the SYN-ACK");
  assert.is(t.c(S | A, 0), "tcp_invalid_state", "a SYN-ACK from the opener");
  t.handshake(0);
});

test("a denied SYN leaves no state: its answer claims a flow that does not exist", () => {
  const h = new Harness();
  const t = new Tcp(h, 4, 40002, 22);
  assert.is(t.c(S, 0), "default_deny");
  assert.is(t.s(R | A, 0), "no_flow");
  assert.is(t.s(S | A, 0), "no_flow");
  assert.equal(h.states(), []);
});

test("timeouts come from batch time: an unanswered SYN lives 120 s, an established flow 5 days", () => {
  const h = new Harness();
  const a = new Tcp(h, 4, 41000);
  a.c(S, 0);
  assert.is(a.s(S | A, 119.9), "state_match", "the answer within 120 s");
  const b = new Tcp(h, 4, 41001);
  b.c(S, 0);
  assert.is(b.s(S | A, 120.1), "no_flow", "the answer after 120 s");
  const c = new Tcp(h, 4, 41002);
  c.handshake(1000);
  assert.is(c.c(A, 1000 + 431_999), "state_match");
  assert.is(c.c(A, 1000 + 431_999 + 432_000.5), "no_flow", "idle for more than 5 days");
});

test("timeouts are configurable", () => {
  const h = new Harness(undefined, { timeouts: { established: 60, syn_sent: 5 } });
  const a = new Tcp(h);
  a.handshake(0);
  assert.is(a.c(A, 59), "state_match");
  assert.is(a.c(A, 120), "no_flow");
  const b = new Tcp(h, 4, 40100);
  b.c(S, 200);
  assert.is(b.s(S | A, 205.5), "no_flow");
});

test("a new SYN on a closed 4-tuple opens a new flow, through the rules again", () => {
  const h = new Harness();
  const t = new Tcp(h);
  t.handshake();
  t.c(F_ | A, 1); t.s(F_ | A, 1); t.c(A, 1);
  assert.equal(h.states(), ["time_wait"]);
  t.cseq += 100_000;
  assert.is(t.c(S, 2), "rule_allow");
  assert.equal(h.states(), ["syn_sent"]);
  assert.is(t.s(S | A, 2), "state_match");
  assert.is(h.core.ruleCounters(3)[0]!.packets, 2n);
});

test("flows expire in the background: the sweep frees them without traffic", () => {
  const h = new Harness(undefined, { maxFlows: 64 });
  for (let i = 0; i < 20; i++) new Tcp(h, 4, 42000 + i).c(S, 0);
  assert.is(h.core.counters().flows.live, 20n);
  // Batches of unrelated packets at t = 500 s sweep 64 slots each.
  const t = new Tcp(h, 4, 43000, 22);
  t.c(S, 500);
  assert.is(h.core.counters().flows.live, 0n);
  assert.is(h.core.counters().flows.expired, 20n);
});

test.run();
