// ICMP and ICMPv6 type and code names, as nftables spells them (`nft
// describe icmp type`, `icmpv6 type`, `icmp code`, `icmpv6 code`), with a
// few iptables spellings of codes accepted as well. The one table the policy
// language, check, explain, replay/describe and the kernel contender use.

export type IcmpFamily = 4 | 6;

// type -> names, the first the one printed.
const TYPES4: Record<number, string[]> = {
  0: ["echo-reply"], 3: ["destination-unreachable"], 4: ["source-quench"], 5: ["redirect"],
  8: ["echo-request"], 9: ["router-advertisement"], 10: ["router-solicitation"], 11: ["time-exceeded"],
  12: ["parameter-problem"], 13: ["timestamp-request"], 14: ["timestamp-reply"], 15: ["info-request"],
  16: ["info-reply"], 17: ["address-mask-request"], 18: ["address-mask-reply"],
};
const TYPES6: Record<number, string[]> = {
  1: ["destination-unreachable"], 2: ["packet-too-big"], 3: ["time-exceeded"], 4: ["parameter-problem"],
  128: ["echo-request"], 129: ["echo-reply"], 130: ["mld-listener-query"], 131: ["mld-listener-report"],
  132: ["mld-listener-done", "mld-listener-reduction"], 133: ["nd-router-solicit"], 134: ["nd-router-advert"],
  135: ["nd-neighbor-solicit"], 136: ["nd-neighbor-advert"], 137: ["nd-redirect"], 138: ["router-renumbering"],
  141: ["ind-neighbor-solicit"], 142: ["ind-neighbor-advert"], 143: ["mld2-listener-report"],
};

// type -> code -> names (nftables' first, then iptables').
const CODES4: Record<number, Record<number, string[]>> = {
  3: {
    0: ["net-unreachable", "network-unreachable"], 1: ["host-unreachable"], 2: ["prot-unreachable", "protocol-unreachable"],
    3: ["port-unreachable"], 4: ["frag-needed", "fragmentation-needed"], 5: ["source-route-failed"],
    6: ["network-unknown"], 7: ["host-unknown"], 9: ["net-prohibited", "network-prohibited"], 10: ["host-prohibited"],
    13: ["admin-prohibited", "communication-prohibited"], 14: ["host-precedence-violation"], 15: ["precedence-cutoff"],
  },
  5: { 0: ["network-redirect"], 1: ["host-redirect"], 2: ["tos-network-redirect"], 3: ["tos-host-redirect"] },
  11: { 0: ["ttl-zero-during-transit"], 1: ["ttl-zero-during-reassembly"] },
  12: { 0: ["ip-header-bad"], 1: ["required-option-missing"] },
};
const CODES6: Record<number, Record<number, string[]>> = {
  1: {
    0: ["no-route"], 1: ["admin-prohibited", "communication-prohibited"], 2: ["beyond-scope"],
    3: ["addr-unreachable", "address-unreachable"], 4: ["port-unreachable"], 5: ["policy-fail", "failed-policy"],
    6: ["reject-route"],
  },
  3: { 0: ["ttl-zero-during-transit"], 1: ["ttl-zero-during-reassembly"] },
  4: { 0: ["bad-header"], 1: ["unknown-header-type"], 2: ["unknown-option"] },
};

const types = (f: IcmpFamily): Record<number, string[]> => (f === 4 ? TYPES4 : TYPES6);
const codes = (f: IcmpFamily, type: number): Record<number, string[]> => (f === 4 ? CODES4 : CODES6)[type] ?? {};

function byName(table: Record<number, string[]>): Map<string, number> {
  const m = new Map<string, number>();
  for (const [n, names] of Object.entries(table)) for (const name of names) m.set(name, Number(n));
  return m;
}

export function icmpTypeNames(f: IcmpFamily): string[] { return [...byName(types(f)).keys()]; }
export function icmpTypeByName(f: IcmpFamily, name: string): number | undefined { return byName(types(f)).get(name); }
export function icmpCodeNames(f: IcmpFamily, type: number): string[] { return [...byName(codes(f, type)).keys()]; }
export function icmpCodeByName(f: IcmpFamily, type: number, name: string): number | undefined { return byName(codes(f, type)).get(name); }

