// The compiled rule table: a versioned, checksummed binary the host compiles
// from a policy (host/rules/build.ts) and the core validates completely
// (rules/validate.ts) before it may be committed. Mirrored in
// host/rules/format.ts and checked by test/table.test.ts.
//
// Why this structure: range-decomposed bit vectors, aggregated (Lakshman &
// Stiliadis' BV with Baboescu & Varghese's ABV summary words), with every
// field's intervals pointing at deduplicated bitmaps.
//  - First match is "the lowest set bit of the AND of one bitmap per field":
//    one lookup per field (a direct index for the 8- and 16-bit fields, a
//    binary search over interval bounds for addresses) and an AND that the
//    summary words make touch only the 64-rule words that can match. The
//    cost grows with log(intervals) and rules/4096, not with rules.
//  - Groups, port lists and address sets are disjunctions inside one field;
//    a bit vector takes them as they are. Decision trees (HiCuts/HyperSplit)
//    replicate such rules across leaves, which is why HyperSplit needs about
//    1 GB for fw1_10K; tuple space search needs one hash per prefix-length
//    pair and does ranges badly.
//  - Memory is bounded by (distinct bitmaps) x (rules/64) words: equal
//    bitmaps are stored once, so a 100,000-prefix address set adds 200,000
//    interval bounds but only a handful of bitmaps.
//  - Address sets are decided by longest-prefix match when the host flattens
//    them into intervals (an exception "!prefix" inside a wider prefix wins).
//
// All integers little-endian; every section 8-byte aligned; offsets are from
// the start of the table.
//
// Header (HDR_SIZE = 128 bytes)
//   0               4       6       8               12              16
//   ┌───────────────┬───────┬───────┬───────────────┬───────────────┐
//   │ magic "PCLT"  │version│hdr_sz │ total_len     │ crc32 [16,len)│
//   ├───────────────┼───────┴───────┼───────────────┼───┬───┬───────┤
//   │ nrules        │ words (W)     │ aggs (A)      │dfl│flg│offl_af│ 16..32
//   ├───────────────┼───────────────┼───────────────┼───┴───┴───────┤
//   │ nbitmaps      │ bitmaps_off   │ rules_off     │ info_off      │ 32..48
//   ├───────────────┼───────────────┼───────────────┼───────────────┤
//   │ info_len      │ serial        │ ctx_off       │ proto_off     │ 48..64
//   ├───────────────┼───────────────┼───────────────┼───────────────┤
//   │ tcpflags_off  │ sport_off     │ dport_off     │ icmp_off      │ 64..80
//   ├───────────────┴───────────────┴───────────────┴───────────────┤
//   │ 4 interval fields (src4, dst4, src6, dst6), 12 bytes each:     │ 80..128
//   │   count u32 │ bounds_off u32 │ ids_off u32                     │
//   ├───────────────┬───────────────┬───────────────┬───────────────┤
//   │ ext_off       │ next (X)      │ lists_off     │ nlists (L)    │ 128..144
//   └───────────────┴───────────────┴───────────────┴───────────────┘
//
//   W = ceil(nrules / 64) (at least 1), A = ceil(W / 64): each bitmap is A
//   summary words then W rule words, all u64; bit r of word w is rule
//   64w + r; bit w of summary word a is set iff rule word 64a + w is nonzero.
//   dfl: the default action when no rule matches (ACTION_*).
//   offl_af (u16): packets a flow of a rule with RF_OFFLOAD passes through
//   the core before it is offloaded (at least 1 is used).
//
// Direct fields: u32 bitmap ids indexed by the packet's value.
//   ctx       256 entries, by ctx = hook | in_role << 3 | out_role << 5,
//             plus CTX_ERROR (bit 7) for an ICMP error that no tracked flow
//             owns: only rules that name ICMP types have bits at 128..255,
//             so an unrelated error meets only the rules that name its type
//   proto     256 entries, by IP protocol (next header)
//   tcpflags  256 entries, by the TCP flag byte (0 for other protocols)
//   sport     65536 entries, by source port (0 without ports)
//   dport     65536 entries, by destination port (0 without ports)
//   icmp      65536 entries, by ICMP/ICMPv6 type << 8 | code (0 for other
//             protocols); a rule's type without a code is the interval
//             [type << 8, type << 8 | 0xff]
//
// Interval fields: `count` intervals; bounds are their lower ends, strictly
// ascending, the first 0; the value v falls in the last interval whose bound
// is <= v. IPv4 bounds are u32; IPv6 bounds are 16 bytes: the address's high
// 64 bits then its low 64 bits, each as a little-endian u64. ids: count u32.
//
// Rule record (RULE_SIZE = 16 bytes), nrules of them, in priority order:
//   0       1       2               4               8               12      16
//   ┌───────┬───────┬───────────────┬───────────────┬───────────────┬───────┐
//   │action │ flags │ reserved      │ info_off      │ info_len      │ line  │
//   └───────┴───────┴───────────────┴───────────────┴───────────────┴───────┘
//   action ACTION_*; flags RF_LOG, RF_OFFLOAD; info: UTF-8 text in the info section for
//   tools (explain, logs) that the core only bounds-checks; line: the
//   policy's source line. reserved (offset 2, u16): the rule's extension,
//   1 + its index in the ext section, 0 for none (R_EXT).
//
// Rule extension (EXT_SIZE = 48 bytes), X of them: a per-source limit and/or
// a block-list condition of one rule (limits/sources.ts, limits/blocklist.ts).
//   0               4               8                               16
//   ┌───────────────┬───────────────┬───────────────────────────────┐
//   │ key      u32  │ rate     u32  │ period_ns                u64  │
//   ├───────────────┼───────────────┼───────────────────────────────┤
//   │ burst    u32  │ flows    u32  │ block_ns                 u64  │ 16..32
//   ├───────┬───────┼───────┬───────┼───────────────┬───────────────┤
//   │pfx4   │pfx6   │xflags │ rsv   │ from_list u16 │ overload u16  │ 32..40
//   ├───────┴───────┴───────┴───────┴───────────────┴───────────────┤
//   │ reserved (zero)                                               │ 40..48
//   └───────────────────────────────────────────────────────────────┘
//   key       names the rule's sources in the source table across reloads
//             (the host derives it from the rule's text: an unchanged rule
//             keeps its buckets and counts)
//   rate      new flows per period_ns per source (0: no rate limit); burst:
//             the bucket's depth (>= 1 when rate is set)
//   flows     live flows per source (0: no such limit)
//   pfx4/6    the source's aggregation: prefix lengths (<= 32, <= 128)
//   xflags    XF_LIMIT: the limit applies; XF_FLUSH: overload ends the
//             source's flows of this rule; XF_FROM_LIST: the rule matches
//             only a source on list from_list (XF_NOT: only one not on it)
//   overload  list index a source over the limit is put on (0xffff: none),
//             for block_ns (0: until removed)
//
// List record (LIST_SIZE = 16 bytes), L of them: key u32 (the host's hash of
// the list's name; block entries carry it, so a list survives a reload that
// keeps its name), reserved u32, then the name as UTF-8 text in the info
// section: name_off u32, name_len u32 (for the operator's tools).

