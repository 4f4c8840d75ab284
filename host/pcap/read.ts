// Reads packet captures: classic pcap (either byte order, micro- or
// nanosecond timestamps) and pcapng (pcapng.ts), with the link layers of
// common.ts. Control path only: the whole file is in memory. A malformed
// file raises a PcapError naming the byte offset; nothing here loops without
// moving forward.
import { readFileSync } from "node:fs";
import {
  decodeLink, linkTypeName, MAX_CAPLEN, PcapError, type PcapRecord, SUPPORTED_LINKTYPES,
} from "./common.js";
import { BT_SHB, readPcapng } from "./pcapng.js";

export * from "./common.js";
export { readPcapng } from "./pcapng.js";

const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;
const FILE_HEADER = 24;
const RECORD_HEADER = 16;

export type CaptureFormat = "pcap" | "pcapng";

export function captureFormat(bytes: Uint8Array): CaptureFormat {
  if (bytes.length < 4) throw new PcapError("truncated_header", 0, `${bytes.length} bytes is too short for a capture file`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const m = dv.getUint32(0, true);
  if (m === BT_SHB) return "pcapng";
  if (m === MAGIC_US || m === MAGIC_NS || dv.getUint32(0, false) === MAGIC_US || dv.getUint32(0, false) === MAGIC_NS) return "pcap";
  throw new PcapError("bad_magic", 0, `magic 0x${dv.getUint32(0, false).toString(16).padStart(8, "0")} is neither pcap nor pcapng`);
}

export function* readClassicPcap(bytes: Uint8Array): Generator<PcapRecord> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  captureFormat(bytes);
  const le = dv.getUint32(0, true) === MAGIC_US || dv.getUint32(0, true) === MAGIC_NS;
  const nano = dv.getUint32(0, le) === MAGIC_NS;
  if (bytes.length < FILE_HEADER) {
    throw new PcapError("truncated_header", bytes.length, `the pcap file header needs ${FILE_HEADER} bytes, the file has ${bytes.length}`);
  }
  const major = dv.getUint16(4, le);
  if (major !== 2) throw new PcapError("bad_version", 4, `pcap major version ${major}, expected 2`);
  const snaplen = dv.getUint32(16, le);
  const linkType = dv.getUint32(20, le) & 0xffff; // the upper bits carry FCS information
  if (!SUPPORTED_LINKTYPES.has(linkType)) {
    throw new PcapError("unsupported_linktype", 20, `packets of ${linkTypeName(linkType)} are not supported`);
  }
  const fracNs = nano ? 1n : 1000n;
  let off = FILE_HEADER;
  while (off < bytes.length) {
    if (bytes.length - off < RECORD_HEADER) {
      throw new PcapError("truncated_record", off, `the file ends ${bytes.length - off} bytes into a record header`);
    }
    const caplen = dv.getUint32(off + 8, le);
    const wirelen = dv.getUint32(off + 12, le);
    if (caplen > wirelen || caplen > MAX_CAPLEN || (snaplen !== 0 && caplen > snaplen)) {
      throw new PcapError("bad_caplen", off + 8,
        `captured length ${caplen} with wire length ${wirelen} and snap length ${snaplen}`);
    }
    const dataAt = off + RECORD_HEADER;
    if (bytes.length - dataAt < caplen) {
      throw new PcapError("truncated_record", dataAt,
        `record of ${caplen} captured bytes, only ${bytes.length - dataAt} remain`);
    }
    const ts = BigInt(dv.getUint32(off, le)) * 1_000_000_000n + BigInt(dv.getUint32(off + 4, le)) * fracNs;
    const frame = bytes.subarray(dataAt, dataAt + caplen);
    yield { ts, ifIndex: 0, linkType, caplen, wirelen, ...decodeLink(linkType, frame, dataAt) };
    off = dataAt + caplen;
  }
}

// Every record of a capture, in file order; the format is told by its magic.
export function* iterCapture(bytes: Uint8Array): Generator<PcapRecord> {
  if (captureFormat(bytes) === "pcapng") yield* readPcapng(bytes);
  else yield* readClassicPcap(bytes);
}

export function readCapture(bytes: Uint8Array): PcapRecord[] {
  return [...iterCapture(bytes)];
}

// Reads a capture file; file-system errors (ENOENT, EISDIR...) pass through.
export function readCaptureFile(path: string): PcapRecord[] {
  return readCapture(readFileSync(path));
}
