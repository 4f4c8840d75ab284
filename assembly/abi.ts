// The batch ABI: every structure that crosses the wasm boundary, drawn once.
//
// This file is the one source of these numbers: at build time
// scripts/gen-abi.mjs reads every `export const NAME: T = VALUE;` line below
// (one per line; nothing else but // comments) and writes the core's `abi_const`
// (assembly/abi-const.ts) and the host's mirror (host/core/abi.ts) from them;
// the host checks every one against the core at load. Bump ABI_VERSION
// whenever a box below changes; the host refuses any other version.
//
// Linear memory, laid out once by `init` (memory size is fixed: initial = max):
//
//   __heap_base (rounded up to 64)
//   ┌──────────────────────────────┐ CONFIG     CONFIG_SIZE bytes
//   ├──────────────────────────────┤ COUNTERS   COUNTERS_SIZE bytes
//   ├──────────────────────────────┤ PKT        scratch for the packet being decoded
//   ├──────────────────────────────┤ BATCH      batch header
//   ├──────────────────────────────┤ DESCS      MAX_BATCH descriptors
//   ├──────────────────────────────┤ VERDICTS   MAX_BATCH verdict records
//   ├──────────────────────────────┤ DATA       DATA_CAP bytes of packet data
//   ├──────────────────────────────┤ ARENA      two rule-table slots, their rule counters,
//   │                              │            the state table (later); sized by init from CONFIG
//   └──────────────────────────────┘ memory.size() * 64 KiB
//
// All multi-byte ABI fields are little-endian (wasm's order). Packet bytes in
// DATA are as on the wire (network order).

export const ABI_VERSION: u32 = 3; // 2: the source table and block lists (limits/); 3: TCP pickup and window tracking

export const MAX_BATCH: u32 = 1024;
export const DATA_CAP: u32 = 4 << 20;

// Batch header (host writes COUNT, FLAGS, NOW; core writes DONE, STATUS).
//
//   0               4               8                              16
//   ┌───────────────┬───────────────┬───────────────────────────────┐
//   │ count    u32  │ flags    u32  │ now_ns                   u64  │
//   ├───────────────┼───────────────┼───────────────────────────────┤
//   │ done     u32  │ status   u32  │ reserved (zero)               │ 24..64
//   └───────────────┴───────────────┴───────────────────────────────┘
export const BH_COUNT: u32 = 0;
export const BH_FLAGS: u32 = 4;
export const BH_NOW: u32 = 8;
export const BH_DONE: u32 = 16;
export const BH_STATUS: u32 = 20;
export const BH_SIZE: u32 = 64;

// Batch status written by `classify` (also its negative return value).
export const STATUS_OK: u32 = 0;
export const STATUS_BAD_COUNT: u32 = 1;
export const STATUS_NOT_READY: u32 = 2;

// Packet descriptor, one per packet, written by the host.
//
//   0               4               8               12              16
//   ┌───────────────┬───────────────┬───────────────┬───────────────┐
//   │ data_off u32  │ cap_len  u32  │ wire_len u32  │ packet_id u32 │
//   ├───────────────┴───────────────┼───────┬───┬───┼───┬───┬───────┤
//   │ ts_ns                    u64  │hw_prot│in │out│hk │rsv│ queue │
//   └───────────────────────────────┴───────┴───┴───┴───┴───┴───────┘
//   16                              24      26  27  28  29  30      32
//
//   data_off   offset of the packet's first byte (the IP header) in DATA
//   cap_len    bytes present in DATA (NFQUEUE copy range may cut the packet)
//   wire_len   length of the whole packet (>= cap_len)
//   packet_id  NFQUEUE packet id; the core never reads it, the host echoes it
//   ts_ns      packet timestamp, nanoseconds (host clock)
//   hw_proto   ethertype: 0x0800 IPv4, 0x86DD IPv6, 0 = take the IP version nibble
//   in, out    interface role of the input / output device (ROLE_*)
//   hk         netfilter hook (HOOK_*)
//   queue      NFQUEUE number the packet came from
export const D_DATA_OFF: u32 = 0;
export const D_CAP_LEN: u32 = 4;
export const D_WIRE_LEN: u32 = 8;
export const D_PACKET_ID: u32 = 12;
export const D_TS: u32 = 16;
export const D_HW_PROTO: u32 = 24;
export const D_IN_ROLE: u32 = 26;
export const D_OUT_ROLE: u32 = 27;
export const D_HOOK: u32 = 28;
export const D_RESERVED: u32 = 29; // zero
export const D_QUEUE: u32 = 30;
export const DESC_SIZE: u32 = 32;

