// The capture reader (host/pcap/): the reference capture of real traffic
// (test/fixtures/capture.sh) holds what it should and every packet in it is
// well-formed to the release core; hand-made malformed pcap and pcapng files
// fail with the exact error code; a pcapng assembled here reads back field
// for field.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { classifyAll } from "../host/core/batch.js";
import { Core } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { ipv4, ipv6, PROTO_TCP, PROTO_UDP, TCP_SYN, tcp, udp } from "../host/packets/build.js";
import { describePacket } from "../host/packets/describe.js";
import { PcapError, type PcapErrorCode, type PcapRecord, readCapture, readCaptureFile } from "../host/pcap/read.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const REFERENCE = join(root, "test", "fixtures", "reference.pcap");
const records = readCaptureFile(REFERENCE);

// ---- an independent look at each packet (not the core, not describe.ts) ----

interface Facts {
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number; //    upper layer, after IPv6 extension headers
  l4?: Uint8Array; //  transport header and data; absent for non-first fragments
  fragOff: number; //  bytes
  more: boolean;
  fragHeader: boolean;
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const be16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;

function facts(ip: Uint8Array): Facts {
  const v = ip[0]! >> 4;
  if (v === 4) {
    const ihl = (ip[0]! & 15) * 4;
    const ff = be16(ip, 6);
    const fragOff = (ff & 0x1fff) * 8;
    const f: Facts = {
      family: 4, src: ip.subarray(12, 16).join("."), dst: ip.subarray(16, 20).join("."), proto: ip[9]!,
      fragOff, more: (ff & 0x2000) !== 0, fragHeader: false,
    };
    if (fragOff === 0) f.l4 = ip.subarray(ihl, be16(ip, 2));
    return f;
  }
  assert.is(v, 6, `IP version of ${hexOf(ip)}`);
  const words = (b: Uint8Array): string => Array.from({ length: 8 }, (_, i) => be16(b, 2 * i).toString(16)).join(":");
  const f: Facts = { family: 6, src: words(ip.subarray(8, 24)), dst: words(ip.subarray(24, 40)), proto: ip[6]!, fragOff: 0, more: false, fragHeader: false };
  let at = 40;
  const end = 40 + be16(ip, 4);
  while (f.proto === 0 || f.proto === 60 || f.proto === 43 || f.proto === 44) {
    const next = ip[at]!;
    if (f.proto === 44) {
      f.fragHeader = true;
      f.fragOff = be16(ip, at + 2) & 0xfff8;
      f.more = (ip[at + 3]! & 1) === 1;
      at += 8;
    } else {
      at += (ip[at + 1]! + 1) * 8;
    }
    f.proto = next;
  }
  if (f.fragOff === 0) f.l4 = ip.subarray(at, end);
  return f;
}

const all = records.map((r) => ({ r, f: facts(r.ip) }));
const tcpOf = (f: Facts): { sport: number; dport: number; flags: number; data: Uint8Array } | undefined =>
  f.proto === 6 && f.l4 ? { sport: be16(f.l4, 0), dport: be16(f.l4, 2), flags: f.l4[13]!, data: f.l4.subarray((f.l4[12]! >> 4) * 4) } : undefined;
const count = (pred: (f: Facts) => boolean): number => all.filter(({ f }) => pred(f)).length;
const syn = (family: 4 | 6, port: number) => (f: Facts): boolean => {
  const t = tcpOf(f);
  return f.family === family && t !== undefined && t.dport === port && t.flags === 0x02;
};
const icmpIs = (family: 4 | 6, type: number, code: number) => (f: Facts): boolean =>
  f.family === family && f.proto === (family === 4 ? 1 : 58) && f.l4 !== undefined && f.l4[0] === type && f.l4[1] === code;

// ---- the reference capture ----

test("reference.pcap: Ethernet frames of IPv4 and IPv6 only, in time order", () => {
  assert.ok(records.length >= 60, `${records.length} records`);
  let last = 0n;
  for (const r of records) {
    assert.is(r.linkType, 1);
    assert.is(r.ifIndex, 0);
    assert.ok(r.ethertype === 0x0800 || r.ethertype === 0x86dd, `ethertype 0x${r.ethertype.toString(16)}`);
    assert.is(r.srcMac?.length, 6);
    assert.is(r.dstMac?.length, 6);
    assert.is(r.caplen, r.wirelen, "full snap length");
    assert.is(r.ip.length, r.caplen - 14);
    assert.is(r.ip[0]! >> 4, r.ethertype === 0x0800 ? 4 : 6);
    assert.ok(r.ts >= last, "timestamps never go back");
    assert.ok(r.ts > 1_600_000_000n * 1_000_000_000n, "timestamps are in nanoseconds since the epoch");
    last = r.ts;
  }
  assert.ok(records.reduce((n, r) => n + r.caplen + 16, 24) < 100_000, "commit-sized");
});

test("reference.pcap: only documentation addresses (plus :: and link-scope multicast)", () => {
  for (const { f } of all) {
    for (const a of [f.src, f.dst]) {
      const ok = f.family === 4 ? a.startsWith("203.0.113.") : /^2001:db8:1:0:|^0:0:0:0:0:0:0:0$|^ff02:/.test(a);
      assert.ok(ok, `address ${a}`);
    }
  }
});

test("reference.pcap: TCP SYNs to 80 and 443 over IPv4 and IPv6, answered", () => {
  for (const fam of [4, 6] as const) {
    for (const port of [80, 443]) {
      assert.ok(count(syn(fam, port)) >= 1, `IPv${fam} SYN to ${port}`);
      assert.ok(count((f) => f.family === fam && tcpOf(f)?.sport === port && tcpOf(f)?.flags === 0x12) >= 1, `IPv${fam} SYN-ACK from ${port}`);
      assert.ok(count((f) => f.family === fam && tcpOf(f)?.dport === port && (tcpOf(f)!.flags & 0x01) !== 0) >= 1, `IPv${fam} FIN to ${port}`);
      assert.ok(count((f) => f.family === fam && tcpOf(f)?.sport === port && (tcpOf(f)!.flags & 0x01) !== 0) >= 1, `IPv${fam} FIN from ${port}`);
    }
    const text = (f: Facts): string => Buffer.from(tcpOf(f)?.data ?? []).toString("latin1");
    assert.ok(count((f) => f.family === fam && text(f).startsWith("GET /index.html HTTP/1.1")) === 1, `IPv${fam} HTTP GET`);
    assert.ok(count((f) => f.family === fam && text(f).startsWith("HTTP/1.0 200 OK")) === 1, `IPv${fam} HTTP 200`);
  }
});

test("reference.pcap: port 22 answers a SYN with RST, over IPv4 and IPv6", () => {
  for (const fam of [4, 6] as const) {
    assert.ok(count(syn(fam, 22)) >= 1, `IPv${fam} SYN to 22`);
    assert.ok(count((f) => f.family === fam && tcpOf(f)?.sport === 22 && (tcpOf(f)!.flags & 0x04) !== 0) >= 1, `IPv${fam} RST from 22`);
  }
});

test("reference.pcap: ICMP errors quoting the packet they are about", () => {
  // port unreachable (3/3, ICMPv6 1/4) quotes the UDP datagram to port 9
  for (const [fam, type, code] of [[4, 3, 3], [6, 1, 4]] as const) {
    const errs = all.filter(({ f }) => icmpIs(fam, type, code)(f));
    assert.ok(errs.length >= 1, `IPv${fam} port unreachable`);
    const inner = facts(errs[0]!.f.l4!.subarray(8));
    assert.is(inner.proto, 17);
    assert.is(be16(inner.l4!, 2), 9, "quoted UDP destination port");
  }
  // fragmentation needed / packet too big, with the 1280-byte MTU of the narrow hop
  const fn = all.filter(({ f }) => icmpIs(4, 3, 4)(f));
  assert.ok(fn.length >= 1, "ICMP fragmentation needed");
  assert.is(be16(fn[0]!.f.l4!, 6), 1280);
  const ptb = all.filter(({ f }) => icmpIs(6, 2, 0)(f));
  assert.ok(ptb.length >= 1, "ICMPv6 packet too big");
  assert.is(be16(ptb[0]!.f.l4!, 6), 1280);
});

test("reference.pcap: echo requests and replies, and the large ones fragmented", () => {
  for (const [fam, req, rep] of [[4, 8, 0], [6, 128, 129]] as const) {
    assert.ok(count(icmpIs(fam, req, 0)) >= 2, `IPv${fam} echo requests`);
    assert.ok(count(icmpIs(fam, rep, 0)) >= 2, `IPv${fam} echo replies`);
  }
  const frag4 = all.filter(({ f }) => f.family === 4 && (f.more || f.fragOff > 0));
  assert.ok(frag4.some(({ f }) => f.fragOff === 0 && f.more), "IPv4 first fragment");
  assert.ok(frag4.some(({ f }) => f.fragOff > 0 && f.more), "IPv4 middle fragment");
  assert.ok(frag4.some(({ f }) => f.fragOff > 0 && !f.more), "IPv4 last fragment");
  const frag6 = all.filter(({ f }) => f.fragHeader);
  assert.ok(frag6.some(({ f }) => f.fragOff === 0 && f.more), "IPv6 first fragment");
  assert.ok(frag6.some(({ f }) => f.fragOff > 0 && !f.more), "IPv6 last fragment");
});

test("reference.pcap: every packet is well-formed to the release core (no_table)", () => {
  const core = new Core("release");
  const bad: string[] = [];
  for (const ethertype of [0x0800, 0x86dd]) {
    const mine = records.filter((r) => r.ethertype === ethertype);
    const got = classifyAll(core, mine.map((r) => r.ip), { hwProto: ethertype });
    assert.is(got.length, mine.length);
    got.forEach((d, i) => {
      const r = mine[i]!;
      if (reasonName(d.reason) !== "no_table" || d.verdict !== 0) {
        bad.push(`#${records.indexOf(r) + 1} ${describePacket(r.ip)}: verdict ${d.verdict} ${reasonName(d.reason)} ${hexOf(r.ip)}`);
      }
    });
  }
  assert.equal(bad, [], bad.join("\n"));
  const c = core.counters();
  assert.is(c.packets, BigInt(records.length));
  assert.is(c.reasons.find((r) => r.name === "no_table")!.packets, BigInt(records.length));
});

// ---- classic pcap, made by hand ----

const ETH_HDR = Uint8Array.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
const SYN4 = ipv4({ src: "203.0.113.10", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 40000, dport: 443, flags: TCP_SYN }) });
const UDP6 = ipv6({ src: "2001:db8:1::10", dst: "2001:db8:1::1", proto: PROTO_UDP, payload: udp({ sport: 5000, dport: 53, payload: new Uint8Array(4) }) });

