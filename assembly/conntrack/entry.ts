// A tracked flow: one FLOW_SIZE-byte slot of the state table. The key is
// canonical, so both directions of a flow find the same slot: endpoint A is
// the lower of (address, port) of the two, and ORIG_IS_B says which one
// opened the flow.
//
//   0               4       5       6       7       8               12
//   ┌───────────────┬───────┬───────┬───────┬───────┬───────────────┐
//   │ tag      u32  │ state │ proto │family │ flags │ portA  │portB │
//   ├───────┬───────┼───────┴───────┴───────┴───────┼───────────────┤
//   │ ctx   │ rsv   │ icmp (u16)                    │ 16..24: expires_ns u64
//   ├───────┴───────┴───────────────┬───────────────┴───────────────┤
//   │ rule                     u32  │ source                   u32  │ 24..32
//   ├───────────────────────────────┴───────────────────────────────┤
//   │ address A (16 bytes)                                          │ 32..48
//   │ address B (16 bytes)                                          │ 48..64
//   ├───────────────────────────────┬───────────────────────────────┤
//   │ end[orig]                u32  │ end[reply]               u32  │ 64..72  highest seq + len seen
//   ├───────────────────────────────┼───────────────────────────────┤
//   │ maxwin[orig]             u32  │ maxwin[reply]            u32  │ 72..80  largest window (scaled); 0: side not seen
//   ├───────┬───────┬───────┬───────┼───────────────────────────────┤
//   │wscaleO│wscaleR│closer │ rsv   │ packets                  u32  │ 80..88
//   ├───────┴───────┴───────┴───────┴───────────────────────────────┤
//   │ created_ns                                               u64  │ 88..96
//   ├───────────────────────────────┬───────────────────────────────┤
//   │ maxend[orig]             u32  │ maxend[reply]            u32  │ 96..104 highest seq the other side allows
//   └───────────────────────────────┴───────────────────────────────┘
//
//   tag      the key's hash with bit 0 set; 0 marks a free slot
//   ctx      interface context (hook | in_role << 3 | out_role << 5) of the
//            packet that created the flow: reload re-checks flows with it
//   rule     the rule that admitted the flow
//   source   1 + the source-table entry the flow is counted in (limits/
//            sources.ts), 0 when its rule has no limit
//   icmp     the opening packet's ICMP type << 8 | code (0 for others):
//            reload re-checks ICMP query flows with it
//   closer   which direction sent the first FIN (DIR_ORIG / DIR_REPLY)
//   wscale   window scale of each side's SYN, 0xff when none (a flow picked
//            up mid-stream: 14 for both, the largest RFC 7323 allows)
//   end, maxend, maxwin  per direction, Linux conntrack's td_end,
//            td_maxend, td_maxwin (tcp.ts draws the bounds they make)
//   packets  packets the core has passed on state, both directions
//            (saturating): offload waits for the table's offload_after
//   OFFLOADED (flag) the kernel carries the flow (offload.ts): its expiry
//            is a lease that news from the kernel's conntrack renews
//   PICKED_UP (flag) created mid-stream by pickup (tcp.ts tcpPickup)

export const E_TAG: u32 = 0;
export const E_STATE: u32 = 4;
export const E_PROTO: u32 = 5;
export const E_FAMILY: u32 = 6;
export const E_FLAGS: u32 = 7;
export const E_PORT_A: u32 = 8;
export const E_PORT_B: u32 = 10;
export const E_CTX: u32 = 12;
export const E_ICMP: u32 = 14;
export const E_EXPIRES: u32 = 16;
export const E_RULE: u32 = 24;
export const E_SOURCE: u32 = 28;
export const E_ADDR_A: u32 = 32;
export const E_ADDR_B: u32 = 48;
export const E_END: u32 = 64; //     + 4 * dir
export const E_MAXWIN: u32 = 72; //  + 4 * dir
export const E_WSCALE: u32 = 80; //  + dir
export const E_CLOSER: u32 = 82;
export const E_PACKETS: u32 = 84;
export const E_CREATED: u32 = 88;
export const E_MAXEND: u32 = 96; //  + 4 * dir
export const FLOW_SIZE: u32 = 104;

export const EF_ORIG_IS_B: u8 = 1; // which endpoint opened the flow
export const EF_OFFLOADED: u8 = 2; // the kernel carries the flow (offload.ts)
export const EF_PICKED_UP: u8 = 4; // created mid-stream (tcp.ts tcpPickup)

// maxwin of both sides of a flow the kernel carried (offload.ts): the core
// did not see its sequence numbers advance, so its checks are liberal
// (tcp.ts) and each segment's end is taken as it comes.
export const LIBERAL_WINDOW: u32 = 0x7fffffff;

export const DIR_ORIG: u32 = 0;
export const DIR_REPLY: u32 = 1;

// Flow states. TCP follows Linux conntrack's names; the others are pseudo
// states with their own timeouts. Embryonic states may be evicted under
// pressure; the others never are.
export const enum State {
  FREE = 0,
  SYN_SENT, SYN_SENT2, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
  UDP_UNREPLIED, UDP_REPLIED,
  ICMP_QUERY, ICMP_REPLIED,
  OTHER_UNREPLIED, OTHER_REPLIED,
  COUNT
}

export const STATE_NAMES: StaticArray<string> = [
  "free", "syn_sent", "syn_sent2", "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
  "time_wait", "close", "udp_unreplied", "udp_replied", "icmp_query", "icmp_replied",
  "other_unreplied", "other_replied",
];

// @ts-ignore: decorator
@inline export function isEmbryonic(s: u32): bool {
  return s == State.SYN_SENT || s == State.SYN_SENT2 || s == State.SYN_RECV ||
    s == State.UDP_UNREPLIED || s == State.ICMP_QUERY || s == State.OTHER_UNREPLIED;
}

// Default timeouts in seconds, per state (Linux conntrack's defaults; the
// established TCP timeout is its 5 days); slot 0 (FREE) holds the fragment
// timeout. CONFIG may override each.
export const DEFAULT_TIMEOUTS: StaticArray<u32> = [
  30, 120, 120, 60, 432000, 120, 60, 30, 120, 10, 30, 120, 30, 30, 600, 600,
];
