// File operations of `portcullis firstboot` on the root it configures. The
// first-boot file comes from a partition anyone with the SD card can write,
// and it runs as root, so every path here is relative to the root and no
// symbolic link is ever followed: each component of a path is checked with
// lstat (a link or a non-directory where a directory belongs is refused with
// one line), files are opened with O_NOFOLLOW, owners are changed through the
// opened descriptor. Nothing can be written outside the root.
//
// Changes go through a RootChange: each step records how to undo itself (the
// old file kept as a hard link until the end, a created directory removed, the
// account files put back), so an error half-way leaves the root as it was.
import {
  closeSync, constants, fchownSync, fstatSync, linkSync, lstatSync, mkdirSync, openSync, renameSync, rmdirSync, rmSync, type Stats, unlinkSync,
} from "node:fs";
import { join } from "node:path";
import { syncDirectory, writeFileAtomic } from "../io/atomic-write.js";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";

export class RootPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RootPathError";
  }
}

const parts = (rel: string): string[] => {
  const p = rel.split("/").filter((x) => x !== "");
  if (p.length === 0 || p.some((x) => x === "." || x === "..")) throw new RootPathError(`/${rel}: not a plain path inside the root`);
  return p;
};
const lstatOrNull = (path: string): Stats | null => {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
};
const what = (s: Stats): string => (s.isSymbolicLink() ? "a symbolic link" : s.isDirectory() ? "a directory" : s.isFile() ? "a file" : "a special file");

// lstat of ROOT/REL after checking that every directory on the way is a real
// directory (not a link); null if REL (or a directory on the way) is missing.
// The last component may be anything; the caller says what it accepts.
export function lstatInRoot(root: string, rel: string): Stats | null {
  const p = parts(rel);
  let path = root;
  for (let i = 0; i < p.length; i++) {
    path = join(path, p[i]!);
    const s = lstatOrNull(path);
    if (s === null) return null;
    if (i === p.length - 1) return s;
    if (!s.isDirectory()) throw new RootPathError(`/${p.slice(0, i + 1).join("/")} is ${what(s)}, not a directory; firstboot does not follow links in the root`);
  }
  return null;
}

// ROOT/REL if it is absent or a regular file; else a one-line refusal.
export function fileSlotInRoot(root: string, rel: string): Stats | null {
  const s = lstatInRoot(root, rel);
  if (s !== null && !s.isFile()) throw new RootPathError(`/${rel} is ${what(s)}, not a regular file; firstboot does not follow links in the root`);
  return s;
}

// The text of ROOT/REL (a regular file, not through a link), or null if absent.
export function readInRoot(root: string, rel: string, limit?: number): string | null {
  if (fileSlotInRoot(root, rel) === null) return null;
  try {
    return readOperatorFile(join(root, rel), `/${rel}`, limit).toString("utf8");
  } catch (e) {
    if (e instanceof OperatorFileError) throw new RootPathError(e.message);
    throw e;
  }
}

const NEW = ".firstboot-new", OLD = ".firstboot-old";
const sibling = (rel: string, tag: string): string => {
  const p = parts(rel);
  const name = p.pop()!;
  return [...p, `.${name}${tag}`].join("/");
};

// Puts the kept old file KEEP back at PATH. If PATH is still that very file
// (a program that did not replace it), rename would do nothing: drop KEEP.
function putBack(keep: string, path: string): void {
  const k = lstatSync(keep), now = lstatOrNull(path);
  if (now !== null && now.ino === k.ino && now.dev === k.dev) unlinkSync(keep);
  else renameSync(keep, path);
}

// One set of changes to a root, undone in reverse order if any step fails.
export class RootChange {
  private readonly undo: Array<{ what: string; run: () => void }> = [];
  private readonly cleanup: Array<() => void> = [];
  private readonly dirs = new Set<string>();
  constructor(readonly root: string) {}

  private at(rel: string): string { return join(this.root, rel); }

  // Creates the missing directories of REL (mode 0755), none through a link.
  mkdirs(rel: string, mode = 0o755): void {
    const p = parts(rel);
    for (let i = 1; i <= p.length; i++) {
      const sub = p.slice(0, i).join("/");
      const s = lstatInRoot(this.root, sub);
      if (s === null) {
        mkdirSync(this.at(sub), { mode });
        this.undo.push({ what: `remove the directory /${sub}`, run: () => rmdirSync(this.at(sub)) });
      } else if (!s.isDirectory()) {
        throw new RootPathError(`/${sub} is ${what(s)}, not a directory; firstboot does not follow links in the root`);
      }
    }
  }