const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

interface PcapOpts { le?: boolean; nano?: boolean; major?: number; snaplen?: number; linkType?: number }

function pcapHeader(o: PcapOpts = {}): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  const le = o.le ?? true;
  v.setUint32(0, o.nano ? 0xa1b23c4d : 0xa1b2c3d4, le);
  v.setUint16(4, o.major ?? 2, le); v.setUint16(6, 4, le);
  v.setUint32(16, o.snaplen ?? 65535, le);
  v.setUint32(20, o.linkType ?? 1, le);
  return b;
}

function pcapRecord(frame: Uint8Array, o: { le?: boolean; sec?: number; frac?: number; caplen?: number; wirelen?: number } = {}): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  const le = o.le ?? true;
  v.setUint32(0, o.sec ?? 1_700_000_000, le); v.setUint32(4, o.frac ?? 5, le);
  v.setUint32(8, o.caplen ?? frame.length, le); v.setUint32(12, o.wirelen ?? frame.length, le);
  return cat(h, frame);
}

function throwsCode(bytes: Uint8Array, code: PcapErrorCode, offset?: number): void {
  try {
    readCapture(bytes);
  } catch (e) {
    assert.instance(e, PcapError);
    const pe = e as PcapError;
    assert.is(pe.code, code, pe.message);
    assert.match(pe.message, /at byte offset \d+/);
    if (offset !== undefined) assert.is(pe.offset, offset, pe.message);
    return;
  }
  assert.unreachable(`expected PcapError ${code}`);
}

