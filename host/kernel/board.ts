// The board configuration: which NIC plays which role, how the kernel queues
// them, and what happens when no daemon is bound or a queue is full. A small
// YAML file (board/portcullis.yaml is the example):
//
//   version: 1
//   mode: host              # host | gateway
//   external: { dev: ext0, fail_open: false, bypass: false }
//   internal: { dev: int0, fail_open: false, bypass: false }
//   queues: { first: 0, count: 1 }
//   engine: v8              # v8 | wasmtime: what runs the core (default v8)
//
// fail_open and bypass default to false (fail closed) on both sides; queues
// defaults to { first: 0, count: 1 }. Unknown keys and wrong values are errors
// as FILE:LINE:COL: what, all of them in one BoardError.
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { isMap, isScalar, LineCounter, type Node, parseDocument } from "yaml";
import { formatPos, type Pos } from "../policy/errors.js";
import { type Mode, MODES } from "../policy/compile.js";
import { suggest } from "../policy/parse.js";
import { ENGINES, type EngineName } from "../core/load.js";

export type Side = "external" | "internal";
export const SIDES: readonly Side[] = ["external", "internal"];

export interface SideConfig {
  dev: string; //        network device, e.g. eth0
  failOpen?: boolean; // queue full: accept uninspected (true) or drop (false, default)
  bypass?: boolean; //   no daemon bound: accept uninspected (true) or drop (false, default)
}

export interface BoardConfig {
  mode: Mode;
  external: SideConfig;
  internal: SideConfig;
  queues?: { first: number; count: number }; // default { first: 0, count: 1 }
  engine?: EngineName; // the core's engine for `run --board` (default v8)
}

export class BoardError extends Error {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  all: BoardError[] = [this]; // every error of the file, this one first

  constructor(readonly code: string, pos: Pos, readonly what: string) {
    super(`${formatPos(pos)}: ${what}`);
    this.name = "BoardError";
    this.file = pos.file;
    this.line = pos.line;
    this.col = pos.col;
  }
}

// Linux's rule for device names (dev_valid_name), narrowed to what is safe
// unquoted in a shell script and inside an nft string.
const DEV_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const MAX_QUEUE = 65535;

const TOP_KEYS = ["version", "mode", "external", "internal", "queues", "engine"];
const SIDE_KEYS = ["dev", "fail_open", "bypass"];
const QUEUE_KEYS = ["first", "count"];

// Checks a configuration however it was made; the message of the first
// problem, or null. The parser reports the same problems with positions.
export function boardProblem(c: BoardConfig): string | null {
  if (!MODES.includes(c.mode)) return `mode must be host or gateway, not "${String(c.mode)}"`;
  for (const side of SIDES) {
    const s = c[side];
    if (!s || typeof s.dev !== "string" || !devOk(s.dev)) return `${side}.dev must be a network device name (1-15 letters, digits, _ . -), not ${JSON.stringify(s?.dev)}`;
  }
  if (c.external.dev === c.internal.dev) return `external and internal are the same device "${c.external.dev}"`;
  if (c.engine !== undefined && !ENGINES.includes(c.engine)) return `engine must be ${ENGINES.join(" or ")}, not "${String(c.engine)}"`;
  const q = c.queues ?? { first: 0, count: 1 };
  if (!Number.isInteger(q.first) || q.first < 0 || q.first > MAX_QUEUE) return `queues.first must be 0-${MAX_QUEUE}, not ${q.first}`;
  if (!Number.isInteger(q.count) || q.count < 1) return `queues.count must be 1 or more, not ${q.count}`;
  if (q.first + 2 * q.count - 1 > MAX_QUEUE) {
    return `queues first ${q.first} count ${q.count} need queues up to ${q.first + 2 * q.count - 1}; the last queue is ${MAX_QUEUE}`;
  }
  return null;
}

function devOk(dev: string): boolean {
  return DEV_RE.test(dev) && dev !== "." && dev !== "..";
}

export function readBoardFile(path: string): BoardConfig {
  let text: string;
  try {
    text = readOperatorFile(path, "board configuration").toString("utf8");
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    throw new BoardError("board_unreadable", { file: path, line: 0, col: 0 }, e.detail);
  }
  return parseBoardText(text, path);
}

