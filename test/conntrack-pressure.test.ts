// Under pressure: a SYN flood of ten times the table's capacity, interleaved
// with the packets of 1,000 established flows. Every established packet
// passes, the table never holds more than its capacity, and the counters
// account for every refusal.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { reasonName } from "../host/core/reasons.js";
import { ipv4, PROTO_TCP, TCP_ACK, TCP_PSH, TCP_SYN, tcp } from "../host/packets/build.js";
import { Harness, IN_EXT, OUT_EXT, PROXY4, Tcp } from "./helpers/conn.js";

const CAPACITY = 4096;

test("SYN flood of 10x capacity: established flows keep passing, the table stays within capacity", () => {
  const h = new Harness(undefined, { maxFlows: CAPACITY });
  assert.is(h.core.flowCapacity, CAPACITY);
  // 1,000 established flows from 198.51.100.x clients (IPv4 documentation range).
  const conns: Tcp[] = [];
  for (let i = 0; i < 1000; i++) {
    const t = new Tcp(h, 4, 10000 + (i % 50000), 443, `198.51.100.${1 + (i % 250)}`);
    (t as { cport: number }).cport = 10000 + i;
    const r = t.handshake(0);
    assert.equal(r, ["rule_allow", "state_match", "state_match"], `flow ${i}`);
    conns.push(t);
  }
  assert.is(h.core.counters().flows.live, 1000n);

  // Spoofed SYNs from all over 203.0.113.0/24 and 192.0.2.0/24, in batches of
  // 256, one established-flow packet after every 4 SYNs.
  const batch = new Batch(h.core);
  const spoofed = CAPACITY * 10;
  let sent = 0, estSent = 0, estPassed = 0;
  const reasons = new Map<string, number>();
  let maxLive = 0n;
  let t = 1;
  while (sent < spoofed) {
    batch.clear();
    const kinds: boolean[] = [];
    while (batch.count < 256 && sent < spoofed) {
      const i = sent++;
      const src = `${i & 1 ? "203.0.113" : "192.0.2"}.${(i >> 1) & 255}`;
      const syn = ipv4({ src, dst: PROXY4, proto: PROTO_TCP, payload: tcp({ sport: 1024 + ((i >> 9) % 60000), dport: 443, flags: TCP_SYN, seq: i }) });
      batch.add(syn, IN_EXT);
      kinds.push(false);
      if (i % 4 === 3) {
        const c = conns[estSent % conns.length]!;
        const fromClient = estSent % 2 === 0;
        batch.add(c.pkt(fromClient, TCP_ACK | TCP_PSH, 100), fromClient ? IN_EXT : OUT_EXT);
        kinds.push(true);
        estSent++;
      }
    }
    const n = batch.run(BigInt(t++) * 1_000_000n); // 1 ms per batch: nothing times out
    assert.is(n, batch.count);
    for (let k = 0; k < n; k++) {
      const r = reasonName(h.core.reason(k));
      if (kinds[k]) {
        if (r === "state_match") estPassed++;
        else assert.unreachable(`established packet ${k} got ${r}`);
      } else {
        reasons.set(r, (reasons.get(r) ?? 0) + 1);
      }
    }
    const live = h.core.counters().flows.live;
    if (live > maxLive) maxLive = live;
    assert.ok(live <= BigInt(CAPACITY), `live ${live}`);
  }
  assert.is(estPassed, estSent);
  assert.ok(estSent >= 10000);
  const f = h.core.counters().flows;
  // Every SYN was either admitted (perhaps evicting an older embryonic flow)
  // or refused because its buckets held only established flows.
  assert.is((reasons.get("rule_allow") ?? 0) + (reasons.get("state_full") ?? 0), spoofed, JSON.stringify([...reasons]));
  assert.is(BigInt(reasons.get("state_full") ?? 0), f.refused);
  assert.is(f.created - f.expired - f.evicted - f.ended, f.live);
  assert.ok(f.evicted > 0n, "embryonic flows were evicted");
  assert.is(maxLive <= BigInt(CAPACITY), true);
  // All 1,000 established flows are still there.
  assert.is(h.core.flows().filter((x) => x.state === "established").length, 1000);
});

test("a table full of established flows refuses new ones and evicts none", () => {
  const h = new Harness(undefined, { maxFlows: 16 });
  let est = 0, refused = 0;
  for (let i = 0; i < 40; i++) {
    const t = new Tcp(h, 4, 20000 + i);
    const r = t.handshake(0);
    if (r[0] === "rule_allow") { est++; assert.equal(r, ["rule_allow", "state_match", "state_match"]); }
    else { refused++; assert.is(r[0], "state_full"); }
  }
  const f = h.core.counters().flows;
  assert.ok(est <= 16 && est > 0);
  assert.is(f.live, BigInt(est));
  assert.is(f.refused, BigInt(refused));
  assert.is(f.evicted, 0n);
  void ABI;
});

test.run();
