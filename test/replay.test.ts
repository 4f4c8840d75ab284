// `portcullis replay`: the reference capture through the stateful core under
// the default policy and under a policy of our own, with every packet's
// expected outcome worked out from what the packet is (not from the
// program's output); roles, batch time and timeouts on captures made here;
// and the command as a user runs it, including bad input.
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { type ReplayOptions, type ReplayRun, runReplay } from "../host/commands/replay.js";
import { formatAddr } from "../host/packets/addr.js";
import {
  echo, ipv4, ipv6, optionsExt, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, tcp, udp,
} from "../host/packets/build.js";
import { describePacket } from "../host/packets/describe.js";
import { type PcapRecord, readCaptureFile } from "../host/pcap/read.js";
import { MAX_REPLAY_BATCH, type ReplayPacket } from "../host/replay/engine.js";
import { RolePlacer } from "../host/replay/roles.js";
import { parsePrefix, type Prefix } from "../host/policy/addr.js";
import { limitedDefaultPolicy } from "./helpers/limited-policy.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(root, "bin", "portcullis.js");
const REFERENCE = join(root, "test", "fixtures", "reference.pcap");
const DEFAULT_POLICY = join(root, "host", "policy", "default.yaml");
const records = readCaptureFile(REFERENCE);
const work = mkdtempSync(join(tmpdir(), "portcullis-replay-"));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: work, encoding: "utf8", env: { ...process.env, NODE_DISABLE_COLORS: "1" }, maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// ---- what a packet is, read from its bytes ---------------------------------

interface Ends { proto: number; src: string; dst: string; sport: number; dport: number }
interface Pkt extends Ends {
  family: 4 | 6;
  hop: number;
  frag: { id: number; off: number; more: boolean } | null;
  tcpFlags: number;
  icmpType: number;
  icmpId: number;
  quoted: Ends | null; // the packet an ICMP error is about
}