test("pcap: both byte orders, micro- and nanosecond timestamps", () => {
  const frame = cat(ETH_HDR, SYN4);
  for (const le of [true, false]) {
    for (const nano of [false, true]) {
      const [r, ...rest] = readCapture(cat(pcapHeader({ le, nano }), pcapRecord(frame, { le, sec: 1_700_000_000, frac: 250 })));
      assert.is(rest.length, 0);
      assert.is(r!.ts, 1_700_000_000n * 1_000_000_000n + (nano ? 250n : 250_000n), `le=${le} nano=${nano}`);
      assert.is(r!.ethertype, 0x0800);
      assert.equal(Array.from(r!.ip), Array.from(SYN4));
      assert.equal(Array.from(r!.srcMac!), [2, 0, 0, 0, 0, 1]);
      assert.equal(Array.from(r!.dstMac!), [2, 0, 0, 0, 0, 2]);
      assert.is(r!.caplen, frame.length);
    }
  }
  assert.equal(readCapture(pcapHeader()), [], "a header and no records is an empty capture");
});

test("pcap: 802.1Q tag, raw IP, SLL and SLL2 link layers", () => {
  const vlan = cat(ETH_HDR.subarray(0, 12), Uint8Array.from([0x81, 0x00, 0x20, 0x2a, 0x86, 0xdd]), UDP6);
  let r = readCapture(cat(pcapHeader(), pcapRecord(vlan)))[0]!;
  assert.is(r.vlan, 42);
  assert.is(r.ethertype, 0x86dd);
  assert.equal(Array.from(r.ip), Array.from(UDP6));
  for (const [lt, frame, et] of [[101, SYN4, 0x0800], [101, UDP6, 0x86dd], [228, SYN4, 0x0800], [229, UDP6, 0x86dd]] as const) {
    r = readCapture(cat(pcapHeader({ linkType: lt }), pcapRecord(frame)))[0]!;
    assert.is(r.ethertype, et, `link type ${lt}`);
    assert.equal(Array.from(r.ip), Array.from(frame));
    assert.is(r.srcMac, undefined);
  }
  const sll = cat(Uint8Array.from([0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00]), SYN4);
  r = readCapture(cat(pcapHeader({ linkType: 113 }), pcapRecord(sll)))[0]!;
  assert.is(r.ethertype, 0x0800);
  assert.equal(Array.from(r.ip), Array.from(SYN4));
  const sll2 = cat(Uint8Array.from([0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]), UDP6);
  r = readCapture(cat(pcapHeader({ linkType: 276 }), pcapRecord(sll2)))[0]!;
  assert.is(r.ethertype, 0x86dd);
  assert.equal(Array.from(r.ip), Array.from(UDP6));
  assert.is(r.linkType, 276);
});

