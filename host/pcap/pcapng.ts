// pcapng (draft-ietf-opsawg-pcapng): sections (SHB) in either byte order,
// interfaces (IDB) with their link type, snap length and timestamp
// resolution/offset, packets from EPB and SPB. Other blocks are skipped
// unread; a decoded block is held whole (at most MAX_TAKE bytes).
import { decodeLink, MAX_CAPLEN, PcapError, type PcapRecord } from "./common.js";
import { type ByteSource, MAX_TAKE } from "./source.js";

export const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 1;
const BT_SPB = 3;
const BT_EPB = 6;
const BOM = 0x1a2b3c4d;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;
const NS = 1_000_000_000n;
export const MAX_INTERFACES = 4096;

interface Iface {
  linkType: number;
  snaplen: number; // 0: no limit
  // timestamp units -> ns: ts * mul / div, or ts * NS >> shift for binary resolutions
  mul: bigint;
  div: bigint;
  shift: bigint | undefined;
  offsetNs: bigint;
}

function tsToNs(i: Iface, units: bigint): bigint {
  const ns = i.shift !== undefined ? (units * NS) >> i.shift : (units * i.mul) / i.div;
  return ns + i.offsetNs;
}

export function* readPcapng(src: ByteSource): Generator<PcapRecord> {
  let le = true;
  let ifaces: Iface[] = [];
  const size = src.size;
  while (src.offset < size) {
    const off = src.offset;
    const first = off === 0;
    const left = size - off;
    if (left < 12) {
      throw new PcapError(first ? "truncated_header" : "truncated_record", off,
        `the file ends ${left} bytes into a pcapng block header`);
    }
    const head = src.peek(Math.min(left, 16));
    const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const rawType = hv.getUint32(0, true);
    if (rawType === BT_SHB) {
      if (left < 28) throw new PcapError("truncated_header", off, `the file ends ${left} bytes into a section header block`);
      const bom = hv.getUint32(8, true);
      if (bom === BOM) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else throw new PcapError("bad_magic", off + 8, `section header byte-order magic is 0x${bom.toString(16)}`);
      const major = hv.getUint16(12, le);
      if (major !== 1) throw new PcapError("bad_version", off + 12, `pcapng major version ${major}, expected 1`);
      ifaces = [];
    } else if (first) {
      throw new PcapError("bad_magic", 0, "a pcapng file must start with a section header block");
    }
    const type = hv.getUint32(0, le);
    const len = hv.getUint32(4, le);
    if (len < 12 || len % 4 !== 0 || (type === BT_SHB && len < 28)) {
      throw new PcapError("bad_block_length", off + 4, `block of type 0x${type.toString(16)} has length ${len}`);
    }
    if (len > left) {
      throw new PcapError(first ? "truncated_header" : "truncated_record", off,
        `block of type 0x${type.toString(16)} says ${len} bytes, only ${left} remain`);
    }
    if (type !== BT_SHB && type !== BT_IDB && type !== BT_EPB && type !== BT_SPB) {
      // Not decoded: skipped without being held, its trailer still checked.
      src.skip(len - 4);
      const t = src.take(4);
      const trailer = new DataView(t.buffer, t.byteOffset, 4).getUint32(0, le);
      if (trailer !== len) throw new PcapError("bad_block_length", off + len - 4, `block length ${len} at its start, ${trailer} at its end`);
      continue;
    }
    if (len > MAX_TAKE) {
      throw new PcapError("bad_block_length", off + 4, `block of type 0x${type.toString(16)} has length ${len}, over the ${MAX_TAKE} bytes this reader decodes`);
    }
    // Offsets below are within the block; errors name them in the file (+ off).
    const blk = src.take(len);
    const dv = new DataView(blk.buffer, blk.byteOffset, blk.byteLength);
    const trailer = dv.getUint32(len - 4, le);
    if (trailer !== len) {
      throw new PcapError("bad_block_length", off + len - 4, `block length ${len} at its start, ${trailer} at its end`);
    }
    const body = 8;
    const end = len - 4;
    const need = (n: number, what: string): void => {
      if (end - body < n) throw new PcapError("bad_block_length", off + 4, `${what} of length ${len} is too short for its fields`);
    };
    if (type === BT_IDB) {
      need(8, "interface description block");
      const iface: Iface = {
        linkType: dv.getUint16(body, le), snaplen: dv.getUint32(body + 4, le),
        mul: 1000n, div: 1n, shift: undefined, offsetNs: 0n,
      };
      readOptions(dv, le, off, body + 8, end, (code, at, olen) => {
        if (code === OPT_IF_TSRESOL && olen >= 1) {
          const r = blk[at]!;
          const e = r & 0x7f;
          if (r & 0x80) {
            iface.shift = BigInt(e);
          } else if (e <= 9) {
            iface.mul = 10n ** BigInt(9 - e); iface.div = 1n;
          } else {
            iface.mul = 1n; iface.div = 10n ** BigInt(e - 9);
          }
        } else if (code === OPT_IF_TSOFFSET && olen >= 8) {
          iface.offsetNs = dv.getBigInt64(at, le) * NS;
        }
      });
      // A file of nothing but interface blocks must not grow this without bound.
      if (ifaces.length >= MAX_INTERFACES) throw new PcapError("bad_interface", off, `more than ${MAX_INTERFACES} interfaces in one section`);
      ifaces.push(iface);
    } else if (type === BT_EPB || type === BT_SPB) {
      const epb = type === BT_EPB;
      need(epb ? 20 : 4, epb ? "enhanced packet block" : "simple packet block");
      const ifIndex = epb ? dv.getUint32(body, le) : 0;
      const iface = ifaces[ifIndex];
      if (!iface) {
        throw new PcapError("bad_interface", off + (epb ? body : 0),
          `packet on interface ${ifIndex}, but the section describes ${ifaces.length} interface(s)`);
      }
      const dataAt = body + (epb ? 20 : 4);
      const room = end - dataAt;
      const wirelen = dv.getUint32(epb ? body + 16 : body, le);
      let caplen: number;
      let ts = 0n; // an SPB carries no timestamp
      if (epb) {
        caplen = dv.getUint32(body + 12, le);
        ts = tsToNs(iface, (BigInt(dv.getUint32(body + 4, le)) << 32n) | BigInt(dv.getUint32(body + 8, le)));
        if (caplen > room) throw new PcapError("bad_caplen", off + body + 12, `captured length ${caplen} runs past its block (${room} bytes of room)`);
      } else {
        caplen = Math.min(wirelen, room, iface.snaplen || room);
      }
      if (caplen > wirelen || caplen > MAX_CAPLEN || (iface.snaplen !== 0 && caplen > iface.snaplen)) {
        throw new PcapError("bad_caplen", off + (epb ? body + 12 : body),
          `captured length ${caplen} with wire length ${wirelen} and snap length ${iface.snaplen}`);
      }
      const view = blk.subarray(dataAt, dataAt + caplen);
      const frame = src.stable ? view : view.slice();
      yield { ts, ifIndex, linkType: iface.linkType, caplen, wirelen, ...decodeLink(iface.linkType, frame, off + dataAt) };
    }
  }
}

// Calls `each` for every option of a block; stops at opt_endofopt.
function readOptions(dv: DataView, le: boolean, base: number, at: number, end: number,
  each: (code: number, valueAt: number, len: number) => void): void {
  while (end - at >= 4) {
    const code = dv.getUint16(at, le);
    const olen = dv.getUint16(at + 2, le);
    if (code === 0) return;
    if (at + 4 + olen > end) throw new PcapError("bad_option", base + at, `option ${code} of ${olen} bytes runs past its block`);
    each(code, at + 4, olen);
    at += 4 + ((olen + 3) & ~3);
  }
  if (at !== end) throw new PcapError("bad_option", base + at, `${end - at} stray bytes after the last option`);
}
