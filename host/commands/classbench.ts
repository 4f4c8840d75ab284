// `portcullis classbench RULES TRACE [--check]`: every header of a ClassBench
// trace through the core's first-match classifier; prints the 1-based index
// of the matching rule per line (0: none). With --check, compares against the
// trace's last column and prints "checked N, mismatched M".
import { Command } from "commander";
import { Core } from "../core/core.js";
import { buildTable } from "../rules/build.js";
import { readFilters, readTrace } from "../rules/classbench.js";
import { classifyHeaders } from "../rules/headers.js";
import { type EngineName } from "../core/load.js";
import { engineOption } from "./engine.js";

export interface ClassBenchRun {
  results: Int32Array; // 1-based rule index, 0 for none
  checked: number;
  mismatched: number;
  firstMismatch: number | null; // 1-based trace line
  rules: number;
  tableBytes: number;
  buildMs: number;
}

export function runClassBench(rulesPath: string, tracePath: string, engine?: EngineName): ClassBenchRun {
  const spec = readFilters(rulesPath);
  const { bytes, stats } = buildTable(spec);
  const core = new Core("release", undefined, { maxRules: Math.max(spec.rules.length, 1), tableCap: Math.max(bytes.length, 1 << 20), ...(engine ? { engine } : {}) });
  core.loadTable(bytes);
  const trace = readTrace(tracePath);
  const idx = classifyHeaders(core, trace);
  const results = new Int32Array(idx.length);
  let checked = 0, mismatched = 0;
  let firstMismatch: number | null = null;
  idx.forEach((r, i) => {
    results[i] = r + 1;
    const want = trace[i]!.expected;
    if (want !== null) {
      checked++;
      if (want !== r + 1) {
        mismatched++;
        firstMismatch ??= i + 1;
      }
    }
  });
  return { results, checked, mismatched, firstMismatch, rules: spec.rules.length, tableBytes: bytes.length, buildMs: stats.ms };
}

export function classbenchCommand(): Command {
  return new Command("classbench")
    .description("classify a ClassBench trace against a ClassBench filter set through the core (first match)")
    .argument("<rules>", "filter set (the 9-token form or the tab-separated form with flags)")
    .argument("<trace>", "header trace, plain or gzip")
    .option("--check", "compare with the trace's last column and print a summary instead of every index")
    .addOption(engineOption())
    .action((rules: string, trace: string, opts: { check?: boolean; engine?: EngineName }) => {
      const run = runClassBench(rules, trace, opts.engine);
      if (!opts.check) {
        process.stdout.write(`${Array.from(run.results).join("\n")}\n`);
        return;
      }
      const lines = [
        `rules ${run.rules}, table ${run.tableBytes} bytes built in ${run.buildMs.toFixed(0)} ms`,
        `checked ${run.checked}, mismatched ${run.mismatched}`,
      ];
      if (run.firstMismatch !== null) lines.push(`first mismatch at trace line ${run.firstMismatch}`);
      if (run.checked === 0) lines.push("the trace has no expected column to check against");
      process.stdout.write(`${lines.join("\n")}\n`);
      if (run.mismatched > 0 || run.checked === 0) process.exitCode = 1;
    });
}
