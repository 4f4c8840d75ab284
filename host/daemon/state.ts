// The last good table on disk. After every successful commit the daemon
// writes the committed table's bytes to STATE_DIR/last-good.table (and a
// small JSON note beside it: which policy, which mode, when, its sha256),
// each atomically (host/io/atomic-write.ts: a temporary file in the same
// directory, fsync, rename over the old one, fsync of the directory). A crash
// at any point leaves either the old file or the new one, never a mix. The daemon writes in the background
// (LastGoodWriter): an fsync takes milliseconds here and can take far more on
// an SD card, and the event loop that runs the batches must not wait for it;
// commits faster than the disk keep only the newest table queued.
//
// At start, when the policy does not compile or load, the daemon comes back
// with that table (and says so loudly); when that fails too it refuses to
// start (startDaemon below).
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic, writeFileAtomicAsync } from "../io/atomic-write.js";
import { type Logger } from "./log.js";

export const DEFAULT_STATE_DIR = "/var/lib/portcullis";
export const LAST_GOOD = "last-good.table";
export const LAST_GOOD_NOTE = "last-good.json";

export interface LastGoodNote {
  policy: string; //  the file the table was compiled or read from
  mode: string;
  savedAt: string;
  ticket: number | null;
  rules: number;
  bytes: number;
  sha256: string;
}

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

// Saves a committed table now (tools and tests; the daemon uses
// LastGoodWriter); returns the file written.
export function saveLastGood(dir: string, table: Uint8Array, note: NoteIn): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, LAST_GOOD);
  const full: LastGoodNote = { ...note, savedAt: new Date().toISOString(), bytes: table.length, sha256: sha256(table) };
  writeFileAtomic(file, table);
  writeFileAtomic(join(dir, LAST_GOOD_NOTE), `${JSON.stringify(full, null, 2)}\n`);
  return file;
}

type NoteIn = Omit<LastGoodNote, "savedAt" | "bytes" | "sha256">;

// Saves committed tables in the background, one at a time, in commit order;
// a table committed while an earlier one is being written replaces any that
// still waits (only the newest matters).
export class LastGoodWriter {
  readonly file: string;
  written = 0;
  failed = 0;
  private next: { table: Uint8Array; note: LastGoodNote } | null = null;
  private running: Promise<void> | null = null;

  constructor(readonly dir: string, private readonly log: Logger) {
    this.file = join(dir, LAST_GOOD);
    sweepTemporaries(dir);
  }

  save(table: Uint8Array, note: NoteIn): void {
    this.next = { table, note: { ...note, savedAt: new Date().toISOString(), bytes: table.length, sha256: sha256(table) } };
    this.running ??= this.drain();
  }

  // Resolves when everything queued is on disk (or failed and was logged).
  idle(): Promise<void> { return this.running ?? Promise.resolve(); }

  private async drain(): Promise<void> {
    while (this.next) {
      const job = this.next;
      this.next = null;
      try {
        await mkdir(this.dir, { recursive: true, mode: 0o700 });
        await writeFileAtomicAsync(this.file, job.table);
        await writeFileAtomicAsync(join(this.dir, LAST_GOOD_NOTE), `${JSON.stringify(job.note, null, 2)}\n`);
        this.written++;
      } catch (e) {
        this.failed++;
        this.log.log("warn", "cannot save the last good table (the commit stands)", { dir: this.dir, error: e instanceof Error ? e.message : String(e) });
      }
    }
    this.running = null;
  }
}

// Removes temporary files left by a daemon killed in the middle of a save
// (atomic-write.ts's temporaryFile: PATH.tmp-PID).
export function sweepTemporaries(dir: string): void {
  let names: string[];
  try { names = readdirSync(dir); } catch { return; }
  for (const n of names) {
    if (/^last-good\.(table|json)\.tmp-\d+$/.test(n)) rmSync(join(dir, n), { force: true });
  }
}

export interface LastGood { file: string; bytes: Uint8Array; note: LastGoodNote | null; mtime: Date }

// The saved table, or a reason why there is none usable.
export function readLastGood(dir: string): LastGood | { error: string } {
  const file = join(dir, LAST_GOOD);
  let bytes: Buffer;
  let mtime: Date;
  try {
    bytes = readFileSync(file);
    mtime = statSync(file).mtime;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { error: err.code === "ENOENT" ? `no last good table in ${dir}` : `cannot read ${file}: ${err.message}` };
  }
  let note: LastGoodNote | null = null;
  try {
    note = JSON.parse(readFileSync(join(dir, LAST_GOOD_NOTE), "utf8")) as LastGoodNote;
    // A note that belongs to another table (a crash between the two renames)
    // says nothing about this one.
    if (note.sha256 !== sha256(bytes)) note = null;
  } catch { note = null; }
  return { file, bytes, note, mtime };
}

// What a daemon must offer for its first load (Daemon does).
export interface FirstLoadable {
  readonly opts: { policy: string; mode: string; stateDir?: string };
  reload(path?: string, prepared?: Uint8Array, o?: { trigger?: string; from?: string }): Promise<{ ok: boolean; error?: string; rules?: number; ticket: number | null }>;
}

// The first load of `run`: the policy; when it fails, the last good table
// (the daemon keeps the policy as its policy path, so SIGHUP, the file watch
// and `portcullis reload` try the policy again); when that fails too, an
// Error that says both reasons.
export async function startDaemon(d: FirstLoadable, log: Logger): Promise<{ fallback: boolean }> {
  const first = await d.reload(undefined, undefined, { trigger: "start" });
  if (first.ok) return { fallback: false };
  const dir = d.opts.stateDir;
  if (!dir) throw new Error(`cannot start: ${first.error} (and no --state-dir to fall back on)`);
  const lg = readLastGood(dir);
  if ("error" in lg) throw new Error(`cannot start: the policy does not load: ${first.error}; and ${lg.error}`);
  if (lg.note && lg.note.mode !== d.opts.mode) {
    throw new Error(`cannot start: the policy does not load: ${first.error}; and the last good table ${lg.file} ` +
      `was compiled for ${lg.note.mode} mode, not ${d.opts.mode}`);
  }
  const rec = await d.reload(d.opts.policy, lg.bytes, { trigger: "start", from: lg.file });
  if (!rec.ok) throw new Error(`cannot start: the policy does not load: ${first.error}; and the last good table ${lg.file} is refused: ${rec.error}`);
  log.log("error", "RUNNING THE LAST GOOD TABLE: the policy does not load, so the daemon came back with the table it last committed; " +
    "fix the policy and save it (or reload) to replace it", {
    policy: d.opts.policy, policyError: first.error, lastGood: lg.file, savedAt: lg.note?.savedAt ?? lg.mtime.toISOString(),
    savedFrom: lg.note?.policy ?? null, rules: rec.rules, ticket: rec.ticket,
  });
  return { fallback: true };
}
