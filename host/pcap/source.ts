// Where a capture's bytes come from: memory (tests, small tools) or a file
// read through a bounded window, so a capture of any size is read in bounded
// memory (an 80 MB capture of empty records once cost 2.7 GB read whole).
// The readers (read.ts, pcapng.ts) only ever ask for the next few bytes.
import { closeSync, readSync } from "node:fs";
import { openOperatorFile } from "../io/operator-file.js";
import { PcapError } from "./common.js";

// The largest piece a reader takes at once: a pcapng block it decodes
// (longer ones are refused) or a classic record (at most MAX_CAPLEN).
export const MAX_TAKE = 1 << 20;
const CHUNK = 1 << 20;

export interface ByteSource {
  readonly size: number; //   bytes in the capture
  readonly offset: number; // of the next byte to take
  // True when views from take() stay valid (memory); false when they are
  // overwritten by the next take (a file window): keep a copy.
  readonly stable: boolean;
  // The next n bytes (n <= MAX_TAKE, n <= size - offset), consumed.
  take(n: number): Uint8Array;
  // The next n bytes, not consumed.
  peek(n: number): Uint8Array;
  skip(n: number): void;
  close(): void;
}

export class MemorySource implements ByteSource {
  offset = 0;
  readonly stable = true;
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number { return this.bytes.length; }
  peek(n: number): Uint8Array { return this.bytes.subarray(this.offset, this.offset + n); }
  take(n: number): Uint8Array { const b = this.peek(n); this.offset += b.length; return b; }
  skip(n: number): void { this.offset = Math.min(this.bytes.length, this.offset + n); }
  close(): void { /* nothing held */ }
}

// A regular file (checked by openOperatorFile: a FIFO or a device is refused
// before a byte is read), read forward through one buffer of about 1 MiB.
export class FileSource implements ByteSource {
  offset = 0;
  readonly stable = false;
  readonly size: number;
  private fd: number;
  private buf = Buffer.allocUnsafe(CHUNK);
  private start = 0; // file offset of buf[0]
  private end = 0; //   file offset just past the bytes held

  constructor(readonly path: string) {
    const f = openOperatorFile(path, "capture", Number.MAX_SAFE_INTEGER);
    this.fd = f.fd;
    this.size = f.size;
  }

  private fill(n: number): void {
    if (n > MAX_TAKE) throw new Error(`internal error: a capture reader asked for ${n} bytes at once`);
    if (this.offset + n <= this.end) return;
    // Keep the unread bytes, at the front of the buffer.
    const keep = Math.max(0, this.end - this.offset);
    this.buf.copy(this.buf, 0, this.offset - this.start, this.offset - this.start + keep);
    this.start = this.offset;
    this.end = this.offset + keep;
    const want = Math.min(Math.max(n, CHUNK), this.size - this.start);
    while (this.end - this.start < want) {
      const got = readSync(this.fd, this.buf, this.end - this.start, want - (this.end - this.start), this.end);
      if (got === 0) throw new PcapError("truncated_record", this.end, `the file ends at ${this.end} bytes, shorter than the ${this.size} it had when opened`);
      this.end += got;
    }
  }

  peek(n: number): Uint8Array {
    n = Math.min(n, this.size - this.offset);
    this.fill(n);
    return this.buf.subarray(this.offset - this.start, this.offset - this.start + n);
  }

  take(n: number): Uint8Array { const b = this.peek(n); this.offset += b.length; return b; }

  skip(n: number): void { this.offset = Math.min(this.size, this.offset + n); }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
