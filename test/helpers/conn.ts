// A small stateful harness: a core with a rule table, packets sent one at a
// time at a given second, and TCP conversations with real sequence numbers.
// The core is the release build unless the test asks for the debug one.
import * as ABI from "../../host/core/abi.js";
import { Batch } from "../../host/core/batch.js";
import { Core, type PacketMeta } from "../../host/core/core.js";
import { type Build, type CoreConfig } from "../../host/core/load.js";
import { reasonName } from "../../host/core/reasons.js";
import { ip4, ip6 } from "../../host/packets/addr.js";
import {
  echo, icmp, ipv4, ipv6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN,
  tcp, udp,
} from "../../host/packets/build.js";
import { isIcmpError } from "../../host/packets/icmp-names.js";
import { buildTable } from "../../host/rules/build.js";
import * as F from "../../host/rules/format.js";
import { type AddrRanges, type RuleSpec, type TableSpec } from "../../host/rules/model.js";

export const PROXY4 = "203.0.113.1", CLIENT4 = "203.0.113.10", PROXY6 = "2001:db8:1::1", CLIENT6 = "2001:db8:1::10";

const big = (b: Uint8Array): bigint => b.reduce((a, x) => (a << 8n) | BigInt(x), 0n);
export function host(addr: string): AddrRanges {
  if (addr.includes(":")) { const v = big(ip6(addr)); return { v4: [], v6: [[v, v]] }; }
  const v = Number(big(ip4(addr)));
  return { v4: [[v, v]], v6: [] };
}
const both = (a: AddrRanges, b: AddrRanges): AddrRanges => ({ v4: [...a.v4, ...b.v4], v6: [...a.v6, ...b.v6] });

export const IN_EXT: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
export const OUT_EXT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };

const rule = (o: Partial<RuleSpec>): RuleSpec => ({
  action: "allow", log: false, ctx: null, src: null, dst: null, protos: null, sport: null, dport: null,
  tcpFlags: null, line: 0, info: "", ...o,
});

// The proxy's external side, stated as rules: TCP 80 and 443, UDP 53 and
// ICMP/ICMPv6 echo arriving for the proxy; everything else denied.
export const PROXY_SPEC: TableSpec = {
  defaultAction: "deny",
  rules: [
    rule({ ctx: [F.ctxValue(ABI.HOOK_INPUT, ABI.ROLE_EXTERNAL, 0)], protos: [6], dst: both(host(PROXY4), host(PROXY6)), dport: [[80, 80], [443, 443]], info: "web" }),
    rule({ ctx: [F.ctxValue(ABI.HOOK_INPUT, ABI.ROLE_EXTERNAL, 0)], protos: [17], dst: both(host(PROXY4), host(PROXY6)), dport: [[53, 53]], info: "dns" }),
    rule({ ctx: [F.ctxValue(ABI.HOOK_INPUT, ABI.ROLE_EXTERNAL, 0)], protos: [1, 58], dst: both(host(PROXY4), host(PROXY6)), info: "ping" }),
  ],
};

export class Harness {
  readonly core: Core;
  private readonly batch: Batch;
  constructor(spec: TableSpec = PROXY_SPEC, config: CoreConfig = {}, build: Build = "release") {
    this.core = new Core(build, undefined, config);
    this.core.loadTable(buildTable(spec).bytes);
    this.batch = new Batch(this.core);
  }

  // One packet at second `t`; returns its reason (verdict implied by it).
  send(pkt: Uint8Array, meta: PacketMeta, t: number): string {
    this.batch.clear();
    this.batch.add(pkt, meta);
    const n = this.batch.run(BigInt(Math.round(t * 1e9)));
    if (n !== 1) throw new Error(`classify returned ${n}`);
    return reasonName(this.core.reason(0));
  }

  verdict(): number { return this.core.verdict(0); }

  states(): string[] { return this.core.flows().map((f) => f.state).sort(); }
}

// A TCP conversation between a client and the proxy, each side keeping its
// own sequence number as a real stack would.
export class Tcp {
  cseq = 1000; sseq = 50000;
  constructor(readonly h: Harness, readonly fam: 4 | 6 = 4, readonly cport = 40000, readonly sport = 443,
    readonly client = fam === 4 ? CLIENT4 : CLIENT6, readonly proxy = fam === 4 ? PROXY4 : PROXY6) {}

