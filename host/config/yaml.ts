// The one YAML front end of the configuration files (policies, the board
// configuration, the first-boot file): it parses a document with positions
// (YAML 1.2, strict, a key twice in a mapping is an error), turns the YAML's
// own problems and those of mappings (not a mapping, a key that is not a
// word, an unknown key with a "did you mean") into positioned ConfigErrors in
// a Diagnostics, and gives each node's FILE:LINE:COL. The readers
// (host/policy/parse.ts, host/kernel/board.ts, host/firstboot/parse.ts) keep
// only their schemas.
import { type Document, isMap, isScalar, LineCounter, type Node, parseDocument } from "yaml";
import { type Diagnostics, type Pos } from "./errors.js";

// One value of a mapping: the key's position, and the value (null if none).
export interface Entry { key: Pos; value: Node | null }

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

// ` (did you mean "X"?)` for the choice nearest to a mistyped word, or "".
export function suggest(word: string, choices: Iterable<string>): string {
  let best: string | null = null, bestD = Infinity;
  for (const c of choices) {
    const dist = editDistance(word.toLowerCase(), c);
    if (dist < bestD) { best = c; bestD = dist; }
  }
  return best !== null && bestD <= Math.max(1, Math.floor(best.length / 3)) ? ` (did you mean "${best}"?)` : "";
}

// Control characters shown escaped, so a message stays one line.
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

// A node that holds nothing: no value, or an empty one (`key:`).
export const isEmpty = (n: Node | null | undefined): boolean => !n || (isScalar(n) && n.value === null);

// A mapping's entries by key, with the mapping's place and name for messages.
export class YamlMap {
  constructor(
    private readonly diag: Diagnostics,
    readonly what: string, //  "the board configuration", "rule #3"
    readonly pos: Pos, //      the mapping's
    readonly entries: ReadonlyMap<string, Entry>,
  ) {}

  get(key: string): Entry | undefined { return this.entries.get(key); }

  // The entry of a key the mapping must have; missing_key at the mapping
  // (`WHAT has no "KEY:" (HINT)`) when it is not there.
  need(key: string, hint: string): Entry | undefined {
    const e = this.entries.get(key);
    if (!e) this.diag.error("missing_key", this.pos, `${this.what} has no "${key}:" (${hint})`);
    return e;
  }
}

// One document of FILE, parsed, and its problems reported to `diag`.
export class YamlReader {
  readonly doc: Document;
  readonly start: Pos; // the first character of the file
  private readonly lines = new LineCounter();

  constructor(text: string, readonly file: string, readonly diag: Diagnostics) {
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true, strict: true });
    this.start = { file, line: 1, col: 1 };
  }

  // The position of a character offset of the text.
  at(offset: number): Pos {
    const p = this.lines.linePos(offset);
    return p.line === 0 ? { file: this.file, line: 1, col: offset + 1 } : { file: this.file, line: p.line, col: p.col };
  }

  // The position of a node, or `fallback` for one that is not in the text.
  pos(n: Node | null | undefined, fallback: Pos): Pos {
    return n && n.range ? this.at(n.range[0]) : fallback;
  }

  // The node a key or value stands for. Plain readers take nodes as they are
  // (an alias is then no value of theirs); the policy expands aliases.
  protected node(n: unknown): Node | null {
    return (n ?? null) as Node | null;
  }

  // The document's top node, as node() gives it.
  top(): Node | null {
    return this.node(this.doc.contents);
  }

  // The YAML's own problems (syntax, a key twice in a mapping), each one line.
  syntaxErrors(): Array<{ code: string; pos: Pos; what: string; yamlCode: string }> {
    return this.doc.errors.map((e) => e.code === "DUPLICATE_KEY"
      ? { code: "duplicate_key", pos: this.at(e.pos[0]), what: "this key appears twice in the same mapping", yamlCode: e.code }
      : { code: "yaml_syntax", pos: this.at(e.pos[0]), what: `YAML: ${e.message.split("\n")[0]}`, yamlCode: e.code });
  }

  // Reports syntaxErrors(); true when there were any (nothing else is read then).
  reportSyntax(): boolean {
    for (const e of this.syntaxErrors()) this.diag.error(e.code, e.pos, e.what);
    return this.doc.errors.length > 0;
  }

  // The entries of mapping N (`what` names it in messages), each with its
  // key's position. Keys outside `allowed` (null: any word) and keys that are
  // not plain words are errors and left out; null (and an error at N, or
  // `fallback` for a missing node) when N is not a mapping.
  mapping(n: Node | null, allowed: readonly string[] | null, what: string, fallback: Pos): YamlMap | null {
    const at = this.pos(n, fallback);
    if (!n || !isMap(n)) {
      this.diag.error("bad_type", at, `${what} must be a mapping of keys to values`);
      return null;
    }
    const out = new Map<string, Entry>();
    for (const item of n.items) {
      const k = this.node(item.key);
      const kpos = this.pos(k, at);
      if (!k || !isScalar(k) || typeof k.value !== "string") {
        this.diag.error("bad_type", kpos, `keys of ${what} must be plain words`);
        continue;
      }
      const key = k.value;
      if (allowed && !allowed.includes(key)) {
        this.diag.error("unknown_key", kpos, `unknown key "${printable(key)}" in ${what}${suggest(key, allowed)}; allowed: ${allowed.join(", ")}`);
        continue;
      }
      out.set(key, { key: kpos, value: this.node(item.value) });
    }
    return new YamlMap(this.diag, what, at, out);
  }

  // true or false; an error `code` at the value otherwise (with a word on
  // YAML 1.2 for yes, no, on and off).
  boolean(e: Entry, what: string, code = "bad_type"): boolean | undefined {
    const v = e.value && isScalar(e.value) ? e.value.value : undefined;
    if (typeof v === "boolean") return v;
    const t = typeof v === "string" ? ` (YAML 1.2 reads "${v}" as text)` : "";
    this.diag.error(code, this.pos(e.value, e.key), `${what} must be true or false${t}`);
    return undefined;
  }
}
