// `portcullis compile POLICY -o TABLE`: compile a policy into the binary rule
// table the core loads, written atomically (host/io/atomic-write.ts), so a
// reader never sees half a table. On any error TABLE is left as it was, the
// error is one line and the exit status is 1.
import { Command } from "commander";
import { writeFileAtomic } from "../io/atomic-write.js";
import { addPolicyOptions, compileOrReport, type PolicyCliOptions } from "./check.js";

export function compileCommand(): Command {
  return addPolicyOptions(new Command("compile")
    .description("compile a policy file into a binary rule table (written atomically)")
    .argument("<policy>", "policy file (YAML; see host/policy/README.md)")
    .requiredOption("-o, --output <table>", "where to write the table"))
    .action((policy: string, opts: PolicyCliOptions & { output: string }) => {
      const c = compileOrReport(policy, opts, `${opts.output} not written`);
      if (!c) return;
      const built = c.table;
      writeFileAtomic(opts.output, built.bytes, { mode: 0o644 });
      const s = c.compiled.summary;
      const off = s.rules.filter((r) => r.table === null).length;
      process.stdout.write(
        `wrote ${opts.output}: ${built.bytes.length} bytes, ${s.tableRules} rule${s.tableRules === 1 ? "" : "s"}` +
        `${off ? ` (${off} switched off)` : ""}, default ${s.defaultAction}, mode ${s.mode}; ` +
        `policy ${s.ms.toFixed(1)} ms, table build ${built.stats.ms.toFixed(1)} ms\n`);
    });
}
