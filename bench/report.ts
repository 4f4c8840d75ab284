// What `npm run bench` found, kept as it is printed: sections of tables (and
// free lines), each with its raw figures, written at the end as
// bench/results/<host>-<date>.json and a Markdown report beside it, with one
// SVG bar chart per table rendered by Vega-Lite (compiled to Vega and
// rendered headless by Vega's own SVG renderer: no browser, no canvas).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as vega from "vega";
import * as vl from "vega-lite";

export interface Table { head: string[]; rows: string[][] }

export interface Section {
  id: string; //              file-name friendly
  title: string;
  notes: string[]; //         sentences printed before the table
  table: Table | null;
  lines: string[]; //         printed after the table (or instead of one)
  chart: vl.TopLevelSpec | null;
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

function markdownTable(t: Table): string[] {
  const esc = (c: string): string => c.replace(/\|/g, "\\|");
  return [
    `| ${t.head.map(esc).join(" | ")} |`,
    `|${t.head.map(() => "---").join("|")}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ];
}

export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

// A bar chart of median values with a min-max rule on each bar: x the
// category, colour (and offset within x) the series, optionally faceted.
export function barChart(o: {
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
}): vl.TopLevelSpec {
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
    return { ...base, facet: { field: o.facet, type: "nominal", title: null, sort: order }, columns: o.columns ?? 4, spec: inner, resolve: { scale: { y: "independent" } } } as vl.TopLevelSpec;
  }
  return { ...base, ...inner } as vl.TopLevelSpec;
}

export interface Written { json: string; markdown: string; charts: string[] }

// Writes <dir>/<base>.json, <dir>/<base>.md and one <base>-<id>.svg per chart.
export async function writeReport(dir: string, base: string, meta: Record<string, unknown>, sections: Section[], summary: string[]): Promise<Written> {
  mkdirSync(dir, { recursive: true });
  const charts: string[] = [];
  const md: string[] = [`# Portcullis benchmarks: ${String(meta.host)}, ${String(meta.date)}`, ""];
  md.push(`${String(meta.cpu)}, ${String(meta.cores)} cores, Node ${String(meta.node)}; ${meta.quick ? "quick run" : "full run"}, ` +
    `${String(meta.reps)} runs per figure (median, min-max); load average ${String(meta.loadStart)} at the start, ${String(meta.loadEnd)} at the end; ` +
    `${String(meta.seconds)} s in all. Raw figures: \`${base}.json\`.`, "");
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
  const json = join(dir, `${base}.json`), markdown = join(dir, `${base}.md`);
  writeFileSync(json, `${JSON.stringify({ ...meta, targets: summary, sections: sections.map((s) => ({ id: s.id, title: s.title, notes: s.notes, table: s.table, lines: s.lines, data: s.data })) }, null, 2)}\n`);
  writeFileSync(markdown, md.join("\n"));
  return { json, markdown, charts: charts.map((c) => join(dir, c)) };
}
