// Reads packet captures: classic pcap (either byte order, micro- or
// nanosecond timestamps) and pcapng (pcapng.ts), with the link layers of
// common.ts, from memory or streamed from a file in bounded memory
// (source.ts). Control path only. A malformed file raises a PcapError naming
// the byte offset; nothing here loops without moving forward.
import {
  decodeLink, linkTypeName, MAX_CAPLEN, PcapError, type PcapRecord, SUPPORTED_LINKTYPES,
} from "./common.js";
import { BT_SHB, readPcapng } from "./pcapng.js";
import { type ByteSource, FileSource, MemorySource } from "./source.js";

export * from "./common.js";
export { readPcapng } from "./pcapng.js";

const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;
const FILE_HEADER = 24;
const RECORD_HEADER = 16;

export type CaptureFormat = "pcap" | "pcapng";

// The format told by a capture's first bytes (at least 4).
export function captureFormat(bytes: Uint8Array): CaptureFormat {
  if (bytes.length < 4) throw new PcapError("truncated_header", 0, `${bytes.length} bytes is too short for a capture file`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const m = dv.getUint32(0, true);
  if (m === BT_SHB) return "pcapng";
  if (m === MAGIC_US || m === MAGIC_NS || dv.getUint32(0, false) === MAGIC_US || dv.getUint32(0, false) === MAGIC_NS) return "pcap";
  throw new PcapError("bad_magic", 0, `magic 0x${dv.getUint32(0, false).toString(16).padStart(8, "0")} is neither pcap nor pcapng`);
}

export function* readClassicPcap(src: ByteSource): Generator<PcapRecord> {
  const size = src.size;
  const head = src.peek(FILE_HEADER);
  captureFormat(head);
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const le = hv.getUint32(0, true) === MAGIC_US || hv.getUint32(0, true) === MAGIC_NS;
  const nano = hv.getUint32(0, le) === MAGIC_NS;
  if (size < FILE_HEADER) {
    throw new PcapError("truncated_header", size, `the pcap file header needs ${FILE_HEADER} bytes, the file has ${size}`);
  }
  const major = hv.getUint16(4, le);
  if (major !== 2) throw new PcapError("bad_version", 4, `pcap major version ${major}, expected 2`);
  const snaplen = hv.getUint32(16, le);
  const linkType = hv.getUint32(20, le) & 0xffff; // the upper bits carry FCS information
  if (!SUPPORTED_LINKTYPES.has(linkType)) {
    throw new PcapError("unsupported_linktype", 20, `packets of ${linkTypeName(linkType)} are not supported`);
  }
  src.take(FILE_HEADER);
  const fracNs = nano ? 1n : 1000n;
  while (src.offset < size) {
    const off = src.offset;
    if (size - off < RECORD_HEADER) {
      throw new PcapError("truncated_record", off, `the file ends ${size - off} bytes into a record header`);
    }
    const h = src.take(RECORD_HEADER);
    const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
    const caplen = dv.getUint32(8, le);
    const wirelen = dv.getUint32(12, le);
    if (caplen > wirelen || caplen > MAX_CAPLEN || (snaplen !== 0 && caplen > snaplen)) {
      throw new PcapError("bad_caplen", off + 8,
        `captured length ${caplen} with wire length ${wirelen} and snap length ${snaplen}`);
    }
    const dataAt = off + RECORD_HEADER;
    if (size - dataAt < caplen) {
      throw new PcapError("truncated_record", dataAt,
        `record of ${caplen} captured bytes, only ${size - dataAt} remain`);
    }
    const ts = BigInt(dv.getUint32(0, le)) * 1_000_000_000n + BigInt(dv.getUint32(4, le)) * fracNs;
    const view = src.take(caplen);
    const frame = src.stable ? view : view.slice();
    yield { ts, ifIndex: 0, linkType, caplen, wirelen, ...decodeLink(linkType, frame, dataAt) };
  }
}

// Every record of a capture, in file order; the format is told by its magic.
export function* iterSource(src: ByteSource): Generator<PcapRecord> {
  if (captureFormat(src.peek(4)) === "pcapng") yield* readPcapng(src);
  else yield* readClassicPcap(src);
}

export function* iterCapture(bytes: Uint8Array): Generator<PcapRecord> {
  yield* iterSource(new MemorySource(bytes));
}

export function readCapture(bytes: Uint8Array): PcapRecord[] {
  return [...iterCapture(bytes)];
}

// A capture file, read as it is consumed (bounded memory, whatever its
// size). Open it to learn its format; then `records()` once. The file must be
// a regular file (a FIFO or device is refused when opened); file-system
// problems are OperatorFileErrors, a malformed capture a PcapError.
export class CaptureFile {
  readonly format: CaptureFormat;
  private readonly src: FileSource;
  constructor(readonly path: string) {
    this.src = new FileSource(path);
    try {
      this.format = captureFormat(this.src.peek(4));
    } catch (e) {
      this.src.close();
      throw e;
    }
  }
  get size(): number { return this.src.size; }
  *records(): Generator<PcapRecord> {
    try {
      yield* iterSource(this.src);
    } finally {
      this.src.close();
    }
  }
  close(): void { this.src.close(); }
}

// Every record of a small capture file, as an array (tests and fixtures).
export function readCaptureFile(path: string): PcapRecord[] {
  return [...new CaptureFile(path).records()];
}
