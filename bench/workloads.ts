// The core benchmark's workloads, built deterministically (seeded). Each has
// setup batches (state to start from), warm-up traffic and measured traffic:
// the warm-up pass is classified untimed right before the measured one by
// every contender, so that the wasm2c driver, a fresh process each run, and
// V8, whose memory earlier runs have touched, meet the measured packets with
// caches equally warm.
//  - mix: the default policy on a realistic mix: 90% segments of 1,000
//    established TCP flows both ways (external clients to the listener and
//    the proxy to its pools, a tenth over IPv6), 5% new SYNs (half allowed,
//    half denied), 3% UDP probes, 2% malformed packets from the fuzzer; the
//    warm-up pass is the same generator's preceding traffic;
//  - ClassBench: real IPv4 packets built from a trace's headers (TCP SYNs
//    and UDP datagrams with the trace's ports, ICMP echo requests, other
//    protocols as a bare IP header) against the set's filters. Every filter
//    is loaded with action deny, so every packet is classified by the rules
//    in every repeat: an allowed one would open a flow, and its repeats would
//    then be decided by the state table instead. The warm-up pass is the
//    measured packets themselves (they leave no state).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as ABI from "../host/core/abi.js";
import { type PacketMeta } from "../host/core/core.js";
import { echo, ipv4, ipv6, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_PSH, TCP_SYN, tcp, udp } from "../host/packets/build.js";
import { compilePolicyFile, compilePolicyText } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { readFilters, readTrace } from "../host/rules/classbench.js";
import * as F from "../host/rules/format.js";
import { Fuzzer, rng } from "../test/fuzz/gen.js";
import { Decoder } from "./reference/decode.js";
import * as R from "./reference/codes.js";

export interface WorkPacket { bytes: Uint8Array; meta: PacketMeta }

export interface Workload {
  name: string;
  rules: number;
  table: Uint8Array;
  setup: WorkPacket[][]; // batches classified before the others (state to start from)
  warm: WorkPacket[]; //   classified untimed before the measured ones, cut into batches of each size
  packets: WorkPacket[]; // the measured packets, cut into batches of each size
  what: string;
}

const IN_EXT: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
const OUT_EXT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };
const OUT_INT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_INTERNAL };
const IN_INT: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_NONE };

interface Flow {
  fam: 4 | 6;
  client: string; cport: number; server: string; sport: number;
  up: PacketMeta; down: PacketMeta; // client -> server, server -> client
  cseq: number; sseq: number;
}

const WSCALE = Uint8Array.from([1, 3, 3, 7]); // NOP, window scale 7

function segment(f: Flow, fromClient: boolean, flags: number, len: number): WorkPacket {
  const seg = tcp({
    sport: fromClient ? f.cport : f.sport, dport: fromClient ? f.sport : f.cport, flags,
    seq: fromClient ? f.cseq : f.sseq, ack: flags & TCP_ACK ? (fromClient ? f.sseq : f.cseq) : 0, win: 29200,
    payload: new Uint8Array(len), ...(flags & TCP_SYN ? { options: WSCALE } : {}),
  });
  const consumed = len + (flags & TCP_SYN ? 1 : 0);
  if (fromClient) f.cseq = (f.cseq + consumed) >>> 0; else f.sseq = (f.sseq + consumed) >>> 0;
  const o = { src: fromClient ? f.client : f.server, dst: fromClient ? f.server : f.client, proto: PROTO_TCP, payload: seg };
  return { bytes: f.fam === 4 ? ipv4(o) : ipv6(o), meta: fromClient ? f.up : f.down };
}

function newFlow(i: number, r: () => number): Flow {
  const fam: 4 | 6 = i % 10 === 9 ? 6 : 4;
  const seq = (): number => Math.floor(r() * 2 ** 32) >>> 0;
  if (i % 5 === 4) { // the proxy's own connections to its pools
    const pool = ["198.51.100.10", "198.51.100.11"][i % 2]!;
    return {
      fam, client: fam === 4 ? "198.51.100.1" : "2001:db8:2::1", cport: 10000 + i, server: fam === 4 ? pool : "2001:db8:2::10",
      sport: i % 3 === 0 ? 8080 : 4443, up: OUT_INT, down: IN_INT, cseq: seq(), sseq: seq(),
    };
  }
  const client = fam === 4 ? `203.0.113.${10 + (i % 200)}` : `2001:db8:1::${(0x100 + (i % 200)).toString(16)}`;
  return {
    fam, client, cport: 20000 + i, server: fam === 4 ? "203.0.113.1" : "2001:db8:1::1", sport: i % 4 === 0 ? 80 : 443,
    up: IN_EXT, down: OUT_EXT, cseq: seq(), sseq: seq(),
  };
}

// The limit the "mix-limited" workload puts on every allow rule of the
// policy: generous enough that the mix's sources stay under it (the cost of
// the bookkeeping is measured, not of drops).
export const MIX_LIMIT = ["rate: 1000/s", "burst: 10000", "flows: 10000"];