export const ROLE_NONE: u8 = 0;
export const ROLE_EXTERNAL: u8 = 1;
export const ROLE_INTERNAL: u8 = 2;
export const ROLE_MAX: u8 = 2;

export const HOOK_PREROUTING: u8 = 0;
export const HOOK_INPUT: u8 = 1;
export const HOOK_FORWARD: u8 = 2;
export const HOOK_OUTPUT: u8 = 3;
export const HOOK_POSTROUTING: u8 = 4;
export const HOOK_MAX: u8 = 4;

// Verdict record, one per packet, written by the core.
//
//   0       1       2               4                               8
//   ┌───────┬───────┬───────────────┬───────────────────────────────┐
//   │verdict│ flags │ reason   u16  │ rule                     u32  │
//   └───────┴───────┴───────────────┴───────────────────────────────┘
//
//   verdict  VERDICT_DROP (0) or VERDICT_ACCEPT (1): the NF_DROP/NF_ACCEPT values
//   flags    VF_OFFLOAD (bit 7) on an accept that hands the packet's flow to
//            the kernel (offload), with the flow's interface context (its ctx,
//            < 128) in bits 0..6; zero otherwise
//   reason   code from reasons.ts, for accepts and drops alike
//   rule     index of the deciding rule, RULE_NONE when no rule decided
export const V_VERDICT: u32 = 0;
export const V_FLAGS: u32 = 1;
export const V_REASON: u32 = 2;
export const V_RULE: u32 = 4;
export const VERDICT_SIZE: u32 = 8;

export const VERDICT_DROP: u8 = 0;
export const VERDICT_ACCEPT: u8 = 1;
export const VF_OFFLOAD: u8 = 0x80;
export const VF_CTX_MASK: u8 = 0x7f;
export const RULE_NONE: u32 = 0xffffffff;

