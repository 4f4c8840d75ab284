// Contender (b) of the end-to-end benchmark: the kernel's own filter doing
// what a Portcullis table does, generated from the same TableSpec the core's
// table is built from (host/rules/model.ts: the compiled policy, or the
// ClassBench filters), for iptables-legacy (and ip6tables-legacy) and for
// nftables. First match wins in both, as in the core.
//
// Stateful (the policy): the chain starts with conntrack's
//   ESTABLISHED,RELATED accept; INVALID drop
// then the table's rules in order (allow -> ACCEPT, deny -> DROP) for what
// is left (new flows), then the default action. Stateless (the ClassBench
// run): the rules and the default only, so every packet traverses them.
//
// What is equivalent: addresses (prefixes or ranges), protocols, port
// ranges, TCP flags, ICMP types and codes (`--icmp-type`/`--icmpv6-type`,
// `icmp type`/`icmpv6 type`, one kernel rule per type or type/code), and
// the interface a rule names (gateway mode: `in`
// -> the packet came in by that NIC, `out` -> it leaves by it), first
// match and the default. What is not: the kernel's conntrack (TCP window
// tracking, its own timeouts and INVALID rules) is not the core's
// connection tracking, and the core also passes neighbour discovery and
// ICMP errors by its own rules (an ICMP error the kernel's conntrack does
// not call RELATED meets every kernel rule, where in the core only rules
// with ICMP types match it); only the FORWARD hook is generated (the
// bench traffic is forwarded; the appliance's own input is not filtered
// here). A rule the two tools cannot say the same way is refused.
import * as ABI from "../../host/core/abi.js";
import { icmpTypeName } from "../../host/packets/icmp-names.js";
import { formatIPv4, formatIPv6 } from "../../host/policy/addr.js";
import { type AddrRanges, MAX_V4, MAX_V6, type Range32, type RuleSpec, type TableSpec } from "../../host/rules/model.js";

export interface Devs { external: string; internal: string }
export type Fam = "v4" | "v6";

interface Cond { fam: Fam; ipt: string[]; nft: string[] }

const PORT_PROTOS: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp", 136: "udplite", 33: "dccp" };
const FLAG_NAMES = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

function pow2(n: bigint): number | null {
  let bits = 0;
  while (n > 1n) {
    if (n & 1n) return null;
    n >>= 1n;
    bits++;
  }
  return n === 1n ? bits : null;
}

// One address range as iptables and nft words, or null for "any".
function addrMatch(fam: Fam, dir: "src" | "dst", lo: bigint, hi: bigint): { ipt: string[]; nft: string[] } | null {
  const width = fam === "v4" ? 32 : 128;
  if (lo === 0n && hi === (fam === "v4" ? BigInt(MAX_V4) : MAX_V6)) return null;
  const fmt = (v: bigint): string => (fam === "v4" ? formatIPv4(Number(v)) : formatIPv6(v));
  const nftKey = `${fam === "v4" ? "ip" : "ip6"} ${dir === "src" ? "saddr" : "daddr"}`;
  const host = pow2(hi - lo + 1n);
  if (host !== null && lo % (1n << BigInt(host)) === 0n) {
    const cidr = `${fmt(lo)}/${width - host}`;
    return { ipt: [dir === "src" ? "-s" : "-d", cidr], nft: [nftKey, cidr] };
  }
  return { ipt: ["-m", "iprange", dir === "src" ? "--src-range" : "--dst-range", `${fmt(lo)}-${fmt(hi)}`], nft: [nftKey, `${fmt(lo)}-${fmt(hi)}`] };
}

function addrList(a: AddrRanges | null, fam: Fam, dir: "src" | "dst"): Array<{ ipt: string[]; nft: string[] } | null> {
  if (a === null) return [null];
  const list = fam === "v4" ? a.v4.map(([l, h]) => [BigInt(l), BigInt(h)] as const) : a.v6;
  return list.map(([l, h]) => addrMatch(fam, dir, l, h));
}

const fullPorts = (r: Range32[] | null): boolean => r === null || r.some(([l, h]) => l === 0 && h === 65535);
const portText = ([l, h]: Range32, sep: string): string => (l === h ? String(l) : `${l}${sep}${h}`);