test("pcap: malformed files fail with their error code", () => {
  const good = cat(pcapHeader(), pcapRecord(cat(ETH_HDR, SYN4)));
  throwsCode(new Uint8Array(0), "truncated_header", 0);
  throwsCode(good.subarray(0, 3), "truncated_header", 0);
  throwsCode(good.subarray(0, 20), "truncated_header");
  throwsCode(cat(Uint8Array.from([0x47, 0x49, 0x46, 0x38]), good.subarray(4)), "bad_magic", 0);
  throwsCode(cat(pcapHeader({ major: 3 }), pcapRecord(SYN4)), "bad_version", 4);
  throwsCode(cat(pcapHeader({ linkType: 147 }), pcapRecord(SYN4)), "unsupported_linktype", 20);
  throwsCode(good.subarray(0, 24 + 10), "truncated_record", 24);
  throwsCode(good.subarray(0, good.length - 1), "truncated_record", 40);
  throwsCode(cat(pcapHeader({ snaplen: 64 }), pcapRecord(cat(ETH_HDR, SYN4), { caplen: 65, wirelen: 65 })), "bad_caplen", 32);
  throwsCode(cat(pcapHeader(), pcapRecord(cat(ETH_HDR, SYN4), { wirelen: 20 })), "bad_caplen", 32);
  throwsCode(cat(pcapHeader({ snaplen: 0 }), pcapRecord(SYN4, { caplen: 0xffffffff, wirelen: 0xffffffff })), "bad_caplen", 32);
  throwsCode(cat(pcapHeader(), pcapRecord(ETH_HDR.subarray(0, 10))), "truncated_link_header", 40);
  throwsCode(cat(pcapHeader(), pcapRecord(cat(ETH_HDR.subarray(0, 12), Uint8Array.from([0x81, 0, 0])))), "truncated_link_header", 40);
  throwsCode(cat(pcapHeader({ linkType: 276 }), pcapRecord(new Uint8Array(19))), "truncated_link_header", 40);
  // a record after a good one is still checked; the good one is not lost to a crash
  throwsCode(cat(good, Uint8Array.from([1, 2, 3])), "truncated_record", good.length);
});

// ---- pcapng, made by hand ----

function block(type: number, body: Uint8Array, le = true): Uint8Array {
  const padded = (body.length + 3) & ~3;
  const b = new Uint8Array(12 + padded);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, le); v.setUint32(4, b.length, le); v.setUint32(b.length - 4, b.length, le);
  b.set(body, 8);
  return b;
}

