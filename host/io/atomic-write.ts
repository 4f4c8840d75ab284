// The one atomic write of a file (compiled tables, the daemon's last good
// table and its note, the files `portcullis firstboot` writes into a root): a
// temporary file beside the target, created exclusively and never through a
// link, written whole and fsynced, renamed over the target, then the directory
// fsynced so that the rename survives a power cut. A reader sees the old file
// or the new one, never a mix; on any error the temporary file is removed,
// the old file is left as it was, and the error says which file and why in one
// line (AtomicWriteError). The synchronous form is for commands, the
// asynchronous one for the daemon, whose event loop must not wait for a disk.
import { closeSync, constants, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

export class AtomicWriteError extends Error {
  constructor(readonly path: string, readonly why: string, readonly code?: string) {
    super(`cannot write ${path}: ${why}`);
    this.name = "AtomicWriteError";
  }
}

export interface AtomicWriteOptions {
  mode?: number; // of a new file, before the umask (default 0600)
  tmp?: string; //  the temporary file (default PATH.tmp-PID); it must be in PATH's directory
}

// The temporary file of a write by this process; one left by a process that
// died half-way has another pid, or is ours to replace.
export const temporaryFile = (path: string): string => `${path}.tmp-${process.pid}`;

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

const WHY: Record<string, string> = {
  ENOENT: "its directory does not exist", ENOTDIR: "a component of its path is not a directory",
  EISDIR: "a directory is where the file belongs", EACCES: "permission denied", EPERM: "permission denied",
  EROFS: "the file system is read-only", ENOSPC: "no space left on the device", EDQUOT: "the disk quota is exhausted",
  EEXIST: "its temporary file exists and is not a regular file",
};

function failure(path: string, e: unknown): AtomicWriteError {
  if (e instanceof AtomicWriteError) return e;
  const err = e as NodeJS.ErrnoException;
  const known = err.code !== undefined ? WHY[err.code] : undefined;
  return new AtomicWriteError(path, known ? `${known} (${err.code})` : err.message, err.code);
}

const bytesOf = (data: Uint8Array | string): Uint8Array => (typeof data === "string" ? Buffer.from(data) : data);

// fsync of a directory, so that a rename in it is on disk. Best effort: some
// file systems refuse it, and the rename is atomic all the same.
export function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try { fsyncSync(fd); } finally { closeSync(fd); }
  } catch { /* refused: the rename still is atomic */ }
}

// Writes DATA to PATH atomically (see the top of this file).
export function writeFileAtomic(path: string, data: Uint8Array | string, o: AtomicWriteOptions = {}): void {
  const tmp = o.tmp ?? temporaryFile(path);
  try {
    rmSync(tmp, { force: true }); // a leftover of a run that lost power (a file or a link, never followed)
    const fd = openSync(tmp, CREATE, o.mode ?? 0o600);
    try {
      const buf = bytesOf(data);
      for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try { rmSync(tmp, { force: true }); } catch { /* never created */ }
    throw failure(path, e);
  }
  syncDirectory(dirname(path));
}

// The same without blocking the event loop.
export async function writeFileAtomicAsync(path: string, data: Uint8Array | string, o: AtomicWriteOptions = {}): Promise<void> {
  const tmp = o.tmp ?? temporaryFile(path);
  try {
    await rm(tmp, { force: true });
    const fh = await open(tmp, CREATE, o.mode ?? 0o600);
    try {
      await fh.writeFile(bytesOf(data));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw failure(path, e);
  }
  const dh = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY).catch(() => null);
  if (dh) {
    try { await dh.sync(); } catch { /* as in syncDirectory */ } finally { await dh.close(); }
  }
}