// Configuration block, written by the host before `init` or between batches.
//
//   0       1       4               8               12              16
//   ┌───────┬───────┬───────────────┬───────────────┬───────────────┐
//   │default│ rsv   │ table_cap u32 │ max_rules u32 │ max_flows u32 │
//   ├───────┴───────┴───────────────┼───────────────┼───────────────┤
//   │ hash_seed                u64  │ max_frags u32 │ max_srcs  u32 │ 16..32
//   ├───────────────────────────────┴───────────────┴───────────────┤
//   │ timeouts: 16 x u32 seconds, indexed by flow state             │ 32..96
//   │ (slot 0: fragments)                                           │
//   ├───────────────┬───────────────────────────────────────────────┤
//   │ max_blocks u32│ reserved                                      │ 96..200
//   ├───────────────┼───────────────┬───────────────────────────────┤
//   ├───────────────┼───────────────┼───────────────┬───────────────┤
//   │ offload  u32  │ offload_lease │ tcp_pickup    │ tcp_liberal   │ 200..216
//   ├───────────────┴───────────────┴───────────────┴───────────────┤
//   │ reserved                                                      │ 216..256
//   └───────────────────────────────────────────────────────────────┘
//
//   default    verdict for well-formed packets while no rule table is committed
//   table_cap  bytes per rule-table slot (0: DEFAULT_TABLE_CAP); read by init
//   max_rules  per-rule counter records per slot (0: DEFAULT_MAX_RULES); read by init
//   max_flows  state table capacity, rounded up to a power of two (0: DEFAULT_MAX_FLOWS)
//   hash_seed  key of the flow hash: the host passes random bytes so nobody
//              can aim packets at one bucket; read by init
//   max_frags  fragment table capacity, power of two (0: DEFAULT_MAX_FRAGS)
//   max_srcs   source table capacity (limits/sources.ts), rounded up to a
//              power of two (0: DEFAULT_MAX_SOURCES); read by init
//   max_blocks block-list entries, all lists together, rounded up to a
//              power of two (0: DEFAULT_MAX_BLOCKS); read by init
//   timeouts   0: the default of conntrack/entry.ts; read per packet, so the
//              host may change them between batches
export const CFG_DEFAULT_VERDICT: u32 = 0;
export const CFG_TABLE_CAP: u32 = 4;
export const CFG_MAX_RULES: u32 = 8;
export const DEFAULT_TABLE_CAP: u32 = 32 << 20;
export const DEFAULT_MAX_RULES: u32 = 65536;
export const CFG_MAX_FLOWS: u32 = 12;
export const CFG_HASH_SEED: u32 = 16;
export const CFG_MAX_FRAGS: u32 = 24;
export const CFG_TIMEOUTS: u32 = 32;
export const CFG_MAX_SOURCES: u32 = 28;
export const CFG_MAX_BLOCKS: u32 = 96;
export const DEFAULT_MAX_SOURCES: u32 = 16384;
export const DEFAULT_MAX_BLOCKS: u32 = 4096;
export const DEFAULT_MAX_FLOWS: u32 = 65536;
export const MAX_FLOWS_LIMIT: u32 = 1 << 21;
export const DEFAULT_MAX_FRAGS: u32 = 4096;
// offload        nonzero: flows of rules with the offload flag are handed to
//                the kernel (VF_OFFLOAD) once established and past the
//                table's offload_after packets; zero: never (the default)
// offload_lease  seconds an offloaded flow lives without news from the
//                kernel's conntrack (offload_touch renews it; 0: DEFAULT_OFFLOAD_LEASE)
export const CFG_OFFLOAD: u32 = 200;
export const CFG_OFFLOAD_LEASE: u32 = 204;
export const DEFAULT_OFFLOAD_LEASE: u32 = 60;
// tcp_pickup     nonzero: a TCP segment with ACK alone (no SYN, FIN or RST) of
//                no tracked flow meets the rules as if it were the flow's
//                SYN; allowed, it creates the flow ESTABLISHED (counted in
//                C_PICKED_UP; conntrack/tcp.ts tcpPickup); refused, it is
//                no_flow as without pickup. Zero (the default): no_flow.
// tcp_liberal    nonzero: window tracking off (conntrack's be_liberal=1):
//                only RST and FIN are checked, against a rough window, as
//                before window tracking (conntrack/tcp.ts); zero: every
//                segment meets the four bounds (the default)
// Both are read per packet; the host writes them before the first batch.
export const CFG_TCP_PICKUP: u32 = 208;
export const CFG_TCP_LIBERAL: u32 = 212;
// Answers of offload_touch (the kernel still carries the flow):
export const TOUCH_NONE: u32 = 0; //      no such flow
export const TOUCH_RENEWED: u32 = 1; //   offloaded: lease renewed
export const TOUCH_INSPECTED: u32 = 2; // tracked, but not offloaded
// ... and of offload_adopt (a flow a previous daemon offloaded):
export const ADOPT_REFUSED: u32 = 0; //   the live table refuses it (or no room): end it
export const ADOPT_OFFLOADED: u32 = 1; // tracked, offloaded
export const ADOPT_INSPECTED: u32 = 2; // tracked, but its rule does not offload: bring it back
export const ADOPT_KNOWN: u32 = 3; //     already tracked
export const CONFIG_SIZE: u32 = 256;

