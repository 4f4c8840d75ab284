// Reads a compiled rule table on the host, for tools (explain, logs, stats):
// rule records and their info text, and for a given flow key the bitmap each
// field selects, so a tool can say which fields let each rule match or not.
// It reads the same bytes the core runs on; the core validates them first
// (loadTableView), and the view checks every offset it follows before
// reading, so a corrupt table is a one-line TableError, never a RangeError.
import { type Core, TableError } from "../core/core.js";
import * as F from "./format.js";

// The core's complete check of a table (bounds, checksum, version, counts,
// bitmap ids...), by staging and committing it in `core`, then the host's
// view of it. A refused table is a TableError ("rule table refused: ...").
export function loadTableView(core: Core, bytes: Uint8Array): TableView {
  core.loadTable(bytes);
  return new TableView(bytes);
}

export const FIELDS = ["interface", "proto", "tcp_flags", "sport", "dport", "icmp_type", "src", "dst"] as const;
export type FieldName = (typeof FIELDS)[number];

export interface TableRule { index: number; action: "allow" | "deny"; log: boolean; offload: boolean; line: number; info: string }

export interface FlowKey {
  ctx: number;
  family: 4 | 6;
  src: bigint; // address as an integer (IPv4 in the low 32 bits)
  dst: bigint;
  proto: number;
  sport: number;
  dport: number;
  tcpFlags: number;
  icmp: number; // type << 8 | code, 0 for other protocols
}

export class TableView {
  readonly view: DataView;
  readonly nrules: number;
  readonly words: number;
  readonly aggs: number;
  readonly defaultAction: "allow" | "deny";
  readonly offloadAfter: number; // packets before an offloading rule's flow goes to the kernel
  readonly rules: TableRule[];
  readonly lists: Array<{ name: string; key: number }>; // block lists by index (assembly/limits/blocklist.ts)
  readonly ruleKeys: Array<number | null>; //              per rule: its source-table key when it has a limit
  readonly ruleLists: Array<{ list: string; not: boolean } | null>; // per rule: its block-list condition (from:)

