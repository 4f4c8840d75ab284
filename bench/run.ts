// npm run bench [-- --quick]: the benchmarks, printed as tables. Every
// comparison is taken in the same run, alternating the contenders; each
// figure is the median of repeated runs with min-max beside it. At the end
// the same tables go to bench/results/<host>-<date>.json and .md, with SVG
// charts (bench/report.ts).
//
//   node dist/bench/run.js [--quick] [--only PART,...] [--json-only] [--out DIR] [--classbench DIR]
//   node dist/bench/run.js --compare A.json B.json ... [--out DIR] [--name BASE]
//
// Parts: classbench, established, reload, memory, core, e2e (the end-to-end
// benchmarks of bench/e2e/). --json-only writes just the
// JSON and never loads vega (the board bundle has no vega); --compare runs
// nothing and renders several result files side by side. The ClassBench
// data (--classbench, default ../shared/classbench/hypersplit beside the
// checkout) is external: when the default directory is not there (a board),
// the parts that need it leave it out and say so in the report.
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { cpus, hostname, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Core } from "../host/core/core.js";
import { coreWasmPath, ENGINES } from "../host/core/load.js";
import { buildWasm2cCore, WASM2C_RUNTIME_DIR } from "../test/wasm2c/harness.js";
import { benchSet, type ClassBenchFigures } from "./classbench.js";
import { benchEstablished } from "./conntrack.js";
import { benchCore } from "./core.js";
import { coreSection, coreTargets } from "./core-report.js";
import { barChart, compareReports, printSection, type RunMeta, type Section, writeJson, writeReport } from "./report.js";
import { classbenchWorkload, mixWorkload, type Workload } from "./workloads.js";
import { benchRecheck, benchReloadClassBench, benchReloadPolicy, benchReloadUnderTraffic, formatReload, type ReloadFigures, trafficTable } from "./reload.js";
import { fmt } from "./stats.js";
import { measureDaemonMemory } from "./memory.js";
import { e2eSections } from "./e2e/index.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const POLICY = join(ROOT, "host", "policy", "default.yaml");
const DEFAULT_CLASSBENCH = resolve(ROOT, "..", "shared", "classbench", "hypersplit");
const HEADER_SETS = ["acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"];
const CORE_SETS = ["100", "1K", "10K"].flatMap((size) => ["acl1", "fw1", "ipc1"].map((f) => `${f}_${size}`));
const RELOAD_SETS = ["acl1_10K", "fw1_10K", "ipc1_10K"];

export const PARTS = ["classbench", "established", "reload", "memory", "core", "e2e"] as const;
type Part = (typeof PARTS)[number];

interface Args { quick: boolean; parts: Part[]; jsonOnly: boolean; out: string; classbench: string | null; compare: string[] | null; name: string | null }

const USAGE = "usage: run.js [--quick] [--only PART,...] [--json-only] [--out DIR] [--classbench DIR]\n" +
  "       run.js --compare A.json B.json ... [--out DIR] [--name BASE]\n" +
  `parts: ${PARTS.join(", ")}`;

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, parts: [...PARTS], jsonOnly: false, out: join(process.cwd(), "bench", "results"), classbench: null, compare: null, name: null };
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith("--")) throw new Error(`${flag} needs a value\n${USAGE}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    switch (f) {
      case "--quick": a.quick = true; break;
      case "--json-only": a.jsonOnly = true; break;
      case "--out": a.out = resolve(value(i, f)); i++; break;
      case "--classbench": a.classbench = resolve(value(i, f)); i++; break;
      case "--name": a.name = value(i, f); i++; break;
      case "--only": {
        const names = value(i, f).split(",").map((s) => s.trim()).filter(Boolean);
        i++;
        const bad = names.filter((n) => !(PARTS as readonly string[]).includes(n));
        if (bad.length || names.length === 0) throw new Error(`--only: unknown part ${bad.join(", ") || "(none given)"}; the parts are ${PARTS.join(", ")}`);
        a.parts = PARTS.filter((p) => names.includes(p));
        break;
      }
      case "--compare": {
        a.compare = [];
        while (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) a.compare.push(argv[++i]!);
        break;
      }
      case "-h": case "--help": console.log(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument: ${f}\n${USAGE}`);
    }
  }
  if (a.compare && (a.quick || a.jsonOnly || a.classbench || argv.includes("--only"))) throw new Error("--compare runs no benchmark: it takes only result files, --out and --name");
  if (a.name !== null && !a.compare) throw new Error("--name goes with --compare");
  if (a.name !== null && !/^[A-Za-z0-9_.-]+$/.test(a.name)) throw new Error(`--name: ${a.name} is not a file-name friendly name`);
  return a;
}

