// Turning an operator's file into table bytes, off the packet thread. A
// policy with a million-prefix set takes seconds to compile and hundreds of
// MiB to do it; on the event loop that ran the packet batches it stalled
// them for as long (the watchdog is 10 s, and a Pi is slower). So the daemon
// compiles in a worker thread (compile-worker.ts) and only stages and commits
// on the loop, between two batches.
//
// One worker, started on first use and kept for the next reload; one job at
// a time. The worker reads the file itself (readPolicyFile: a regular file,
// under the size limit, read once) unless the bytes come with the job (the
// file watch read them), so the bytes read are the bytes compiled and
// staged. A policy takes the CLI's path (compilePolicyText, buildPolicyTable:
// the YAML size limit, the core's rule and table-size limits during build).
// Its heap is capped (resourceLimits); a job that takes longer than
// `timeoutMs` or a worker that dies (out of memory, a crash) is refused with
// one line and the worker is replaced at the next job.
import { Worker } from "node:worker_threads";
import { OperatorFileError } from "../io/operator-file.js";
import { buildPolicyTable, compilePolicyText, type Mode, readPolicyFile } from "../policy/compile.js";
import { ConfigError } from "../config/errors.js";
import * as F from "../rules/format.js";

export const COMPILE_TIMEOUT_MS = 60_000;
// A 1,000,000-prefix set compiles within 384 MiB of heap.
export const COMPILE_HEAP_MB = 512; // under the unit's MemoryMax=1G with the daemon beside it

export interface CompileJob {
  path: string;
  content?: Uint8Array; // the file's bytes, already read; else the worker reads `path`
  mode: Mode;
  switches: Record<string, boolean>;
}

export type CompileAnswer = { ok: true; bytes: Uint8Array } | { ok: false; error: string };

// The one way from a file's bytes to table bytes: a compiled table is taken
// as it is (the core checks it when staged); anything else is a policy.
export function tableFromBytes(raw: Uint8Array, path: string, mode: Mode, switches: Record<string, boolean>): Uint8Array {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (b.length >= 4 && b.readUInt32LE(0) === F.TABLE_MAGIC) return raw;
  return buildPolicyTable(compilePolicyText(b.toString("utf8"), path, { mode, switches })).bytes;
}

// A job, done here (the worker runs this; so does the bench's on-the-loop comparison).
export function compileJob(job: CompileJob): CompileAnswer {
  try {
    const raw = job.content ?? readPolicyFile(job.path, "policy or table");
    return { ok: true, bytes: tableFromBytes(raw, job.path, job.mode, job.switches) };
  } catch (e) {
    return { ok: false, error: errorLine(e) };
  }
}

export function errorLine(e: unknown): string {
  if (e instanceof ConfigError) return e.all.map((x) => x.message).join("; ");
  if (e instanceof OperatorFileError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

// An idle worker is stopped after this long (it holds some 25 MiB); the next
// job starts another.
export const COMPILE_IDLE_MS = 30_000;

export interface CompilerOptions {
  timeoutMs?: number; //   default COMPILE_TIMEOUT_MS
  idleMs?: number; //      default COMPILE_IDLE_MS
  heapMb?: number; //      the worker's old-generation heap, default COMPILE_HEAP_MB
  script?: URL; //         the worker's module (tests give one that hangs or dies)
}

export class TableCompiler {
  private worker: Worker | null = null;
  private job: { resolve: (a: CompileAnswer) => void; timer: NodeJS.Timeout } | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private idle: NodeJS.Timeout | null = null;
  readonly timeoutMs: number;
  readonly idleMs: number;
  readonly heapMb: number;
  private readonly script: URL;
  started = 0; //   workers started (a crash or a timeout costs one)

  constructor(o: CompilerOptions = {}) {
    this.timeoutMs = o.timeoutMs ?? COMPILE_TIMEOUT_MS;
    this.idleMs = o.idleMs ?? COMPILE_IDLE_MS;
    this.heapMb = o.heapMb ?? COMPILE_HEAP_MB;
    this.script = o.script ?? new URL("./compile-worker.js", import.meta.url);
  }

  // Never rejects: a failure is an answer with the reason.
  compile(job: CompileJob): Promise<CompileAnswer> {
    const run = this.chain.then(() => this.run(job));
    this.chain = run;
    return run;
  }

  private run(job: CompileJob): Promise<CompileAnswer> {
    if (this.closed) return Promise.resolve({ ok: false, error: "the daemon is stopping" });
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const w = this.worker ?? this.spawn();
    w.ref(); // a job in flight keeps the process up; an idle worker does not
    return new Promise<CompileAnswer>((resolve) => {
      const timer = setTimeout(() => {
        this.fail(`compiling ${job.path} took longer than ${this.timeoutMs} ms; the compiler was stopped`);
      }, this.timeoutMs);
      this.job = { resolve, timer };
      w.postMessage(job);
    });
  }

  private spawn(): Worker {
    const w = new Worker(this.script, {
      resourceLimits: { maxOldGenerationSizeMb: this.heapMb, maxYoungGenerationSizeMb: 32 },
      stdout: false, stderr: false,
    });
    this.started++;
    w.on("message", (a: CompileAnswer) => {
      if (w !== this.worker) return;
      this.finish(a.ok ? { ok: true, bytes: new Uint8Array(a.bytes.buffer, a.bytes.byteOffset, a.bytes.byteLength) } : { ok: false, error: String(a.error) });
    });
    w.on("error", (e: Error & { code?: string }) => {
      if (w !== this.worker) return;
      this.fail(e.code === "ERR_WORKER_OUT_OF_MEMORY"
        ? `the compiler ran out of memory (its heap is limited to ${this.heapMb} MiB)`
        : `the compiler failed: ${e.message.split("\n")[0]}`);
    });
    w.on("exit", (code) => {
      if (w !== this.worker) return;
      this.fail(`the compiler exited (code ${code}) before it answered`);
    });
    this.worker = w;
    return w;
  }

  private finish(a: CompileAnswer): void {
    const j = this.job;
    this.job = null;
    this.worker?.unref();
    if (this.worker) {
      this.idle = setTimeout(() => { void this.release(); }, this.idleMs);
      this.idle.unref();
    }
    if (!j) return;
    clearTimeout(j.timer);
    j.resolve(a);
  }

  // Stops the worker now if it is idle (the next job starts another).
  async release(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const w = this.worker;
    if (!w || this.job) return;
    this.worker = null;
    await w.terminate();
  }

  // The job is refused and the worker goes (the next job starts another).
  private fail(error: string): void {
    const w = this.worker;
    this.worker = null;
    if (w) void w.terminate();
    const j = this.job;
    this.job = null;
    if (!j) return;
    clearTimeout(j.timer);
    j.resolve({ ok: false, error });
  }

  // Refuses the job in flight (if any) and every later one; stops the worker.
  async close(): Promise<void> {
    this.closed = true;
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const w = this.worker;
    this.fail("the daemon is stopping");
    if (w) await w.terminate();
  }
}