  // Replaces (or creates) ROOT/REL with CONTENT, atomically and synced
  // (host/io/atomic-write.ts): the old file is kept as a hard link until
  // commit(), for the undo.
  write(rel: string, content: string, mode: number): void {
    const dir = parts(rel).slice(0, -1).join("/");
    if (dir) this.mkdirs(dir);
    const old = fileSlotInRoot(this.root, rel);
    const keep = old ? this.at(sibling(rel, OLD)) : null;
    try {
      if (keep) {
        rmSync(keep, { force: true });
        linkSync(this.at(rel), keep);
      }
      writeFileAtomic(this.at(rel), content, { mode, tmp: this.at(sibling(rel, NEW)) });
    } catch (e) {
      if (keep) rmSync(keep, { force: true });
      throw e;
    }
    this.dirs.add(this.at(dir));
    if (keep) {
      this.undo.push({ what: `restore /${rel}`, run: () => putBack(keep, this.at(rel)) });
      this.cleanup.push(() => unlinkSync(keep));
    } else {
      this.undo.push({ what: `remove /${rel}`, run: () => unlinkSync(this.at(rel)) });
    }
  }

  // Removes ROOT/REL if it is there (a regular file).
  remove(rel: string): boolean {
    if (fileSlotInRoot(this.root, rel) === null) return false;
    const keep = this.at(sibling(rel, OLD));
    rmSync(keep, { force: true });
    renameSync(this.at(rel), keep);
    this.undo.push({ what: `restore /${rel}`, run: () => putBack(keep, this.at(rel)) });
    this.cleanup.push(() => unlinkSync(keep));
    return true;
  }

  // chown of ROOT/REL (a directory or a regular file, not a link) through
  // its descriptor.
  chown(rel: string, uid: number, gid: number): void {
    const fd = openSync(this.at(rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const s = fstatSync(fd);
      if (!s.isFile() && !s.isDirectory()) throw new RootPathError(`/${rel} is ${what(s)}; firstboot changes the owner of files and directories only`);
      if (s.uid === uid && s.gid === gid) return;
      fchownSync(fd, uid, gid);
      this.undo.push({ what: `give /${rel} back to ${s.uid}:${s.gid}`, run: () => this.chownBack(rel, s.uid, s.gid) });
    } finally {
      closeSync(fd);
    }
  }
  private chownBack(rel: string, uid: number, gid: number): void {
    const fd = openSync(this.at(rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try { fchownSync(fd, uid, gid); } finally { closeSync(fd); }
  }

  // Runs STEP (a program that rewrites account files, e.g. useradd) with the
  // files RELS kept for the undo, and HOME (made by it: it must not exist
  // yet) removed on undo, from its first missing directory.
  accounts(rels: string[], home: string, step: () => void): void {
    const hp = parts(home);
    let made = "";
    for (let i = 1; i <= hp.length && made === ""; i++) if (lstatInRoot(this.root, hp.slice(0, i).join("/")) === null) made = hp.slice(0, i).join("/");
    if (made === "") throw new RootPathError(`/${home} exists already`);
    const kept: Array<{ rel: string; keep: string | null }> = [];
    for (const rel of rels) {
      const s = fileSlotInRoot(this.root, rel);
      const keep = s ? this.at(sibling(rel, OLD)) : null;
      if (keep) {
        rmSync(keep, { force: true });
        linkSync(this.at(rel), keep);
      }
      kept.push({ rel, keep });
    }
    const restore = (): void => {
      for (const { rel, keep } of kept) {
        if (keep) putBack(keep, this.at(rel));
        else rmSync(this.at(rel), { force: true });
      }
    };
    this.undo.push({ what: `restore ${rels.map((r) => `/${r}`).join(", ")}`, run: restore });
    this.undo.push({ what: `remove /${made}`, run: () => rmSync(this.at(made), { recursive: true, force: true }) });
    for (const { keep } of kept) if (keep) this.cleanup.push(() => unlinkSync(keep));
    step();
  }

  // Success: the kept old files go, the directories written to are synced.
  commit(): void {
    for (const c of this.cleanup) {
      try { c(); } catch { /* a kept copy that cannot go is harmless */ }
    }
    for (const d of this.dirs) syncDirectory(d);
  }

  // Failure: every step undone, last first; returns what could not be undone.
  rollback(): string[] {
    const failed: string[] = [];
    for (const u of this.undo.reverse()) {
      try { u.run(); } catch (e) { failed.push(`could not ${u.what}: ${(e as Error).message}`); }
    }
    for (const d of this.dirs) syncDirectory(d);
    return failed;
  }
}
