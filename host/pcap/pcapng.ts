// pcapng (draft-ietf-opsawg-pcapng): sections (SHB) in either byte order,
// interfaces (IDB) with their link type, snap length and timestamp
// resolution/offset, packets from EPB and SPB. Other blocks are skipped.
import { decodeLink, MAX_CAPLEN, PcapError, type PcapRecord } from "./common.js";

export const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 1;
const BT_SPB = 3;
const BT_EPB = 6;
const BOM = 0x1a2b3c4d;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;
const NS = 1_000_000_000n;

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

export function* readPcapng(bytes: Uint8Array): Generator<PcapRecord> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le = true;
  let ifaces: Iface[] = [];
  let off = 0;
  while (off < bytes.length) {
    const first = off === 0;
    const left = bytes.length - off;
    if (left < 12) {
      throw new PcapError(first ? "truncated_header" : "truncated_record", off,
        `the file ends ${left} bytes into a pcapng block header`);
    }
    const rawType = dv.getUint32(off, true);
    if (rawType === BT_SHB) {
      if (left < 28) throw new PcapError("truncated_header", off, `the file ends ${left} bytes into a section header block`);
      const bom = dv.getUint32(off + 8, true);
      if (bom === BOM) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else throw new PcapError("bad_magic", off + 8, `section header byte-order magic is 0x${bom.toString(16)}`);
      const major = dv.getUint16(off + 12, le);
      if (major !== 1) throw new PcapError("bad_version", off + 12, `pcapng major version ${major}, expected 1`);
      ifaces = [];
    } else if (first) {
      throw new PcapError("bad_magic", 0, "a pcapng file must start with a section header block");
    }
    const type = dv.getUint32(off, le);
    const len = dv.getUint32(off + 4, le);
    if (len < 12 || len % 4 !== 0 || (type === BT_SHB && len < 28)) {
      throw new PcapError("bad_block_length", off + 4, `block of type 0x${type.toString(16)} has length ${len}`);
    }
    if (len > left) {
      throw new PcapError(first ? "truncated_header" : "truncated_record", off,
        `block of type 0x${type.toString(16)} says ${len} bytes, only ${left} remain`);
    }
    const trailer = dv.getUint32(off + len - 4, le);
    if (trailer !== len) {
      throw new PcapError("bad_block_length", off + len - 4, `block length ${len} at its start, ${trailer} at its end`);
    }
    const body = off + 8;
    const end = off + len - 4;
    const need = (n: number, what: string): void => {
      if (end - body < n) throw new PcapError("bad_block_length", off + 4, `${what} of length ${len} is too short for its fields`);
    };
    if (type === BT_IDB) {
      need(8, "interface description block");
      const iface: Iface = {
        linkType: dv.getUint16(body, le), snaplen: dv.getUint32(body + 4, le),
        mul: 1000n, div: 1n, shift: undefined, offsetNs: 0n,
      };
      readOptions(dv, le, body + 8, end, (code, at, olen) => {
        if (code === OPT_IF_TSRESOL && olen >= 1) {
          const r = bytes[at]!;
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
      ifaces.push(iface);
    } else if (type === BT_EPB || type === BT_SPB) {
      const epb = type === BT_EPB;
      need(epb ? 20 : 4, epb ? "enhanced packet block" : "simple packet block");
      const ifIndex = epb ? dv.getUint32(body, le) : 0;
      const iface = ifaces[ifIndex];
      if (!iface) {
        throw new PcapError("bad_interface", epb ? body : off,
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
        if (caplen > room) throw new PcapError("bad_caplen", body + 12, `captured length ${caplen} runs past its block (${room} bytes of room)`);
      } else {
        caplen = Math.min(wirelen, room, iface.snaplen || room);
      }
      if (caplen > wirelen || caplen > MAX_CAPLEN || (iface.snaplen !== 0 && caplen > iface.snaplen)) {
        throw new PcapError("bad_caplen", epb ? body + 12 : body,
          `captured length ${caplen} with wire length ${wirelen} and snap length ${iface.snaplen}`);
      }
      const frame = bytes.subarray(dataAt, dataAt + caplen);
      yield { ts, ifIndex, linkType: iface.linkType, caplen, wirelen, ...decodeLink(iface.linkType, frame, dataAt) };
    }
    off += len;
  }
}

// Calls `each` for every option of a block; stops at opt_endofopt.
function readOptions(dv: DataView, le: boolean, at: number, end: number,
  each: (code: number, valueAt: number, len: number) => void): void {
  while (end - at >= 4) {
    const code = dv.getUint16(at, le);
    const olen = dv.getUint16(at + 2, le);
    if (code === 0) return;
    if (at + 4 + olen > end) throw new PcapError("bad_option", at, `option ${code} of ${olen} bytes runs past its block`);
    each(code, at + 4, olen);
    at += 4 + ((olen + 3) & ~3);
  }
  if (at !== end) throw new PcapError("bad_option", at, `${end - at} stray bytes after the last option`);
}
