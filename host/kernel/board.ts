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
//   copy_range: 256         # bytes of each packet the kernel copies (default 256: headers)
//   offload: { enabled: false, on_start: adopt }   # kernel offload (host/kernel/offload.ts)
//   ha: { vrid: 51, priority: 150, external: { virtual: [203.0.113.10/24] }, ... }   # a pair (board-ha.ts)
//   tcp: { pickup: false, liberal: false }          # TCP pickup, window tracking (assembly/conntrack/tcp.ts)
//
// fail_open and bypass default to false (fail closed) on both sides; queues
// defaults to { first: 0, count: 1 }. Unknown keys and wrong values are errors
// as FILE:LINE:COL: what, all of them in one ConfigError (host/config/).
import { isScalar } from "yaml";
import { ConfigError, Diagnostics } from "../config/errors.js";
import { type Entry, isEmpty, suggest, YamlReader } from "../config/yaml.js";
import { ENGINES, type EngineName, type TcpSettings } from "../core/load.js";
import { COPY_RANGE_RULE, isCopyRange, MAX_COPY_RANGE, MIN_COPY_RANGE } from "./copy-range.js";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { type HaConfig, haProblem, readHa } from "./board-ha.js";
import { type Mode, MODES } from "../policy/compile.js";

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
  copyRange?: number; //  the queues' copy range (default DEFAULT_COPY_RANGE: host/kernel/copy-range.ts)
  // Kernel offload of the flows the core decided (default off): the rules
  // gain the offload chain, and the daemon hands flows of rules with
  // `offload: true` to it. on_start: what a starting daemon does with the
  // flows an earlier one offloaded: adopt them (decided again by the
  // policy, kept if allowed) or end them.
  offload?: { enabled: boolean; onStart: OffloadStart };
  // One appliance of a keepalived pair (board-ha.ts): virtual addresses,
  // VRRP, conntrackd. Absent: a single appliance.
  ha?: HaConfig;
  // TCP tracking (default both off): pickup creates the flow of a mid-stream
  // segment its rules allow (a hot standby's); liberal turns window checks off.
  tcp?: TcpSettings;
}

export const OFFLOAD_START = ["adopt", "end"] as const;
export type OffloadStart = (typeof OFFLOAD_START)[number];

// Linux's rule for device names (dev_valid_name), narrowed to what is safe
// unquoted in a shell script and inside an nft string.
const DEV_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const MAX_QUEUE = 65535;

const TOP_KEYS = ["version", "mode", "external", "internal", "queues", "engine", "copy_range", "offload", "tcp", "ha"];
const OFFLOAD_KEYS = ["enabled", "on_start"];
const TCP_KEYS = ["pickup", "liberal"];
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
  if (c.copyRange !== undefined && !isCopyRange(c.copyRange)) return `copy_range must be ${COPY_RANGE_RULE}, not ${String(c.copyRange)}`;
  if (c.offload !== undefined && (typeof c.offload.enabled !== "boolean" || !OFFLOAD_START.includes(c.offload.onStart))) {
    return `offload must be { enabled: true|false, on_start: ${OFFLOAD_START.join("|")} }`;
  }
  if (c.ha !== undefined) {
    const p = haProblem(c.ha, devOk);
    if (p !== null) return p;
  }
  if (c.tcp !== undefined && Object.entries(c.tcp).some(([k, v]) => !TCP_KEYS.includes(k) || typeof v !== "boolean")) return "tcp must be { pickup: true|false, liberal: true|false }";
  const q = c.queues ?? { first: 0, count: 1 };
  if (!Number.isInteger(q.first) || q.first < 0 || q.first > MAX_QUEUE) return `queues.first must be 0-${MAX_QUEUE}, not ${q.first}`;
  if (!Number.isInteger(q.count) || q.count < 1) return `queues.count must be 1 or more, not ${q.count}`;
  if (q.first + 2 * q.count - 1 > MAX_QUEUE) {
    return `queues first ${q.first} count ${q.count} need queues up to ${q.first + 2 * q.count - 1}; the last queue is ${MAX_QUEUE}`;
  }
  return null;
}

// Whether DEV is a network device name (readHa's check of ha.sync.dev too).
export function devOk(dev: string): boolean {
  return DEV_RE.test(dev) && dev !== "." && dev !== "..";
}

export function readBoardFile(path: string): BoardConfig {
  let text: string;
  try {
    text = readOperatorFile(path, "board configuration").toString("utf8");
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    throw new ConfigError("board_unreadable", { file: path, line: 0, col: 0 }, e.detail);
  }
  return parseBoardText(text, path);
}

// Throws a ConfigError (every problem in `all`) unless the text is a board
// configuration.
export function parseBoardText(text: string, file: string): BoardConfig {
  const diag = new Diagnostics(Infinity);
  const y = new YamlReader(text, file, diag);
  const config: BoardConfig = { mode: "host", external: { dev: "" }, internal: { dev: "" } };
  if (!y.reportSyntax()) readBoard(y, config);
  diag.check();
  return config;
}

