// `portcullis compile POLICY -o TABLE`: compile a policy into the binary rule
// table the core loads, written atomically (a temporary file in the same
// directory, flushed, then renamed over TABLE), so a reader never sees half a
// table. On any error nothing is written and the exit status is 1.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Command } from "commander";
import { addPolicyOptions, compileOrReport, type PolicyCliOptions } from "./check.js";

export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  let fd = -1;
  try {
    fd = openSync(tmp, "wx", 0o644);
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    try { unlinkSync(tmp); } catch { /* never created, or already renamed */ }
    throw new Error(`cannot write ${path}: ${(e as Error).message}`);
  }
  // Make the rename itself durable; not every file system lets a directory be opened.
  try {
    const d = openSync(dir, "r");
    try { fsyncSync(d); } finally { closeSync(d); }
  } catch { /* best effort */ }
}

export function compileCommand(): Command {
  return addPolicyOptions(new Command("compile")
    .description("compile a policy file into a binary rule table (written atomically)")
    .argument("<policy>", "policy file (YAML; see host/policy/README.md)")
    .requiredOption("-o, --output <table>", "where to write the table"))
    .action((policy: string, opts: PolicyCliOptions & { output: string }) => {
      const c = compileOrReport(policy, opts, `${opts.output} not written`);
      if (!c) return;
      const built = c.table;
      writeFileAtomic(opts.output, built.bytes);
      const s = c.compiled.summary;
      const off = s.rules.filter((r) => r.table === null).length;
      process.stdout.write(
        `wrote ${opts.output}: ${built.bytes.length} bytes, ${s.tableRules} rule${s.tableRules === 1 ? "" : "s"}` +
        `${off ? ` (${off} switched off)` : ""}, default ${s.defaultAction}, mode ${s.mode}; ` +
        `policy ${s.ms.toFixed(1)} ms, table build ${built.stats.ms.toFixed(1)} ms\n`);
    });
}
