// The benchmark report's side-by-side path (`npm run bench -- --compare`):
// two small hand-made result files rendered together, the exact Markdown
// tables and the SVG charts; bad files refused with a clear error; and
// `--json-only` writing the JSON of one quick part without vega.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { establishedSection } from "../bench/conntrack.js";
import { failoverSection, failoverTargets } from "../bench/failover.js";
import { reloadSection } from "../bench/reload.js";
import { printSection, SCHEMA, SCHEMA_VERSION, sideBySideTable } from "../bench/report.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RUN = join(ROOT, "dist", "bench", "run.js");
const TMP = mkdtempSync(join(tmpdir(), "portcullis-bench-report-"));

const fig = (m: number) => ({ median: m, min: m - 0.5, max: m + 0.5, runs: 3 });
function result(host: string, mpps: number[], extra: object[] = [], version: number | null = SCHEMA_VERSION): object {
  const est = {
    id: "established", title: "Established-flow fast path", notes: ["Mpps: median (min-max)."],
    table: { head: ["batch", "Mpps"], rows: [["1", `${mpps[0]} (x-y)`], ["256", `${mpps[1]} (x-y)`]] },
    lines: [`state table: ${host}`],
    chart: {
      kind: "bar", title: "Established: Mpps", x: "batch", series: "core", y: "mpps", yTitle: "Mpps", sortX: ["1", "256"],
      values: [["1", mpps[0]!], ["256", mpps[1]!]].map(([b, m]) => ({ batch: b!, core: "V8", mpps: m!, mppsMin: Number(m) - 0.5, mppsMax: Number(m) + 0.5 })),
    },
    data: { byBatch: [{ batch: 1, mpps: fig(mpps[0]!) }, { batch: 256, mpps: fig(mpps[1]!) }] },
  };
  return {
    ...(version === null ? {} : { schema: SCHEMA, version }),
    host, date: "2026-11-25", cpu: `${host} CPU`, cores: 4, node: "v20.20.2", quick: true, reps: 3,
    loadStart: "0.10 0.20 0.30", loadEnd: "0.40 0.50 0.60", seconds: 12, targets: [`target on ${host}`],
    sections: [est, ...extra],
  };
}
function write(name: string, doc: unknown): string {
  const p = join(TMP, name);
  writeFileSync(p, typeof doc === "string" ? doc : JSON.stringify(doc));
  return p;
}
const run = (...args: string[]) => spawnSync(process.execPath, [RUN, ...args], { cwd: TMP, encoding: "utf8", timeout: 120_000 });

test("--compare: two machines side by side, exact tables, one SVG per shared section with a chart", () => {
  const memory = { id: "memory", title: "Daemon memory", notes: [], table: { head: ["RSS MiB"], rows: [["40"]] }, lines: [], chart: null, data: {} };
  const a = write("alpha.json", result("alpha", [1.5, 20.25], [memory]));
  const b = write("beta.json", result("beta", [0.75, 6.5]));
  const out = join(TMP, "cmp");
  const r = run("--compare", a, b, "--out", out, "--name", "side");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, `Side by side: ${join(out, "side.md")}, 1 SVG charts; sections compared: established; in one file only: memory (alpha)\n`);
  const md = readFileSync(join(out, "side.md"), "utf8");
  assert.is(md, [
    "# Portcullis benchmarks side by side: alpha, beta",
    "",
    "| machine | date | CPU | cores | Node | run | load start | load end | seconds | file |",
    "|---|---|---|---|---|---|---|---|---|---|",
    "| alpha | 2026-11-25 | alpha CPU | 4 | v20.20.2 | quick, 3 runs | 0.10 0.20 0.30 | 0.40 0.50 0.60 | 12 | alpha.json |",
    "| beta | 2026-11-25 | beta CPU | 4 | v20.20.2 | quick, 3 runs | 0.10 0.20 0.30 | 0.40 0.50 0.60 | 12 | beta.json |",
    "",
    "## Targets",
    "",
    "### alpha",
    "",
    "- target on alpha",
    "",
    "### beta",
    "",
    "- target on beta",
    "",
    "## Established-flow fast path",
    "",
    "Mpps: median (min-max).",
    "",
    "| machine | batch | Mpps |",
    "|---|---|---|",
    "| alpha | 1 | 1.5 (x-y) |",
    "| beta | 1 | 0.75 (x-y) |",
    "| alpha | 256 | 20.25 (x-y) |",
    "| beta | 256 | 6.5 (x-y) |",
    "",
    "alpha:",
    "",
    "```",
    "state table: alpha",
    "```",
    "",
    "beta:",
    "",
    "```",
    "state table: beta",
    "```",
    "",
    "![Established-flow fast path](side-established.svg)",
    "",
    "## In one file only",
    "",
    "- memory (alpha)",
    "",
  ].join("\n"));
  assert.equal(readdirSync(out).sort(), ["side-established.svg", "side.md"]);
  const svg = readFileSync(join(out, "side-established.svg"), "utf8");
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /Established: Mpps: alpha vs beta/);
  // The machines are the series: both names in the legend, four bars.
  assert.match(svg, />alpha<\/text>/);
  assert.match(svg, />beta<\/text>/);
  assert.is((svg.match(/aria-roledescription="bar"/g) ?? []).length, 4);
});

