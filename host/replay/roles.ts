// Which hook and interface roles a captured packet would have had on the
// appliance, for `portcullis replay` (control path only). A capture does not
// say which netfilter hook saw a packet, so replay infers it from what the
// operator states about the proxy: its own addresses on each side, the MAC
// addresses of its two NICs, and the networks that lie on each side.
//
// host mode (the appliance is the proxy):
//   1. to one of the proxy's addresses of side X      -> INPUT,  in_role X
//   2. from one of the proxy's addresses of side X    -> OUTPUT, out_role X
//   3. sent by the proxy's NIC of side X (source MAC): to multicast/broadcast
//      or from an unspecified address                 -> OUTPUT, out_role X
//      otherwise (routed through the proxy)           -> FORWARD, in_role the other side, out_role X
//   4. to a multicast or broadcast address            -> INPUT (the proxy's own stack receives it),
//      in_role = the side it arrived on (see "arrival side"), else none
//   5. anything else                                  -> FORWARD, in_role = arrival side, else none;
//                                                        out_role = side of the destination's network, else none
// gateway mode (the appliance forwards between its NICs): every packet is
// FORWARD and out_role is the side other than in_role; in_role is
//   1. by MAC: a frame to the NIC of side X entered X; a frame from it leaves by X, so entered the other side;
//   2. to one of the proxy's addresses of side X: entered X; from one: leaves by X (entered the other);
//   3. from a network of side X: entered X; to a network of side X: leaves by X (entered the other);
//   4. otherwise none, and out_role none.
// Arrival side: the destination MAC is the proxy's NIC of side X, or else the
// source address lies in a network of side X (longest prefix wins).
import * as ABI from "../core/abi.js";
import { type Mode } from "../policy/compile.js";
import { formatPrefix, isPrefix, parsePrefix, type Prefix } from "../policy/addr.js";
import { type PcapRecord } from "../pcap/read.js";

export type Side = "external" | "internal";
export const SIDES: readonly Side[] = ["external", "internal"];

export interface SideConfig {
  ips: Prefix[]; //    the proxy's own addresses on this side (a group entry may be a prefix)
  macs: string[]; //   "aa:bb:cc:dd:ee:ff", lower case
  nets: Prefix[]; //   networks that lie on this side
}

export interface RoleConfig {
  mode: Mode;
  sides: Record<Side, SideConfig>;
  ipsFrom: string; //  where the proxy's addresses came from, in words
}

export interface Placement {
  hook: number;
  inRole: number;
  outRole: number;
  by: "address" | "mac" | "network" | "multicast" | "unknown";
}

export const ROLE_RULE_HELP = `How replay assigns hooks and roles (X is external or internal):
  host mode
    to a proxy address of side X ............ INPUT,   in_role X
    from a proxy address of side X .......... OUTPUT,  out_role X
    from side X's NIC (source MAC)
      to multicast/broadcast, or from :: .... OUTPUT,  out_role X
      otherwise (routed by the proxy) ....... FORWARD, in_role the other side, out_role X
    to multicast/broadcast .................. INPUT,   in_role the arrival side
    anything else ........................... FORWARD, in_role the arrival side,
                                                       out_role the side of the destination's --X-net
  gateway mode: every packet is FORWARD, out_role the side other than in_role, and in_role the
    side it entered by: to side X's NIC MAC (from it: the other side); else to a proxy address of
    side X (from one: the other side); else from a --X-net (to one: the other side)
  arrival side: the destination MAC is side X's NIC, else the source lies in a --X-net (longest
    prefix wins); a side that cannot be told is role none.
  Proxy addresses: --external-ip/--internal-ip, or else the policy's groups "listener" (external)
    and "proxy_internal" (internal); a compiled --table carries no groups.`;

const ROLE_OF: Record<Side, number> = { external: ABI.ROLE_EXTERNAL, internal: ABI.ROLE_INTERNAL };
const OTHER: Record<Side, Side> = { external: "internal", internal: "external" };

