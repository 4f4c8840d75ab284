// Errors and warnings of the policy compiler. Every one names the file, line
// and column it is about (1-based), as compilers do: "FILE:LINE:COL: what".
// Problems on the command line (a --set override) have no position: line 0.

export interface Pos {
  file: string;
  line: number;
  col: number;
}

export function formatPos(p: Pos): string {
  return p.line > 0 ? `${p.file}:${p.line}:${p.col}` : p.file;
}

export class PolicyError extends Error {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  // Every error found in the same run, this one first; the CLI prints them all.
  all: PolicyError[] = [this];

  constructor(readonly code: string, pos: Pos, readonly what: string) {
    super(`${formatPos(pos)}: ${what}`);
    this.name = "PolicyError";
    this.file = pos.file;
    this.line = pos.line;
    this.col = pos.col;
  }

  get where(): string {
    return formatPos(this);
  }
}

export interface PolicyWarning {
  code: string;
  file: string;
  line: number;
  col: number;
  message: string; // "FILE:LINE:COL: warning: what"
}

// Stop collecting after this many errors: past it they are mostly echoes.
export const MAX_ERRORS = 50;

// Collects errors and warnings through a run, then throws the lot (sorted by
// file, then position) as one PolicyError carrying the others in `all`.
export class Diagnostics {
  readonly errors: PolicyError[] = [];
  readonly warnings: PolicyWarning[] = [];
  private readonly fileOrder = new Map<string, number>();
  dropped = 0;

  private order(file: string): number {
    let n = this.fileOrder.get(file);
    if (n === undefined) { n = this.fileOrder.size; this.fileOrder.set(file, n); }
    return n;
  }

  error(code: string, pos: Pos, what: string): void {
    this.order(pos.file);
    if (this.errors.length >= MAX_ERRORS) { this.dropped++; return; }
    this.errors.push(new PolicyError(code, pos, what));
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
      first.all = [...sorted, new PolicyError("too_many_errors", { file: first.file, line: 0, col: 0 },
        `${this.dropped} more error${this.dropped === 1 ? "" : "s"} not shown`)];
    }
    throw first;
  }
}