export const TABLE_MAGIC: u32 = 0x544c4350; // "PCLT"
// Version 2 added the icmp field, version 3 the rule extensions and lists
// (older tables are refused: recompile).
export const TABLE_VERSION: u32 = 3;
export const HDR_SIZE: u32 = 144;

export const T_MAGIC: u32 = 0;
export const T_VERSION: u32 = 4;
export const T_HDR_SIZE: u32 = 6;
export const T_TOTAL_LEN: u32 = 8;
export const T_CRC: u32 = 12;
export const T_NRULES: u32 = 16;
export const T_WORDS: u32 = 20;
export const T_AGGS: u32 = 24;
export const T_DEFAULT: u32 = 28;
export const T_FLAGS: u32 = 29;
export const T_OFFLOAD_AFTER: u32 = 30;
export const T_NBITMAPS: u32 = 32;
export const T_BITMAPS_OFF: u32 = 36;
export const T_RULES_OFF: u32 = 40;
export const T_INFO_OFF: u32 = 44;
export const T_INFO_LEN: u32 = 48;
export const T_SERIAL: u32 = 52;
export const T_CTX_OFF: u32 = 56;
export const T_PROTO_OFF: u32 = 60;
export const T_TCPFLAGS_OFF: u32 = 64;
export const T_SPORT_OFF: u32 = 68;
export const T_DPORT_OFF: u32 = 72;
export const T_ICMP_OFF: u32 = 76;
export const T_IFIELDS: u32 = 80;
export const IFIELD_SIZE: u32 = 12;
export const IF_COUNT: u32 = 0;
export const IF_BOUNDS_OFF: u32 = 4;
export const IF_IDS_OFF: u32 = 8;

export const T_EXT_OFF: u32 = 128;
export const T_NEXT: u32 = 132;
export const T_LISTS_OFF: u32 = 136;
export const T_NLISTS: u32 = 140;

export const IFIELD_SRC4: u32 = 0;
export const IFIELD_DST4: u32 = 1;
export const IFIELD_SRC6: u32 = 2;
export const IFIELD_DST6: u32 = 3;