// Counters, all u64, written by the core, read by the host.
//
//   0                                 REASON_SLOTS * 16
//   ┌─────────────────┬─────────────────┬─── ... ───┐
//   │ reason 0 pkts   │ reason 0 bytes  │ reason 1  │  per reason code
//   ├─────────────────┼─────────────────┼───────────┴─────┐
//   │ drop pkts       │ drop bytes      │ accept pkts ... │  per verdict (2 × 16)
//   ├─────────────────┼─────────────────┼─────────────────┤
//   │ batches         │ packets         │ bad batches     │  totals (3 × 8)
//   ├─────────────────┼─────────────────┼─────────────────┼─────────────────┐
//   │ flows live      │ flows created   │ flows expired   │ flows evicted   │  state table
//   ├─────────────────┼─────────────────┼─────────────────┼─────────────────┤
//   │ flows refused   │ flows ended     │ frags live      │ frags expired   │  (8 × 8)
//   ├─────────────────┼─────────────────┼─────────────────┼─────────────────┤
//   │ sources live    │ sources evicted │ sources refused │ blocks live     │  limits/ (6 × 8)
//   ├─────────────────┼─────────────────┼─────────────────┴─────────────────┘
//   │ blocks refused  │ blocks expired  │
//   └─────────────────┴─────────────────┘
//
//   flows ended: removed by a reload's re-check (`state_recheck`), or
//                ended by an overload's flush, or by a RST answering a
//                picked-up segment (pickup_reset: conntrack/tcp.ts)
//   sources evicted: an entry with no live flows whose bucket still held
//                information (not full) reused for another source
//   sources refused: a new source found no reusable entry (source_table_full)
//   blocks refused: an overload or `block add` found its buckets full
//   offload (4 x 8 after the block counters): flows the kernel carries now
//                (live), flows handed to it (total), offloaded flows ended
//                because the kernel's entry ended (ended), and offloaded
//                flows a re-check took back, ended or inspected again (revoked)
//   picked up (8 after them): TCP flows created mid-stream by pickup
//                (CFG_TCP_PICKUP)
export const REASON_SLOTS: u32 = 128;
export const C_REASONS: u32 = 0;
export const C_VERDICTS: u32 = REASON_SLOTS * 16;
export const C_BATCHES: u32 = C_VERDICTS + 32;
export const C_PACKETS: u32 = C_BATCHES + 8;
export const C_BAD_BATCHES: u32 = C_PACKETS + 8;
export const C_FLOWS_LIVE: u32 = C_BAD_BATCHES + 8;
export const C_FLOWS_CREATED: u32 = C_FLOWS_LIVE + 8;
export const C_FLOWS_EXPIRED: u32 = C_FLOWS_CREATED + 8;
export const C_FLOWS_EVICTED: u32 = C_FLOWS_EXPIRED + 8;
export const C_FLOWS_REFUSED: u32 = C_FLOWS_EVICTED + 8;
export const C_FLOWS_ENDED: u32 = C_FLOWS_REFUSED + 8;
export const C_FRAGS_LIVE: u32 = C_FLOWS_ENDED + 8;
export const C_FRAGS_EXPIRED: u32 = C_FRAGS_LIVE + 8;
export const C_SOURCES_LIVE: u32 = C_FRAGS_EXPIRED + 8;
export const C_SOURCES_EVICTED: u32 = C_SOURCES_LIVE + 8;
export const C_SOURCES_REFUSED: u32 = C_SOURCES_EVICTED + 8;
export const C_BLOCKS_LIVE: u32 = C_SOURCES_REFUSED + 8;
export const C_BLOCKS_REFUSED: u32 = C_BLOCKS_LIVE + 8;
export const C_BLOCKS_EXPIRED: u32 = C_BLOCKS_REFUSED + 8;
export const C_OFFLOAD_LIVE: u32 = C_BLOCKS_EXPIRED + 8;
export const C_OFFLOAD_TOTAL: u32 = C_OFFLOAD_LIVE + 8;
export const C_OFFLOAD_ENDED: u32 = C_OFFLOAD_TOTAL + 8;
export const C_OFFLOAD_REVOKED: u32 = C_OFFLOAD_ENDED + 8;
export const C_PICKED_UP: u32 = C_OFFLOAD_REVOKED + 8;
export const COUNTERS_SIZE: u32 = C_PICKED_UP + 8;

