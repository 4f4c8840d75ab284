// The numbers the reference shares with the core's ABI: reason codes (from the
// host's mirror, so a renumbering shows up as a test failure, not as a silent
// disagreement), verdicts, descriptor offsets, roles and hooks.
import * as ABI from "../../host/core/abi.js";
import { Reason } from "../../host/core/reasons.js";

export const NONE = Reason.none;
export const NO_TABLE = Reason.no_table;
export const BAD_DESCRIPTOR = Reason.bad_descriptor;
export const L3_UNSUPPORTED = Reason.l3_unsupported;
export const L3_VERSION_MISMATCH = Reason.l3_version_mismatch;
export const SNAP_TRUNCATED = Reason.snap_truncated;
export const IP4_TRUNCATED = Reason.ip4_truncated;
export const IP4_BAD_IHL = Reason.ip4_bad_ihl;
export const IP4_BAD_TOTAL_LEN = Reason.ip4_bad_total_len;
export const IP4_LEN_EXCEEDS = Reason.ip4_len_exceeds;
export const IP4_BAD_OPTIONS = Reason.ip4_bad_options;
export const IP4_SOURCE_ROUTE = Reason.ip4_source_route;
export const FRAG_TOO_BIG = Reason.frag_too_big;
export const IP6_TRUNCATED = Reason.ip6_truncated;
export const IP6_LEN_EXCEEDS = Reason.ip6_len_exceeds;
export const IP6_JUMBO = Reason.ip6_jumbo;
export const IP6_EXT_TRUNCATED = Reason.ip6_ext_truncated;
export const IP6_EXT_CHAIN_LONG = Reason.ip6_ext_chain_long;
export const IP6_HBH_MISPLACED = Reason.ip6_hbh_misplaced;
export const IP6_RH0 = Reason.ip6_rh0;
export const FRAG_TINY = Reason.frag_tiny;
export const TCP_TRUNCATED = Reason.tcp_truncated;
export const TCP_BAD_DOFF = Reason.tcp_bad_doff;
export const TCP_BAD_FLAGS = Reason.tcp_bad_flags;
export const L4_PORT_ZERO = Reason.l4_port_zero;
export const UDP_TRUNCATED = Reason.udp_truncated;
export const UDP_BAD_LEN = Reason.udp_bad_len;
export const ICMP_TRUNCATED = Reason.icmp_truncated;
export const ICMP_INNER_TRUNCATED = Reason.icmp_inner_truncated;
export const ICMP_INNER_BAD = Reason.icmp_inner_bad;
export const ICMP_ERROR_IN_ERROR = Reason.icmp_error_in_error;
export const RULE_ALLOW = Reason.rule_allow;
export const RULE_DENY = Reason.rule_deny;
export const DEFAULT_ALLOW = Reason.default_allow;
export const DEFAULT_DENY = Reason.default_deny;
export const FRAG_NO_FIRST = Reason.frag_no_first;
export const FRAG_OFFSET_ONE = Reason.frag_offset_one;
export const STATE_MATCH = Reason.state_match;
export const STATE_RELATED = Reason.state_related;
export const FRAG_FOLLOWS = Reason.frag_follows;
export const NO_FLOW = Reason.no_flow;
export const TCP_INVALID_STATE = Reason.tcp_invalid_state;
export const TCP_OUT_OF_WINDOW = Reason.tcp_out_of_window;
export const ICMP_UNRELATED = Reason.icmp_unrelated;
export const STATE_FULL = Reason.state_full;
export const FRAG_OVERLAP = Reason.frag_overlap;
export const FRAG_TOO_MANY = Reason.frag_too_many;
export const FRAG_DENIED = Reason.frag_denied;
export const ICMP6_NDP = Reason.icmp6_ndp;

export const DROP = ABI.VERDICT_DROP;
export const ACCEPT = ABI.VERDICT_ACCEPT;
export const RULE_NONE = ABI.RULE_NONE;
