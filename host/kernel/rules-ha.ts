// What the kernel rules let through, before the queue, for an HA pair (the
// board's ha:, board-ha.ts), and nothing else:
//   VRRP      IP protocol 112 on the sides VRRP runs on, in and out, per
//             family of the side's virtual addresses: to 224.0.0.18 (IPv4)
//             or ff02::12 (IPv6), from the side's IPv4 peer when one is
//             named (IPv6 adverts: from a link-local address); with
//             unicast: true, from and to the peer only (IPv6: out to it,
//             in from a link-local address)
//   MLD       with IPv6 multicast VRRP on a side, its multicast listener
//             messages (ICMPv6, hop limit 1, RFC 2710 / 3810): the
//             queries in from a link-local address, the reports and dones
//             out, to ff02::/16. A switch that snoops MLD (RFC 4541 3: only
//             ff02::1 is flooded) forwards ff02::12 only to the ports that
//             reported it and answer its queries; were they queued, the
//             daemon would drop them, the adverts would stop reaching the
//             backup and both appliances would be master
//   sync      conntrackd's UDP to and from the sync peer on its port, when
//             the sync link is one of the guarded NICs (a link of its own
//             is not queued at all)
// Only the input and output hooks: VRRP and the sync are the appliance's
// own traffic. A VRRP packet the daemon would see has no flow and no rule,
// and would be dropped: that is why these pass here, by protocol and
// address, rather than through the policy.
import { type BoardConfig } from "./board.js";
import { type HaAddress, vrrpSides } from "./board-ha.js";

export const VRRP_PROTO = 112;
export const VRRP_GROUP: Record<4 | 6, string> = { 4: "224.0.0.18", 6: "ff02::12" };

const LINK_LOCAL = "fe80::/10";
const LINK_SCOPE_MULTICAST = "ff02::/16";
// ICMPv6 types of MLD: the query in, MLDv1's report and done and MLDv2's report out.
export const MLD_IN = [130] as const;
export const MLD_OUT = [131, 132, 143] as const;
const MLD_NAME: Record<number, string> = { 130: "mld-listener-query", 131: "mld-listener-report", 132: "mld-listener-done", 143: "mld2-listener-report" };

export interface HaPass {
  family: 4 | 6;
  dir: "in" | "out";
  dev: string;
  what: "vrrp" | "sync" | "mld";
  src?: string; // an address, or a prefix ADDR/LEN
  dst?: string;
  dport?: number; // sync only (UDP)
  icmpType?: number; // mld only (with hop limit 1)
}

// The device of the sync link when it is a guarded NIC, else null.
function guardedSyncDev(c: BoardConfig): string | null {
  const y = c.ha?.sync;
  if (!y?.enabled) return null;
  const dev = y.side ? c[y.side].dev : y.dev!;
  return dev === c.external.dev || dev === c.internal.dev ? dev : null;
}

export function haPasses(c: BoardConfig, hook: "input" | "output" | "forward"): HaPass[] {
  const ha = c.ha;
  if (!ha || hook === "forward") return [];
  const dir = hook === "input" ? "in" : "out";
  const out: HaPass[] = [];
  for (const side of vrrpSides(ha)) {
    const s = ha[side]!;
    const dev = c[side].dev;
    for (const family of [4, 6] as const) {
      if (!s.virtual.some((v) => v.family === family)) continue;
      const peer = s.peer.find((p: HaAddress) => p.family === family)?.addr;
      const remote = ha.unicast ? peer! : VRRP_GROUP[family];
      // IPv6 adverts come from the sender's link-local address (RFC 5798
      // 5.1.2.1; keepalived's unicast ones too, the peer's address is their
      // destination), which no sender off the link can use; IPv4 ones from
      // its primary address: the peer.
      const from = family === 6 ? LINK_LOCAL : peer;
      if (dir === "in") out.push({ family, dir, dev, what: "vrrp", ...(from ? { src: from } : {}), ...(ha.unicast ? {} : { dst: remote }) });
      else out.push({ family, dir, dev, what: "vrrp", dst: remote });
      if (family === 6 && !ha.unicast) {
        for (const icmpType of dir === "in" ? MLD_IN : MLD_OUT) {
          out.push({ family, dir, dev, what: "mld", ...(dir === "in" ? { src: LINK_LOCAL } : {}), dst: LINK_SCOPE_MULTICAST, icmpType });
        }
      }
    }
  }
  const dev = guardedSyncDev(c);
  if (dev !== null) {
    const y = ha.sync!;
    out.push({ family: y.peer.family, dir, dev, what: "sync", ...(dir === "in" ? { src: y.peer.addr } : { dst: y.peer.addr }), dport: y.port });
  }
  return out;
}

export function nftHaRule(r: HaPass): string {
  const ip = r.family === 4 ? "ip" : "ip6";
  return [
    `${r.dir === "in" ? "iifname" : "oifname"} "${r.dev}"`,
    ...(r.src ? [`${ip} saddr ${r.src}`] : []),
    ...(r.dst ? [`${ip} daddr ${r.dst}`] : []),
    r.what === "vrrp" ? `meta l4proto ${VRRP_PROTO}` : r.what === "mld" ? `ip6 hoplimit 1 icmpv6 type ${MLD_NAME[r.icmpType!]}` : `udp dport ${r.dport}`,
    "accept",
  ].join(" ");
}

export function iptHaRule(r: HaPass): string {
  const net = (a: string): string => (a.includes("/") ? a : `${a}/${r.family === 4 ? 32 : 128}`);
  return [
    `${r.dir === "in" ? "-i" : "-o"} ${r.dev}`,
    ...(r.src ? [`-s ${net(r.src)}`] : []),
    ...(r.dst ? [`-d ${net(r.dst)}`] : []),
    r.what === "vrrp" ? `-p ${VRRP_PROTO}` : r.what === "mld" ? `-p ipv6-icmp -m icmp6 --icmpv6-type ${r.icmpType} -m hl --hl-eq 1` : `-p udp -m udp --dport ${r.dport}`,
    "-j ACCEPT",
  ].join(" ");
}

// The rules' header lines.
export function haDescribe(c: BoardConfig): string[] {
  const ha = c.ha;
  if (!ha) return [];
  const sides = vrrpSides(ha).map((s) => `${s} ${c[s].dev}`).join(", ");
  const dev = guardedSyncDev(c);
  const mld = ha.unicast ? [] : vrrpSides(ha).filter((s) => ha[s]!.virtual.some((v) => v.family === 6)).map((s) => c[s].dev);
  return [
    `  ha: VRRP (IP protocol ${VRRP_PROTO}, ${ha.unicast ? "unicast with the peer" : `to ${VRRP_GROUP[4]} / ${VRRP_GROUP[6]}`}) passes on ${sides}`,
    ...(mld.length ? [`  ha: MLD for ${VRRP_GROUP[6]} (queries in, reports out, hop limit 1) passes on ${mld.join(", ")}`] : []),
    ...(dev !== null ? [`  ha: conntrackd's sync (UDP ${ha.sync!.port} with ${ha.sync!.peer.addr}) passes on ${dev}`] : []),
  ];
}