// Why wasm2c cannot run here, or null when it can (its tools, runtime and driver are present).
function wasm2cMissing(): string | null {
  const missing = ["wasm2c", "gcc"].filter((t) => (spawnSync(t, ["--version"], { stdio: "ignore" }).error as NodeJS.ErrnoException | undefined)?.code === "ENOENT");
  if (missing.length) return `${missing.join(" and ")} not on PATH (Debian: apt-get install ${missing.map((t) => (t === "wasm2c" ? "wabt" : t)).join(" ")})`;
  if (!existsSync(join(WASM2C_RUNTIME_DIR, "wasm-rt-impl.c"))) return `no wasm2c runtime in ${WASM2C_RUNTIME_DIR} (Debian: wabt)`;
  const driver = join(ROOT, "test", "wasm2c", "driver.c");
  if (!existsSync(driver)) return `no driver at ${driver}`;
  return null;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.compare) {
    const c = await compareReports(args.compare.map((f) => resolve(f)), args.out, args.name ?? undefined);
    console.log(`Side by side: ${c.markdown}, ${c.charts.length} SVG charts; sections compared: ${c.shared.join(", ") || "none"}` +
      (c.single.length ? `; in one file only: ${c.single.join(", ")}` : ""));
    return;
  }
  await runBenchmarks(args);
}