function fields(le: boolean, ...parts: Array<[16 | 32 | 64, number | bigint]>): Uint8Array {
  const b = new Uint8Array(parts.reduce((n, [w]) => n + w / 8, 0));
  const v = new DataView(b.buffer);
  let o = 0;
  for (const [w, x] of parts) {
    if (w === 16) v.setUint16(o, Number(x), le);
    else if (w === 32) v.setUint32(o, Number(x), le);
    else v.setBigInt64(o, BigInt(x), le);
    o += w / 8;
  }
  return b;
}

function option(le: boolean, code: number, value: Uint8Array): Uint8Array {
  const pad = new Uint8Array(((value.length + 3) & ~3) - value.length);
  return cat(fields(le, [16, code], [16, value.length]), value, pad);
}
const endOpt = (le: boolean): Uint8Array => fields(le, [16, 0], [16, 0]);

const shb = (le = true, major = 1): Uint8Array => block(0x0a0d0d0a, cat(fields(le, [32, 0x1a2b3c4d], [16, major], [16, 0], [64, -1n])), le);
const idb = (linkType: number, snaplen: number, le = true, opts: Uint8Array = new Uint8Array(0)): Uint8Array =>
  block(1, cat(fields(le, [16, linkType], [16, 0], [32, snaplen]), opts), le);
function epb(ifIndex: number, ts: bigint, frame: Uint8Array, le = true, o: { caplen?: number; wirelen?: number } = {}): Uint8Array {
  return block(6, cat(fields(le, [32, ifIndex], [32, Number(ts >> 32n)], [32, Number(ts & 0xffffffffn)],
    [32, o.caplen ?? frame.length], [32, o.wirelen ?? frame.length]), frame), le);
}
const spb = (wirelen: number, frame: Uint8Array, le = true): Uint8Array => block(3, cat(fields(le, [32, wirelen]), frame), le);

test("pcapng: round trip of sections, interfaces, timestamp resolutions and skipped blocks", () => {
  const eth = cat(ETH_HDR, SYN4);
  const vlan6 = cat(ETH_HDR.subarray(0, 12), Uint8Array.from([0x81, 0x00, 0x00, 0x07, 0x86, 0xdd]), UDP6);
  const sll2 = cat(Uint8Array.from([0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]), SYN4);
  const file = cat(
    shb(true),
    idb(1, 0, true, cat(option(true, 2, new TextEncoder().encode("ext0")), option(true, 9, Uint8Array.of(9)), endOpt(true))), // ns
    idb(228, 96, true, cat(option(true, 14, fields(true, [64, 10])), endOpt(true))), //  us (default), +10 s
    block(0x0bad, Uint8Array.of(1, 2, 3, 4, 5)), //        unknown block: skipped
    block(4, new Uint8Array(4)), //                         name resolution block: skipped
    epb(0, 1_700_000_000_123_456_789n, eth),
    epb(1, 1_700_000_000_000_001n, SYN4),
    epb(0, 1_700_000_001_000_000_000n, vlan6),
    spb(eth.length, eth), //                               SPB: interface 0, no timestamp
    // a second section, big-endian, with its own interface numbering
    shb(false),
    idb(276, 0, false, cat(option(false, 9, Uint8Array.of(0x8a)), endOpt(false))), // 2^-10 s
    epb(0, 3n * 1024n + 512n, sll2, false),
  );
  const got = readCapture(file);
  assert.is(got.length, 5);
  const [a, b, c, d, e] = got as [PcapRecord, PcapRecord, PcapRecord, PcapRecord, PcapRecord];
  assert.is(a.ts, 1_700_000_000_123_456_789n);
  assert.is(a.linkType, 1); assert.is(a.ifIndex, 0); assert.is(a.ethertype, 0x0800);
  assert.equal(Array.from(a.ip), Array.from(SYN4));
  assert.is(b.ts, (1_700_000_000_000_001n + 10_000_000n) * 1000n, "microseconds plus if_tsoffset");
  assert.is(b.linkType, 228); assert.is(b.ifIndex, 1); assert.is(b.ethertype, 0x0800);
  assert.equal(Array.from(b.ip), Array.from(SYN4));
  assert.is(c.vlan, 7); assert.is(c.ethertype, 0x86dd);
  assert.equal(Array.from(c.ip), Array.from(UDP6));
  assert.is(d.ts, 0n); assert.is(d.caplen, eth.length, "padding is not data"); assert.is(d.wirelen, eth.length);
  assert.is(e.linkType, 276); assert.is(e.ifIndex, 0); assert.is(e.ts, 3_500_000_000n, "binary resolution 2^-10");
  assert.equal(Array.from(e.ip), Array.from(SYN4));
  // and the packets are what the core expects
  const core = new Core("release");
  const ds = classifyAll(core, got.filter((r) => r.ethertype === 0x0800).map((r) => r.ip), { hwProto: 0x0800 });
  assert.equal(ds.map((x) => reasonName(x.reason)), ["no_table", "no_table", "no_table", "no_table"]);
});

