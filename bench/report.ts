// What `npm run bench` found, kept as it is printed: sections of tables (and
// free lines), each with its raw figures, written at the end as
// bench/results/<host>-<date>.json and a Markdown report beside it, with one
// SVG bar chart per table rendered by Vega-Lite (compiled to Vega and
// rendered headless by Vega's own SVG renderer: no browser, no canvas).
//
// Vega and Vega-Lite are development dependencies and are not in the board
// bundle: they are imported only when a chart is rendered, so writing the
// JSON alone (writeJson, `run.js --json-only`) works without them.
//
// compareReports() reads several such JSON files (this machine's, a
// board's) and writes one Markdown report with the machines side by side:
// per section present in more than one file, one table with a machine
// column and one bar chart with the machine as the series.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { TopLevelSpec } from "vega-lite";

// The JSON's format: `schema` names it, `version` counts incompatible or
// meaningful changes. Version 1 files (no `schema` field) are read too.
export const SCHEMA = "portcullis-bench";
export const SCHEMA_VERSION = 2;

export interface Table { head: string[]; rows: string[][] }

// A bar chart of median values with a min-max rule on each bar: x the
// category, colour (and offset within x) the series, optionally faceted.
// Kept as data (it goes into the JSON, so that a side-by-side report can
// draw the machines together); made into a Vega-Lite spec by barSpec().
export interface BarChart {
  kind: "bar";
  title: string;
  values: Array<Record<string, string | number>>;
  x: string; //         category field
  series: string; //    colour field
  y: string; //         median field; `${y}Min` and `${y}Max` give the rule
  yTitle: string;
  facet?: string;
  columns?: number;
  log?: boolean;
  sortX?: string[];
}

export interface Section {
  id: string; //              file-name friendly
  title: string;
  notes: string[]; //         sentences printed before the table
  table: Table | null;
  lines: string[]; //         printed after the table (or instead of one)
  chart: BarChart | TopLevelSpec | null; // a BarChart, or any Vega-Lite spec (not comparable)
  data: unknown; //           the figures behind the table, for the JSON
}

// Aligned columns, two spaces apart (the tables `npm run bench` prints).
export function formatTable(t: Table): string[] {
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(t.head), ...t.rows.map(line)];
}

export function printSection(s: Section): void {
  console.log("");
  console.log(s.title);
  for (const n of s.notes) console.log(n);
  if (s.table) {
    if (s.notes.length) console.log("");
    for (const l of formatTable(s.table)) console.log(l);
  }
  for (const l of s.lines) console.log(l);
}

export function markdownTable(t: Table): string[] {
  const esc = (c: string): string => c.replace(/\|/g, "\\|");
  return [
    `| ${t.head.map(esc).join(" | ")} |`,
    `|${t.head.map(() => "---").join("|")}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ];
}

const isBar = (c: BarChart | TopLevelSpec): c is BarChart => (c as { kind?: unknown }).kind === "bar";

export async function renderSvg(chart: BarChart | TopLevelSpec): Promise<string> {
  let vega: typeof import("vega"), vl: typeof import("vega-lite");
  try {
    [vega, vl] = await Promise.all([import("vega"), import("vega-lite")]);
  } catch (e) {
    throw new Error(`rendering charts needs the development dependencies vega and vega-lite (npm ci): ${(e as Error).message}`);
  }
  const compiled = vl.compile(isBar(chart) ? barSpec(chart) : chart).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

export function barChart(o: Omit<BarChart, "kind">): BarChart {
  return { kind: "bar", ...o };
}

// The Vega-Lite spec of a bar chart.
export function barSpec(o: BarChart): TopLevelSpec {
  const x = { field: o.x, type: "nominal" as const, title: o.x, sort: o.sortX ?? null };
  const y = { field: o.y, type: "quantitative" as const, title: o.yTitle, ...(o.log ? { scale: { type: "symlog" as const, constant: 0.01 } } : {}) };
  const series = [...new Set(o.values.map((v) => String(v[o.series])))];
  const color = { field: o.series, type: "nominal" as const, title: null, sort: series, legend: { labelLimit: 400, orient: "bottom" as const } };
  const layer = [
    { mark: { type: "bar" as const }, encoding: { x, xOffset: { field: o.series, sort: series }, y, color } },
    {
      mark: { type: "rule" as const, color: "black" },
      encoding: { x, xOffset: { field: o.series, sort: series }, y: { field: `${o.y}Min`, type: "quantitative" as const }, y2: { field: `${o.y}Max` } },
    },
  ];
  const inner = { width: { step: 14 }, height: 180, layer };
  const base = { $schema: "https://vega.github.io/schema/vega-lite/v6.json", title: o.title, data: { values: o.values } };
  if (o.facet) {
    const order = [...new Set(o.values.map((v) => String(v[o.facet!])))];
    return { ...base, facet: { field: o.facet, type: "nominal", title: null, sort: order }, columns: o.columns ?? 4, spec: inner, resolve: { scale: { y: "independent" } } } as TopLevelSpec;
  }
  return { ...base, ...inner } as TopLevelSpec;
}

export interface Written { json: string; markdown: string; charts: string[] }

// What a run was made on and how; the JSON's top-level fields beside
// `targets` and `sections`.
export interface RunMeta {
  host: string; date: string; cpu: string; cores: number; node: string; quick: boolean; reps: number;
  loadStart: string; loadEnd: string; seconds: number;
  parts?: string[]; //   the parts that ran (version 2)
  skipped?: string[]; // what was left out and why (version 2)
  [k: string]: unknown;
}

export interface ResultSection { id: string; title: string; notes: string[]; table: Table | null; lines: string[]; chart?: BarChart | TopLevelSpec | null; data: unknown }
export interface Result extends RunMeta { schema?: string; version?: number; targets: string[]; sections: ResultSection[] }

function resultDoc(meta: RunMeta, sections: Section[], summary: string[]): Result {
  return {
    schema: SCHEMA, version: SCHEMA_VERSION, ...meta, targets: summary,
    sections: sections.map((s) => ({ id: s.id, title: s.title, notes: s.notes, table: s.table, lines: s.lines, chart: s.chart, data: s.data })),
  };
}

// Writes <dir>/<base>.json only (no chart rendering: vega is not loaded).
export function writeJson(dir: string, base: string, meta: RunMeta, sections: Section[], summary: string[]): string {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${base}.json`);
  writeFileSync(json, `${JSON.stringify(resultDoc(meta, sections, summary), null, 2)}\n`);
  return json;
}