// Every code name of a family, whatever its type (to tell "the other
// family's code" from "no such code").
export function anyIcmpCodeName(f: IcmpFamily, name: string): boolean {
  return Object.values(f === 4 ? CODES4 : CODES6).some((c) => byName(c).has(name));
}

export function icmpTypeName(f: IcmpFamily, type: number): string | undefined { return types(f)[type]?.[0]; }
export function icmpCodeName(f: IcmpFamily, type: number, code: number): string | undefined { return codes(f, type)[code]?.[0]; }

// "echo-request", "destination-unreachable/port-unreachable", "3/99", "200".
export function icmpText(f: IcmpFamily, type: number, code: number | null): string {
  const t = icmpTypeName(f, type) ?? String(type);
  if (code === null) return t;
  return `${t}/${icmpCodeName(f, type, code) ?? String(code)}`;
}

// Error messages (they quote the packet they are about), as the core's decoder tells them.
export function isIcmpError(f: IcmpFamily, type: number): boolean {
  return f === 6 ? type < 128 : type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

export interface IcmpValue { type: number; code: number | null }
export interface IcmpProblem { code: string; part: "type" | "code"; what: string }

// A type (name or number) and optional code (name or number) of family f,
// or what is wrong with them. The policy parser and explain's --icmp-type
// read entries through this.
export function resolveIcmp(f: IcmpFamily, type: unknown, code: unknown, suggest: (w: string, c: string[]) => string): IcmpValue | IcmpProblem {
  const fam = f === 4 ? "icmp" : "icmpv6", other: IcmpFamily = f === 4 ? 6 : 4, otherName = f === 4 ? "ICMPv6" : "ICMP (IPv4)";
  const num = (v: unknown): unknown => (typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : typeof v === "string" ? v.trim() : v);
  const t0 = num(type), c0 = num(code);
  let t: number;
  if (typeof t0 === "number") {
    if (!Number.isInteger(t0) || t0 < 0 || t0 > 255) return { code: "bad_icmp_type", part: "type", what: `ICMP type ${t0} is not 0 to 255` };
    t = t0;
  } else if (typeof t0 === "string") {
    const v = icmpTypeByName(f, t0);
    if (v === undefined) {
      if (icmpTypeByName(other, t0) !== undefined) return { code: "icmp_other_family", part: "type", what: `"${t0}" is an ${otherName} type, not an ${fam} one` };
      return { code: "unknown_icmp_type", part: "type", what: `unknown ${fam} type "${t0}"${suggest(t0, icmpTypeNames(f))}; write a name as nftables spells it or a number 0-255` };
    }
    t = v;
  } else {
    return { code: "bad_icmp_type", part: "type", what: "an ICMP type is a name or a number 0-255" };
  }
  if (c0 === null || c0 === undefined) return { type: t, code: null };
  if (typeof c0 === "number") {
    if (!Number.isInteger(c0) || c0 < 0 || c0 > 255) return { code: "bad_icmp_code", part: "code", what: `ICMP code ${c0} is not 0 to 255` };
    return { type: t, code: c0 };
  }
  if (typeof c0 !== "string") return { code: "bad_icmp_code", part: "code", what: "an ICMP code is a name or a number 0-255" };
  const v = icmpCodeByName(f, t, c0);
  if (v !== undefined) return { type: t, code: v };
  if (anyIcmpCodeName(other, c0) && !anyIcmpCodeName(f, c0)) return { code: "icmp_other_family", part: "code", what: `"${c0}" is an ${otherName} code, not an ${fam} one` };
  const known = icmpCodeNames(f, t);
  return {
    code: "unknown_icmp_code", part: "code",
    what: `unknown code "${c0}" of ${fam} type ${icmpText(f, t, null)}${suggest(c0, known)}; ` +
      (known.length ? `its codes are ${known.join(", ")} or a number 0-255` : "it has no named codes: write a number 0-255"),
  };
}

// "TYPE" or "TYPE/CODE" as text.
export function splitIcmpText(s: string): { type: string; code: string | null; codeAt: number } {
  const i = s.indexOf("/");
  return i < 0 ? { type: s, code: null, codeAt: -1 } : { type: s.slice(0, i), code: s.slice(i + 1), codeAt: i + 1 };
}
