// `portcullis firstboot` as a whole: the first-boot file on the boot
// partition read (readOperatorFile: a regular file, not a link, at most
// 1 MiB), parsed (parse.ts), planned against the root (plan.ts) and applied
// (apply.ts), then renamed portcullis-firstboot.yaml.done, so a second run
// finds nothing to do. Everything is checked before anything is written: a
// bad file changes nothing in the root. Errors (FILE:LINE:COL: what) go to
// the caller and to BOOT/portcullis-firstboot.errors.txt; an error while
// applying is reported the same way after every change was undone.
import { closeSync, constants, existsSync, lstatSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../config/errors.js";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { applyPlan, FirstbootApplyError } from "./apply.js";
import { ERRORS_FILE, FIRSTBOOT_FILE, MAX_FIRSTBOOT_FILE, parseFirstbootText } from "./parse.js";
import { FirstbootError, type Plan, planFirstboot } from "./plan.js";
import { RootPathError } from "./rootfs.js";

// The default templates: the installed bundle's overlay (install.sh keeps it
// beside the app), else the repository's.
export function defaultTemplates(): string {
  const app = fileURLToPath(new URL("../../../", import.meta.url));
  return existsSync(join(app, "overlay")) ? join(app, "overlay") : join(app, "board", "rootfs_overlay");
}

// written through a link), best effort (a read-only partition: the journal
// has the errors).
function writeBootFile(path: string, text: string): void {
  try {
    const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
    try {
      if (!statSync(path).isFile()) return;
      const buf = Buffer.from(text);
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    } finally {
      closeSync(fd);
    }
  } catch { /* read-only, or not a file: the journal has them */ }
}
function removeBootFile(path: string): void {
  try { if (lstatSync(path).isFile() || lstatSync(path).isSymbolicLink()) unlinkSync(path); } catch { /* absent */ }
}

// --root as an absolute path without links (useradd --prefix needs it).
function checkedRoot(rootArg: string, setHostname: boolean): string {
  let root: string;
  try {
    root = realpathSync(resolve(rootArg));
  } catch (e) {
    throw new FirstbootError([`--root ${rootArg}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (e as Error).message}`]);
  }
  if (!statSync(root).isDirectory()) throw new FirstbootError([`--root ${rootArg}: not a directory`]);
  if (setHostname && root !== "/") throw new FirstbootError([`--set-hostname renames the running system: use it with --root / only (the root here is ${root})`]);
  return root;
}

// The first-boot file read (a regular file, not a link), parsed and planned
// against ROOT; every problem in a FirstbootError (or a RootPathError).
function planFile(file: string, root: string, templates: string): Plan {
  if (lstatSync(file).isSymbolicLink()) throw new FirstbootError([`${file}: a symbolic link; the first-boot file must be a regular file`]);
  try {
    const text = readOperatorFile(file, "first-boot file", MAX_FIRSTBOOT_FILE).toString("utf8");
    return planFirstboot(parseFirstbootText(text, file), root, templates, file);
  } catch (e) {
    if (e instanceof OperatorFileError) throw new FirstbootError([e.message]);
    if (e instanceof ConfigError) throw new FirstbootError(e.all.map((x) => x.message));
    throw e;
  }
}

export interface FirstbootResult { status: "done" | "nothing"; lines: string[] }

// The whole command: read, check, apply, mark done; or report, undo what was
// done, and leave the root as it was.
export function runFirstboot(boot: string, rootArg: string, templates = defaultTemplates(), setHostname = false): FirstbootResult {
  const file = join(resolve(boot), FIRSTBOOT_FILE);
  let present = true;
  try { lstatSync(file); } catch { present = false; }
  if (!present) return { status: "nothing", lines: [`no ${file}: nothing to do`] };
  const errorsFile = join(resolve(boot), ERRORS_FILE);
  const fail = (lines: string[], tail: string): never => {
    const n = lines.filter((l) => !l.startsWith("  ")).length;
    lines.push(`portcullis firstboot: ${n} error${n === 1 ? "" : "s"} ${tail}`);
    writeBootFile(errorsFile, `${lines.join("\n")}\n`);
    throw new FirstbootError(lines);
  };
  let plan: Plan;
  let root: string;
  try {
    root = checkedRoot(rootArg, setHostname);
    plan = planFile(file, root, templates);
  } catch (e) {
    if (e instanceof RootPathError) return fail([e.message], `applying ${file}; nothing changed (fix the root or the file and run again, or reboot)`);
    if (!(e instanceof FirstbootError)) throw e;
    return fail(e.all, `applying ${file}; nothing changed (fix the file and run again, or reboot)`);
  }
  let lines: string[];
  try {
    lines = applyPlan(plan, root, setHostname);
  } catch (e) {
    if (!(e instanceof FirstbootApplyError)) throw e;
    if (e.notUndone.length === 0) return fail([`${file}: could not apply it: ${e.problem}`], `applying ${file}; every change made was undone, nothing changed (fix the cause and run again, or reboot)`);
    return fail([`${file}: could not apply it: ${e.problem}`, ...e.notUndone.map((l) => `  ${l}`)],
      `applying ${file}; the changes above could not be undone, the rest was`);
  }
  try {
    renameSync(file, `${file}.done`);
  } catch (e) {
    return fail([`${file}: applied, but it could not be renamed ${FIRSTBOOT_FILE}.done (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); it is applied again at the next boot`],
      `marking ${file} done`);
  }
  removeBootFile(errorsFile);
  lines.push(`applied ${file} to ${root}; renamed it ${FIRSTBOOT_FILE}.done`);
  return { status: "done", lines };
}
