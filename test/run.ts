// Runs every test file with uvu and ends with the line CI reads:
// "N passed, N failed". A skipped test counts as failed: nothing is skipped
// silently. Exit status is non-zero on any failure.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const uvu = join(root, "node_modules", "uvu", "bin.js");
const only = process.argv[2];
const pattern = only ? `${only}[^/]*\\.test\\.js$` : "\\.test\\.js$";

const res = spawnSync(process.execPath, [uvu, here, pattern], {
  cwd: root,
  stdio: ["ignore", "pipe", "inherit"],
  encoding: "utf8",
  env: process.stdout.isTTY ? process.env : { ...process.env, NODE_DISABLE_COLORS: "1" },
  maxBuffer: 256 * 1024 * 1024,
});
process.stdout.write(res.stdout ?? "");

// uvu's colours are off when stdout is not a TTY; strip them anyway.
const out = (res.stdout ?? "").replace(/\x1b\[[0-9;]*m/g, "");
const num = (label: string): number | undefined => {
  const m = new RegExp(`^\\s*${label}:\\s+(\\d+)`, "m").exec(out);
  return m ? Number(m[1]) : undefined;
};
const total = num("Total");
const passed = num("Passed");
let failed: number;
if (total === undefined || passed === undefined) {
  console.log("the test runner stopped before its summary (a test file crashed on load?)");
  failed = 1;
} else {
  failed = total - passed;
  if (res.status !== 0 && failed === 0) failed = 1;
}
console.log(`${passed ?? 0} passed, ${failed} failed`);
process.exit(failed === 0 && res.status === 0 ? 0 : 1);