const be16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const be32 = (b: Uint8Array, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

// Network layer: family, addresses, upper protocol and where it starts, fragment.
function l3(b: Uint8Array): Omit<Pkt, "sport" | "dport" | "tcpFlags" | "icmpType" | "icmpId" | "quoted"> & { l4: number } {
  if (b[0]! >> 4 === 4) {
    const ff = be16(b, 6);
    const frag = ff & 0x3fff ? { id: be16(b, 4), off: (ff & 0x1fff) * 8, more: (ff & 0x2000) !== 0 } : null;
    return { family: 4, hop: b[8]!, proto: b[9]!, src: formatAddr(b.subarray(12, 16), 4), dst: formatAddr(b.subarray(16, 20), 4), l4: (b[0]! & 15) * 4, frag };
  }
  let nh = b[6]!, at = 40;
  let frag: Pkt["frag"] = null;
  while (nh === 0 || nh === 43 || nh === 60 || nh === 44) {
    if (nh === 44) {
      frag = { id: be32(b, at + 4), off: be16(b, at + 2) & 0xfff8, more: (be16(b, at + 2) & 1) === 1 };
      nh = b[at]!; at += 8;
    } else {
      const next = b[at]!; at += (b[at + 1]! + 1) * 8; nh = next;
    }
  }
  return { family: 6, hop: b[7]!, proto: nh, src: formatAddr(b.subarray(8, 24), 6), dst: formatAddr(b.subarray(24, 40), 6), l4: at, frag };
}

function parse(b: Uint8Array): Pkt {
  const n = l3(b);
  const p: Pkt = { ...n, sport: 0, dport: 0, tcpFlags: 0, icmpType: -1, icmpId: 0, quoted: null };
  if (n.frag && n.frag.off > 0) return p; // no upper-layer header in a later fragment
  const at = n.l4;
  if (n.proto === 6 || n.proto === 17) { p.sport = be16(b, at); p.dport = be16(b, at + 2); }
  if (n.proto === 6) p.tcpFlags = b[at + 13]!;
  if (n.proto === 1 || n.proto === 58) {
    p.icmpType = b[at]!;
    p.icmpId = be16(b, at + 4);
    if (isIcmpError(p)) {
      const inner = b.subarray(at + 8);
      const q = l3(inner);
      p.quoted = { proto: q.proto, src: q.src, dst: q.dst, sport: be16(inner, q.l4), dport: be16(inner, q.l4 + 2) };
    }
  }
  return p;
}

function isIcmpError(p: Pkt): boolean {
  return p.family === 4 ? p.proto === 1 && [3, 4, 5, 11, 12].includes(p.icmpType) : p.proto === 58 && p.icmpType >= 1 && p.icmpType <= 4;
}

// ---- what the reference capture holds, packet by packet --------------------

const PROXY = new Set(["203.0.113.1", "2001:db8:1::1"]);

type Category =
  | "tcp80-syn" | "tcp80-rest" | "tcp443-syn" | "tcp443-rest" | "tcp22-syn" | "tcp22-rst"
  | "udp9" | "udp9-unreachable" | "udp-fwd" | "udp-fwd-too-big"
  | "echo-req-new" | "echo-req-again" | "echo-rep" | "echo-req-later-frag" | "echo-rep-later-frag"
  | "ndp" | "mld" | "other";

// Labels every record; `state` makes "the first echo request of an id" and
// "a later fragment of an echo request/reply datagram" tellable.
function categorize(recs: readonly PcapRecord[]): Array<{ cat: Category; family: 4 | 6; pkt: Pkt }> {
  const seenIds = new Set<string>();
  const fragKind = new Map<string, Category>();
  return recs.map((r) => {
    const p = parse(r.ip);
    const icmp = p.proto === (p.family === 4 ? 1 : 58);
    const [req, rep] = p.family === 4 ? [8, 0] : [128, 129];
    let cat: Category = "other";
    if (p.frag && p.frag.off > 0) {
      cat = fragKind.get(`${p.src} ${p.dst} ${p.frag.id}`) ?? "other";
    } else if (p.family === 6 && icmp && p.icmpType >= 133 && p.icmpType <= 137 && p.hop === 255) {
      cat = "ndp";
    } else if (p.family === 6 && icmp && [130, 131, 132, 143].includes(p.icmpType)) {
      cat = "mld";
    } else if (p.quoted) {
      if (p.quoted.proto === 17 && p.quoted.dport === 9) cat = "udp9-unreachable";
      else if (p.quoted.proto === 17 && !PROXY.has(p.quoted.dst)) cat = "udp-fwd-too-big";
    } else if (p.proto === 6) {
      const port = PROXY.has(p.dst) ? p.dport : p.sport;
      const syn = (p.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
      if (port === 80 || port === 443) cat = `tcp${port}-${syn ? "syn" : "rest"}`;
      else if (port === 22) cat = syn ? "tcp22-syn" : (p.tcpFlags & 4) !== 0 ? "tcp22-rst" : "other";
    } else if (p.proto === 17) {
      if (PROXY.has(p.dst) && p.dport === 9) cat = "udp9";
      else if (!PROXY.has(p.dst) && !PROXY.has(p.src)) cat = "udp-fwd";
    } else if (icmp && p.icmpType === req) {
      const id = `${p.src} ${p.dst} ${p.icmpId}`;
      cat = seenIds.has(id) ? "echo-req-again" : "echo-req-new";
      seenIds.add(id);
    } else if (icmp && p.icmpType === rep) {
      cat = "echo-rep";
    }
    if (p.frag && p.frag.off === 0 && p.frag.more) {
      const kind = cat === "echo-rep" ? "echo-rep-later-frag" : cat.startsWith("echo-req") ? "echo-req-later-frag" : "other";
      fragKind.set(`${p.src} ${p.dst} ${p.frag.id}`, kind);
    }
    return { cat, family: p.family, pkt: p };
  });
}

const labelled = categorize(records);

// How many of each the capture script (test/fixtures/capture.sh) sends, over
// IPv4 and IPv6 each: one HTTP GET (SYN + 11 more segments), one 443 exchange
// (SYN + 9), a SYN to 22 answered by RST, a datagram to UDP 9 answered by
// port unreachable, a ping and a 3000-byte ping (3 fragments each way), a
// routed datagram answered by "too big"; plus 2 NDP and 3 MLD packets.
const CAPTURE_SHAPE: Record<Category, number> = {
  "tcp80-syn": 2, "tcp80-rest": 22, "tcp443-syn": 2, "tcp443-rest": 18, "tcp22-syn": 2, "tcp22-rst": 2,
  "udp9": 2, "udp9-unreachable": 2, "udp-fwd": 2, "udp-fwd-too-big": 2,
  "echo-req-new": 2, "echo-req-again": 2, "echo-rep": 4, "echo-req-later-frag": 4, "echo-rep-later-frag": 4,
  "ndp": 2, "mld": 3, "other": 0,
};

interface Outcome { verdict: "accept" | "drop"; reason: string; rule: number | null }
const acc = (reason: string, rule: number | null = null): Outcome => ({ verdict: "accept", reason, rule });
const drop = (reason: string): Outcome => ({ verdict: "drop", reason, rule: null });

// Under host/policy/default.yaml: rule 0 allows TCP 80 to the listener,
// rule 1 TCP 443; nothing else from the outside, and no ICMP rule.
function defaultPolicyOutcome(cat: Category): Outcome {
  switch (cat) {
    case "tcp80-syn": return acc("rule_allow", 0);
    case "tcp80-rest": return acc("state_match", 0);
    case "tcp443-syn": return acc("rule_allow", 1);
    case "tcp443-rest": return acc("state_match", 1);
    case "tcp22-syn": return drop("default_deny");
    case "tcp22-rst": return drop("no_flow");
    case "udp9": return drop("default_deny");
    case "udp9-unreachable": return drop("icmp_unrelated");
    case "udp-fwd": return drop("default_deny");
    case "udp-fwd-too-big": return drop("icmp_unrelated");
    case "echo-req-new": case "echo-req-again": return drop("default_deny");
    case "echo-rep": return drop("no_flow");
    case "echo-req-later-frag": case "echo-rep-later-frag": return drop("frag_denied");
    case "ndp": return acc("icmp6_ndp");
    case "mld": return drop("default_deny");
    case "other": return drop("none");
  }
}

// A policy of our own that also allows ping, UDP 9, SSH and routed UDP 5004.
const OWN_POLICY = `version: 1
default: deny
groups:
  listener: [203.0.113.1, "2001:db8:1::1"]
rules:
  - { name: web, action: allow, interface: external, direction: in, proto: tcp, dst: listener, dport: [80, 443] }
  - { name: ping4, action: allow, interface: external, direction: in, proto: icmp, dst: listener }
  - { name: ping6, action: allow, interface: external, direction: in, proto: icmpv6, dst: listener }
  - { name: discard, action: allow, interface: external, direction: in, proto: udp, dst: listener, dport: 9 }
  - { name: ssh, action: allow, interface: external, direction: in, proto: tcp, dst: listener, dport: 22 }
  - { name: routed-rtp, action: allow, interface: any, direction: forward, proto: udp, dport: 5004 }
`;
const OWN = join(work, "own.yaml");
writeFileSync(OWN, OWN_POLICY);

function ownPolicyOutcome(cat: Category, family: 4 | 6): Outcome {
  const ping = family === 4 ? 1 : 2;
  switch (cat) {
    case "tcp80-syn": case "tcp443-syn": return acc("rule_allow", 0);
    case "tcp80-rest": case "tcp443-rest": return acc("state_match", 0);
    case "tcp22-syn": return acc("rule_allow", 4);
    case "tcp22-rst": return acc("state_match", 4); // the RST answers the allowed SYN with its exact ACK
    case "udp9": return acc("rule_allow", 3);
    case "udp9-unreachable": return acc("state_related", 3);
    case "udp-fwd": return acc("rule_allow", 5);
    case "udp-fwd-too-big": return acc("state_related", 5);
    case "echo-req-new": return acc("rule_allow", ping);
    case "echo-req-again": return acc("state_match", ping); // the same ICMP id: the flow of the first ping
    case "echo-rep": return acc("state_match", ping);
    case "echo-req-later-frag": case "echo-rep-later-frag": return acc("frag_follows", ping);
    case "ndp": return acc("icmp6_ndp");
    case "mld": return drop("default_deny");
    case "other": return drop("none");
  }
}

// The in-process replay, with the packets it streams collected.
function replayIn(opts: ReplayOptions, capture = REFERENCE): ReplayRun & { result: { packets: ReplayPacket[]; summary: ReplayRun["summary"] } } {
  const packets: ReplayPacket[] = [];
  const run = runReplay(capture, opts, { packet: (p) => packets.push(p) });
  return { ...run, result: { packets, summary: run.summary } };
}

function checkEach(packets: readonly ReplayPacket[], expect: (i: number) => Outcome): void {
  assert.is(packets.length, records.length);
  packets.forEach((p, i) => {
    const e = expect(i);
    const what = `packet ${p.index} (${labelled[i]!.cat}): ${p.summary}`;
    assert.equal({ verdict: p.verdict, reason: p.reason, rule: p.rule }, e, what);
  });
}

const countBy = <T>(xs: readonly T[], key: (x: T) => string): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
};

// ---- the reference capture ---------------------------------------------------

test("the reference capture holds the traffic capture.sh sends", () => {
  const got = countBy(labelled, (x) => x.cat);
  for (const [cat, n] of Object.entries(CAPTURE_SHAPE)) assert.is(got[cat] ?? 0, n, cat);
  assert.is(records.length, 77);
});

test("default policy, host mode: every packet's verdict, reason and rule follow from what it is", () => {
  const r = replayIn({ policy: DEFAULT_POLICY });
  checkEach(r.result.packets, (i) => defaultPolicyOutcome(labelled[i]!.cat));
  // Roles by the default rule: the listener group is the proxy's external side.
  r.result.packets.forEach((p, i) => {
    const { pkt } = labelled[i]!;
    if (PROXY.has(pkt.dst)) assert.equal([p.hook, p.inRole, p.outRole], ["in", "external", "none"], p.summary);
    else if (PROXY.has(pkt.src)) assert.equal([p.hook, p.inRole, p.outRole], ["out", "none", "external"], p.summary);
    else if (pkt.dst.startsWith("ff02:")) assert.equal([p.hook, p.inRole], ["in", "none"], p.summary);
    else assert.equal([p.hook, p.inRole, p.outRole], ["fwd", "none", "none"], p.summary);
  });
  assert.match(r.roles.ipsFrom, /listener/);
  // The reasons add up to what the capture holds, worked out by hand:
  // 4 SYNs allowed; 22 + 18 later segments; 3 MLD + 2 SYN/22 + 2 UDP/9 + 4 echo
  // requests (2 first fragments) + 2 routed datagrams denied; 2 RST + 4 replies
  // without a flow; 2 port unreachable + 2 too big unrelated; 8 later fragments.
  const s = r.result.summary;
  const reasons = Object.fromEntries(Object.entries(s.reasons).map(([k, v]) => [k, v.packets]));
  assert.equal(reasons, {
    rule_allow: 4, default_deny: 13, state_match: 40, no_flow: 6, icmp_unrelated: 4, frag_denied: 8, icmp6_ndp: 2,
  });
  assert.is(s.verdicts.accept.packets, 46);
  assert.is(s.verdicts.drop.packets, 31);
  assert.equal(s.rules.map((x) => x.packets), [2, 2, 0, 0, 0]);
  assert.equal(s.rules.map((x) => x.info.split(" ")[1]), ["ext-http-80:", "ext-https-443:", "int-http-8080:", "int-https-4443:", "int-https-443-owa:"]);
  assert.is(s.flows.created, 4);
  // 3 MLD + 1 NS to multicast (INPUT, side unknown) and 2 routed datagrams (FORWARD, side unknown)
  const toProxy = labelled.filter((x) => PROXY.has(x.pkt.dst)).length, fromProxy = labelled.filter((x) => PROXY.has(x.pkt.src)).length;
  assert.equal(s.hooks, { in: toProxy + 4, out: fromProxy, fwd: 2 });
  assert.is(s.sideUnknown, 6);
  assert.is(s.reasons.state_match!.description, "belongs to a tracked flow");
  // Rule info for a packet a rule decided and for one its flow carried.
  const syn = r.result.packets[labelled.findIndex((x) => x.cat === "tcp443-syn")]!;
  assert.is(syn.ruleVia, "rule");
  assert.match(syn.ruleInfo!, /^default\.yaml:\d+ ext-https-443: allow tcp external in any -> listener dport 443/);
  const later = r.result.packets[labelled.findIndex((x) => x.cat === "tcp443-rest")]!;
  assert.is(later.ruleVia, "flow");
  assert.is(later.ruleInfo, syn.ruleInfo);
  for (const p of r.result.packets) if (p.rule === null) assert.is(p.ruleInfo, null);
});

test("own policy (ping, UDP 9, SSH, routed UDP 5004): replies pass on state, ICMP errors are related", () => {
  const r = replayIn({ policy: OWN });
  checkEach(r.result.packets, (i) => ownPolicyOutcome(labelled[i]!.cat, labelled[i]!.family));
  const s = r.result.summary;
  // 4 TCP 80/443 + 2 SSH + 2 UDP/9 + 2 routed UDP + one ping flow per family (both pings share an id).
  assert.is(s.flows.created, 12);
  assert.is(s.verdicts.drop.packets, CAPTURE_SHAPE.mld);
  assert.equal(s.rules.map((x) => x.packets), [4, 1, 1, 2, 2, 2]);
});

test("gateway mode: the same verdicts, every packet FORWARD with the side it entered", () => {
  const host = replayIn({ policy: DEFAULT_POLICY });
  const gw = replayIn({ policy: DEFAULT_POLICY, mode: "gateway" });
  assert.equal(gw.result.packets.map((p) => [p.verdict, p.reason, p.rule]), host.result.packets.map((p) => [p.verdict, p.reason, p.rule]));
  gw.result.packets.forEach((p, i) => {
    assert.is(p.hook, "fwd");
    const { pkt } = labelled[i]!;
    if (PROXY.has(pkt.dst)) assert.equal([p.inRole, p.outRole], ["external", "internal"], p.summary);
    else if (PROXY.has(pkt.src)) assert.equal([p.inRole, p.outRole], ["internal", "external"], p.summary);
  });
});

test("switches: --set external_http_80=off denies the HTTP SYNs, and their later segments claim no flow", () => {
  const r = replayIn({ policy: DEFAULT_POLICY, set: { external_http_80: false } });
  r.result.packets.forEach((p, i) => {
    const cat = labelled[i]!.cat;
    if (cat === "tcp80-syn") assert.equal([p.reason, p.rule], ["default_deny", null], p.summary);
    else if (cat === "tcp80-rest") assert.equal([p.verdict, p.reason], ["drop", "no_flow"], p.summary);
    else if (cat === "tcp443-syn") assert.equal([p.reason, p.rule], ["rule_allow", 0], "443 is rule 0 once 80 is off");
  });
  assert.equal(r.result.summary.rules.length, 4);
});

// ---- captures made here ------------------------------------------------------

const ETH = 1, RAW = 101;

function pcap(linkType: number, frames: ReadonlyArray<{ t: number; frame: Uint8Array }>): Uint8Array {
  const parts: Uint8Array[] = [];
  const h = new DataView(new ArrayBuffer(24));
  h.setUint32(0, 0xa1b23c4d, true); h.setUint16(4, 2, true); h.setUint16(6, 4, true);
  h.setUint32(16, 65535, true); h.setUint32(20, linkType, true);
  parts.push(new Uint8Array(h.buffer));
  for (const { t, frame } of frames) {
    const ns = BigInt(Math.round(t * 1e9)) + 1_700_000_000_000_000_000n;
    const r = new DataView(new ArrayBuffer(16));
    r.setUint32(0, Number(ns / 1_000_000_000n), true); r.setUint32(4, Number(ns % 1_000_000_000n), true);
    r.setUint32(8, frame.length, true); r.setUint32(12, frame.length, true);
    parts.push(new Uint8Array(r.buffer), frame);
  }
  return Uint8Array.from(parts.flatMap((p) => Array.from(p)));
}

const mac = (s: string): number[] => s.split(":").map((x) => parseInt(x, 16));
function eth(dst: string, src: string, ip: Uint8Array): Uint8Array {
  return Uint8Array.from([...mac(dst), ...mac(src), ip[0]! >> 4 === 6 ? 0x86 : 0x08, ip[0]! >> 4 === 6 ? 0xdd : 0x00, ...ip]);
}

function writeCapture(name: string, bytes: Uint8Array): string {
  const path = join(work, name);
  writeFileSync(path, bytes);
  return path;
}

const udp4 = (src: string, dst: string, sport: number, dport: number): Uint8Array =>
  ipv4({ src, dst, proto: PROTO_UDP, payload: udp({ sport, dport, payload: new Uint8Array(4) }) });

const ping4 = (src: string, dst: string, type: number): Uint8Array => ipv4({ src, dst, proto: 1, payload: echo(type, 7, 1) });

test("batch time is the capture's: a reply after the UDP timeout (30 s) is a new flow the policy denies, one before it passes", () => {
  const C = "203.0.113.10", P = "203.0.113.1";
  const path = writeCapture("timeouts.pcap", pcap(RAW, [
    { t: 0, frame: udp4(C, P, 1000, 9) }, //          flow A opens
    { t: 0, frame: udp4(C, P, 1001, 9) }, //          flow B opens
    { t: 0, frame: ping4(C, P, 8) }, //               an echo request opens an ICMP flow
    { t: 29.999, frame: udp4(C, P, 1002, 9) }, //     a new batch (more than 1 ms later)
    { t: 29.9995, frame: udp4(P, C, 9, 1001) }, //    B's reply, same batch: 29.999 s, still live
    { t: 30.0015, frame: udp4(P, C, 9, 1000) }, //    A's reply: 2.5 ms on, a new batch at 30.0015 s: A expired,
    //                                                so this datagram opens a flow of its own, which no rule allows
    { t: 30.002, frame: udp4(P, C, 9, 1002) }, //     the third flow's reply: live
    { t: 30.002, frame: ping4(P, C, 0) }, //          the echo reply after the ICMP timeout (30 s): no flow
  ]));
  const r = replayIn({ policy: OWN }, path);
  assert.equal(r.result.packets.map((p) => p.reason), ["rule_allow", "rule_allow", "rule_allow", "rule_allow", "state_match", "default_deny", "state_match", "no_flow"]);
  assert.equal(r.result.packets.map((p) => p.time), [0, 0, 0, 29.999, 29.9995, 30.0015, 30.002, 30.002]);
  assert.is(r.result.summary.batches, 3);
  assert.ok(r.result.summary.flows.expired >= 2, "flow A and the ping expired");
});

test("batches hold at most 256 packets, and a gap over 1 ms starts a new one", () => {
  const C = "203.0.113.10", P = "203.0.113.1";
  const frames: Array<{ t: number; frame: Uint8Array }> = [];
  for (let i = 0; i < 600; i++) frames.push({ t: i * 1e-6, frame: udp4(C, P, 2000 + i, 9) }); // 600 in 0.6 ms
  frames.push({ t: 0.0025, frame: udp4(C, P, 1999, 9) });
  const path = writeCapture("batches.pcap", pcap(RAW, frames));
  const r = replayIn({ policy: OWN }, path);
  assert.is(MAX_REPLAY_BATCH, 256);
  assert.is(r.result.summary.batches, 3 + 1);
  assert.is(r.result.summary.reasons.rule_allow!.packets, 601);
  assert.is(r.result.summary.flows.created, 601);
});

test("MAC roles: gateway mode takes the side a frame entered from its MACs", () => {
  const EXT = "02:00:00:00:0e:01", INT = "02:00:00:00:01:01", CLIENT = "02:00:00:00:00:10", PROXYMAC = "02:00:00:00:00:01";
  const syn = (sport: number): Uint8Array => ipv4({ src: "203.0.113.10", dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport, dport: 443, flags: TCP_SYN }) });
  const path = writeCapture("macs.pcap", pcap(ETH, [
    { t: 0, frame: eth(EXT, CLIENT, syn(40001)) }, //   entered by the external NIC
    { t: 0, frame: eth(PROXYMAC, INT, syn(40002)) }, // leaves by the internal NIC: entered external
    { t: 0, frame: eth(INT, PROXYMAC, syn(40003)) }, // entered by the internal NIC: not what rule 1 allows
  ]));
  const r = replayIn({ policy: DEFAULT_POLICY, mode: "gateway", externalMac: [EXT], internalMac: [INT] }, path);
  assert.equal(r.result.packets.map((p) => [p.inRole, p.outRole, p.roleBy, p.reason]), [
    ["external", "internal", "mac", "rule_allow"],
    ["external", "internal", "mac", "rule_allow"],
    ["internal", "external", "mac", "default_deny"],
  ]);
});