function readBoard(y: YamlReader, config: BoardConfig): void {
  const err = (code: string, e: Entry, what: string): void => y.diag.error(code, y.pos(e.value, e.key), what);
  const int = (e: Entry | undefined, what: string, lo: number, hi: number): number | undefined => {
    if (!e) return undefined;
    const v = e.value && isScalar(e.value) ? e.value.value : undefined;
    if (typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi) return v;
    err("bad_number", e, `${what} must be a whole number ${lo}-${hi}`);
    return undefined;
  };
  // A word out of CHOICES, or `code` with a "did you mean".
  const word = <T extends string>(e: Entry, what: string, choices: readonly T[], code: string): T | undefined => {
    const v = e.value && isScalar(e.value) ? e.value.value : null;
    if (typeof v === "string" && (choices as readonly string[]).includes(v)) return v as T;
    err(code, e, `${what} must be ${choices.join(" or ")}, not ${JSON.stringify(v)}${typeof v === "string" ? suggest(v, choices) : ""}`);
    return undefined;
  };

  const topNode = y.top();
  if (isEmpty(topNode)) {
    y.diag.error("empty_board", y.start, "the board configuration is empty; it needs version, mode, external and internal");
    return;
  }
  const top = y.mapping(topNode, TOP_KEYS, "the board configuration", y.start);
  if (!top) return;
  const ver = top.need("version", "write version: 1");
  if (ver && !(ver.value && isScalar(ver.value) && ver.value.value === 1)) {
    err("bad_version", ver, "unsupported board configuration version; this reads version: 1");
  }
  const mode = top.need("mode", "host or gateway");
  if (mode) config.mode = word(mode, "mode", MODES, "bad_mode") ?? config.mode;
  for (const side of SIDES) {
    const s = top.need(side, `a mapping with dev: the ${side} NIC`);
    const e = s && y.mapping(s.value, SIDE_KEYS, side, s.key);
    if (!e) continue;
    const dev = e.need("dev", `the network device of the ${side} NIC`);
    if (dev) {
      const d = dev.value && isScalar(dev.value) ? dev.value.value : null;
      if (typeof d === "string" && devOk(d)) config[side].dev = d;
      else err("bad_dev", dev, `${side}.dev must be a network device name (1-15 letters, digits, _ . -), not ${JSON.stringify(d)}`);
    }
    const fo = e.get("fail_open");
    const failOpen = fo && y.boolean(fo, `${side}.fail_open`);
    if (failOpen !== undefined) config[side].failOpen = failOpen;
    const bp = e.get("bypass");
    const bypass = bp && y.boolean(bp, `${side}.bypass`);
    if (bypass !== undefined) config[side].bypass = bypass;
  }
  if (config.external.dev !== "" && config.external.dev === config.internal.dev) {
    y.diag.error("same_dev", top.get("internal")?.key ?? top.pos, `external and internal are the same device "${config.external.dev}"`);
  }
  const eng = top.get("engine");
  if (eng) config.engine = word(eng, "engine", ENGINES, "bad_engine");
  const cr = top.get("copy_range");
  if (cr) config.copyRange = int(cr, "copy_range (bytes)", MIN_COPY_RANGE, MAX_COPY_RANGE);
  const of = top.get("offload");
  if (of) {
    const e = y.mapping(of.value, OFFLOAD_KEYS, "offload", of.key);
    const en = e?.get("enabled");
    const enabled = en ? y.boolean(en, "offload.enabled") : undefined;
    const os = e?.get("on_start");
    const onStart = os ? word(os, "offload.on_start", OFFLOAD_START, "bad_offload") : undefined;
    config.offload = { enabled: enabled ?? false, onStart: onStart ?? "adopt" };
  }
  const ha = top.get("ha");
  if (ha) config.ha = readHa(y, ha, devOk);
  const tc = top.get("tcp");
  if (tc) {
    const e = y.mapping(tc.value, TCP_KEYS, "tcp", tc.key);
    config.tcp = {};
    for (const k of ["pickup", "liberal"] as const) {
      const v = e?.get(k);
      const b = v ? y.boolean(v, `tcp.${k}`) : undefined;
      if (b !== undefined) config.tcp[k] = b;
    }
  }
  const q = top.get("queues");
  if (q) {
    const e = y.mapping(q.value, QUEUE_KEYS, "queues", q.key);
    const first = int(e?.get("first"), "queues.first", 0, MAX_QUEUE) ?? 0;
    const count = int(e?.get("count"), "queues.count", 1, 32768) ?? 1;
    config.queues = { first, count };
    if (first + 2 * count - 1 > MAX_QUEUE) {
      y.diag.error("bad_queues", q.key, `queues first ${first} count ${count} need queues up to ${first + 2 * count - 1}; the last queue is ${MAX_QUEUE}`);
    }
  }
}