test("pcapng: SPB is cut to the interface's snap length", () => {
  const eth = cat(ETH_HDR, SYN4);
  const [r] = readCapture(cat(shb(), idb(1, 34), spb(eth.length, eth)));
  assert.is(r!.caplen, 34);
  assert.is(r!.wirelen, eth.length);
  assert.is(r!.ip.length, 20);
});

test("pcapng: malformed files fail with their error code", () => {
  const eth = cat(ETH_HDR, SYN4);
  const head = cat(shb(), idb(1, 0));
  const good = cat(head, epb(0, 1n, eth));
  readCapture(good);
  const at = head.length;
  const patch = (b: Uint8Array, off: number, value: number): Uint8Array => {
    const c = Uint8Array.from(b);
    new DataView(c.buffer).setUint32(off, value, true);
    return c;
  };
  throwsCode(good.subarray(0, 10), "truncated_header", 0);
  throwsCode(good.subarray(0, 20), "truncated_header", 0);
  throwsCode(cat(idb(1, 0), epb(0, 1n, eth)), "bad_magic", 0);
  throwsCode(patch(good, 8, 0x11223344), "bad_magic", 8);
  throwsCode(cat(shb(true, 2), idb(1, 0)), "bad_version", 12);
  throwsCode(patch(good, 4, 30), "bad_block_length", 4); //      not a multiple of 4
  throwsCode(patch(good, 4, 8), "bad_block_length", 4); //       below the 12-byte minimum (and below 28 for an SHB)
  throwsCode(patch(good, at + 4, 0), "bad_block_length", at + 4); // zero: would never move forward
  throwsCode(patch(good, good.length - 4, 999), "bad_block_length", good.length - 4); // trailer disagrees
  throwsCode(patch(good, at + 4, 0x7ffffff0), "truncated_record", at); //  runs past the end of the file
  throwsCode(good.subarray(0, good.length - 4), "truncated_record", head.length);
  throwsCode(cat(good, new Uint8Array(6)), "truncated_record", good.length);
  throwsCode(cat(shb(), epb(0, 1n, eth)), "bad_interface");
  throwsCode(cat(head, epb(1, 1n, eth)), "bad_interface");
  throwsCode(cat(shb(), spb(eth.length, eth)), "bad_interface");
  throwsCode(cat(head, epb(0, 1n, eth, true, { caplen: eth.length + 8 })), "bad_caplen");
  throwsCode(cat(head, epb(0, 1n, eth, true, { wirelen: 10 })), "bad_caplen");
  throwsCode(cat(shb(), idb(1, 40), epb(0, 1n, eth)), "bad_caplen");
  throwsCode(cat(shb(), idb(1, 0, true, option(true, 9, new Uint8Array(40)).subarray(0, 8))), "bad_option");
  throwsCode(cat(shb(), block(1, fields(true, [16, 1]))), "bad_block_length");
  throwsCode(cat(shb(), idb(147, 0), epb(0, 1n, eth)), "unsupported_linktype");
  throwsCode(cat(head, epb(0, 1n, eth.subarray(0, 12))), "truncated_link_header");
  // an interface of an unknown link type that carries no packet is harmless
  assert.is(readCapture(cat(shb(), idb(147, 0), idb(1, 0), epb(1, 1n, eth))).length, 1);
});

test("readers never run away on random bytes behind a valid header", () => {
  let seed = 12345;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16 & 0xff;
  for (let i = 0; i < 300; i++) {
    const tail = Uint8Array.from({ length: 1 + (i % 97) }, rand);
    for (const head of [pcapHeader(), cat(shb(), idb(1, 0))]) {
      try {
        readCapture(cat(head, tail));
      } catch (e) {
        assert.instance(e, PcapError, String(e));
      }
    }
  }
});

test.run();