export function roleName(role: number): string {
  return role === ABI.ROLE_EXTERNAL ? "external" : role === ABI.ROLE_INTERNAL ? "internal" : "none";
}

export function hookName(hook: number): string {
  return hook === ABI.HOOK_INPUT ? "in" : hook === ABI.HOOK_OUTPUT ? "out" : hook === ABI.HOOK_FORWARD ? "fwd" : `hook${hook}`;
}

// ---- option values ------------------------------------------------------

export function parseAddressOption(text: string): Prefix {
  const p = parsePrefix(text.trim());
  if (!isPrefix(p)) throw new Error(p.what);
  if (p.len !== (p.family === 4 ? 32 : 128)) throw new Error(`"${text}" is a prefix; give one address (networks go in --external-net/--internal-net)`);
  return p;
}

export function parseNetOption(text: string): Prefix {
  const p = parsePrefix(text.trim());
  if (!isPrefix(p)) throw new Error(p.what);
  return p;
}

const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/i;

export function parseMacOption(text: string): string {
  const t = text.trim();
  if (!MAC_RE.test(t)) throw new Error(`"${text}" is not a MAC address (six hex bytes, e.g. 02:00:00:00:00:01)`);
  return t.toLowerCase().replace(/-/g, ":");
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}

export function describeRoles(c: RoleConfig): string[] {
  const out: string[] = [];
  for (const s of SIDES) {
    const x = c.sides[s];
    const parts: string[] = [];
    parts.push(x.ips.length ? `proxy ${x.ips.map(formatPrefix).join(", ")}` : "no proxy address");
    if (x.macs.length) parts.push(`NIC ${x.macs.join(", ")}`);
    if (x.nets.length) parts.push(`networks ${x.nets.map(formatPrefix).join(", ")}`);
    out.push(`${s}: ${parts.join("; ")}`);
  }
  return [`mode ${c.mode}; proxy addresses ${c.ipsFrom}`, ...out];
}

// ---- placing one packet --------------------------------------------------

interface Addr { family: 4 | 6; v: bigint }

function readAddr(b: Uint8Array, at: number, len: number): bigint {
  let v = 0n;
  for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(b[at + i]!);
  return v;
}

function ends(ip: Uint8Array): { src: Addr; dst: Addr } | null {
  const v = ip.length > 0 ? ip[0]! >> 4 : 0;
  if (v === 4 && ip.length >= 20) return { src: { family: 4, v: readAddr(ip, 12, 4) }, dst: { family: 4, v: readAddr(ip, 16, 4) } };
  if (v === 6 && ip.length >= 40) return { src: { family: 6, v: readAddr(ip, 8, 16) }, dst: { family: 6, v: readAddr(ip, 24, 16) } };
  return null;
}

function covers(p: Prefix, a: Addr): boolean {
  if (p.family !== a.family) return false;
  return BigInt(p.lo) <= a.v && a.v <= BigInt(p.hi);
}

export class RolePlacer {
  private readonly macSide = new Map<string, Side>();

  constructor(readonly config: RoleConfig) {
    for (const s of SIDES) for (const m of config.sides[s].macs) if (!this.macSide.has(m)) this.macSide.set(m, s);
  }

  private proxySide(a: Addr): Side | null {
    for (const s of SIDES) if (this.config.sides[s].ips.some((p) => covers(p, a))) return s;
    return null;
  }

  // The side whose network holds `a` (longest prefix wins; external on a tie).
  private netSide(a: Addr): Side | null {
    let best: Side | null = null, bestLen = -1;
    for (const s of SIDES) {
      for (const p of this.config.sides[s].nets) if (p.len > bestLen && covers(p, a)) { best = s; bestLen = p.len; }
    }
    return best;
  }

