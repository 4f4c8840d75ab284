// What both capture formats share: the record handed to tools, the error a
// malformed file raises, and the link layers (control path only).

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;

// Larger captured lengths are nonsense in any real capture (libpcap's own
// ceiling is 262144; D-Bus captures go to 128 MiB, which this tool never reads).
export const MAX_CAPLEN = 0x40000;

export type PcapErrorCode =
  | "truncated_header" //     the file ends inside its file header / section header
  | "bad_magic" //            not a pcap or pcapng file
  | "bad_version" //          a format version this reader does not know
  | "truncated_record" //     the file ends inside a record / block
  | "bad_block_length" //     a pcapng block length that is too small, unaligned, or disagrees with its trailer
  | "bad_option" //           a pcapng option runs past its block
  | "bad_interface" //        a packet names an interface no IDB described
  | "bad_caplen" //           captured length above the snap length, the wire length or MAX_CAPLEN
  | "unsupported_linktype" // a packet of a link type this reader does not decode
  | "truncated_link_header"; // a packet shorter than its link-layer header

export class PcapError extends Error {
  constructor(readonly code: PcapErrorCode, readonly offset: number, message: string) {
    super(`${message} (at byte offset ${offset})`);
    this.name = "PcapError";
  }
}

export interface PcapRecord {
  ts: bigint; //          nanoseconds since the epoch
  ifIndex: number; //     pcapng interface id; 0 for classic pcap
  linkType: number;
  caplen: number; //      bytes captured (of the whole frame, link header included)
  wirelen: number; //     bytes on the wire (of the whole frame)
  ethertype: number; //   0x0800, 0x86DD, another ethertype, or 0 when unknown
  ip: Uint8Array; //      from the IP header (or the L3 payload) to the end of the captured bytes
  srcMac?: Uint8Array; // Ethernet only
  dstMac?: Uint8Array;
  vlan?: number; //       802.1Q VLAN id when one tag was present
}

export const SUPPORTED_LINKTYPES: ReadonlySet<number> = new Set([
  LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2,
]);

export function linkTypeName(t: number): string {
  switch (t) {
    case LINKTYPE_ETHERNET: return "Ethernet";
    case LINKTYPE_RAW: return "raw IP";
    case LINKTYPE_LINUX_SLL: return "Linux cooked (SLL)";
    case LINKTYPE_IPV4: return "raw IPv4";
    case LINKTYPE_IPV6: return "raw IPv6";
    case LINKTYPE_LINUX_SLL2: return "Linux cooked v2 (SLL2)";
    default: return `link type ${t}`;
  }
}

export type LinkFields = Pick<PcapRecord, "ethertype" | "ip" | "srcMac" | "dstMac" | "vlan">;

// Strips the link-layer header of one captured frame. `offset` is where the
// frame starts in the file, for the error message.
export function decodeLink(linkType: number, frame: Uint8Array, offset: number): LinkFields {
  const need = (n: number): void => {
    if (frame.length < n) {
      throw new PcapError("truncated_link_header", offset,
        `${linkTypeName(linkType)} frame of ${frame.length} captured bytes is shorter than its ${n}-byte link header`);
    }
  };
  const be16 = (at: number): number => (frame[at]! << 8) | frame[at + 1]!;
  switch (linkType) {
    case LINKTYPE_ETHERNET: {
      need(14);
      let type = be16(12);
      let start = 14;
      let vlan: number | undefined;
      if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) {
        need(18);
        vlan = be16(14) & 0x0fff;
        type = be16(16);
        start = 18;
      }
      const out: LinkFields = {
        ethertype: type, ip: frame.subarray(start), dstMac: frame.subarray(0, 6), srcMac: frame.subarray(6, 12),
      };
      if (vlan !== undefined) out.vlan = vlan;
      return out;
    }
    case LINKTYPE_RAW: {
      const v = frame.length > 0 ? frame[0]! >> 4 : 0;
      return { ethertype: v === 4 ? ETHERTYPE_IPV4 : v === 6 ? ETHERTYPE_IPV6 : 0, ip: frame };
    }
    case LINKTYPE_IPV4: return { ethertype: ETHERTYPE_IPV4, ip: frame };
    case LINKTYPE_IPV6: return { ethertype: ETHERTYPE_IPV6, ip: frame };
    case LINKTYPE_LINUX_SLL: // type, ARPHRD, addr len, addr[8], protocol
      need(16);
      return { ethertype: be16(14), ip: frame.subarray(16) };
    case LINKTYPE_LINUX_SLL2: // protocol, reserved, ifindex, ARPHRD, type, addr len, addr[8]
      need(20);
      return { ethertype: be16(0), ip: frame.subarray(20) };
    default:
      throw new PcapError("unsupported_linktype", offset, `packets of ${linkTypeName(linkType)} are not supported`);
  }
}
