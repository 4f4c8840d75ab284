// The one reader of files an operator names (policies, set files, compiled
// tables, board and first-boot configs, ClassBench sets, captures): a
// regular file only, at most a size limit, read once. A FIFO would stall the
// event loop until a writer came (and a second read would see other bytes),
// /dev/zero would never end, and a sparse file would cost its apparent size in
// memory before any check ran; each is refused here with one line, before a
// byte is read. The bytes returned are the bytes every later step (check,
// compile, stage) sees. Captures are not read whole: openOperatorFile gives
// the checked descriptor to a streaming reader (host/pcap/source.ts).
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

// Larger than any table the core accepts (its default slot is 32 MiB) and any
// policy or set file that compiles into one; documented in the README.
export const MAX_OPERATOR_FILE = 64 << 20;

export type FileProblem = "missing" | "unreadable" | "not_regular" | "too_large";

export class OperatorFileError extends Error {
  // `detail` is the message without the leading "PATH: ", for callers that
  // place the path themselves (FILE:LINE:COL diagnostics).
  constructor(readonly path: string, readonly kind: FileProblem, readonly detail: string, readonly code?: string) {
    super(`${path}: ${detail}`);
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

const WHY: Record<string, string> = {
  EACCES: "permission denied", EPERM: "permission denied", ELOOP: "too many levels of symbolic links",
  ENOTDIR: "a component of the path is not a directory", ENAMETOOLONG: "the path is too long", EISDIR: "it is a directory",
};

function unreadable(path: string, what: string, e: unknown): OperatorFileError {
  const err = e as NodeJS.ErrnoException;
  const why = err.code ? `${WHY[err.code] ?? err.code}${WHY[err.code] ? ` (${err.code})` : ""}` : err.message;
  return new OperatorFileError(path, "unreadable", `cannot read the ${what}: ${why}`, err.code);
}

export interface OpenedFile { fd: number; size: number }

// Opens `path` for reading and checks it is a regular file of at most
// `limit` bytes; the caller closes the descriptor.
export function openOperatorFile(path: string, what = "file", limit = MAX_OPERATOR_FILE): OpenedFile {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO without a writer must not wait for one.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT") throw new OperatorFileError(path, "missing", `no such ${what} file`, err.code);
    throw unreadable(path, what, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new OperatorFileError(path, "not_regular", `the ${what} must be a regular file, not ${KIND_OF(st.mode)}`);
    }
    if (st.size > limit) {
      throw new OperatorFileError(path, "too_large", `the ${what} is ${st.size} bytes, over the ${limit}-byte limit`);
    }
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

// Reads `path` whole. `what` names the file in messages ("policy", "table").
export function readOperatorFile(path: string, what = "file", limit = MAX_OPERATOR_FILE): Buffer {
  const { fd, size } = openOperatorFile(path, what, limit);
  try {
    // Read what fstat promised and one byte more: a file that grew meanwhile
    // is refused rather than read without bound.
    const buf = Buffer.allocUnsafe(size + 1);
    let off = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, off, buf.length - off, null);
      } catch (e) {
        throw unreadable(path, what, e);
      }
      if (n === 0) break;
      off += n;
      if (off > size) throw new OperatorFileError(path, "too_large", `the ${what} grew while it was read; try again`);
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}
