// IP protocol numbers (IANA) the decoders and the state table name.
export const PROTO_ICMP: u32 = 1;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;
export const PROTO_DCCP: u32 = 33;
export const PROTO_ICMPV6: u32 = 58;
export const PROTO_SCTP: u32 = 132;
export const PROTO_UDPLITE: u32 = 136;