// `limit`: the same mix with this limit on every allow rule ("mix-limited").
export function mixWorkload(policy: string, count: number, seed = 0x6d6978, limit: string[] | null = null): Workload {
  const r = rng(seed);
  const flows = Array.from({ length: 1000 }, (_, i) => newFlow(i, r));
  const setup = [
    flows.map((f) => segment(f, true, TCP_SYN, 0)),
    flows.map((f) => segment(f, false, TCP_SYN | TCP_ACK, 0)),
    flows.map((f) => segment(f, true, TCP_ACK, 0)),
  ];
  const fuzz = new Fuzzer(seed);
  const dec = new Decoder();
  const malformed = (): WorkPacket => {
    for (;;) {
      const p = fuzz.next();
      if (dec.decode(p.bytes, 0, p.bytes.length, p.wireLen, p.hwProto) !== R.NONE) {
        return { bytes: p.bytes, meta: { ...IN_EXT, hwProto: p.hwProto, wireLen: p.wireLen } };
      }
    }
  };
  const packets: WorkPacket[] = [];
  let newPort = 50000;
  for (let i = 0; i < 2 * count; i++) {
    const k = r();
    if (k < 0.9) {
      const f = flows[Math.floor(r() * flows.length)]!;
      const len = [0, 0, 64, 512, 1400][Math.floor(r() * 5)]!;
      packets.push(segment(f, r() < 0.5, len ? TCP_ACK | TCP_PSH : TCP_ACK, len));
    } else if (k < 0.95) {
      const f = newFlow(Math.floor(r() * 1000), r);
      f.cport = newPort++;
      if (r() < 0.5) f.sport = [22, 445, 3389, 5061][Math.floor(r() * 4)]!; // denied
      packets.push(segment(f, true, TCP_SYN, 0));
    } else if (k < 0.98) {
      const dport = 1 + Math.floor(r() * 65535);
      packets.push({ bytes: ipv4({ src: `192.0.2.${1 + Math.floor(r() * 250)}`, dst: "203.0.113.1", proto: PROTO_UDP, payload: udp({ sport: 40000 + Math.floor(r() * 20000), dport, payload: new Uint8Array(8) }) }), meta: IN_EXT });
    } else {
      packets.push(malformed());
    }
  }
  const spec = limit === null ? compilePolicyFile(policy, { mode: "host" }).spec
    : compilePolicyText(readFileSync(policy, "utf8").replace(/^( {4}action: allow\n)/gm, `$1    limit:\n${limit.map((l) => `      ${l}\n`).join("")}`), policy, { mode: "host" }).spec;
  const table = buildTable(spec).bytes;
  return {
    name: limit === null ? "mix" : "mix-limited", rules: ruleCount(table), table, setup, warm: packets.slice(0, count), packets: packets.slice(count),
    what: "default policy; 90% established flows both ways, 5% new SYNs, 3% UDP probes, 2% malformed" +
      (limit === null ? "" : `; every allow rule with limit { ${limit.join(", ")} } (per /32, /64)`),
  };
}

function ruleCount(t: Uint8Array): number { return new DataView(t.buffer, t.byteOffset).getUint32(F.T_NRULES, true); }

const dotted = (a: number): string => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;

// `count` headers spread evenly over the trace (a shorter trace is cycled).
export function classbenchWorkload(dir: string, name: string, count: number): Workload {
  const spec = readFilters(join(dir, `${name}.rules`));
  spec.rules = spec.rules.map((r) => ({ ...r, action: "deny" }));
  const traceFile = existsSync(join(dir, `${name}.trace`)) ? `${name}.trace` : `${name}.trace.gz`;
  const trace = readTrace(join(dir, traceFile));
  const step = Math.max(1, Math.floor(trace.length / count));
  const packets: WorkPacket[] = [];
  for (let k = 0; packets.length < count; k++) {
    const i = (k * step) % trace.length;
    const h = trace[i]!;
    const src = dotted(h.src), dst = dotted(h.dst);
    let payload: Uint8Array;
    if (h.proto === PROTO_TCP) payload = tcp({ sport: h.sport, dport: h.dport, flags: TCP_SYN, seq: i });
    else if (h.proto === PROTO_UDP) payload = udp({ sport: h.sport, dport: h.dport });
    else if (h.proto === PROTO_ICMP) payload = echo(8, h.sport, h.dport);
    else payload = new Uint8Array(0);
    packets.push({ bytes: ipv4({ src, dst, proto: h.proto, payload }), meta: IN_EXT });
  }
  return {
    name, rules: spec.rules.length, table: buildTable(spec).bytes, setup: [], warm: packets, packets,
    what: `ClassBench ${name}: ${packets.length} packets from its ${trace.length} trace headers, every filter deny`,
  };
}