async function runBenchmarks(args: Args): Promise<void> {
  const { quick, parts } = args;
  const reps = quick ? 3 : 9;
  const started = Date.now();
  const load = (): string => loadavg().map((x) => x.toFixed(2)).join(" ");
  const loadStart = load();
  const sections: Section[] = [];
  const targets: string[] = [];
  const skipped: string[] = [];
  const has = (p: Part): boolean => parts.includes(p);

  // The ClassBench data: required when named, optional by default.
  const DIR = args.classbench ?? DEFAULT_CLASSBENCH;
  const needed = [...new Set([...(has("classbench") ? HEADER_SETS : []), ...(has("core") ? CORE_SETS : []), ...(has("reload") ? RELOAD_SETS : [])])];
  const absent = needed.filter((n) => !existsSync(join(DIR, `${n}.rules`)));
  if (absent.length && args.classbench) throw new Error(`--classbench ${DIR}: no ${absent.map((n) => `${n}.rules`).join(", ")}`);
  const classbench = absent.length === 0;
  if (!classbench) {
    const left = [has("classbench") ? "the classbench part" : "", has("core") ? "the ClassBench workloads of the core part" : "",
      has("reload") ? "the ClassBench reloads" : ""].filter(Boolean);
    skipped.push(`ClassBench sets: not in ${DIR} (pass --classbench DIR, a copy of the repository's ../shared/classbench/hypersplit): ` +
      `left out ${left.join(", ")}`);
  }

  console.log(`Portcullis benchmarks on ${hostname()} (${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores), node ${process.version}, ${reps} runs each; parts: ${parts.join(", ")}`);
  for (const s of skipped) console.log(`LEFT OUT: ${s}`);

  const headerFigs: ClassBenchFigures[] = [];
  if (has("classbench") && classbench) {
    console.log("");
    console.log("ClassBench first match, release wasm core (classify_headers) vs plain TypeScript linear scan");
    console.log("Mpps: median (min-max). Build: host table compile, ms. Table: compiled bytes.");
    console.log("");
    const head = ["set", "rules", "headers", "core Mpps", "wasmtime Mpps", "wt/V8", "linear Mpps", "core/linear", "build ms", "table KiB", "agree"];
    const rows: string[][] = [];
    for (const name of HEADER_SETS) {
      const f = benchSet(DIR, name, reps);
      headerFigs.push(f);
      rows.push([
        f.set, String(f.rules), String(f.headers), fmt(f.coreMpps), f.wasmtimeMpps ? fmt(f.wasmtimeMpps) : "n/a",
        f.wasmtimeMpps ? `${(f.wasmtimeMpps.median / f.coreMpps.median).toFixed(2)}` : "n/a", fmt(f.linearMpps, 3),
        `${(f.coreMpps.median / f.linearMpps.median).toFixed(1)}x`, fmt(f.buildMs, 0),
        (f.tableBytes / 1024).toFixed(0), f.agree ? "yes" : "NO",
      ]);
      if (!f.agree) process.exitCode = 1;
    }
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    sections.push({
      id: "classbench-headers", title: "ClassBench first match, release wasm core (classify_headers) vs plain TypeScript linear scan",
      notes: ["Mpps: median (min-max). Build: host table compile, ms. Table: compiled bytes."], table: { head, rows }, lines: [],
      chart: barChart({
        title: "ClassBench headers: Mpps (symmetric log scale)", x: "set", series: "classifier", y: "mpps", yTitle: "Mpps", log: true, sortX: HEADER_SETS,
        values: headerFigs.flatMap((f) => ([["core (wasm, V8)", f.coreMpps], ...(f.wasmtimeMpps ? [["core (wasm, wasmtime)", f.wasmtimeMpps] as const] : []), ["linear scan (TypeScript)", f.linearMpps]] as const)
          .map(([who, m]) => ({ set: f.set, classifier: who, mpps: m.median, mppsMin: m.min, mppsMax: m.max }))),
      }),
      data: headerFigs,
    });
  }

  if (has("established")) {
    console.log("");
    console.log("Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)");
    const ct = benchEstablished(POLICY, reps);
    for (const b of ct.byBatch) console.log(`  batch ${String(b.batch).padStart(3)}: ${fmt(b.mpps)} Mpps`);
    console.log(`  state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`);
    sections.push({
      id: "established", title: "Established-flow fast path (release core, default policy, 1,000 tracked TCP flows, data both ways)", notes: [],
      table: { head: ["batch", "Mpps"], rows: ct.byBatch.map((b) => [String(b.batch), fmt(b.mpps)]) },
      lines: [`state table: ${ct.flowBytes} bytes per flow slot; 65,536 flows = ${(ct.tableBytes65536 / 1048576).toFixed(1)} MiB (fixed at init, touched as used)`],
      chart: barChart({
        title: "Established-flow fast path: Mpps", x: "batch", series: "core", y: "mpps", yTitle: "Mpps", sortX: ["1", "32", "256"],
        values: ct.byBatch.map((b) => ({ batch: String(b.batch), core: "V8 (release wasm)", mpps: b.mpps.median, mppsMin: b.mpps.min, mppsMax: b.mpps.max })),
      }),
      data: ct,
    });
  }

  if (has("reload")) {
    console.log("");
    const nReload = quick ? 10 : 50, nReload10K = quick ? 5 : 20;
    console.log(`Reload latency: the daemon's transaction (Daemon.reload, release core), ms p50 / p99 (nearest rank; n reloads after warm-up)`);
    console.log("  compile: read + compile the policy (ClassBench: parse the filters) + build the table; stage: copy + validate; commit: swap");
    const reloads: ReloadFigures[] = [await benchReloadPolicy(POLICY, nReload)];
    if (classbench) for (const name of RELOAD_SETS) reloads.push(await benchReloadClassBench(join(DIR, `${name}.rules`), nReload10K));
    reloads.push(await benchRecheck(POLICY, 10_000, nReload10K));
    for (const l of formatReload(reloads)) console.log(`  ${l}`);
    sections.push({
      id: "reload", title: "Reload latency: the daemon's transaction (Daemon.reload, release core), ms p50 / p99 (nearest rank; n reloads after warm-up)",
      notes: ["compile: read + compile the policy (ClassBench: parse the filters) + build the table; stage: copy + validate; commit: swap."],
      table: null, lines: formatReload(reloads),
      chart: barChart({
        title: "Reload total, ms (bar p50, rule p50-p99)", x: "table", series: "phase", y: "ms", yTitle: "ms",
        values: reloads.map((r) => ({ table: r.what, phase: "total", ms: r.total.p50, msMin: r.total.p50, msMax: r.total.p99 })),
      }),
      data: reloads,
    });
    // The packet loop during a large reload: compiled on it, or in the worker.
    const traffic = await benchReloadUnderTraffic(POLICY, 1_000_000, quick ? 1 : 3);
    const ts: Section = {
      id: "reload-traffic",
      title: "Batches during a reload of a 1,000,000-prefix set policy: compiled on the packet loop vs in the compile worker",
      notes: ["Batches of 256 run back to back on the event loop while the reload runs; a gap is the time between the ends of two batches " +
        "(ms, median of n reloads with min-max; the two ways alternate in the same run). On the loop, the gap max is the whole compile."],
      table: trafficTable(traffic), lines: [], chart: null, data: traffic,
    };
    console.log("");
    printSection(ts);
    sections.push(ts);
  }

  // ---- daemon memory with a full 65,536-flow state table -----------------
  if (has("memory")) {
    const ms = ENGINES.map((e) => measureDaemonMemory(POLICY, e));
    const section: Section = {
      id: "memory",
      title: "Daemon resident memory (the daemon's objects without the NFQUEUE addon, default policy), per engine",
      notes: [],
      table: {
        head: ["engine", "state table", "flows live", "RSS idle MiB", "RSS full MiB", "target < 100 MiB"],
        rows: ms.map((m) => [m.engine, String(m.capacity), String(m.flowsLive), String(m.rssIdleMiB), String(m.rssFullMiB), m.rssFullMiB < 100 ? "met" : "MISSED"]),
      },
      lines: [],
      chart: null,
      data: ms,
    };
    console.log("");
    printSection(section);
    sections.push(section);
  }

  // ---- core throughput: V8, the TypeScript reference, wasm2c + gcc -O2 ---
  if (has("core")) {
    const perWorkload = quick ? 4096 : 8192;
    const workloads: Workload[] = [mixWorkload(POLICY, perWorkload)];
    if (classbench) for (const name of CORE_SETS) workloads.push(classbenchWorkload(DIR, name, perWorkload));
    const why = wasm2cMissing();
    if (why) {
      skipped.push(`wasm2c + gcc -O2 in the core part: not available (${why})`);
      console.log(`LEFT OUT: wasm2c + gcc -O2 in the core part: not available (${why})`);
    }
    const tmp = mkdtempSync(join(tmpdir(), "portcullis-bench-"));
    try {
      const core = new Core("release", undefined, { hashSeed: 0x5eedn });
      let wasmtime: Core | null = null, wasmtimeWhy = "";
      try {
        wasmtime = new Core("release", undefined, { hashSeed: 0x5eedn, engine: "wasmtime" });
      } catch (e) {
        wasmtimeWhy = (e as Error).message;
        skipped.push(`wasmtime in the core part: ${wasmtimeWhy}`);
        console.log(`LEFT OUT: wasmtime in the core part: ${wasmtimeWhy}`);
      }
      const bench = benchCore(core, workloads, {
        reps, repeat: 16, binary: why ? null : buildWasm2cCore().binary, wasmtime, tmpDir: tmp, moduleBytes: statSync(coreWasmPath("release")).size,
        ...(why ? { wasm2cWhy: why } : {}), ...(wasmtimeWhy ? { wasmtimeWhy } : {}),
      });
      const section = coreSection(bench);
      printSection(section);
      sections.push(section);
      if (bench.cells.some((c) => !c.agree)) process.exitCode = 1;
      targets.push(...coreTargets(bench, headerFigs));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  if (has("e2e")) {
    // Rounds as bench/e2e/main.ts runs them (each section's notes say how many).
    // Its fw1_10K run reads the same ClassBench directory (and is left out, saying so, without it).
    const e2e = await e2eSections({ quick, reps: quick ? 3 : 5, classbench: DIR });
    for (const s of e2e.sections) {
      printSection(s);
      sections.push(s);
    }
    targets.push(...e2e.targets);
  }

  if (targets.length) {
    console.log("");
    console.log("Targets (issue 8)");
    for (const t of targets) console.log(`  ${t}`);
  }
  const date = new Date().toISOString().slice(0, 10);
  const base = `${hostname()}-${date}`;
  const meta: RunMeta = {
    host: hostname(), date, cpu: cpus()[0]?.model ?? "unknown CPU", cores: cpus().length, node: process.version, quick, reps,
    loadStart, loadEnd: load(), seconds: Math.round((Date.now() - started) / 1000), parts, skipped,
  };
  console.log("");
  if (args.jsonOnly) {
    console.log(`Report: ${writeJson(args.out, base, meta, sections, targets)}`);
  } else {
    const written = await writeReport(args.out, base, meta, sections, targets);
    console.log(`Report: ${written.markdown}, ${written.json}, ${written.charts.length} SVG charts`);
  }
}

try {
  await main();
} catch (e) {
  process.stderr.write(`bench: error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
