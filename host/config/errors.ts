// The one positioned error of every configuration file an operator writes
// (policies and their set files, the board configuration, the first-boot
// file), and the collector of them. Every error names the file, line and
// column it is about (1-based), as compilers do: "FILE:LINE:COL: what".
// Problems without a place in a file (a --set override, a file that cannot be
// read, a file that is not the kind asked for) have line 0: "FILE: what".

export interface Pos {
  file: string;
  line: number;
  col: number;
}

export function formatPos(p: Pos): string {
  return p.line > 0 ? `${p.file}:${p.line}:${p.col}` : p.file;
}

export class ConfigError extends Error {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  // Every error found in the same run, this one first; the CLI prints them all.
  all: ConfigError[] = [this];

  constructor(readonly code: string, pos: Pos, readonly what: string) {
    super(`${formatPos(pos)}: ${what}`);
    this.name = "ConfigError";
    this.file = pos.file;
    this.line = pos.line;
    this.col = pos.col;
  }

  get where(): string {
    return formatPos(this);
  }
}

export interface ConfigWarning {
  code: string;
  file: string;
  line: number;
  col: number;
  message: string; // "FILE:LINE:COL: warning: what"
}

// Stop collecting a policy's errors after this many: past it they are mostly
// echoes.
export const MAX_ERRORS = 50;

// Collects errors and warnings through a run, then throws the lot (sorted by
// file, then position) as one ConfigError carrying the others in `all`.
export class Diagnostics {
  readonly errors: ConfigError[] = [];
  readonly warnings: ConfigWarning[] = [];
  private readonly fileOrder = new Map<string, number>();
  dropped = 0;

  constructor(private readonly maxErrors = MAX_ERRORS) {}

  private order(file: string): number {
    let n = this.fileOrder.get(file);
    if (n === undefined) { n = this.fileOrder.size; this.fileOrder.set(file, n); }
    return n;
  }

  error(code: string, pos: Pos, what: string): void {
    this.order(pos.file);
    if (this.errors.length >= this.maxErrors) { this.dropped++; return; }
    this.errors.push(new ConfigError(code, pos, what));
  }

  warn(code: string, pos: Pos, what: string): void {
    this.warnings.push({ code, file: pos.file, line: pos.line, col: pos.col, message: `${formatPos(pos)}: warning: ${what}` });
  }

  get failed(): boolean {
    return this.errors.length > 0;
  }

  // Throws when any error was recorded.
  check(): void {
    if (this.errors.length === 0) return;
    const sorted = this.errors
      .map((e, i) => ({ e, i }))
      .sort((a, b) => this.order(a.e.file) - this.order(b.e.file) || a.e.line - b.e.line || a.e.col - b.e.col || a.i - b.i)
      .map((x) => x.e);
    const first = sorted[0]!;
    first.all = sorted;
    if (this.dropped > 0) {
      first.all = [...sorted, new ConfigError("too_many_errors", { file: first.file, line: 0, col: 0 },
        `${this.dropped} more error${this.dropped === 1 ? "" : "s"} not shown`)];
    }
    throw first;
  }
}

// A command's report of a file's ConfigError on stderr: every error, then a
// count line; the exit status becomes 1.
export function reportConfigError(e: ConfigError, file: string): void {
  for (const err of e.all) process.stderr.write(`${err.message}\n`);
  process.stderr.write(`portcullis: ${e.all.length} error${e.all.length === 1 ? "" : "s"} in ${file}\n`);
  process.exitCode = 1;
}
