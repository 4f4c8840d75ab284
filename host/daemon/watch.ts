// The file-watch trigger of `run --watch` (on by default): saving the policy
// (or the compiled table) the daemon runs applies it.
//
// Editors save by writing a new file and renaming it over the old one, which
// a watch on the file itself would lose (it follows the old inode), so the
// watch is on the file's directory, and only events naming the file count.
// Nothing is loaded half-written:
//   - every event restarts a debounce (300 ms);
//   - then the file is read, and read again one debounce later; only content
//     that is the same in both reads goes on (a write still in progress, or
//     one whose events were coalesced, shows as a difference and restarts);
//   - content that looks incomplete (a table whose length is not the one its
//     header names; a YAML policy that does not parse or does not end with a
//     newline) waits up to `maxWaits` more rounds: a slow writer finishes,
//     a broken save stays broken and then goes to the reload, which refuses
//     it with file:line:col (the live table stays);
//   - content equal to what is live (a touch, a save without change, a save
//     that undoes a broken one) or to what was last refused is not reloaded.
// The bytes that were checked are the bytes compiled: the file is not read a
// third time. The watch follows the daemon's policy path: after `portcullis
// reload OTHER` it watches OTHER.
import { type FSWatcher, watch } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { parseDocument } from "yaml";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import * as F from "../rules/format.js";
import { type ReloadOptions, type ReloadRecord } from "./daemon.js";
import { type Logger } from "./log.js";

export const DEFAULT_DEBOUNCE_MS = 300;

// What the watcher needs of the daemon (Daemon has it).
export interface Reloadable {
  readonly policy: string;
  reload(path?: string, prepared?: Uint8Array, o?: ReloadOptions): Promise<ReloadRecord>;
}

export interface WatchOptions {
  debounceMs?: number;
  maxWaits?: number; //  extra rounds an incomplete-looking file may take to finish
  recheck?: boolean; //  reloads it triggers re-check flows (run --recheck)
}

export interface WatchStats { events: number; reads: number; unstable: number; incomplete: number; unchanged: number; reloads: number; refused: number }

// Why `content` looks like a file still being written, or null when it
// looks whole.
export function incomplete(content: Uint8Array): string | null {
  if (content.length === 0) return "empty";
  const b = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  if (b.length >= 4 && b.readUInt32LE(0) === F.TABLE_MAGIC) {
    if (b.length < F.HDR_SIZE) return `a table of ${b.length} bytes, shorter than its header`;
    const total = b.readUInt32LE(F.T_TOTAL_LEN);
    return total === b.length ? null : `a table of ${b.length} bytes whose header says ${total}`;
  }
  const text = b.toString("utf8");
  if (!text.endsWith("\n")) return "does not end with a newline";
  const doc = parseDocument(text);
  const err = doc.errors[0];
  // The error's code, not its message: a message can quote the file.
  if (err) return `does not parse as YAML${err.linePos ? ` at ${err.linePos[0].line}:${err.linePos[0].col}` : ""} (${err.code})`;
  return null;
}

export class PolicyWatcher {
  readonly stats: WatchStats = { events: 0, reads: 0, unstable: 0, incomplete: 0, unchanged: 0, reloads: 0, refused: 0 };
  private readonly debounceMs: number;
  private readonly maxWaits: number;
  private fsw: FSWatcher | null = null;
  private follow: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private path = "";
  private base = "";
  private live: Buffer | null = null; //    content of the live table's file (as last loaded or seen)
  private refused: Buffer | null = null; // content last tried and refused
  private pending: Buffer | null = null; // the first read of the stability check
  private waits = 0;
  private stopped = false;

  constructor(private readonly d: Reloadable, private readonly log: Logger, private readonly o: WatchOptions = {}) {
    this.debounceMs = o.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.maxWaits = o.maxWaits ?? 3;
  }

  get watching(): string { return this.path; }

  start(): void {
    this.target(this.d.policy);
    // Follow the daemon to another file after `portcullis reload OTHER`.
    this.follow = setInterval(() => { if (resolve(this.d.policy) !== this.path) this.target(this.d.policy); }, 1000);
    this.follow.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.follow) clearInterval(this.follow);
    if (this.timer) clearTimeout(this.timer);
    this.fsw?.close();
    this.fsw = null;
  }

  private target(p: string): void {
    this.fsw?.close();
    if (this.timer) clearTimeout(this.timer);
    this.path = resolve(p);
    this.base = basename(this.path);
    // The file as it is now is what the daemon runs (or, after a failed
    // start, what it could not load): only a change of it is news.
    this.live = read(this.path);
    this.refused = null;
    this.pending = null;
    this.waits = 0;
    const dir = dirname(this.path);
    try {
      this.fsw = watch(dir, { persistent: false }, (_ev, name) => this.event(name));
      this.fsw.on("error", (e) => this.log.log("error", "policy watch failed; saving the policy no longer reloads it (SIGHUP and `portcullis reload` still do)", { dir, error: e.message }));
      this.log.log("info", "watching the policy", { path: this.path, debounceMs: this.debounceMs });
    } catch (e) {
      this.fsw = null;
      this.log.log("error", "cannot watch the policy's directory; saving the policy will not reload it", { dir, error: (e as Error).message });
    }
  }

  private event(name: string | Buffer | null): void {
    if (this.stopped) return;
    if (name !== null && String(name) !== this.base) return;
    this.stats.events++;
    this.pending = null; // a new write: the stability check starts over
    this.waits = 0;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), this.debounceMs);
  }

  private check(): void {
    this.timer = null;
    if (this.stopped) return;
    const now = read(this.path, this.log);
    this.stats.reads++;
    if (now === null) {
      // Gone for the moment (renamed away before the new one lands): the
      // event of its return starts a new round.
      this.pending = null;
      return;
    }
    if (this.pending === null || !now.equals(this.pending)) {
      if (this.pending !== null) this.stats.unstable++;
      this.pending = now;
      this.schedule();
      return;
    }
    // The same in two reads a debounce apart.
    this.pending = null;
    if ((this.live && now.equals(this.live)) || (this.refused && now.equals(this.refused))) {
      this.stats.unchanged++;
      this.waits = 0;
      return;
    }
    const why = incomplete(now);
    if (why && this.waits < this.maxWaits) {
      this.waits++;
      this.stats.incomplete++;
      this.log.log("warn", "the policy file looks incomplete; waiting for the writer to finish", { path: this.path, why, wait: this.waits, of: this.maxWaits });
      this.pending = now;
      this.schedule();
      return;
    }
    this.waits = 0;
    this.stats.reloads++;
    // The reload compiles in the worker; a save made meanwhile queues behind it.
    void this.d.reload(this.path, undefined, { content: now, trigger: "watch", ...(this.o.recheck ? { recheck: true } : {}) }).then((rec) => {
      if (rec.ok) { this.live = now; this.refused = null; } else { this.refused = now; this.stats.refused++; }
    });
  }
}

// The file's bytes, or null while it is missing; a FIFO, a device or an
// oversize file is refused without being read (it would stall the daemon's
// event loop or fill its memory), as is an unreadable one.
function read(path: string, log?: Logger): Buffer | null {
  try {
    return readOperatorFile(path, "policy");
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    if (e.kind !== "missing") log?.log("error", "the policy file cannot be loaded; the live table stays", { path, error: e.message });
    return null;
  }
}