// Source table entry (limits/sources.ts), SOURCE_SIZE bytes, read by the
// host for `stats --sources`.
//
//   0               4               8       9       10      12              16
//   ┌───────────────┬───────────────┬───────┬───────┬───────┬───────────────┐
//   │ tag      u32  │ key      u32  │family │prefix │ rsv   │ flows    u32  │
//   ├───────────────┴───────────────┼───────┴───────┴───────┴───────────────┤
//   │ tokens                   u64  │ seen_ns                          u64  │ 16..32
//   ├───────────────────────────────┴───────────────────────────────────────┤
//   │ address (16 bytes, masked to prefix)                                  │ 32..48
//   ├───────────────────────────────┬───────────────────────────────────────┤
//   │ full_ns                  u64  │ flush_ns                         u64  │ 48..64
//   └───────────────────────────────┴───────────────────────────────────────┘
//
//   tag      the key's hash with bit 0 set; 0 marks a free entry
//   key      the rule extension's key (rules/format.ts X_KEY)
//   flows    live flows of this source admitted under this key
//   tokens   the bucket, in rate * ns units: a flow costs period_ns units,
//            each ns adds `rate`; full at burst * period_ns
//   seen_ns  batch time of the last new flow attempt (bucket last filled)
//   full_ns  batch time from which the bucket is full again
//   flush_ns 1 + batch time of the last overload flush (0: none): flows of
//            this source created at or before it are ended at their next packet
export const S_TAG: u32 = 0;
export const S_KEY: u32 = 4;
export const S_FAMILY: u32 = 8;
export const S_PREFIX: u32 = 9;
export const S_FLOWS: u32 = 12;
export const S_TOKENS: u32 = 16;
export const S_SEEN: u32 = 24;
export const S_ADDR: u32 = 32;
export const S_FULL: u32 = 48;
export const S_FLUSH: u32 = 56;
export const SOURCE_SIZE: u32 = 64;

// Block-list entry (limits/blocklist.ts), BLOCK_SIZE bytes.
//
//   0               4               8                               16
//   ┌───────────────┬───────────────┬───────────────────────────────┐
//   │ tag      u32  │ list     u32  │ expires_ns (~0: never)   u64  │
//   ├───────────────┴───────────────┴───────────────────────────────┤
//   │ address (16 bytes, masked to prefix)                          │ 16..32
//   ├───────┬───────┬───────────────────────────────────────────────┤
//   │family │prefix │ reserved                                      │ 32..48
//   └───────┴───────┴───────────────────────────────────────────────┘
export const B_TAG: u32 = 0;
export const B_LIST: u32 = 4;
export const B_EXPIRES: u32 = 8;
export const B_ADDR: u32 = 16;
export const B_FAMILY: u32 = 32;
export const B_PREFIX: u32 = 33;
export const BLOCK_SIZE: u32 = 48;