  pkt(fromClient: boolean, flags: number, len = 0, seq?: number, ack?: number, opts?: Uint8Array): Uint8Array {
    const seg = tcp({
      sport: fromClient ? this.cport : this.sport, dport: fromClient ? this.sport : this.cport, flags,
      seq: seq ?? (fromClient ? this.cseq : this.sseq), ack: ack ?? ((flags & TCP_ACK) ? (fromClient ? this.sseq : this.cseq) : 0),
      payload: new Uint8Array(len), win: 29200, ...(opts ? { options: opts } : {}),
    });
    const o = { src: fromClient ? this.client : this.proxy, dst: fromClient ? this.proxy : this.client, proto: PROTO_TCP, payload: seg };
    return this.fam === 4 ? ipv4(o) : ipv6(o);
  }

  // Sends a segment and advances the sender's sequence number by what it
  // consumes (payload, SYN, FIN).
  c(flags: number, t: number, len = 0): string {
    const r = this.h.send(this.pkt(true, flags, len), IN_EXT, t);
    this.cseq = (this.cseq + len + ((flags & (TCP_SYN | TCP_FIN)) ? 1 : 0)) >>> 0;
    return r;
  }
  s(flags: number, t: number, len = 0): string {
    const r = this.h.send(this.pkt(false, flags, len), OUT_EXT, t);
    this.sseq = (this.sseq + len + ((flags & (TCP_SYN | TCP_FIN)) ? 1 : 0)) >>> 0;
    return r;
  }
  // A segment with an explicit sequence number, nothing advanced.
  cRaw(flags: number, t: number, seq: number, ack?: number): string { return this.h.send(this.pkt(true, flags, 0, seq, ack), IN_EXT, t); }
  sRaw(flags: number, t: number, seq: number, ack?: number): string { return this.h.send(this.pkt(false, flags, 0, seq, ack), OUT_EXT, t); }

  handshake(t = 0): string[] {
    return [this.c(TCP_SYN, t), this.s(TCP_SYN | TCP_ACK, t), this.c(TCP_ACK, t)];
  }
}

export const S = TCP_SYN, A = TCP_ACK, F_ = TCP_FIN, R = TCP_RST, P = TCP_PSH;

export function udpPkt(fam: 4 | 6, src: string, sport: number, dst: string, dport: number): Uint8Array {
  const o = { src, dst, proto: PROTO_UDP, payload: udp({ sport, dport, payload: new Uint8Array(12) }) };
  return fam === 4 ? ipv4(o) : ipv6(o);
}

export function ping(fam: 4 | 6, src: string, dst: string, type: number, id: number, seq = 1): Uint8Array {
  const o = { src, dst, proto: fam === 4 ? PROTO_ICMP : PROTO_ICMPV6, payload: echo(type, id, seq, new Uint8Array(16)) };
  return fam === 4 ? ipv4(o) : ipv6(o);
}

// An ICMP/ICMPv6 error from `from` to `to` quoting `quoted`.
export function icmpError(fam: 4 | 6, from: string, to: string, type: number, code: number, quoted: Uint8Array, rest = 0): Uint8Array {
  const o = { src: from, dst: to, proto: fam === 4 ? PROTO_ICMP : PROTO_ICMPV6, payload: icmp({ type, code, rest, payload: quoted.slice(0, fam === 4 ? 28 : 48) }) };
  return fam === 4 ? ipv4(o) : ipv6(o);
}

// A real ICMP/ICMPv6 message of this type: queries carry an identifier (one
// per type), errors quote a UDP datagram (`quoted`, by default one the
// destination sent that no flow owns), the rest eight bytes of body.
export function icmpMessage(fam: 4 | 6, src: string, dst: string, type: number, code = 0, quoted?: Uint8Array, hops = 64): Uint8Array {
  const q = quoted ?? udpPkt(fam, dst, 33333, src, 53);
  const body = isIcmpError(fam, type)
    ? icmp({ type, code, rest: fam === 6 && type === 2 ? 1280 : 0, payload: q.slice(0, fam === 4 ? 28 : 48) })
    : code === 0 ? echo(type, 0x4200 | type, 1, new Uint8Array(8)) : icmp({ type, code, payload: new Uint8Array(8) });
  const o = { src, dst, proto: fam === 4 ? PROTO_ICMP : PROTO_ICMPV6, payload: body };
  return fam === 4 ? ipv4(o) : ipv6({ ...o, hopLimit: hops });
}