const rec = (ip: Uint8Array, srcMac?: string, dstMac?: string): PcapRecord => ({
  ts: 0n, ifIndex: 0, linkType: ETH, caplen: ip.length + 14, wirelen: ip.length + 14, ethertype: ip[0]! >> 4 === 6 ? 0x86dd : 0x0800, ip,
  ...(srcMac ? { srcMac: Uint8Array.from(mac(srcMac)) } : {}), ...(dstMac ? { dstMac: Uint8Array.from(mac(dstMac)) } : {}),
});
const pfx = (s: string): Prefix => parsePrefix(s) as Prefix;

test("host-mode roles: addresses, MACs, networks, multicast", () => {
  const placer = new RolePlacer({
    mode: "host", ipsFrom: "test",
    sides: {
      external: { ips: [pfx("203.0.113.1")], macs: ["02:00:00:00:0e:01"], nets: [pfx("203.0.113.0/24")] },
      internal: { ips: [pfx("198.51.100.1")], macs: ["02:00:00:00:01:01"], nets: [pfx("198.51.100.0/24")] },
    },
  });
  const at = (r: PcapRecord): [number, number, number] => { const p = placer.place(r); return [p.hook, p.inRole, p.outRole]; };
  const { HOOK_INPUT: IN, HOOK_OUTPUT: OUT, HOOK_FORWARD: FWD, ROLE_EXTERNAL: E, ROLE_INTERNAL: I, ROLE_NONE: N } = ABI;
  assert.equal(at(rec(udp4("192.0.2.7", "203.0.113.1", 1, 9))), [IN, E, N], "to the external address");
  assert.equal(at(rec(udp4("198.51.100.1", "198.51.100.10", 1, 4443))), [OUT, N, I], "from the internal address");
  assert.equal(at(rec(udp4("192.0.2.7", "198.51.100.10", 1, 53), undefined, "02:00:00:00:0e:01")), [FWD, E, I], "to the external NIC, routed inward");
  assert.equal(at(rec(udp4("192.0.2.7", "198.51.100.10", 1, 53), "02:00:00:00:01:01")), [FWD, E, I], "routed out of the internal NIC");
  assert.equal(at(rec(udp4("198.51.100.20", "192.0.2.7", 1, 53))), [FWD, I, N], "from an internal network");
  assert.equal(at(rec(udp4("192.0.2.7", "192.0.2.8", 1, 53))), [FWD, N, N], "nobody can tell");
  const mld = ipv6({ src: "::", dst: "ff02::16", hopLimit: 1, proto: PROTO_ICMPV6, ext: [optionsExt(0)], payload: echo(143, 0, 0) });
  assert.equal(at(rec(mld, "02:00:00:00:0e:01", "33:33:00:00:00:16")), [OUT, N, E], "the proxy's own MLD report");
  assert.equal(at(rec(mld, "02:00:00:00:00:99", "33:33:00:00:00:16")), [IN, N, N], "someone else's");
  assert.equal(at(rec(udp4("203.0.113.10", "203.0.113.255", 1, 137))), [IN, E, N], "subnet broadcast from the outside");
  assert.equal(at(rec(udp4("203.0.113.10", "224.0.0.251", 5353, 5353))), [IN, E, N], "multicast from the outside");
});