function runLine(m: RunMeta): string {
  return `${m.cpu}, ${m.cores} cores, Node ${m.node}; ${m.quick ? "quick run" : "full run"}, ` +
    `${m.reps} runs per figure (median, min-max); load average ${m.loadStart} at the start, ${m.loadEnd} at the end; ${m.seconds} s in all.`;
}

// Writes <dir>/<base>.json, <dir>/<base>.md and one <base>-<id>.svg per chart.
export async function writeReport(dir: string, base: string, meta: RunMeta, sections: Section[], summary: string[]): Promise<Written> {
  const json = writeJson(dir, base, meta, sections, summary);
  const charts: string[] = [];
  const md: string[] = [`# Portcullis benchmarks: ${meta.host}, ${meta.date}`, ""];
  md.push(`${runLine(meta)} Raw figures: \`${base}.json\`.`, "");
  if (meta.skipped?.length) md.push("Left out of this run:", "", ...meta.skipped.map((l) => `- ${l}`), "");
  if (summary.length) md.push("## Targets", "", ...summary.map((l) => `- ${l}`), "");
  for (const s of sections) {
    md.push(`## ${s.title}`, "");
    if (s.notes.length) md.push(s.notes.join(" "), "");
    if (s.table) md.push(...markdownTable(s.table), "");
    if (s.lines.length) md.push("```", ...s.lines, "```", "");
    if (s.chart) {
      const file = `${base}-${s.id}.svg`;
      writeFileSync(join(dir, file), await renderSvg(s.chart));
      charts.push(file);
      md.push(`![${s.title}](${file})`, "");
    }
  }
  const markdown = join(dir, `${base}.md`);
  writeFileSync(markdown, md.join("\n"));
  return { json, markdown, charts: charts.map((c) => join(dir, c)) };
}

// ---- reading results back, and the side-by-side report --------------------

