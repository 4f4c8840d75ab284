// Mirror of assembly/rules/format.ts (the box diagrams are there).
// test/table.test.ts checks these against tables the core accepts and refuses.

export const TABLE_MAGIC = 0x544c4350;
export const TABLE_VERSION = 3; // 2: the icmp field; 3: rule extensions and lists; older tables are refused (recompile)
export const HDR_SIZE = 144;

export const T_MAGIC = 0;
export const T_VERSION = 4;
export const T_HDR_SIZE = 6;
export const T_TOTAL_LEN = 8;
export const T_CRC = 12;
export const T_NRULES = 16;
export const T_WORDS = 20;
export const T_AGGS = 24;
export const T_DEFAULT = 28;
export const T_FLAGS = 29;
export const T_OFFLOAD_AFTER = 30; // u16
export const T_NBITMAPS = 32;
export const T_BITMAPS_OFF = 36;
export const T_RULES_OFF = 40;
export const T_INFO_OFF = 44;
export const T_INFO_LEN = 48;
export const T_SERIAL = 52;
export const T_CTX_OFF = 56;
export const T_PROTO_OFF = 60;
export const T_TCPFLAGS_OFF = 64;
export const T_SPORT_OFF = 68;
export const T_DPORT_OFF = 72;
export const T_ICMP_OFF = 76;
export const T_IFIELDS = 80;
export const T_EXT_OFF = 128;
export const T_NEXT = 132;
export const T_LISTS_OFF = 136;
export const T_NLISTS = 140;
export const IFIELD_SIZE = 12;
export const IF_COUNT = 0;
export const IF_BOUNDS_OFF = 4;
export const IF_IDS_OFF = 8;

export const R_ACTION = 0;
export const R_FLAGS = 1;
export const R_INFO_OFF = 4;
export const R_INFO_LEN = 8;
export const R_LINE = 12;
export const R_EXT = 2;
export const RULE_SIZE = 16;

export const X_KEY = 0;
export const X_RATE = 4;
export const X_PERIOD = 8;
export const X_BURST = 16;
export const X_FLOWS = 20;
export const X_BLOCK_NS = 24;
export const X_PFX4 = 32;
export const X_PFX6 = 33;
export const X_FLAGS = 34;
export const X_FROM_LIST = 36;
export const X_OVERLOAD = 38;
export const EXT_SIZE = 48;
export const XF_LIMIT = 1;
export const XF_FLUSH = 2;
export const XF_FROM_LIST = 4;
export const XF_NOT = 8;
export const LIST_NONE = 0xffff;
export const L_NAME_OFF = 8;
export const L_NAME_LEN = 12;
export const LIST_SIZE = 16;
export const MAX_BURST = 1_000_000;
export const MAX_PERIOD_NS = 86400n * 1_000_000_000n;

export const ACTION_DENY = 0;
export const ACTION_ALLOW = 1;
export const RF_LOG = 1;
export const RF_OFFLOAD = 2;

export const CTX_SIZE = 256;
// ctx bit 7: an ICMP error no tracked flow owns, which meets only rules that name ICMP types.
export const CTX_ERROR = 0x80;
export const PORT_SIZE = 65536; // also the icmp field's entries (type << 8 | code)
export const RULE_COUNTER_SIZE = 24;

export const HEADER_SIZE = 16;

// The interface context the core computes per packet.
export function ctxValue(hook: number, inRole: number, outRole: number): number {
  return hook | (inRole << 3) | (outRole << 5);
}
