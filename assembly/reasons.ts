// One table of reason codes. Every verdict carries one; counters, logs and
// metrics iterate this table (pf's reason codes, the same idea). Codes are
// stable: append, never renumber. The host reads the names from the core
// (`reason_name`) and mirrors the codes in host/core/reasons.ts.

export const enum Reason {
  NONE = 0, //               never written; a zero in a verdict record means "not classified"
  NO_TABLE, //               well-formed, no rule table committed: the configured default
  BAD_DESCRIPTOR, //         descriptor points outside DATA or carries an unknown role/hook
  L3_UNSUPPORTED, //         neither IPv4 nor IPv6
  L3_VERSION_MISMATCH, //    ethertype says one IP version, the header another
  SNAP_TRUNCATED, //         a header runs past the captured bytes (raise the copy range)
  IP4_TRUNCATED, //          shorter than the 20-byte IPv4 header
  IP4_BAD_IHL, //            IHL < 5, or the header runs past the packet
  IP4_BAD_TOTAL_LEN, //      total length < header length
  IP4_LEN_EXCEEDS, //        total length > the packet's length on the wire
  IP4_BAD_OPTIONS, //        an option's length is malformed
  IP4_SOURCE_ROUTE, //       LSRR/SSRR option (RFC 7126: drop)
  FRAG_TOO_BIG, //           fragment offset + length > 65535 (ping of death)
  IP6_TRUNCATED, //          shorter than the 40-byte IPv6 header
  IP6_LEN_EXCEEDS, //        40 + payload length > the packet's length on the wire
  IP6_JUMBO, //              jumbogram (payload length 0 with hop-by-hop): not supported
  IP6_EXT_TRUNCATED, //      an extension header runs past the payload
  IP6_EXT_CHAIN_LONG, //     more extension headers than MAX_EXT_HEADERS
  IP6_HBH_MISPLACED, //      hop-by-hop options not first (RFC 8200 4.1)
  IP6_RH0, //                routing header type 0 (RFC 5095)
  FRAG_TINY, //              first fragment without the whole transport header (RFC 1858, RFC 7112)
  TCP_TRUNCATED, //          shorter than 20 bytes of TCP header
  TCP_BAD_DOFF, //           data offset < 5 or past the segment
  TCP_BAD_FLAGS, //          flag combination no TCP sends (SYN+FIN, NULL, Xmas, FIN without ACK...)
  L4_PORT_ZERO, //           TCP port 0 or UDP destination port 0
  UDP_TRUNCATED, //          shorter than 8 bytes of UDP header
  UDP_BAD_LEN, //            UDP length < 8 or past the datagram
  ICMP_TRUNCATED, //         shorter than 8 bytes of ICMP/ICMPv6 header
  ICMP_INNER_TRUNCATED, //   an ICMP error's embedded header is cut short
  ICMP_INNER_BAD, //         an ICMP error's embedded header is malformed
  ICMP_ERROR_IN_ERROR, //    an ICMP error about an ICMP error (RFC 1122 3.2.2)
  RULE_ALLOW, //             a rule allowed it
  RULE_DENY, //              a rule denied it
  DEFAULT_ALLOW, //          no rule matched; the table's default allows
  DEFAULT_DENY, //           no rule matched; the table's default denies
  FRAG_NO_FIRST, //          a non-first fragment whose first fragment was not seen
  FRAG_OFFSET_ONE, //        TCP fragment at offset 8 bytes: rewrites the first's header (RFC 1858 3.2)
  STATE_MATCH, //            belongs to a tracked flow
  STATE_RELATED, //          an ICMP error about a tracked flow
  FRAG_FOLLOWS, //           a later fragment of an accepted first fragment
  NO_FLOW, //                claims a flow that does not exist (ACK, FIN, RST, data, a reply)
  TCP_INVALID_STATE, //      a segment the flow's TCP state does not allow
  TCP_OUT_OF_WINDOW, //      a segment outside the windows both sides allowed (conntrack/tcp.ts)
  ICMP_UNRELATED, //         an ICMP error about no tracked flow
  STATE_FULL, //             the state table has no room and nothing to evict
  FRAG_OVERLAP, //           overlaps bytes already seen (RFC 5722): the datagram is refused
  FRAG_TOO_MANY, //          more pieces than the fragment tracker keeps
  FRAG_DENIED, //            a later fragment of a refused first fragment
  ICMP6_NDP, //              neighbour discovery with hop limit 255 (RFC 4861): always passes
  RATE_LIMITED, //           a new flow over its rule's per-source rate (limits/sources.ts)
  SOURCE_FLOWS_FULL, //      a new flow over its rule's live flows per source
  SOURCE_BLOCKED, //         the source is on a block list a rule refers to (or was flushed)
  SOURCE_TABLE_FULL, //      a limited rule's new source found no reusable source entry
  PICKUP_RESET, //           a RST answering a picked-up segment: no such connection (the flow ends)
  COUNT
}

export const REASON_NAMES: StaticArray<string> = [
  "none",
  "no_table",
  "bad_descriptor",
  "l3_unsupported",
  "l3_version_mismatch",
  "snap_truncated",
  "ip4_truncated",
  "ip4_bad_ihl",
  "ip4_bad_total_len",
  "ip4_len_exceeds",
  "ip4_bad_options",
  "ip4_source_route",
  "frag_too_big",
  "ip6_truncated",
  "ip6_len_exceeds",
  "ip6_jumbo",
  "ip6_ext_truncated",
  "ip6_ext_chain_long",
  "ip6_hbh_misplaced",
  "ip6_rh0",
  "frag_tiny",
  "tcp_truncated",
  "tcp_bad_doff",
  "tcp_bad_flags",
  "l4_port_zero",
  "udp_truncated",
  "udp_bad_len",
  "icmp_truncated",
  "icmp_inner_truncated",
  "icmp_inner_bad",
  "icmp_error_in_error",
  "rule_allow",
  "rule_deny",
  "default_allow",
  "default_deny",
  "frag_no_first",
  "frag_offset_one",
  "state_match",
  "state_related",
  "frag_follows",
  "no_flow",
  "tcp_invalid_state",
  "tcp_out_of_window",
  "icmp_unrelated",
  "state_full",
  "frag_overlap",
  "frag_too_many",
  "frag_denied",
  "icmp6_ndp",
  "rate_limited",
  "source_flows_full",
  "source_blocked",
  "source_table_full",
  "pickup_reset",
];