export const R_ACTION: u32 = 0;
export const R_FLAGS: u32 = 1;
export const R_INFO_OFF: u32 = 4;
export const R_INFO_LEN: u32 = 8;
export const R_LINE: u32 = 12;
export const R_EXT: u32 = 2;
export const RULE_SIZE: u32 = 16;

export const X_KEY: u32 = 0;
export const X_RATE: u32 = 4;
export const X_PERIOD: u32 = 8;
export const X_BURST: u32 = 16;
export const X_FLOWS: u32 = 20;
export const X_BLOCK_NS: u32 = 24;
export const X_PFX4: u32 = 32;
export const X_PFX6: u32 = 33;
export const X_FLAGS: u32 = 34;
export const X_FROM_LIST: u32 = 36;
export const X_OVERLOAD: u32 = 38;
export const EXT_SIZE: u32 = 48;
export const XF_LIMIT: u8 = 1;
export const XF_FLUSH: u8 = 2;
export const XF_FROM_LIST: u8 = 4;
export const XF_NOT: u8 = 8;
export const XF_ALL: u8 = 15;
export const LIST_NONE: u32 = 0xffff;
export const L_KEY: u32 = 0;
export const L_NAME_OFF: u32 = 8;
export const L_NAME_LEN: u32 = 12;
export const LIST_SIZE: u32 = 16;
// Limits on a rate: the bucket's depth in period_ns units must fit a u64.
export const MAX_BURST: u32 = 1000000;
export const MAX_PERIOD_NS: u64 = 86400 * 1000000000;

export const ACTION_DENY: u8 = 0;
export const ACTION_ALLOW: u8 = 1;
export const RF_LOG: u8 = 1;
export const RF_OFFLOAD: u8 = 2; // established flows of this (allow) rule may be offloaded

export const CTX_SIZE: u32 = 256;
export const CTX_ERROR: u32 = 0x80;
export const PORT_SIZE: u32 = 65536;
// The direct fields in header order from T_CTX_OFF: three of CTX_SIZE, then three of PORT_SIZE.
export const DIRECT_FIELDS: u32 = 6;

// Per-rule counters, one record per rule of the live table:
//   0                               8                               16                              24
//   ┌───────────────────────────────┬───────────────────────────────┬───────────────────────────────┐
//   │ packets                  u64  │ bytes                    u64  │ last hit, ns (batch time) u64 │
//   └───────────────────────────────┴───────────────────────────────┴───────────────────────────────┘
export const RC_PACKETS: u32 = 0;
export const RC_BYTES: u32 = 8;
export const RC_LAST_HIT: u32 = 16;
export const RULE_COUNTER_SIZE: u32 = 24;

// Why a staged table was refused. Names in TABLE_ERROR_NAMES; append only.
export const enum TableError {
  OK = 0,
  TOO_SHORT, //           shorter than the header
  TOO_LARGE, //           longer than the staging slot
  BAD_MAGIC,
  BAD_VERSION,
  BAD_HEADER_SIZE,
  BAD_LENGTH, //          total_len differs from the bytes staged
  BAD_CHECKSUM,
  TOO_MANY_RULES, //      more rules than the counter area holds
  BAD_COUNTS, //          words/aggs do not follow from nrules, or no bitmaps
  SECTION_OUT_OF_RANGE, // a section runs past the end or overlaps the header
  SECTION_MISALIGNED,
  BAD_DEFAULT, //         default action is neither deny nor allow
  BAD_ACTION, //          a rule's action is neither deny nor allow
  INFO_OUT_OF_RANGE, //   a rule's info text lies outside the info section
  BITMAP_ID_OUT_OF_RANGE,
  BOUNDS_NOT_ASCENDING,
  FIRST_BOUND_NOT_ZERO,
  STRAY_BITS, //          a bitmap sets a bit for a rule that does not exist
  SUMMARY_MISMATCH, //    a summary word disagrees with its rule words
  STALE_TICKET, //        commit with a ticket that is not the last staged one
  NOTHING_STAGED,
  BAD_EXT, //             a rule extension out of range or with impossible values
  BAD_LIST, //            a list index past the lists section
  COUNT
}

export const TABLE_ERROR_NAMES: StaticArray<string> = [
  "ok",
  "too_short",
  "too_large",
  "bad_magic",
  "bad_version",
  "bad_header_size",
  "bad_length",
  "bad_checksum",
  "too_many_rules",
  "bad_counts",
  "section_out_of_range",
  "section_misaligned",
  "bad_default",
  "bad_action",
  "info_out_of_range",
  "bitmap_id_out_of_range",
  "bounds_not_ascending",
  "first_bound_not_zero",
  "stray_bits",
  "summary_mismatch",
  "stale_ticket",
  "nothing_staged",
  "bad_ext",
  "bad_list",
];