// A rule's ICMP ranges (type << 8 | code) as types and type/code pairs.
export function icmpEntries(r: Range32[]): Array<{ type: number; code: number | null }> {
  const out: Array<{ type: number; code: number | null }> = [];
  for (const [lo, hi] of r) {
    for (let v = lo; v <= hi;) {
      if ((v & 0xff) === 0 && (v | 0xff) <= hi) { out.push({ type: v >> 8, code: null }); v += 0x100; }
      else { out.push({ type: v >> 8, code: v & 0xff }); v++; }
    }
  }
  return out;
}

// One ICMP type (and code) of family fam as iptables and nft words.
function icmpMatch(fam: Fam, e: { type: number; code: number | null }): { ipt: string[]; nft: string[] } {
  const f = fam === "v4" ? 4 : 6;
  const num = e.code === null ? String(e.type) : `${e.type}/${e.code}`;
  const key = fam === "v4" ? "icmp" : "icmpv6";
  const nft = [`${key} type`, icmpTypeName(f, e.type) ?? String(e.type), ...(e.code === null ? [] : [`${key} code`, String(e.code)])];
  return { ipt: fam === "v4" ? ["-m", "icmp", "--icmp-type", num] : ["-m", "icmp6", "--icmpv6-type", num], nft };
}

// The interface match of a rule's contexts (gateway mode: FORWARD only).
function ifaceMatch(ctx: number[] | null, devs: Devs, info: string): { ipt: string[]; nft: string[] } | null {
  if (ctx === null) return null;
  const dev = (role: number): string => (role === ABI.ROLE_EXTERNAL ? devs.external : devs.internal);
  const roles = [ABI.ROLE_NONE, ABI.ROLE_EXTERNAL, ABI.ROLE_INTERNAL];
  const all = roles.flatMap((i) => roles.map((o) => ABI.HOOK_FORWARD | (i << 3) | (o << 5)));
  const set = new Set(ctx);
  if (ctx.some((c) => (c & 7) !== ABI.HOOK_FORWARD)) throw new Error(`${info}: a rule outside FORWARD (host mode?): the bench generates gateway mode only`);
  if (all.every((c) => set.has(c)) && set.size === all.length) return null;
  for (const r of [ABI.ROLE_EXTERNAL, ABI.ROLE_INTERNAL]) {
    const inR = roles.map((o) => ABI.HOOK_FORWARD | (r << 3) | (o << 5));
    const outR = roles.map((i) => ABI.HOOK_FORWARD | (i << 3) | (r << 5));
    if (set.size === 3 && inR.every((c) => set.has(c))) return { ipt: ["-i", dev(r)], nft: ["iifname", `"${dev(r)}"`] };
    if (set.size === 3 && outR.every((c) => set.has(c))) return { ipt: ["-o", dev(r)], nft: ["oifname", `"${dev(r)}"`] };
  }
  throw new Error(`${info}: its interface contexts ${ctx.join(",")} have no single -i/-o equivalent`);
}

function families(r: RuleSpec): Fam[] {
  const has = (a: AddrRanges | null, f: Fam): boolean => a === null || a[f].length > 0;
  return (["v4", "v6"] as const).filter((f) => has(r.src, f) && has(r.dst, f));
}