// Reads and checks one result file; every problem names the file and the field.
export function readResult(path: string): Result {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  const bad = (what: string): never => { throw new Error(`${path}: not a Portcullis benchmark result: ${what}`); };
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) bad("the top level is not an object");
  const d = doc as Record<string, unknown>;
  if (d.schema !== undefined && d.schema !== SCHEMA) bad(`"schema" is ${JSON.stringify(d.schema)}, not "${SCHEMA}"`);
  if (d.version !== undefined && (typeof d.version !== "number" || d.version > SCHEMA_VERSION)) {
    bad(`"version" ${JSON.stringify(d.version)} is newer than this reader (${SCHEMA_VERSION})`);
  }
  for (const k of ["host", "date", "cpu", "node", "loadStart", "loadEnd"]) if (typeof d[k] !== "string") bad(`"${k}" is missing or not a string`);
  for (const k of ["cores", "reps", "seconds"]) if (typeof d[k] !== "number") bad(`"${k}" is missing or not a number`);
  if (typeof d.quick !== "boolean") bad(`"quick" is missing or not true/false`);
  if (!Array.isArray(d.targets) || d.targets.some((t) => typeof t !== "string")) bad(`"targets" is missing or not a list of strings`);
  if (!Array.isArray(d.sections)) bad(`"sections" is missing or not a list`);
  (d.sections as unknown[]).forEach((s, i) => {
    const at = `sections[${i}]`;
    if (typeof s !== "object" || s === null) bad(`${at} is not an object`);
    const x = s as Record<string, unknown>;
    if (typeof x.id !== "string" || !/^[A-Za-z0-9_.-]+$/.test(x.id)) bad(`${at}.id is missing or not a file-name friendly string`);
    if (typeof x.title !== "string") bad(`${at}.title is missing or not a string`);
    if (!Array.isArray(x.notes)) bad(`${at}.notes is not a list`);
    if (!Array.isArray(x.lines)) bad(`${at}.lines is not a list`);
    if (x.table !== null) {
      const t = x.table as Record<string, unknown> | undefined;
      if (!t || !Array.isArray(t.head) || !Array.isArray(t.rows) || t.rows.some((r) => !Array.isArray(r))) bad(`${at}.table is neither null nor {head, rows}`);
    }
  });
  return d as unknown as Result;
}

// A name per file: the host, with the date when two hosts are the same,
// or with a number when the dates are the same too.
function machineNames(rs: Result[]): string[] {
  const names = rs.map((r) => r.host);
  const dup = (n: string[], i: number): boolean => n.filter((x) => x === n[i]).length > 1;
  const dated = names.map((n, i) => (dup(names, i) ? `${n} (${rs[i]!.date})` : n));
  return dated.map((n, i) => (dup(dated, i) ? `${names[i]} #${dated.slice(0, i + 1).filter((x) => x === n).length}` : n));
}

// The rows of several machines' tables of one section, matched by their
// first cell and its occurrence (the 2nd "mix" row with the 2nd), in the
// order they first appear; columns matched by name (the first file's,
// then any others').
export function sideBySideTable(tables: Array<{ machine: string; table: Table }>): Table {
  const head: string[] = [];
  for (const { table } of tables) for (const h of table.head) if (!head.includes(h)) head.push(h);
  const keyed = tables.map(({ machine, table }) => {
    const seen = new Map<string, number>();
    const rows = new Map<string, string[]>();
    for (const r of table.rows) {
      const n = seen.get(r[0] ?? "") ?? 0;
      seen.set(r[0] ?? "", n + 1);
      rows.set(`${r[0] ?? ""}\u0000${n}`, head.map((h) => { const i = table.head.indexOf(h); return i < 0 ? "" : (r[i] ?? ""); }));
    }
    return { machine, rows };
  });
  const keys: string[] = [];
  for (const k of keyed) for (const key of k.rows.keys()) if (!keys.includes(key)) keys.push(key);
  const rows: string[][] = [];
  for (const key of keys) for (const k of keyed) { const r = k.rows.get(key); if (r) rows.push([k.machine, ...r]); }
  return { head: ["machine", ...head], rows };
}

// One bar chart of the machines' charts of a section: the machine is the
// series (or machine: series, when the charts have more than one series).
export function sideBySideChart(title: string, charts: Array<{ machine: string; chart: BarChart }>): BarChart {
  const first = charts[0]!.chart;
  // When the series is the x category itself (one bar per x), x already tells them apart.
  const many = first.series !== first.x && new Set(charts.flatMap(({ chart }) => chart.values.map((v) => String(v[chart.series])))).size > 1;
  const field = "machine";
  const values = charts.flatMap(({ machine, chart }) => chart.values.map((v) => {
    const out: Record<string, string | number> = {};
    out[first.x] = v[chart.x] ?? "";
    out[first.y] = v[chart.y] ?? 0;
    out[`${first.y}Min`] = v[`${chart.y}Min`] ?? v[chart.y] ?? 0;
    out[`${first.y}Max`] = v[`${chart.y}Max`] ?? v[chart.y] ?? 0;
    if (first.facet) out[first.facet] = v[chart.facet ?? first.facet] ?? "";
    out[field] = many ? `${machine}: ${String(v[chart.series])}` : machine;
    return out;
  }));
  return { ...first, title, series: field, values };
}

