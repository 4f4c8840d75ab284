// What the table builder takes: rules reduced to the values each field may
// have. The policy compiler and the ClassBench reader both produce this.

// Inclusive ranges. IPv4 addresses and ports as numbers, IPv6 as bigints.
export type Range32 = readonly [number, number];
export type Range128 = readonly [bigint, bigint];

// The addresses a rule's source or destination matches, per family. An empty
// list means the rule does not apply to that family at all.
export interface AddrRanges {
  v4: Range32[];
  v6: Range128[];
}

export const MAX_V4 = 0xffffffff;
export const MAX_V6 = (1n << 128n) - 1n;

export interface RuleSpec {
  action: "allow" | "deny";
  log: boolean;
  offload?: boolean; //           its established TCP flows may be offloaded to the kernel (RF_OFFLOAD)
  ctx: number[] | null; //        interface contexts (ctxValue) it applies to; null: all
  src: AddrRanges | null; //      null: any address of either family
  dst: AddrRanges | null;
  protos: number[] | null; //     IP protocol numbers; null: any
  sport: Range32[] | null; //     null: any (including packets without ports)
  dport: Range32[] | null;
  tcpFlags: { value: number; mask: number } | null;
  // ICMP or ICMPv6 type << 8 | code, inclusive ranges; null: any (and then
  // the rule never matches an ICMP error that no tracked flow owns).
  icmp?: Range32[] | null;
  line: number; //                source line, 0 when none
  info: string; //                for people: where it came from and what it says
  ext?: RuleExt | null; //        a per-source limit and/or a block-list condition
}

// A rule's per-source limit and block-list condition (assembly/rules/format.ts,
// the rule extension). Lists are indices into TableSpec.lists.
export interface RuleExt {
  key: number; //                 u32 naming the rule's sources across reloads
  limit: {
    rate: number; //              new flows per periodNs per source; 0: none
    periodNs: bigint;
    burst: number;
    flows: number; //             live flows per source; 0: none
    prefix4: number;
    prefix6: number;
    overload: number | null; //   list index, or none
    blockNs: bigint; //           0n: until removed
    flush: boolean;
  } | null;
  fromList: { list: number; not: boolean } | null;
}

export interface TableSpec {
  rules: RuleSpec[];
  defaultAction: "allow" | "deny";
  serial?: number;
  offloadAfter?: number; // packets before an offloading rule's flow goes to the kernel (T_OFFLOAD_AFTER; default 10)
  lists?: string[]; //            block-list names, in index order (the table keeps their keys)
}
