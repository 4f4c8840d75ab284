// Mirror of assembly/reasons.ts: the codes the host refers to by name, and a
// sentence for people. loadCore() reads the names from the core and refuses a
// core whose table disagrees with this one.

export const REASONS = [
  ["none", "not classified"],
  ["no_table", "well-formed; no rule table committed, so the configured default applies"],
  ["bad_descriptor", "the descriptor points outside the data area or names an unknown role or hook"],
  ["l3_unsupported", "neither IPv4 nor IPv6"],
  ["l3_version_mismatch", "the ethertype says one IP version, the header another"],
  ["snap_truncated", "a header runs past the captured bytes (raise the queue copy range)"],
  ["ip4_truncated", "shorter than the 20-byte IPv4 header"],
  ["ip4_bad_ihl", "IPv4 header length below 5 words or past the packet"],
  ["ip4_bad_total_len", "IPv4 total length below the header length"],
  ["ip4_len_exceeds", "IPv4 total length beyond the packet's length"],
  ["ip4_bad_options", "malformed IPv4 option length"],
  ["ip4_source_route", "IPv4 loose or strict source route option"],
  ["frag_too_big", "fragment would end past 65535 bytes"],
  ["ip6_truncated", "shorter than the 40-byte IPv6 header"],
  ["ip6_len_exceeds", "IPv6 payload length beyond the packet's length"],
  ["ip6_jumbo", "IPv6 jumbogram (not supported)"],
  ["ip6_ext_truncated", "an IPv6 extension header runs past the packet"],
  ["ip6_ext_chain_long", "too many IPv6 extension headers"],
  ["ip6_hbh_misplaced", "IPv6 hop-by-hop options header not first"],
  ["ip6_rh0", "IPv6 routing header type 0 (RFC 5095)"],
  ["frag_tiny", "first fragment does not carry the whole transport header"],
  ["tcp_truncated", "shorter than the 20-byte TCP header"],
  ["tcp_bad_doff", "TCP data offset below 5 words or past the segment"],
  ["tcp_bad_flags", "TCP flag combination no stack sends (NULL, Xmas, SYN+FIN, ...)"],
  ["l4_port_zero", "TCP port 0 or UDP destination port 0"],
  ["udp_truncated", "shorter than the 8-byte UDP header"],
  ["udp_bad_len", "UDP length below 8 or past the datagram"],
  ["icmp_truncated", "shorter than the 8-byte ICMP header"],
  ["icmp_inner_truncated", "the packet quoted in an ICMP error is cut short"],
  ["icmp_inner_bad", "the packet quoted in an ICMP error is malformed"],
  ["icmp_error_in_error", "an ICMP error about an ICMP error"],
  ["rule_allow", "a rule allowed it"],
  ["rule_deny", "a rule denied it"],
  ["default_allow", "no rule matched; the table's default allows"],
  ["default_deny", "no rule matched; the table's default denies"],
  ["frag_no_first", "a later fragment whose first fragment was not seen"],
  ["frag_offset_one", "TCP fragment at offset 8 bytes, which could only rewrite the first fragment's header (RFC 1858)"],
  ["state_match", "belongs to a tracked flow"],
  ["state_related", "an ICMP error about a tracked flow"],
  ["frag_follows", "a later fragment of an accepted first fragment"],
  ["no_flow", "claims a flow that does not exist (ACK, FIN, RST or data without a handshake, or a reply)"],
  ["tcp_invalid_state", "a TCP segment the flow's state does not allow"],
  ["tcp_out_of_window", "a segment outside the windows both sides allowed (sequence, ack, RST or FIN)"],
  ["icmp_unrelated", "an ICMP error about no tracked flow"],
  ["state_full", "the state table is full of established flows"],
  ["frag_overlap", "a fragment overlapping bytes already seen (RFC 5722): the datagram is refused"],
  ["frag_too_many", "a datagram in more pieces than the fragment tracker keeps"],
  ["frag_denied", "a later fragment of a refused first fragment"],
  ["icmp6_ndp", "IPv6 neighbour discovery with hop limit 255 (RFC 4861)"],
  ["rate_limited", "a new flow over its rule's per-source rate limit"],
  ["source_flows_full", "a new flow over its rule's limit of live flows per source"],
  ["source_blocked", "the source is on a block list (or its flows were flushed by an overload)"],
  ["source_table_full", "a new source of a limited rule found no free source-table entry (all hold live flows)"],
  ["pickup_reset", "a RST answering a picked-up segment: the receiver has no such connection; dropped, the flow ended (an ACK scan learns nothing)"],
] as const;

export type ReasonName = (typeof REASONS)[number][0];

export const Reason = Object.fromEntries(REASONS.map(([name], code) => [name, code])) as {
  readonly [K in ReasonName]: number;
};

export function reasonName(code: number): string {
  return REASONS[code]?.[0] ?? `reason_${code}`;
}

export function reasonText(code: number): string {
  return REASONS[code]?.[1] ?? "unknown reason code";
}