// Files of one host and date whose sections do not overlap (a board's
// core.sh and e2e.sh JSON) count as one machine: their sections, targets
// and notes together, their seconds added up, their file names joined.
type Run = Result & { file: string };
function mergeRuns(rs: Run[]): Run[] {
  const out: Run[] = [];
  for (const r of rs) {
    const same = out.find((o) => o.host === r.host && o.date === r.date && !o.sections.some((s) => r.sections.some((x) => x.id === s.id)));
    if (!same) { out.push({ ...r }); continue; }
    same.sections = [...same.sections, ...r.sections];
    same.targets = [...same.targets, ...r.targets];
    same.skipped = [...(same.skipped ?? []), ...(r.skipped ?? [])];
    same.seconds += r.seconds;
    same.file = `${same.file} + ${r.file}`;
  }
  return out;
}

export interface Compared { markdown: string; charts: string[]; shared: string[]; single: string[] }

// Reads the result files and writes <dir>/<base>.md with one
// <base>-<id>.svg per shared section that has a chart in every file.
export async function compareReports(files: string[], dir: string, base?: string): Promise<Compared> {
  if (files.length < 2) throw new Error(`--compare needs at least two result files (got ${files.length})`);
  const rs = mergeRuns(files.map((f) => ({ ...readResult(f), file: basename(f) })));
  if (rs.length < 2) throw new Error(`--compare: the files are all one run of ${rs[0]!.host} (${rs[0]!.date}): nothing to put side by side`);
  const names = machineNames(rs);
  const name = base ?? `compare-${names.map((n) => n.replace(/[^A-Za-z0-9_.-]+/g, "_")).join("-vs-")}`;
  mkdirSync(dir, { recursive: true });
  const md: string[] = [`# Portcullis benchmarks side by side: ${names.join(", ")}`, ""];
  md.push(...markdownTable({
    head: ["machine", "date", "CPU", "cores", "Node", "run", "load start", "load end", "seconds", "file"],
    rows: rs.map((r, i) => [names[i]!, r.date, r.cpu, String(r.cores), r.node, `${r.quick ? "quick" : "full"}, ${r.reps} runs`,
      r.loadStart, r.loadEnd, String(r.seconds), r.file]),
  }), "");
  const skipped = rs.flatMap((r, i) => (r.skipped ?? []).map((s) => `${names[i]}: ${s}`));
  if (skipped.length) md.push("Left out of a run:", "", ...skipped.map((l) => `- ${l}`), "");
  if (rs.some((r) => r.targets.length)) {
    md.push("## Targets", "");
    rs.forEach((r, i) => { if (r.targets.length) md.push(`### ${names[i]}`, "", ...r.targets.map((l) => `- ${l}`), ""); });
  }
  const ids: string[] = [];
  for (const r of rs) for (const s of r.sections) if (!ids.includes(s.id)) ids.push(s.id);
  const charts: string[] = [], shared: string[] = [], single: string[] = [];
  for (const id of ids) {
    const have = rs.map((r, i) => ({ machine: names[i]!, s: r.sections.find((x) => x.id === id) })).filter((x) => x.s !== undefined) as
      Array<{ machine: string; s: ResultSection }>;
    if (have.length < 2) {
      single.push(`${id} (${have[0]!.machine})`);
      continue;
    }
    shared.push(id);
    const s0 = have[0]!.s;
    md.push(`## ${s0.title}`, "");
    if (s0.notes.length) md.push(s0.notes.join(" "), "");
    const tables = have.filter((h) => h.s.table).map((h) => ({ machine: h.machine, table: h.s.table! }));
    if (tables.length) md.push(...markdownTable(sideBySideTable(tables)), "");
    for (const h of have) if (h.s.lines.length) md.push(`${h.machine}:`, "", "```", ...h.s.lines, "```", "");
    const bars = have.filter((h) => h.s.chart && isBar(h.s.chart)).map((h) => ({ machine: h.machine, chart: h.s.chart as BarChart }));
    if (bars.length === have.length) {
      const file = `${name}-${id}.svg`;
      const chart = sideBySideChart(`${bars[0]!.chart.title}: ${names.filter((n) => bars.some((b) => b.machine === n)).join(" vs ")}`, bars);
      writeFileSync(join(dir, file), await renderSvg(chart));
      charts.push(join(dir, file));
      md.push(`![${s0.title}](${file})`, "");
    } else {
      const without = have.filter((h) => !bars.some((b) => b.machine === h.machine)).map((h) => h.machine);
      md.push(`(No side-by-side chart: no chart data in the file of ${without.join(", ")}; files of schema version 1 have none.)`, "");
    }
  }
  if (single.length) md.push("## In one file only", "", ...single.map((l) => `- ${l}`), "");
  const markdown = join(dir, `${name}.md`);
  writeFileSync(markdown, md.join("\n"));
  return { markdown, charts, shared, single };
}
