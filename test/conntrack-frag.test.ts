// Fragment trains through the tracker: in order, out of order, overlapping,
// orphaned, refused, expired; IPv4 and IPv6.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fragmentExt, ipv4, ipv6, PROTO_UDP, udp } from "../host/packets/build.js";
import { CLIENT4, CLIENT6, Harness, IN_EXT, PROXY4, PROXY6 } from "./helpers/conn.js";

// A 3000-byte UDP datagram to `dport`, cut in 1480-byte pieces (offsets in
// 8-byte units: 0, 185, 370), as the kernel would.
function train(fam: 4 | 6, dport: number, id: number): Uint8Array[] {
  const dgram = udp({ sport: 5000, dport, payload: new Uint8Array(2992) });
  const cuts: Array<[number, number]> = [[0, 1480], [1480, 2960], [2960, dgram.length]];
  return cuts.map(([s, e], i) => {
    const more = i < cuts.length - 1;
    const part = dgram.slice(s, e);
    return fam === 4
      ? ipv4({ src: fam === 4 ? CLIENT4 : CLIENT6, dst: PROXY4, proto: PROTO_UDP, id, mf: more, fragOff: s / 8, payload: part })
      : ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_UDP, payload: part, ext: [fragmentExt(s / 8, more, id)] });
  });
}

for (const fam of [4, 6] as const) {
  test(`IPv${fam}: a train in order follows its first fragment, and the tracker lets go of it`, () => {
    const h = new Harness();
    const [a, b, c] = train(fam, 53, 0x1111);
    assert.is(h.send(a!, IN_EXT, 0), "rule_allow");
    assert.is(h.core.counters().flows.fragsLive, 1n);
    assert.is(h.send(b!, IN_EXT, 0), "frag_follows");
    assert.is(h.send(c!, IN_EXT, 0), "frag_follows");
    assert.is(h.core.counters().flows.fragsLive, 0n, "complete datagram forgotten");
    assert.is(h.verdict(), 1);
  });

  test(`IPv${fam}: out of order, the last before the middle; a piece before its first is dropped`, () => {
    const h = new Harness();
    const [a, b, c] = train(fam, 53, 0x2222);
    assert.is(h.send(c!, IN_EXT, 0), "frag_no_first");
    assert.is(h.send(a!, IN_EXT, 0), "rule_allow");
    assert.is(h.send(c!, IN_EXT, 0), "frag_follows");
    assert.is(h.send(b!, IN_EXT, 0), "frag_follows");
    assert.is(h.core.counters().flows.fragsLive, 0n);
  });

  test(`IPv${fam}: an overlapping fragment refuses the whole datagram (RFC 5722)`, () => {
    const h = new Harness();
    const [a, b, c] = train(fam, 53, 0x3333);
    assert.is(h.send(a!, IN_EXT, 0), "rule_allow");
    // A piece at offset 1000 bytes (125 units) overlaps the first's 0..1480.
    const part = new Uint8Array(480);
    const over = fam === 4
      ? ipv4({ src: CLIENT4, dst: PROXY4, proto: PROTO_UDP, id: 0x3333, mf: true, fragOff: 125, payload: part })
      : ipv6({ src: CLIENT6, dst: PROXY6, proto: PROTO_UDP, payload: part, ext: [fragmentExt(125, true, 0x3333)] });
    assert.is(h.send(over, IN_EXT, 0), "frag_overlap");
    assert.is(h.send(b!, IN_EXT, 0), "frag_overlap", "the rest of the datagram too");
    assert.is(h.send(c!, IN_EXT, 0), "frag_overlap");
    // A duplicate is an overlap as well.
    const h2 = new Harness();
    const [x, y] = train(fam, 53, 0x3334);
    h2.send(x!, IN_EXT, 0);
    assert.is(h2.send(y!, IN_EXT, 0), "frag_follows");
    assert.is(h2.send(y!, IN_EXT, 0), "frag_overlap");
  });

  test(`IPv${fam}: orphans, refused firsts, and expiry`, () => {
    const h = new Harness();
    const [, b] = train(fam, 53, 0x4444);
    assert.is(h.send(b!, IN_EXT, 0), "frag_no_first", "orphan");
    const [d1, d2] = train(fam, 69, 0x5555);
    assert.is(h.send(d1!, IN_EXT, 0), "default_deny");
    assert.is(h.send(d2!, IN_EXT, 0), "frag_denied");
    const [e1, e2] = train(fam, 53, 0x6666);
    h.send(e1!, IN_EXT, 0);
    assert.is(h.send(e2!, IN_EXT, 31), "frag_no_first", "30 s later the first is forgotten");
  });
}

test("datagrams from addresses that differ in their last byte do not crowd one bucket", () => {
  // Before the fragment hash was fully mixed, these 9 sources shared one
  // 8-slot bucket and the first datagram's entry was evicted by the ninth.
  const h = new Harness();
  const parts = (i: number): [Uint8Array, Uint8Array] => {
    const src = `2001:db8:1::a0${i}`;
    const dgram = udp({ sport: 5000, dport: 53, payload: new Uint8Array(1592) });
    return [
      ipv6({ src, dst: PROXY6, proto: PROTO_UDP, payload: dgram.slice(0, 1480), ext: [fragmentExt(0, true, 0x1234)] }),
      ipv6({ src, dst: PROXY6, proto: PROTO_UDP, payload: dgram.slice(1480), ext: [fragmentExt(185, false, 0x1234)] }),
    ];
  };
  const trains = Array.from({ length: 9 }, (_, i) => parts(i));
  for (const [first] of trains) assert.is(h.send(first, IN_EXT, 0), "rule_allow");
  for (const [, second] of trains) assert.is(h.send(second, IN_EXT, 0), "frag_follows");
});

test("the same id from another source is another datagram", () => {
  const h = new Harness();
  const [a, b] = train(4, 53, 0x7777);
  h.send(a!, IN_EXT, 0);
  const other = Uint8Array.from(b!);
  other[15] = 99; // source 203.0.113.99
  other[10] = 0; other[11] = 0;
  assert.is(h.send(other, IN_EXT, 0), "frag_no_first");
  assert.is(h.send(b!, IN_EXT, 0), "frag_follows");
});

test.run();