// ---- the command line ----------------------------------------------------------

interface Count { packets: number; bytes: number }
interface ReplayDoc {
  capture: { path: string; format: string; records: number; linkTypes: string };
  source: { policy?: string; table?: string; mode: string; rules: number; defaultAction: string; switches: Record<string, boolean> | null; copyRange: number };
  roles: { proxyAddresses: string; external: { ips: string[] }; internal: { ips: string[] } };
  packets?: ReplayPacket[];
  summary: {
    packets: number; batches: number;
    verdicts: { accept: Count; drop: Count };
    reasons: Record<string, Count & { description: string }>;
    rules: Array<Count & { index: number; action: string; info: string }>;
    flows: { created: number; live: number; expired: number };
  };
}

const PLACEHOLDER = /undefined|NaN|\[object|TODO|FIXME/;

test("CLI --json: one document; per packet what the in-process replay says; counts add up", () => {
  const r = run("replay", REFERENCE, "--policy", DEFAULT_POLICY, "--json");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, "");
  assert.not.match(r.stdout, PLACEHOLDER);
  const doc = JSON.parse(r.stdout) as ReplayDoc;
  const n = records.length;
  // Written as it goes: capture and summary are known at the end.
  assert.equal(Object.keys(doc), ["source", "roles", "packets", "capture", "summary"]);
  assert.equal(doc.capture, { path: REFERENCE, format: "pcap", records: n, linkTypes: "Ethernet" });
  assert.equal(doc.source, {
    policy: DEFAULT_POLICY, mode: "host", rules: 5, defaultAction: "deny", switches: { external_http_80: true, internal_http_8080: true }, copyRange: 256,
  });
  assert.equal(doc.roles.external.ips, ["203.0.113.1", "2001:db8:1::1"]);
  assert.equal(doc.roles.internal.ips, ["198.51.100.1", "2001:db8:2::1"]);
  const packets = doc.packets!;
  checkEach(packets, (i) => defaultPolicyOutcome(labelled[i]!.cat));
  packets.forEach((p, i) => {
    assert.is(p.index, i + 1);
    assert.is(p.tsNs, records[i]!.ts.toString());
    assert.is(p.summary, describePacket(records[i]!.ip, records[i]!.ethertype));
    assert.is(p.rule === null, p.ruleInfo === null);
    assert.is(p.rule === null, p.ruleVia === null);
  });
  assert.is(packets[0]!.time, 0);
  const s = doc.summary;
  assert.is(s.packets, n);
  assert.is(s.verdicts.accept.packets + s.verdicts.drop.packets, n);
  assert.is(Object.values(s.reasons).reduce((a, x) => a + x.packets, 0), n);
  assert.is(s.verdicts.accept.packets, packets.filter((p) => p.verdict === "accept").length);
  for (const [name, x] of Object.entries(s.reasons)) {
    assert.is(x.packets, packets.filter((p) => p.reason === name).length, name);
    assert.ok(x.description.length > 10, name);
  }
  // bytes: the IP packets' wire lengths (frames less their 14-byte Ethernet header)
  assert.is(s.verdicts.accept.bytes + s.verdicts.drop.bytes, records.reduce((a, x) => a + x.wirelen - 14, 0));
  assert.is(s.rules.reduce((a, x) => a + x.packets, 0), packets.filter((p) => p.ruleVia === "rule").length);
  assert.is(s.flows.created, 4);
  assert.ok(s.batches >= 1 && s.batches <= n);
});

