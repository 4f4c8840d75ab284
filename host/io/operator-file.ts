// The one reader of files an operator names (policies, set files, compiled
// tables, board and first-boot configs): a regular file only, at most a size
// limit, read once. A FIFO would stall the event loop until a writer came (and
// a second read would see other bytes), /dev/zero would never end, and a
// sparse file would cost its apparent size in memory before any check ran;
// each is refused here with one line, before a byte is read. The bytes
// returned are the bytes every later step (check, compile, stage) sees.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

// Larger than any table the core accepts (its default slot is 32 MiB) and any
// policy or set file that compiles into one; documented in the README.
export const MAX_OPERATOR_FILE = 64 << 20;

export type FileProblem = "missing" | "unreadable" | "not_regular" | "too_large";

export class OperatorFileError extends Error {
  constructor(readonly path: string, readonly kind: FileProblem, message: string, readonly code?: string) {
    super(message);
    this.name = "OperatorFileError";
  }
}

const KIND_OF = (mode: number): string => {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFDIR: return "a directory";
    case constants.S_IFIFO: return "a FIFO";
    case constants.S_IFCHR: return "a character device";
    case constants.S_IFBLK: return "a block device";
    case constants.S_IFSOCK: return "a socket";
    default: return "another kind of file";
  }
};

// Reads `path` whole. `what` names the file in messages ("policy", "table").
export function readOperatorFile(path: string, what = "file", limit = MAX_OPERATOR_FILE): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO without a writer must not wait for one.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT") throw new OperatorFileError(path, "missing", `${path}: no such ${what} file`, err.code);
    throw new OperatorFileError(path, "unreadable", `${path}: cannot read the ${what} (${err.code ?? err.message})`, err.code);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new OperatorFileError(path, "not_regular", `${path}: the ${what} must be a regular file, not ${KIND_OF(st.mode)}`);
    }
    if (st.size > limit) {
      throw new OperatorFileError(path, "too_large", `${path}: the ${what} is ${st.size} bytes, over the ${limit}-byte limit`);
    }
    // Read what fstat promised and one byte more: a file that grew meanwhile
    // is refused rather than read without bound.
    const buf = Buffer.allocUnsafe(st.size + 1);
    let off = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, off, buf.length - off, null);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        throw new OperatorFileError(path, "unreadable", `${path}: cannot read the ${what} (${err.code ?? err.message})`, err.code);
      }
      if (n === 0) break;
      off += n;
      if (off > st.size) throw new OperatorFileError(path, "too_large", `${path}: the ${what} grew while it was read; try again`);
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}
