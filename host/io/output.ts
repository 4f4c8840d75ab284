import { writeSync } from "node:fs";

// Standard output of the CLI. A reader that goes away (`portcullis ... |
// head`) is not an error: the command stops quietly with its status so far
// (EPIPE). Any other failure to write (a full disk) is one line on stderr and
// status 1. Long outputs (replay, demo) go through Output, which writes in
// chunks and stops at once when stdout has failed, rather than buffering
// what nobody reads.

export function stdoutFailed(e: NodeJS.ErrnoException): never {
  if (e.code !== "EPIPE") {
    try { process.stderr.write(`portcullis: error: cannot write the output: ${e.code ?? e.message}\n`); } catch { /* nothing left to tell */ }
    process.exit(1);
  }
  process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
}

// Installed once by the CLI: the 'error' event of a stdout that failed
// between writes.
export function guardStdout(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => stdoutFailed(e));
}

const CHUNK = 64 << 10;
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

export class Output {
  private parts: string[] = [];
  private size = 0;

  write(text: string): void {
    this.parts.push(text);
    this.size += text.length;
    if (this.size >= CHUNK) this.flush();
  }

  line(text: string): void { this.write(`${text}\n`); }

  flush(): void {
    if (this.parts.length === 0) return;
    const text = this.parts.join("");
    this.parts = [];
    this.size = 0;
    // Written synchronously, so a slow reader holds the producer back (a
    // stream would queue the rest in memory) and a reader that went away is
    // known here: stop now, not after the whole capture.
    const buf = Buffer.from(text);
    for (let off = 0; off < buf.length;) {
      try {
        off += writeSync(1, buf, off, buf.length - off);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        // Node may have made a pipe non-blocking: wait for the reader.
        if (err.code === "EAGAIN") { Atomics.wait(PAUSE, 0, 0, 2); continue; }
        stdoutFailed(err);
      }
    }
  }
}