test("CLI text: a line per packet with hook, roles, verdict, reason and the rule; then the summary", () => {
  const r = run("replay", REFERENCE, "--policy", DEFAULT_POLICY);
  assert.is(r.status, 0, r.stderr);
  assert.not.match(r.stdout, PLACEHOLDER);
  const lines = r.stdout.split("\n");
  // Numbers are as wide as the most records the file could hold (16 bytes each at least).
  const width = String(Math.floor(readFileSync(REFERENCE).length / 16)).length;
  assert.is(lines[0], `portcullis replay: ${REFERENCE} (pcap)`);
  const line = (i: number): string => lines.find((l) => l.startsWith(`${String(i + 1).padStart(width)}  `))!;
  const syn80 = labelled.findIndex((x) => x.cat === "tcp80-syn");
  assert.match(line(syn80), /^ *\d+ {2}\d+\.\d{6} {2}in ext +203\.0\.113\.10:\d+ > 203\.0\.113\.1:80 TCP \[S\] {2}=> accept rule_allow {2}\[rule 0: default\.yaml:\d+ ext-http-80: /);
  assert.match(line(syn80 + 1), /out ext .*TCP \[S\.\] {2}=> accept state_match {2}\[flow of rule 0: default\.yaml:\d+ ext-http-80: /);
  const rst = labelled.findIndex((x) => x.cat === "tcp22-rst");
  assert.match(line(rst), /TCP \[R\.\] {2}=> drop no_flow$/);
  assert.match(r.stdout, /proxy addresses from the policy's groups listener \(external\) and proxy_internal \(internal\)/);
  assert.match(r.stdout, /^ {2}state_match +40 {2}belongs to a tracked flow$/m);
  assert.match(r.stdout, /^ {2}\[2\] 0 {2}default\.yaml:\d+ int-http-8080: .*\(never hit\)$/m);
  assert.match(r.stdout, /^Flows: 4 created, \d+ live at the end, \d+ expired$/m);
  assert.match(r.stdout, /^Link layers: Ethernet$/m);

  const sum = run("replay", REFERENCE, "--policy", DEFAULT_POLICY, "--summary");
  assert.is(sum.status, 0, sum.stderr);
  assert.not.match(sum.stdout, /=> (accept|drop)/);
  assert.match(sum.stdout, /^Summary: 77 packets in \d+ batch(es)?: accept 46 \(\d+ bytes\), drop 31 \(\d+ bytes\)$/m);
  const js = JSON.parse(run("replay", REFERENCE, "--policy", DEFAULT_POLICY, "--summary", "--json").stdout) as ReplayDoc;
  assert.is(js.packets, undefined);
  assert.is(js.summary.packets, 77);
});

test("CLI --table: a table from portcullis compile replays like the policy (given the proxy's addresses)", () => {
  const table = join(work, "default.bin");
  const c = run("compile", DEFAULT_POLICY, "-o", table);
  assert.is(c.status, 0, c.stderr);
  const r = run("replay", REFERENCE, "--table", table, "--external-ip", "203.0.113.1", "--external-ip", "2001:db8:1::1", "--json");
  assert.is(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as ReplayDoc;
  assert.equal(doc.source, { table, mode: "host", rules: 5, defaultAction: "deny", switches: null, copyRange: 256 });
  checkEach(doc.packets!, (i) => defaultPolicyOutcome(labelled[i]!.cat));
  assert.match(doc.summary.rules[1]!.info, /ext-https-443/);
  // Without addresses a table says nothing about the proxy: the run says so.
  const bare = run("replay", REFERENCE, "--table", table, "--summary");
  assert.is(bare.status, 0, bare.stderr);
  assert.match(bare.stdout, /a compiled table carries no groups/);
  const set = run("replay", REFERENCE, "--table", table, "--set", "external_http_80=off");
  assert.is(set.status, 1);
  assert.match(set.stderr, /--set applies to --policy only/);
});

function oneLineError(r: { status: number | null; stdout: string; stderr: string }, re: RegExp): void {
  assert.is(r.status, 1, r.stdout);
  assert.is(r.stdout, "");
  assert.is(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, re);
}

test("CLI bad input: no table, both, missing or corrupt capture, bad table: one line, exit 1", () => {
  oneLineError(run("replay", REFERENCE), /^portcullis: error: .*--policy FILE.*--table FILE/);
  oneLineError(run("replay", REFERENCE, "--policy", DEFAULT_POLICY, "--table", "x.bin"), /either --policy or --table/);
  oneLineError(run("replay", join(work, "nope.pcap"), "--policy", DEFAULT_POLICY), /nope\.pcap: no such capture file/);
  const garbage = writeCapture("garbage.pcap", Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 255));
  oneLineError(run("replay", garbage, "--policy", DEFAULT_POLICY), /garbage\.pcap: not a usable capture: magic 0x[0-9a-f]{8} is neither pcap nor pcapng/);
  const whole = readFileSync(REFERENCE);
  const cut = writeCapture("cut.pcap", whole.subarray(0, whole.length - 30));
  // A capture is streamed: the packets before the fault are printed, then the
  // one-line error and status 1 (with --summary, nothing on stdout).
  const cutRun = run("replay", cut, "--policy", DEFAULT_POLICY);
  assert.is(cutRun.status, 1);
  assert.is(cutRun.stdout.split("\n").filter((l) => / => (accept|drop) /.test(l)).length, records.length - 1);
  assert.not.match(cutRun.stdout, /^Summary:/m);
  assert.match(cutRun.stderr, /^portcullis: error: .*cut\.pcap: not a usable capture: .*at byte offset \d+\)\n$/);
  oneLineError(run("replay", cut, "--policy", DEFAULT_POLICY, "--summary"), /cut\.pcap: not a usable capture: .*at byte offset \d+/);
  oneLineError(run("replay", REFERENCE, "--table", DEFAULT_POLICY), /default\.yaml: rule table refused/);
  oneLineError(run("replay", REFERENCE, "--table", join(work, "none.bin")), /none\.bin: no such rule table file/);
  const badIp = run("replay", REFERENCE, "--policy", DEFAULT_POLICY, "--external-ip", "203.0.113.0/24");
  assert.is(badIp.status, 1);
  assert.match(badIp.stderr, /is a prefix; give one address/);
});

test("CLI broken policy: exit 1 with the first error as file:line:col", () => {
  const text = "version: 1\ndefault: deny\nrules:\n  - name: web\n    action: allow\n    interface: external\n    direction: in\n    proto: tcp\n    dport: 99999\n";
  const path = join(work, "broken.yaml");
  writeFileSync(path, text);
  const lines = text.split("\n");
  const line = lines.findIndex((l) => l.includes("99999"));
  const col = lines[line]!.indexOf("99999") + 1;
  oneLineError(run("replay", REFERENCE, "--policy", path), new RegExp(`^portcullis: error: ${path.replace(/[.\\/]/g, "\\$&")}:${line + 1}:${col}: .*99999`));
  oneLineError(run("replay", REFERENCE, "--policy", join(work, "absent.yaml")), /absent\.yaml: no such policy file/);
  oneLineError(run("replay", REFERENCE, "--policy", DEFAULT_POLICY, "--set", "no_such_switch=on"), /no switch named "no_such_switch"/);
});

// A classic pcap of `n` empty raw-IP records (16 bytes each): the shape that
// once cost 2.7 GB for 80 MB, read whole and kept per packet.
function emptyRecords(name: string, n: number): string {
  const b = Buffer.alloc(24 + 16 * n);
  b.writeUInt32LE(0xa1b2c3d4, 0); b.writeUInt16LE(2, 4); b.writeUInt16LE(4, 6); b.writeUInt32LE(65535, 16); b.writeUInt32LE(RAW, 20);
  for (let i = 0; i < n; i++) { b.writeUInt32LE(1_700_000_000, 24 + 16 * i); b.writeUInt32LE(i % 1_000_000, 28 + 16 * i); }
  return writeCapture(name, b);
}

// The CLI in a child whose JS heap is capped, stdout to a file; returns the
// status, stderr, stdout's size and tail, and the child's peak resident KiB.
function bounded(heapMb: number, ...args: string[]): { status: number | null; stderr: string; size: number; tail: string; maxRssKb: number } {
  const outPath = join(work, "bounded.out");
  const fd = openSync(outPath, "w");
  const rss = "data:text/javascript,import { writeSync } from 'node:fs'; process.on('exit', () => writeSync(3, String(process.resourceUsage().maxRSS)));";
  try {
    const r = spawnSync(process.execPath, [`--max-old-space-size=${heapMb}`, "--import", rss, BIN, ...args], {
      cwd: work, encoding: "utf8", stdio: ["ignore", fd, "pipe", "pipe"], maxBuffer: 1 << 20,
    });
    const out = readFileSync(outPath, "utf8");
    return { status: r.status, stderr: r.stderr, size: out.length, tail: out.slice(-4000), maxRssKb: Number(r.output[3] ?? 0) };
  } finally {
    closeSync(fd);
    rmSync(outPath, { force: true });
  }
}

test("CLI: a capture of 250,000 empty records replays and demos in bounded memory (JS heap capped at 24 MB)", () => {
  const n = 250_000;
  const path = emptyRecords("empty.pcap", n);
  for (const args of [["replay", path, "--policy", DEFAULT_POLICY], ["replay", path, "--policy", DEFAULT_POLICY, "--json"], ["demo", "--pcap", path]]) {
    const r = bounded(24, ...args);
    assert.is(r.status, 0, `${args.join(" ")}: ${r.stderr.slice(0, 400)}`);
    assert.is(r.stderr, "");
    if (args.includes("--json")) {
      assert.match(r.tail, new RegExp(`"records": ${n},\\n    "linkTypes": "raw IP"|"linkTypes": "raw IP",\\n    "records": ${n}`));
      assert.match(r.tail, new RegExp(`"l3_unsupported": \\{\\n        "packets": ${n},`));
    } else if (args[0] === "replay") {
      assert.match(r.tail, new RegExp(`^Summary: ${n} packets in \\d+ batches: accept 0 \\(0 bytes\\), drop ${n} \\(0 bytes\\)$`, "m"));
    } else {
      assert.match(r.tail, new RegExp(`^  l3_unsupported  ${n} packets, 0 bytes$`, "m"));
    }
    assert.ok(r.size > n * 30, `a line (or object) per packet: ${r.size} bytes`);
    // Bounded: the run above finished under a 24 MB JS heap, so nothing per
    // packet is kept in JS. The resident peak (the core's memory, V8 and its
    // compilers; the capture itself is 4 MB) is about 100 MiB on a quiet
    // machine and was seen up to 244 MiB in full suite runs on a loaded one
    // (the cause not found); this bound only catches gross growth outside the heap.
    assert.ok(r.maxRssKb > 0 && r.maxRssKb < 320 * 1024, `peak resident ${r.maxRssKb} KiB`);
  }
});

test("CLI: output into a closed pipe (| head) ends quietly with status 0", () => {
  const path = emptyRecords("pipe.pcap", 100_000);
  for (const cmd of [
    `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} replay ${JSON.stringify(path)} --policy ${JSON.stringify(DEFAULT_POLICY)} | head -c 10`,
    `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} replay ${JSON.stringify(REFERENCE)} --policy ${JSON.stringify(DEFAULT_POLICY)} --json | head -1`,
    `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} check ${JSON.stringify(DEFAULT_POLICY)} | head -1`,
    `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} --help | head -1`,
  ]) {
    const r = spawnSync("bash", ["-c", `set -o pipefail; ${cmd}`], { cwd: work, encoding: "utf8" });
    assert.is(r.stderr, "", cmd);
    assert.is(r.status, 0, cmd);
    assert.ok(r.stdout.length > 0 && r.stdout.length <= 200, cmd);
  }
});

test.after(() => {
  rmSync(work, { recursive: true, force: true });
});

test("limits apply with capture timestamps: the audit shows which SYNs a per-source rate would drop, and the block that follows", () => {
  const policy = join(work, "limited.yaml");
  writeFileSync(policy, limitedDefaultPolicy(["rate: 5/s", "burst: 2", "overload: abusers for 1m"]));
  const syn = (src: string, sport: number): Uint8Array => ipv4({ src, dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport, dport: 443, flags: TCP_SYN }) });
  const A = "203.0.113.10", B = "203.0.113.11";
  const path = writeCapture("limits.pcap", pcap(RAW, [
    { t: 0, frame: syn(A, 40001) }, { t: 0, frame: syn(A, 40002) }, //   the burst
    { t: 0.1, frame: syn(A, 40003) }, //                                 half a token: over, listed
    { t: 0.1, frame: syn(B, 40004) }, //                                 another source
    { t: 30, frame: syn(A, 40005) }, //                                  still on the list (a minute)
    { t: 60.2, frame: syn(A, 40006) }, //                                off it, bucket full
  ]));
  const r = replayIn({ policy }, path);
  assert.equal(r.result.packets.map((p) => p.reason), ["rule_allow", "rule_allow", "rate_limited", "rule_allow", "source_blocked", "rule_allow"]);
  assert.is(r.result.summary.reasons.rate_limited!.packets, 1);
});

test.run();