  private isGroupAddress(a: Addr): boolean {
    if (a.family === 6) return a.v >> 120n === 0xffn;
    if (a.v >> 28n === 0xen || a.v === 0xffffffffn) return true;
    // the broadcast address of a given IPv4 network
    for (const s of SIDES) {
      for (const p of this.config.sides[s].nets) if (p.family === 4 && p.len < 31 && BigInt(p.hi) === a.v) return true;
    }
    return false;
  }

  place(r: PcapRecord): Placement {
    const e = ends(r.ip);
    const srcMacSide = r.srcMac ? this.macSide.get(formatMac(r.srcMac)) ?? null : null;
    const dstMacSide = r.dstMac ? this.macSide.get(formatMac(r.dstMac)) ?? null : null;
    return this.config.mode === "host" ? this.host(e, srcMacSide, dstMacSide) : this.gateway(e, srcMacSide, dstMacSide);
  }

  private host(e: { src: Addr; dst: Addr } | null, srcMac: Side | null, dstMac: Side | null): Placement {
    const NONE = ABI.ROLE_NONE;
    if (e) {
      const to = this.proxySide(e.dst);
      if (to) return { hook: ABI.HOOK_INPUT, inRole: ROLE_OF[to], outRole: NONE, by: "address" };
      const from = this.proxySide(e.src);
      if (from) return { hook: ABI.HOOK_OUTPUT, inRole: NONE, outRole: ROLE_OF[from], by: "address" };
    }
    const group = e !== null && this.isGroupAddress(e.dst);
    if (srcMac) {
      if (group || (e !== null && e.src.v === 0n)) return { hook: ABI.HOOK_OUTPUT, inRole: NONE, outRole: ROLE_OF[srcMac], by: "mac" };
      return { hook: ABI.HOOK_FORWARD, inRole: ROLE_OF[OTHER[srcMac]], outRole: ROLE_OF[srcMac], by: "mac" };
    }
    const arrivedNet = e ? this.netSide(e.src) : null;
    const arrived = dstMac ?? arrivedNet;
    const by: Placement["by"] = dstMac ? "mac" : arrivedNet ? "network" : "unknown";
    if (group) return { hook: ABI.HOOK_INPUT, inRole: arrived ? ROLE_OF[arrived] : NONE, outRole: NONE, by: arrived ? by : "multicast" };
    const leaves = e ? this.netSide(e.dst) : null;
    return {
      hook: ABI.HOOK_FORWARD, inRole: arrived ? ROLE_OF[arrived] : NONE, outRole: leaves ? ROLE_OF[leaves] : NONE,
      by: arrived ? by : leaves ? "network" : "unknown",
    };
  }

  private gateway(e: { src: Addr; dst: Addr } | null, srcMac: Side | null, dstMac: Side | null): Placement {
    const fwd = (entered: Side, by: Placement["by"]): Placement =>
      ({ hook: ABI.HOOK_FORWARD, inRole: ROLE_OF[entered], outRole: ROLE_OF[OTHER[entered]], by });
    if (dstMac) return fwd(dstMac, "mac");
    if (srcMac) return fwd(OTHER[srcMac], "mac");
    if (e) {
      const to = this.proxySide(e.dst);
      if (to) return fwd(to, "address");
      const from = this.proxySide(e.src);
      if (from) return fwd(OTHER[from], "address");
      const srcNet = this.netSide(e.src);
      if (srcNet) return fwd(srcNet, "network");
      const dstNet = this.netSide(e.dst);
      if (dstNet) return fwd(OTHER[dstNet], "network");
    }
    return { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_NONE, by: "unknown" };
  }
}

// "in ext", "out int", "fwd ext>int", "fwd ?>?" for the per-packet line
// (hook and roles by name: in|out|fwd, external|internal|none).
export function placementText(hook: string, inRole: string, outRole: string): string {
  const short = (role: string): string => (role === "external" ? "ext" : role === "internal" ? "int" : "?");
  if (hook === "in") return `in ${short(inRole)}`;
  if (hook === "out") return `out ${short(outRole)}`;
  return `${hook} ${short(inRole)}>${short(outRole)}`;
}