export function parseBoardText(text: string, file: string): BoardConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const errors: BoardError[] = [];
  const at = (n: Node | null | undefined, fallback: Pos): Pos => {
    if (!n || !n.range) return fallback;
    const p = lc.linePos(n.range[0]);
    return { file, line: p.line, col: p.col };
  };
  const err = (code: string, pos: Pos, what: string): void => { errors.push(new BoardError(code, pos, what)); };
  const start: Pos = { file, line: 1, col: 1 };
  const done = (c: BoardConfig): BoardConfig => {
    if (errors.length === 0) return c;
    errors.sort((a, b) => a.line - b.line || a.col - b.col);
    errors[0]!.all = errors;
    throw errors[0]!;
  };
  for (const e of doc.errors) {
    const p = lc.linePos(e.pos[0]);
    err(e.code === "DUPLICATE_KEY" ? "duplicate_key" : "yaml_syntax", { file, line: p.line, col: p.col },
      e.code === "DUPLICATE_KEY" ? "this key appears twice in the same mapping" : `YAML: ${e.message}`);
  }
  const config: BoardConfig = { mode: "host", external: { dev: "" }, internal: { dev: "" } };
  if (errors.length) return done(config);

  // A mapping's values by key; unknown keys are errors.
  const mapping = (n: Node | null, allowed: readonly string[], what: string, fallback: Pos): Map<string, { key: Pos; value: Node | null }> => {
    const out = new Map<string, { key: Pos; value: Node | null }>();
    if (!n || !isMap(n)) {
      err("bad_type", at(n, fallback), `${what} must be a mapping of keys to values`);
      return out;
    }
    for (const item of n.items) {
      const k = item.key as Node | null;
      const kpos = at(k, at(n, fallback));
      const key = k && isScalar(k) && typeof k.value === "string" ? k.value : null;
      if (key === null) err("bad_type", kpos, `keys of ${what} must be plain words`);
      else if (!allowed.includes(key)) err("unknown_key", kpos, `unknown key "${key}" in ${what}${suggest(key, allowed)}; allowed: ${allowed.join(", ")}`);
      else out.set(key, { key: kpos, value: (item.value as Node | null) ?? null });
    }
    return out;
  };
  const bool = (e: { key: Pos; value: Node | null } | undefined, what: string): boolean | undefined => {
    if (!e) return undefined;
    if (e.value && isScalar(e.value) && typeof e.value.value === "boolean") return e.value.value;
    const t = e.value && isScalar(e.value) && typeof e.value.value === "string" ? ` (YAML 1.2 reads "${e.value.value}" as text)` : "";
    err("bad_type", at(e.value, e.key), `${what} must be true or false${t}`);
    return undefined;
  };
  const int = (e: { key: Pos; value: Node | null } | undefined, what: string, lo: number, hi: number): number | undefined => {
    if (!e) return undefined;
    const v = e.value && isScalar(e.value) ? e.value.value : undefined;
    if (typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi) return v;
    err("bad_number", at(e.value, e.key), `${what} must be a whole number ${lo}-${hi}`);
    return undefined;
  };

  const topNode = doc.contents as Node | null;
  if (!topNode || (isScalar(topNode) && topNode.value === null)) {
    err("empty_board", start, "the board configuration is empty; it needs version, mode, external and internal");
    return done(config);
  }
  const top = mapping(topNode, TOP_KEYS, "the board configuration", start);
  const topPos = at(topNode, start);
  const need = (k: string, hint: string): { key: Pos; value: Node | null } | undefined => {
    const v = top.get(k);
    if (!v && isMap(topNode)) err("missing_key", topPos, `the board configuration has no "${k}:" (${hint})`);
    return v;
  };

  const ver = need("version", "write version: 1");
  if (ver && !(ver.value && isScalar(ver.value) && ver.value.value === 1)) {
    err("bad_version", at(ver.value, ver.key), "unsupported board configuration version; this reads version: 1");
  }
  const mode = need("mode", "host or gateway");
  if (mode) {
    const m = mode.value && isScalar(mode.value) ? mode.value.value : null;
    if (typeof m === "string" && (MODES as readonly string[]).includes(m)) config.mode = m as Mode;
    else err("bad_mode", at(mode.value, mode.key), `mode must be host or gateway, not ${JSON.stringify(m)}${typeof m === "string" ? suggest(m, MODES) : ""}`);
  }
  for (const side of SIDES) {
    const s = need(side, `a mapping with dev: the ${side} NIC`);
    if (!s) continue;
    const e = mapping(s.value, SIDE_KEYS, side, s.key);
    const dev = e.get("dev");
    if (!dev) {
      if (s.value && isMap(s.value)) err("missing_key", at(s.value, s.key), `${side} has no "dev:" (the network device of the ${side} NIC)`);
    } else {
      const d = dev.value && isScalar(dev.value) ? dev.value.value : null;
      if (typeof d === "string" && devOk(d)) config[side].dev = d;
      else err("bad_dev", at(dev.value, dev.key), `${side}.dev must be a network device name (1-15 letters, digits, _ . -), not ${JSON.stringify(d)}`);
    }
    const fo = bool(e.get("fail_open"), `${side}.fail_open`);
    if (fo !== undefined) config[side].failOpen = fo;
    const bp = bool(e.get("bypass"), `${side}.bypass`);
    if (bp !== undefined) config[side].bypass = bp;
  }
  if (config.external.dev !== "" && config.external.dev === config.internal.dev) {
    const d = top.get("internal");
    err("same_dev", d ? d.key : topPos, `external and internal are the same device "${config.external.dev}"`);
  }
  const eng = top.get("engine");
  if (eng) {
    const v = eng.value && isScalar(eng.value) ? eng.value.value : null;
    if (typeof v === "string" && (ENGINES as readonly string[]).includes(v)) config.engine = v as EngineName;
    else err("bad_engine", at(eng.value, eng.key), `engine must be ${ENGINES.join(" or ")}, not ${JSON.stringify(v)}${typeof v === "string" ? suggest(v, ENGINES) : ""}`);
  }
  const q = top.get("queues");
  if (q) {
    const e = mapping(q.value, QUEUE_KEYS, "queues", q.key);
    const first = int(e.get("first"), "queues.first", 0, MAX_QUEUE) ?? 0;
    const count = int(e.get("count"), "queues.count", 1, 32768) ?? 1;
    config.queues = { first, count };
    if (first + 2 * count - 1 > MAX_QUEUE) {
      err("bad_queues", q.key, `queues first ${first} count ${count} need queues up to ${first + 2 * count - 1}; the last queue is ${MAX_QUEUE}`);
    }
  }
  return done(config);
}
