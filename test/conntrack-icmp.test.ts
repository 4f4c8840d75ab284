// UDP and ICMP pseudo-flows, ICMP errors related to tracked flows (and the
// ones that are not), IPv6 neighbour discovery.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { icmp, ipv6, PROTO_ICMPV6 } from "../host/packets/build.js";
import {
  A, CLIENT4, CLIENT6, Harness, icmpError, IN_EXT, OUT_EXT, ping, PROXY4, PROXY6, Tcp, udpPkt,
} from "./helpers/conn.js";

for (const fam of [4, 6] as const) {
  const client = fam === 4 ? CLIENT4 : CLIENT6, proxy = fam === 4 ? PROXY4 : PROXY6;
  const echoReq = fam === 4 ? 8 : 128, echoRep = fam === 4 ? 0 : 129;

  test(`IPv${fam} UDP: a query opens a pseudo-flow, its answer passes, it expires after 30 s unanswered`, () => {
    const h = new Harness();
    assert.is(h.send(udpPkt(fam, client, 5353, proxy, 53), IN_EXT, 0), "rule_allow");
    assert.equal(h.states(), ["udp_unreplied"]);
    assert.is(h.send(udpPkt(fam, proxy, 53, client, 5353), OUT_EXT, 1), "state_match");
    assert.equal(h.states(), ["udp_replied"]);
    assert.is(h.send(udpPkt(fam, proxy, 53, client, 5353), OUT_EXT, 100), "state_match", "replied: 120 s");
    // UDP has no handshake: a datagram without a flow is a new one, and the
    // rules do not let the proxy open UDP flows outward.
    assert.is(h.send(udpPkt(fam, proxy, 53, client, 5353), OUT_EXT, 221), "default_deny", "replied flow gone after 120 s");
    assert.is(h.send(udpPkt(fam, client, 5354, proxy, 53), IN_EXT, 300), "rule_allow");
    assert.is(h.send(udpPkt(fam, proxy, 53, client, 5354), OUT_EXT, 331), "default_deny", "unreplied: 30 s");
    assert.is(h.send(udpPkt(fam, proxy, 53, client, 9999), OUT_EXT, 331), "default_deny", "a reply nobody asked for");
    assert.is(h.send(udpPkt(fam, client, 5355, proxy, 54), IN_EXT, 331), "default_deny");
  });

  test(`IPv${fam} echo: request opens, reply passes, an unasked reply is dropped`, () => {
    const h = new Harness();
    assert.is(h.send(ping(fam, client, proxy, echoReq, 77), IN_EXT, 0), "rule_allow");
    assert.is(h.send(ping(fam, proxy, client, echoRep, 77), OUT_EXT, 0), "state_match");
    assert.is(h.send(ping(fam, client, proxy, echoReq, 77, 2), IN_EXT, 1), "state_match");
    assert.is(h.send(ping(fam, proxy, client, echoRep, 78), OUT_EXT, 1), "no_flow", "another identifier");
    assert.is(h.send(ping(fam, proxy, client, echoReq, 77), OUT_EXT, 1), "no_flow", "a request from the answering side");
    assert.is(h.send(ping(fam, proxy, client, echoRep, 77), OUT_EXT, 40), "no_flow", "expired after 30 s");
  });

  test(`IPv${fam} errors about tracked flows are related; about others, or to the wrong host, they are not`, () => {
    const h = new Harness();
    const q = udpPkt(fam, client, 5353, proxy, 53);
    h.send(q, IN_EXT, 0);
    // The proxy answers the client's datagram with port unreachable.
    const unreach = fam === 4 ? [3, 3] : [1, 4];
    assert.is(h.send(icmpError(fam, proxy, client, unreach[0]!, unreach[1]!, q), OUT_EXT, 0), "state_related");
    // An error from a router on the way, about the proxy's reply, to the proxy.
    const reply = udpPkt(fam, proxy, 53, client, 5353);
    const router = fam === 4 ? "198.51.100.254" : "2001:db8:9::1";
    const exceeded = fam === 4 ? 11 : 3;
    assert.is(h.send(icmpError(fam, router, proxy, exceeded, 0, reply), IN_EXT, 0), "state_related");
    // About a flow nobody opened.
    const stranger = udpPkt(fam, client, 7777, proxy, 53);
    assert.is(h.send(icmpError(fam, proxy, client, unreach[0]!, unreach[1]!, stranger), OUT_EXT, 0), "icmp_unrelated");
    // About the tracked flow, but sent to someone who did not send the quote.
    assert.is(h.send(icmpError(fam, client, router, unreach[0]!, unreach[1]!, q), IN_EXT, 0), "icmp_unrelated");
    assert.is(h.core.counters().reasons.find((r) => r.name === "state_related")!.packets, 2n);
  });

  test(`IPv${fam} fragmentation needed / packet too big for a TCP flow passes`, () => {
    const h = new Harness();
    const t = new Tcp(h, fam);
    t.handshake(0);
    // The proxy sends a big segment; a router says it is too big.
    const seg = t.pkt(false, A, 1400);
    const router = fam === 4 ? "198.51.100.254" : "2001:db8:9::1";
    const [type, code] = fam === 4 ? [3, 4] : [2, 0];
    assert.is(h.send(icmpError(fam, router, proxy, type, code, seg, 1280), IN_EXT, 1), "state_related");
    // The same error before any connection: unrelated.
    const h2 = new Harness();
    assert.is(h2.send(icmpError(fam, router, proxy, type, code, seg, 1280), IN_EXT, 1), "icmp_unrelated");
  });
}

test("IPv6 neighbour discovery passes with hop limit 255 only", () => {
  const h = new Harness();
  const ns = (hops: number): Uint8Array => ipv6({ src: CLIENT6, dst: "ff02::1:ff00:1", proto: PROTO_ICMPV6, hopLimit: hops, payload: icmp({ type: 135, payload: new Uint8Array(16) }) });
  assert.is(h.send(ns(255), IN_EXT, 0), "icmp6_ndp");
  assert.is(h.send(ns(64), IN_EXT, 0), "default_deny");
  const na = ipv6({ src: PROXY6, dst: CLIENT6, proto: PROTO_ICMPV6, hopLimit: 255, payload: icmp({ type: 136, payload: new Uint8Array(16) }) });
  assert.is(h.send(na, OUT_EXT, 0), "icmp6_ndp");
  assert.equal(h.states(), [], "neighbour discovery leaves no state");
});

test.run();