// Decoded packet (PKT): what the decoders found, for the stages after them.
// Addresses are in network byte order; an IPv4 address fills bytes 0..3 of
// its 16-byte slot and the rest is zero. Ports and the other numbers are in
// host order.
//
//   0       1       2       3       4               6               8
//   ┌───────┬───────┬───────┬───────┬───────────────┬───────────────┐
//   │family │ proto │ pflags│tcpflgs│ sport    u16  │ dport    u16  │
//   ├───────┼───────┼───────┴───────┼───────────────┴───────────────┤
//   │ itype │ icode │ l4_off   u16  │ frag_id                  u32  │  8..16
//   ├───────┴───────┼───────────────┼───────────────────────────────┤
//   │ frag_off u16  │ ext_count u16 │ l4_len                   u32  │ 16..24
//   ├───────────────┴───────────────┼───────────────────────────────┤
//   │ ip_len                   u32  │ tcp_seq                  u32  │ 24..32
//   ├───────────────────────────────┼───────────────┬───────────────┤
//   │ tcp_ack                  u32  │ tcp_win  u16  │ icmp_id  u16  │ 32..40
//   ├───────┬───────────────────────┼───────────────┴───────────────┤
//   │wscale │ ttl   │ frag_data u16 │ tcp_payload              u32  │ 40..48
//   ├───────┴───────────────────────┴───────────────────────────────┤
//   │ src address (16 bytes)                                        │ 48..64
//   │ dst address (16 bytes)                                        │ 64..80
//   ├───────┬───────┬───────────────┬───────────────┬───────────────┤
//   │ifamily│ iproto│ reserved      │ isport   u16  │ idport   u16  │ 80..88
//   ├───────┴───────┴───────────────┴───────────────┴───────────────┤
//   │ inner src address (16 bytes)                                  │ 88..104
//   │ inner dst address (16 bytes)                                  │ 104..120
//   ├───────────────────────────────┬───────────────────────────────┘
//   │ tcp_sack                 u32  │ 120..124
//   └───────────────────────────────┘ 128
//
//   pflags  PF_* bits below
//   sport/dport  TCP/UDP ports (PF_HAS_PORTS)
//   icmp_id      identifier of an ICMP/ICMPv6 echo, timestamp or info query
//   itype/icode  ICMP or ICMPv6 type and code
//   frag_off     fragment offset in 8-byte units
//   l4_off       offset of the transport header from the IP header
//   l4_len       transport bytes according to the IP length fields
//   wscale       TCP window scale option of a SYN (0xff: none)
//   ttl          IPv4 TTL or IPv6 hop limit
//   tcp_payload  TCP payload bytes (per the IP length, past the data offset)
//   frag_data    for fragments: where the fragmentable part starts (after the
//                IPv4 header, or after the IPv6 fragment header)
//   inner        for ICMP errors: the 5-tuple of the packet the error is about
//   tcp_sack     the highest SACK right edge (RFC 2018) of a segment with ACK,
//                when above its ack; else the ack itself (conntrack/tcp.ts
//                takes it as the ack for the window bounds, as Linux does)
export const P_FAMILY: u32 = 0;
export const P_PROTO: u32 = 1;
export const P_FLAGS: u32 = 2;
export const P_TCP_FLAGS: u32 = 3;
export const P_SPORT: u32 = 4;
export const P_DPORT: u32 = 6;
export const P_ICMP_TYPE: u32 = 8;
export const P_ICMP_CODE: u32 = 9;
export const P_L4_OFF: u32 = 10;
export const P_FRAG_ID: u32 = 12;
export const P_FRAG_OFF: u32 = 16;
export const P_EXT_COUNT: u32 = 18;
export const P_L4_LEN: u32 = 20;
export const P_IP_LEN: u32 = 24;
export const P_TCP_SEQ: u32 = 28;
export const P_TCP_ACK: u32 = 32;
export const P_TCP_WIN: u32 = 36;
export const P_ICMP_ID: u32 = 38;
export const P_TCP_WSCALE: u32 = 40;
export const P_TCP_PAYLOAD: u32 = 44;
export const P_FRAG_DATA: u32 = 42;
export const P_TTL: u32 = 41;
export const P_SRC: u32 = 48;
export const P_DST: u32 = 64;
export const P_IN_FAMILY: u32 = 80;
export const P_IN_PROTO: u32 = 81;
export const P_IN_SPORT: u32 = 84;
export const P_IN_DPORT: u32 = 86;
export const P_IN_SRC: u32 = 88;
export const P_IN_DST: u32 = 104;
export const P_TCP_SACK: u32 = 120;
export const PKT_SIZE: u32 = 128;

export const PF_FRAGMENT: u8 = 1; //   part of a fragmented packet (not atomic)
export const PF_FIRST_FRAG: u8 = 2; // offset 0 of a fragmented packet
export const PF_MORE_FRAGS: u8 = 4; // MF set
export const PF_HAS_PORTS: u8 = 8; //  sport/dport are valid
export const PF_ICMP_ERROR: u8 = 16; // inner 5-tuple is valid
export const PF_IP_OPTIONS: u8 = 32; // IPv4 options present
