// Carrying out a first boot's plan (plan.ts) on the root, through a
// RootChange (rootfs.ts: no link followed, every file replaced atomically,
// each step undone if a later one fails): the admin account made with
// useradd --prefix ROOT, its authorized_keys, the files of the plan written
// where they differ, the ones it drops removed. An error undoes every change
// made and says what could not be undone (FirstbootApplyError).
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { accounts, ADMINS_RECORD, FIRST_UID, type Plan } from "./plan.js";
import { lstatInRoot, readInRoot, RootChange, RootPathError } from "./rootfs.js";

// The account files useradd rewrites (and their backups), kept for the undo.
const ACCOUNT_FILES = ["passwd", "group", "shadow", "gshadow", "subuid", "subgid"].flatMap((f) => [`etc/${f}`, `etc/${f}-`]);

// An error while applying: what failed, and what of the undo failed too.
export class FirstbootApplyError extends Error {
  constructor(readonly problem: string, readonly notUndone: string[]) {
    super(problem);
    this.name = "FirstbootApplyError";
  }
}

function useradd(root: string, user: string): void {
  const args = ["--create-home", "--home-dir", `/home/${user}`, "--shell", "/bin/bash", "--comment", "Portcullis admin", user];
  const r = spawnSync("useradd", root === "/" ? args : ["--prefix", root, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`useradd ${user} failed: ${(r.stderr || r.error?.message || `exit status ${r.status}`).trim().split("\n").join("; ")}`);
}

// Applies a checked plan, writing only what differs; returns what it did, one
// line each. Any error undoes every change made so far (FirstbootApplyError).
export function applyPlan(plan: Plan, root: string, setHostname = false): string[] {
  const did: string[] = [];
  const change = new RootChange(root);
  const changed = (rel: string, content: string): boolean => readInRoot(root, rel) !== content;
  try {
    if (plan.admin) {
      const u = plan.admin.user;
      const home = `home/${u}`;
      if (!plan.admin.exists) {
        change.accounts(ACCOUNT_FILES, home, () => useradd(root, u));
        did.push(`created user ${u}`);
      }
      const acct = accounts(readInRoot(root, "etc/passwd")).get(u);
      if (!acct || acct.home !== `/${home}` || !(acct.uid >= FIRST_UID)) throw new Error(`useradd did not make ${u} with home /${home} and a uid of ${FIRST_UID} or more`);
      const h = lstatInRoot(root, home);
      if (h === null || !h.isDirectory()) throw new RootPathError(`/${home} is not a directory after useradd`);
      if (!plan.admin.exists) {
        const rec = readInRoot(root, ADMINS_RECORD) ?? "# Accounts made by portcullis firstboot (USER UID); it refuses any other existing account.\n";
        change.write(ADMINS_RECORD, `${rec}${u} ${acct.uid}\n`, 0o644);
      }
      change.mkdirs(`${home}/.ssh`, 0o700);
      const keys = `${plan.admin.keys.join("\n")}\n`;
      const ak = `${home}/.ssh/authorized_keys`;
      if (changed(ak, keys)) {
        change.write(ak, keys, 0o600);
        did.push(`wrote /${ak} (${plan.admin.keys.length} key${plan.admin.keys.length === 1 ? "" : "s"})`);
      }
      for (const p of [`${home}/.ssh`, ak]) change.chown(p, acct.uid, acct.gid);
    }
    for (const w of plan.writes) {
      if (changed(w.path, w.content)) { change.write(w.path, w.content, w.mode); did.push(`wrote /${w.path}`); }
    }
    for (const p of plan.removes) if (change.remove(p)) did.push(`removed /${p}`);
  } catch (e) {
    throw new FirstbootApplyError((e as Error).message, change.rollback());
  }
  change.commit();
  if (setHostname) {
    // The running system took its name from /etc/hostname before this ran.
    try { writeFileSync("/proc/sys/kernel/hostname", plan.hostname); } catch { did.push("could not set the running hostname (it applies at the next boot)"); }
  }
  return did;
}

// The errors file on the boot partition: a regular file or nothing (never