// Every (family, match) combination of one rule, with its verdict appended.
function ruleConds(r: RuleSpec, devs: Devs): Cond[] {
  const out: Cond[] = [];
  const iface = ifaceMatch(r.ctx, devs, r.info);
  const ports = !fullPorts(r.sport) || !fullPorts(r.dport);
  if ((ports || r.tcpFlags) && r.protos === null) throw new Error(`${r.info}: ports or TCP flags without a protocol cannot be said in iptables`);
  for (const fam of families(r)) {
    for (const s of addrList(r.src, fam, "src")) {
      for (const d of addrList(r.dst, fam, "dst")) {
        for (const p of r.protos ?? [null]) {
          const name = p === null ? null : PORT_PROTOS[p] ?? null;
          if ((ports || r.tcpFlags) && name === null) throw new Error(`${r.info}: ports on protocol ${p}, which has none`);
          if (r.tcpFlags && p !== 6) throw new Error(`${r.info}: TCP flags on protocol ${p}`);
          const icmp = r.icmp ?? null;
          if (icmp !== null && p !== (fam === "v4" ? 1 : 58)) throw new Error(`${r.info}: ICMP types on protocol ${p} (IPv${fam === "v4" ? 4 : 6})`);
          // ICMP types (never with ports: the policy refuses that) or the port ranges.
          const ics = icmp === null ? [null] : icmpEntries(icmp).map((e) => icmpMatch(fam, e));
          for (const ic of ics) {
            for (const sp of fullPorts(r.sport) ? [null] : r.sport!) {
              for (const dp of fullPorts(r.dport) ? [null] : r.dport!) {
                const ipt = [...(iface?.ipt ?? []), ...(s?.ipt ?? []), ...(d?.ipt ?? [])];
                const nft = [...(iface?.nft ?? []), ...(s?.nft ?? []), ...(d?.nft ?? [])];
                if (p !== null) ipt.push("-p", name ?? String(p));
                if (p !== null && !ports && !r.tcpFlags && !ic) nft.push("meta l4proto", name ?? String(p));
                if (ic) { ipt.push(...ic.ipt); nft.push(...ic.nft); }
                if (sp) { ipt.push("--sport", portText(sp, ":")); nft.push(`${name} sport`, portText(sp, "-")); }
                if (dp) { ipt.push("--dport", portText(dp, ":")); nft.push(`${name} dport`, portText(dp, "-")); }
                if (r.tcpFlags) {
                  const names = (v: number): string => FLAG_NAMES.filter((_, i) => v & (1 << i)).join(",") || "NONE";
                  ipt.push("--tcp-flags", names(r.tcpFlags.mask), names(r.tcpFlags.value));
                  nft.push(`tcp flags & 0x${r.tcpFlags.mask.toString(16)} == 0x${r.tcpFlags.value.toString(16)}`);
                }
                out.push({ fam, ipt, nft });
              }
            }
          }
        }
      }
    }
  }
  return out;
}

export interface KernelRules {
  v4: string[]; // iptables-legacy rule arguments after "-A CHAIN"
  v6: string[];
  nft: string[]; // nft rule statements (one family-neutral list for an inet table, or ip)
  rules: number; // table rules translated
}

// The table as kernel rules (see the top of this file).
export function kernelRules(spec: TableSpec, o: { stateful: boolean; devs: Devs }): KernelRules {
  const out: KernelRules = { v4: [], v6: [], nft: [], rules: spec.rules.length };
  if (o.stateful) {
    for (const f of ["v4", "v6"] as const) out[f].push("-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-m conntrack --ctstate INVALID -j DROP");
    out.nft.push("ct state established,related counter accept", "ct state invalid counter drop");
  }
  for (const r of spec.rules) {
    const verdict = r.action === "allow" ? "ACCEPT" : "DROP";
    for (const c of ruleConds(r, o.devs)) {
      out[c.fam].push(`${c.ipt.join(" ")} -j ${verdict}`.trimStart());
      out.nft.push(`${c.nft.join(" ")} counter ${verdict.toLowerCase()}`.trimStart());
    }
  }
  const def = spec.defaultAction === "allow" ? "ACCEPT" : "DROP";
  for (const f of ["v4", "v6"] as const) out[f].push(`-j ${def}`);
  out.nft.push(`counter ${def.toLowerCase()}`);
  return out;
}

// iptables-legacy-restore --noflush input: the chain declared (created or
// emptied) and filled; nothing jumps to it yet.
export function iptablesRestoreText(chain: string, rules: string[]): string {
  return `*filter\n:${chain} - [0:0]\n${rules.map((r) => `-A ${chain} ${r}`).join("\n")}\nCOMMIT\n`;
}

// nft -f input: table FAMILY NAME with the rules in a regular chain `rules`
// and an empty base chain `pcbhook` on the forward hook; activate() adds the
// jump. Loading it again replaces the table.
export function nftTableText(family: "inet" | "ip", table: string, rules: string[]): string {
  return [
    `table ${family} ${table}`, `delete table ${family} ${table}`, `table ${family} ${table} {`,
    "\tchain rules {", ...rules.map((r) => `\t\t${r}`), "\t}",
    "\tchain pcbhook {", "\t\ttype filter hook forward priority filter; policy accept;", "\t}",
    "}", "",
  ].join("\n");
}