test("--compare: rows matched by first cell and occurrence, columns by name; a version 1 file gets a table but no chart", () => {
  assert.equal(sideBySideTable([
    { machine: "a", table: { head: ["workload", "batch", "Mpps"], rows: [["mix", "1", "3"], ["mix", "32", "9"], ["acl", "1", "2"]] } },
    { machine: "b", table: { head: ["workload", "batch", "Mpps", "agree"], rows: [["acl", "1", "1"], ["mix", "1", "2"], ["mix", "32", "4"], ["fw", "1", "5"]].map((r) => [...r, "yes"]) } },
  ]), {
    head: ["machine", "workload", "batch", "Mpps", "agree"],
    rows: [["a", "mix", "1", "3", ""], ["b", "mix", "1", "2", "yes"], ["a", "mix", "32", "9", ""], ["b", "mix", "32", "4", "yes"],
      ["a", "acl", "1", "2", ""], ["b", "acl", "1", "1", "yes"], ["b", "fw", "1", "5", "yes"]],
  });
  const old = result("old", [1, 2], [], null) as { sections: Array<{ chart?: unknown }> };
  delete old.sections[0]!.chart;
  const out = join(TMP, "cmp1");
  const r = run("--compare", write("old.json", old), write("new.json", result("old", [3, 4])), "--out", out);
  assert.is(r.status, 0, r.stderr);
  const md = readFileSync(join(out, "compare-old_1-vs-old_2.md"), "utf8");
  assert.match(md, /^# Portcullis benchmarks side by side: old #1, old #2$/m);
  assert.match(md, /^\| old #2 \| 256 \| 4 \(x-y\) \|$/m);
  assert.match(md, /^\(No side-by-side chart: no chart data in the file of old #1; files of schema version 1 have none\.\)$/m);
  assert.equal(readdirSync(out), ["compare-old_1-vs-old_2.md"]);
});

test("--compare: a board's core and e2e files (one host and date, no shared section) count as one machine", () => {
  const e2e = (kpps: string) => ({ id: "e2e-small", title: "End to end, small packets", notes: [], table: { head: ["contender", "kpps"], rows: [["Portcullis", kpps]] }, lines: [], chart: null, data: {} });
  const boardCore = write("pi-core.json", result("pi", [0.5, 2]));
  const boardE2e = write("pi-e2e.json", { ...(result("pi", [0, 0]) as object), targets: ["e2e target on pi"], seconds: 30, sections: [e2e("80")] });
  const here = write("vm-all.json", result("vm", [1.5, 20], [e2e("300")]));
  const out = join(TMP, "cmp-merge");
  const r = run("--compare", here, boardCore, boardE2e, "--out", out, "--name", "m");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, `Side by side: ${join(out, "m.md")}, 1 SVG charts; sections compared: established, e2e-small\n`);
  const md = readFileSync(join(out, "m.md"), "utf8");
  assert.ok(md.includes("| pi | 2026-11-25 | pi CPU | 4 | v20.20.2 | quick, 3 runs | 0.10 0.20 0.30 | 0.40 0.50 0.60 | 42 | pi-core.json + pi-e2e.json |\n"), md);
  assert.ok(md.includes("### pi\n\n- target on pi\n- e2e target on pi\n"), md);
  assert.ok(md.includes("| machine | contender | kpps |\n|---|---|---|\n| vm | Portcullis | 300 |\n| pi | Portcullis | 80 |\n"), md);
  const alone = run("--compare", boardCore, boardE2e, "--out", join(TMP, "never"));
  assert.is(alone.status, 1);
  assert.is(alone.stderr, "bench: error: --compare: the files are all one run of pi (2026-11-25): nothing to put side by side\n");
});

test("--compare refuses bad input with a clear error and exit status 1", () => {
  const good = write("good.json", result("good", [1, 2]));
  const cases: Array<[string[], string]> = [
    [[write("broken.json", "{\"host\": ")], `bench: error: ${join(TMP, "broken.json")}: not valid JSON: `],
    [[write("nosections.json", { ...(result("x", [1, 2]) as object), sections: undefined })], `bench: error: ${join(TMP, "nosections.json")}: not a Portcullis benchmark result: "sections" is missing or not a list\n`],
    [[write("badid.json", { ...(result("x", [1, 2]) as object), sections: [{ id: "a/b", title: "t", notes: [], lines: [], table: null }] })],
      `bench: error: ${join(TMP, "badid.json")}: not a Portcullis benchmark result: sections[0].id is missing or not a file-name friendly string\n`],
    [[write("other.json", { ...(result("x", [1, 2]) as object), schema: "something-else" })], `bench: error: ${join(TMP, "other.json")}: not a Portcullis benchmark result: "schema" is "something-else", not "${SCHEMA}"\n`],
    [[join(TMP, "missing.json")], `bench: error: ${join(TMP, "missing.json")}: cannot read: no such file\n`],
  ];
  for (const [files, err] of cases) {
    const r = run("--compare", good, ...files, "--out", join(TMP, "never"));
    assert.is(r.status, 1, r.stderr);
    if (err.endsWith("\n")) assert.is(r.stderr, err);
    else assert.ok(r.stderr.startsWith(err), r.stderr);
  }
  const one = run("--compare", good, "--out", join(TMP, "never"));
  assert.is(one.stderr, "bench: error: --compare needs at least two result files (got 1)\n");
  const unknown = run("--only", "core,bogus");
  assert.is(unknown.status, 1);
  assert.is(unknown.stderr, "bench: error: --only: unknown part bogus; the parts are classbench, established, reload, memory, core, e2e, failover\n");
  const mixed = run("--compare", good, good, "--quick");
  assert.is(mixed.stderr, "bench: error: --compare runs no benchmark: it takes only result files, --out and --name\n");
  assert.not.ok(existsSync(join(TMP, "never")));
});

test("--only memory --json-only: just the JSON, schema and version, the parts that ran", () => {
  const out = join(TMP, "json-only");
  const r = run("--only", "memory", "--json-only", "--out", out);
  assert.is(r.status, 0, r.stderr);
  const files = readdirSync(out);
  assert.is(files.length, 1);
  assert.match(files[0]!, /^.+-\d{4}-\d{2}-\d{2}\.json$/);
  const doc = JSON.parse(readFileSync(join(out, files[0]!), "utf8")) as Record<string, unknown> & { sections: Array<{ id: string; table: { head: string[]; rows: string[][] } }> };
  assert.is(doc.schema, SCHEMA);
  assert.is(doc.version, SCHEMA_VERSION);
  assert.equal(doc.parts, ["memory"]);
  assert.equal(doc.skipped, []);
  assert.equal(doc.sections.map((s) => s.id), ["memory"]);
  assert.equal(doc.sections[0]!.table.head, ["engine", "state table", "flows live", "RSS idle MiB", "RSS full MiB", "target < 100 MiB"]);
  assert.equal(doc.sections[0]!.table.rows.map((r) => r[0]), ["v8", "wasmtime"]);
  assert.match(r.stdout, /parts: memory\n/);
});

test("the established part: window tracking and tcp.liberal side by side, their ratio", () => {
  const f = (m: number) => ({ median: m, min: m, max: m + 1, runs: 3 });
  const est = establishedSection({ flows: 1000, byBatch: [{ batch: 1, mpps: f(1), liberal: f(1.25), ratio: 0.8 }, { batch: 256, mpps: f(12), liberal: f(12.5), ratio: 0.96 }],
    flowBytes: 104, tableBytes65536: 104 * 65536 });
  assert.equal(est.table, { head: ["batch", "Mpps", "Mpps tcp.liberal", "window tracking / liberal"], rows: [
    ["1", "1.00 (1.00-2.00)", "1.25 (1.25-2.25)", "0.80"], ["256", "12.00 (12.00-13.00)", "12.50 (12.50-13.50)", "0.96"]] });
  assert.equal(est.lines, ["state table: 104 bytes per flow slot; 65,536 flows = 6.5 MiB (fixed at init, touched as used)"]);
  assert.is(est.notes.length, 1);
});

test("a part returns its Section and run.js prints it: the title once, the notes, the table, the lines", () => {
  const f = (m: number) => ({ median: m, min: m, max: m + 1, runs: 3 });
  const est = establishedSection({ flows: 1000, byBatch: [{ batch: 1, mpps: f(1) }, { batch: 256, mpps: f(12.5) }], flowBytes: 96, tableBytes65536: 96 * 65536 });
  assert.equal(est.table, { head: ["batch", "Mpps"], rows: [["1", "1.00 (1.00-2.00)"], ["256", "12.50 (12.50-13.50)"]] });
  assert.equal(est.lines, ["state table: 96 bytes per flow slot; 65,536 flows = 6.0 MiB (fixed at init, touched as used)"]);
  const p = (a: number) => ({ p50: a, p99: a * 2 });
  const rel = reloadSection([{ what: "default policy", rules: 5, tableBytes: 2048, n: 10, compile: p(1), stage: p(0.5), commit: p(0.01), total: p(1.51) }]);
  assert.equal(rel.lines, [
    "table           rules  KiB  n   compile      stage        commit       recheck  total",
    "default policy  5      2    10  1.00 / 2.00  0.50 / 1.00  0.01 / 0.02  -        1.51 / 3.02",
  ]);
  const printed: string[] = [];
  const log = console.log;
  console.log = (line: string) => { printed.push(line); };
  try { printSection(est); printSection(rel); } finally { console.log = log; }
  assert.equal(printed, ["", est.title, "batch  Mpps", "1      1.00 (1.00-2.00)", "256    12.50 (12.50-13.50)", est.lines[0],
    "", rel.title, rel.notes[0], ...rel.lines]);
});

test("the failover part's section and targets: p50/p99 of the address move and of every stream's gap, streams lost, the prototype's figures beside", () => {
  const run = (dead: "a" | "b", moveMs: number, gaps: number[], lost = 0) => ({ dead, moveMs, gapsMs: gaps, lost, newFail: 3, newOk: 40 });
  const figs = [
    { vrrp: { version: 2, advertMs: 1000 } as const, streams: 3, runs: [run("a", 3100, [3300, 3400, 3500]), run("b", 2900, [3200, 3250, 9000], 1)] },
    { vrrp: { version: 3, advertMs: 100 } as const, streams: 3, runs: [run("a", 380, [610, 620, 700])] },
  ];
  const sec = failoverSection(figs);
  assert.is(sec.id, "failover");
  assert.equal(sec.table, {
    head: ["VRRP", "failovers", "moved p50 s", "moved p99 s", "gap p50 s", "gap p99 s", "largest gap s", "streams lost", "prototype moved / gap s"],
    rows: [
      ["VRRPv2, 1.00 s adverts", "2", "2.90", "3.10", "3.30", "9.00", "9.00", "1 of 6", "2.90 / 3.20"],
      ["VRRPv3, 0.10 s adverts", "1", "0.38", "0.38", "0.62", "0.70", "0.70", "0 of 3", "0.31 / 0.74"],
    ],
  });
  assert.equal(failoverTargets(figs), [
    "failover, VRRPv2, 1.00 s adverts: 1 of 6 streams lost in 2 failovers (none lost: MISSED); gap p50 3.30 s, p99 9.00 s (the prototype's gap: 3.20 s)",
    "failover, VRRPv3, 0.10 s adverts: 0 of 3 streams lost in 1 failovers (none lost: met); gap p50 0.62 s, p99 0.70 s (the prototype's gap: 0.74 s)",
  ]);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