  constructor(readonly bytes: Uint8Array) {
    const refuse = (what: string, at: number): never => {
      throw new TableError("bad_layout", `rule table refused: ${what} (at byte ${at})`, at);
    };
    if (bytes.length < F.HDR_SIZE || new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true) !== F.TABLE_MAGIC) {
      throw new TableError("bad_magic", `rule table refused: bad magic (${bytes.length < F.HDR_SIZE ? `${bytes.length} bytes, shorter than the header` : "not a Portcullis rule table"})`, 0);
    }
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const len = bytes.length;
    // Every section the view reads lies inside the bytes.
    const span = (field: number, size: number, what: string): number => {
      const off = this.u32(field);
      if (!Number.isSafeInteger(off + size) || off + size > len) refuse(`${what} runs past the end of the table`, field);
      return off;
    };
    this.nrules = this.u32(F.T_NRULES);
    this.words = this.u32(F.T_WORDS);
    this.aggs = this.u32(F.T_AGGS);
    if (this.nrules > len / F.RULE_SIZE) refuse(`${this.nrules} rules cannot fit in ${len} bytes`, F.T_NRULES);
    if (this.words !== Math.max(1, Math.ceil(this.nrules / 64)) || this.aggs !== Math.ceil(this.words / 64)) refuse("bad counts", F.T_WORDS);
    this.defaultAction = bytes[F.T_DEFAULT] === F.ACTION_ALLOW ? "allow" : "deny";
    this.offloadAfter = Math.max(1, bytes[F.T_OFFLOAD_AFTER]! | (bytes[F.T_OFFLOAD_AFTER + 1]! << 8));
    const rulesOff = span(F.T_RULES_OFF, this.nrules * F.RULE_SIZE, "the rules section");
    const infoLen = this.u32(F.T_INFO_LEN);
    const infoOff = span(F.T_INFO_OFF, infoLen, "the rule text section");
    span(F.T_BITMAPS_OFF, this.u32(F.T_NBITMAPS) * (this.aggs + this.words) * 8, "the bitmaps");
    for (const [f, n] of [[F.T_CTX_OFF, F.CTX_SIZE], [F.T_PROTO_OFF, 256], [F.T_TCPFLAGS_OFF, 256], [F.T_SPORT_OFF, F.PORT_SIZE], [F.T_DPORT_OFF, F.PORT_SIZE]] as const) {
      span(f, n * 4, "a field's lookup table");
    }
    for (let k = 0; k < 4; k++) {
      const h = F.T_IFIELDS + k * F.IFIELD_SIZE;
      const n = this.u32(h + F.IF_COUNT);
      if (n === 0) refuse("an address field has no intervals", h);
      span(h + F.IF_BOUNDS_OFF, n * (k >= 2 ? 16 : 4), "an address field's bounds");
      span(h + F.IF_IDS_OFF, n * 4, "an address field's bitmap ids");
    }
    const dec = new TextDecoder();
    this.rules = Array.from({ length: this.nrules }, (_, i) => {
      const at = rulesOff + i * F.RULE_SIZE;
      const io = this.u32(at + F.R_INFO_OFF), il = this.u32(at + F.R_INFO_LEN);
      if (io + il > infoLen) refuse(`rule ${i}'s text runs past the rule text section`, at + F.R_INFO_OFF);
      return {
        index: i,
        action: bytes[at + F.R_ACTION] === F.ACTION_ALLOW ? "allow" : "deny",
        log: (bytes[at + F.R_FLAGS]! & F.RF_LOG) !== 0,
        offload: (bytes[at + F.R_FLAGS]! & F.RF_OFFLOAD) !== 0,
        line: this.u32(at + F.R_LINE),
        info: dec.decode(bytes.subarray(infoOff + io, infoOff + io + il)),
      } as TableRule;
    });
    const next = this.u32(F.T_NEXT);
    const extOff = span(F.T_EXT_OFF, next * F.EXT_SIZE, "the rule extensions");
    const extAt = (r: number): number | null => {
      const x = this.view.getUint16(rulesOff + r * F.RULE_SIZE + F.R_EXT, true);
      return x === 0 || x > next ? null : extOff + (x - 1) * F.EXT_SIZE;
    };
    this.ruleKeys = this.rules.map((r) => {
      const x = this.view.getUint16(rulesOff + r.index * F.RULE_SIZE + F.R_EXT, true);
      if (x === 0 || x > next) return null;
      const at = extOff + (x - 1) * F.EXT_SIZE;
      return (bytes[at + F.X_FLAGS]! & F.XF_LIMIT) ? this.u32(at + F.X_KEY) : null;
    });
    const nlists = this.u32(F.T_NLISTS);
    const listsOff = span(F.T_LISTS_OFF, nlists * F.LIST_SIZE, "the lists section");
    this.lists = Array.from({ length: nlists }, (_, i) => {
      const at = listsOff + i * F.LIST_SIZE;
      const no = this.u32(at + F.L_NAME_OFF), nl = this.u32(at + F.L_NAME_LEN);
      if (no + nl > infoLen) refuse(`list ${i}'s name runs past the rule text section`, at + F.L_NAME_OFF);
      return { key: this.u32(at), name: dec.decode(bytes.subarray(infoOff + no, infoOff + no + nl)) };
    });
    this.ruleLists = this.rules.map((r) => {
      const at = extAt(r.index);
      if (at === null || !(bytes[at + F.X_FLAGS]! & F.XF_FROM_LIST)) return null;
      const l = this.lists[this.view.getUint16(at + F.X_FROM_LIST, true)];
      return { list: l?.name ?? "?", not: (bytes[at + F.X_FLAGS]! & F.XF_NOT) !== 0 };
    });
  }

  private u32(at: number): number { return this.view.getUint32(at, true); }

  private direct(field: number, v: number): number { return this.u32(this.u32(field) + 4 * v); }

  private interval(k: number, key: bigint): number {
    const h = F.T_IFIELDS + k * F.IFIELD_SIZE;
    const n = this.u32(h + F.IF_COUNT), bounds = this.u32(h + F.IF_BOUNDS_OFF), ids = this.u32(h + F.IF_IDS_OFF);
    const wide = k >= 2;
    const bound = (i: number): bigint => wide
      ? (this.view.getBigUint64(bounds + 16 * i, true) << 64n) | this.view.getBigUint64(bounds + 16 * i + 8, true)
      : BigInt(this.u32(bounds + 4 * i));
    let lo = 0, hi = n;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (bound(mid) <= key) lo = mid; else hi = mid;
    }
    return this.u32(ids + 4 * lo);
  }

  // The bitmap id each field selects for this key, as the core would.
  bitmaps(k: FlowKey): Record<FieldName, number> {
    const six = k.family === 6 ? 2 : 0;
    return {
      interface: this.direct(F.T_CTX_OFF, k.ctx),
      proto: this.direct(F.T_PROTO_OFF, k.proto),
      tcp_flags: this.direct(F.T_TCPFLAGS_OFF, k.tcpFlags),
      sport: this.direct(F.T_SPORT_OFF, k.sport),
      dport: this.direct(F.T_DPORT_OFF, k.dport),
      icmp_type: this.direct(F.T_ICMP_OFF, k.icmp),
      src: this.interval(six, k.src),
      dst: this.interval(six + 1, k.dst),
    };
  }

  hasRule(bitmap: number, rule: number): boolean {
    if (bitmap >= this.u32(F.T_NBITMAPS) || rule >= this.nrules) {
      throw new TableError("bad_bitmap_id", `rule table refused: bitmap ${bitmap} or rule ${rule} out of range`, 0);
    }
    const at = this.u32(F.T_BITMAPS_OFF) + bitmap * (this.aggs + this.words) * 8 + this.aggs * 8 + (rule >>> 5) * 4;
    return ((this.u32(at) >>> (rule & 31)) & 1) === 1;
  }

  // For each rule in order until the first match: the fields that exclude it.
  // A rule that matches only sources on a block list (`from: NAME`) is
  // passed over here as if its lists were empty (their entries are the
  // core's state, not the table's): "from_list" in its failed fields.
  explain(k: FlowKey): { match: number; steps: Array<{ rule: TableRule; failed: Array<FieldName | "from_list"> }> } {
    const b = this.bitmaps(k);
    const steps: Array<{ rule: TableRule; failed: Array<FieldName | "from_list"> }> = [];
    for (const rule of this.rules) {
      const failed: Array<FieldName | "from_list"> = FIELDS.filter((f) => !this.hasRule(b[f], rule.index));
      const cond = this.ruleLists[rule.index];
      if (cond && !cond.not) failed.push("from_list");
      steps.push({ rule, failed });
      if (failed.length === 0) return { match: rule.index, steps };
    }
    return { match: -1, steps };
  }
}
