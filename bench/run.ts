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
// benchmarks of bench/e2e/), failover (a pair's failover gap, failover.ts). --json-only writes just the
// JSON and never loads vega (the board bundle has no vega); --compare runs
// nothing and renders several result files side by side. The ClassBench
// data (--classbench, default ../shared/classbench/hypersplit beside the
// checkout) is external: when the default directory is not there (a board),
// the parts that need it leave it out and say so in the report.
//
// Each part's module returns its report Section(s) (classbench.ts,
// conntrack.ts, reload.ts, memory.ts, core-report.ts, e2e/index.ts, failover.ts): titles,
// notes and tables are drawn there once; this file only runs the parts,
// prints their sections (report.ts printSection) and writes the report.
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { cpus, hostname, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Core } from "../host/core/core.js";
import { coreWasmPath, ENGINES } from "../host/core/load.js";
import { buildWasm2cCore, WASM2C_RUNTIME_DIR } from "../test/wasm2c/harness.js";
import { benchSet, type ClassBenchFigures, classbenchSection } from "./classbench.js";
import { benchEstablished, establishedSection } from "./conntrack.js";
import { benchCore } from "./core.js";
import { coreSection, coreTargets, limitTargets } from "./core-report.js";
import { compareReports, printSection, type RunMeta, type Section, writeJson, writeReport } from "./report.js";
import { classbenchWorkload, MIX_LIMIT, mixWorkload, type Workload } from "./workloads.js";
import { benchRecheck, benchReloadClassBench, benchReloadPolicy, benchReloadUnderTraffic, type ReloadFigures, reloadSection, reloadTrafficSection } from "./reload.js";
import { measureDaemonMemory, memorySection } from "./memory.js";
import { e2eSections } from "./e2e/index.js";
import { benchFailover, FAILOVER_VRRP, failoverSection, failoverTargets } from "./failover.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const POLICY = join(ROOT, "host", "policy", "default.yaml");
const DEFAULT_CLASSBENCH = resolve(ROOT, "..", "shared", "classbench", "hypersplit");
const HEADER_SETS = ["acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"];
const CORE_SETS = ["100", "1K", "10K"].flatMap((size) => ["acl1", "fw1", "ipc1"].map((f) => `${f}_${size}`));
const RELOAD_SETS = ["acl1_10K", "fw1_10K", "ipc1_10K"];

export const PARTS = ["classbench", "established", "reload", "memory", "core", "e2e", "failover"] as const;
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

  // Each part returns its sections; they are printed as they come and written at the end.
  const report = (...ss: Section[]): void => {
    for (const s of ss) {
      printSection(s);
      sections.push(s);
    }
  };
  const headerFigs: ClassBenchFigures[] = [];
  if (has("classbench") && classbench) {
    for (const name of HEADER_SETS) headerFigs.push(benchSet(DIR, name, reps));
    if (headerFigs.some((f) => !f.agree)) process.exitCode = 1;
    report(classbenchSection(headerFigs));
  }

  if (has("established")) report(establishedSection(benchEstablished(POLICY, reps)));

  if (has("reload")) {
    const nReload = quick ? 10 : 50, nReload10K = quick ? 5 : 20;
    const reloads: ReloadFigures[] = [await benchReloadPolicy(POLICY, nReload)];
    if (classbench) for (const name of RELOAD_SETS) reloads.push(await benchReloadClassBench(join(DIR, `${name}.rules`), nReload10K));
    reloads.push(await benchRecheck(POLICY, 10_000, nReload10K));
    report(reloadSection(reloads));
    // The packet loop during a large reload: compiled on it, or in the worker.
    report(reloadTrafficSection(await benchReloadUnderTraffic(POLICY, 1_000_000, quick ? 1 : 3)));
  }

  // ---- daemon memory with a full 65,536-flow state table -----------------
  if (has("memory")) report(memorySection(ENGINES.map((e) => measureDaemonMemory(POLICY, e))));

  // ---- core throughput: V8, the TypeScript reference, wasm2c + gcc -O2 ---
  if (has("core")) {
    const perWorkload = quick ? 4096 : 8192;
    const workloads: Workload[] = [mixWorkload(POLICY, perWorkload), mixWorkload(POLICY, perWorkload, undefined, MIX_LIMIT)];
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
      report(coreSection(bench));
      if (bench.cells.some((c) => !c.agree)) process.exitCode = 1;
      targets.push(...coreTargets(bench, headerFigs), ...limitTargets(bench));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  if (has("e2e")) {
    // Rounds as bench/e2e/main.ts runs them (each section's notes say how many).
    // Its fw1_10K run reads the same ClassBench directory (and is left out, saying so, without it).
    const e2e = await e2eSections({ quick, reps: quick ? 3 : 5, classbench: DIR });
    report(...e2e.sections);
    targets.push(...e2e.targets);
  }

  if (has("failover")) {
    const figs = [];
    for (const v of FAILOVER_VRRP) figs.push(await benchFailover(v, quick ? 3 : 10));
    report(failoverSection(figs));
    targets.push(...failoverTargets(figs));
  }

  if (targets.length) {
    console.log("");
    console.log("Targets (issues 8 and 17)");
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
