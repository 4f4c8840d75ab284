// The plan of a first boot: everything `portcullis firstboot` would write to
// or remove from the root, computed and checked without touching it (apply.ts
// then carries it out). It reads the root only through rootfs.ts (no link is
// followed) and refuses an admin that is an existing account firstboot did not
// make. The .link and .network files come from the overlay's templates
// (--templates DIR, the installed bundle's board/rootfs_overlay): the .link.in
// files get the MACs (links.ts), the 20-portcullis-SIDE.network.in files the
// MACs and one Address=/Gateway= line per address and gateway, in place of the
// lines %ADDRESS% and %GATEWAY%. The policy gets the groups and the admins'
// SSH rule, and must then pass `portcullis check` in the board's mode. With
// ha:, board.yaml gets it as its ha: section (the rest of the file as it was)
// and must then pass the board's parser, and keepalived's files are those
// `portcullis ha --apply` writes (host/ha/files.ts), never over a file there
// that it did not write.
import { join } from "node:path";
import { isMap, isSeq, parseDocument, Scalar } from "yaml";
import { ConfigError, formatPos } from "../config/errors.js";
import { printable, suggest } from "../config/yaml.js";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { DEFAULT_HA_BOARD, haFiles, installedHaOptions, isOurs, notOurs } from "../ha/files.js";
import { type BoardConfig, parseBoardText } from "../kernel/board.js";
import { compilePolicyText, type Mode } from "../policy/compile.js";
import { fillMacs } from "./links.js";
import { FIRSTBOOT_FILE, type FirstbootConfig, MAX_FIRSTBOOT_FILE } from "./parse.js";
import { fileSlotInRoot, lstatInRoot, readInRoot, RootPathError } from "./rootfs.js";

// Problems found before anything is written, one line each.
export class FirstbootError extends Error {
  constructor(readonly all: string[]) {
    super(all.join("\n"));
    this.name = "FirstbootError";
  }
}

export interface Write { path: string; content: string; mode: number }
export interface Plan {
  writes: Write[];
  removes: string[];
  // exists: the account is one firstboot made earlier (its record says so).
  admin: { user: string; keys: string[]; exists: boolean } | null;
  hostname: string;
}

export const ADMIN_SSH_RULE = "admin-ssh";
// The accounts firstboot made ("USER UID" a line): the only existing accounts
// it will give keys to again. Any other existing account is refused.
export const ADMINS_RECORD = "etc/portcullis/firstboot-admins";
// An admin's uid is at least this (a user's, not a system account's).
export const FIRST_UID = 1000;
// The board configuration: the one keepalived's files name (files.ts).
const BOARD_REL = DEFAULT_HA_BOARD.slice(1);

interface Account { name: string; uid: number; gid: number; home: string }
// The accounts of an /etc/passwd text by name.
export function accounts(text: string | null): Map<string, Account> {
  const out = new Map<string, Account>();
  for (const l of (text ?? "").split("\n")) {
    const f = l.split(":");
    if (f.length >= 7) out.set(f[0]!, { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! });
  }
  return out;
}
const recorded = (text: string | null): Map<string, number> =>
  new Map((text ?? "").split("\n").filter((l) => /^[a-z_][a-z0-9_-]* \d+$/.test(l)).map((l) => [l.split(" ")[0]!, Number(l.split(" ")[1])]));

// Whether the admin's account exists already, after checking it against the
// root (problems noted): a new name (no account, no group, no /home/USER
// yet), or the account firstboot made earlier with its home where it put it;
// never a link on the way.
function adminExists(cfg: NonNullable<FirstbootConfig["admin"]>, root: string, problems: string[]): boolean {
  const u = cfg.user;
  const at = formatPos(cfg.userPos);
  const acct = accounts(readInRoot(root, "etc/passwd")).get(u);
  const home = `home/${u}`;
  if (acct) {
    const mine = recorded(readInRoot(root, ADMINS_RECORD)).get(u);
    if (mine !== acct.uid || acct.uid < FIRST_UID || acct.home !== `/${home}`) {
      problems.push(`${at}: admin.user "${u}" is an existing account (uid ${acct.uid}, home ${acct.home}) that portcullis firstboot did not make: name a new user`);
      return true;
    }
    const h = lstatInRoot(root, home);
    if (h === null || !h.isDirectory()) problems.push(`${at}: the home of admin.user "${u}", /${home}, is ${h === null ? "missing" : "not a directory"}`);
    const ssh = lstatInRoot(root, `${home}/.ssh`);
    if (ssh !== null && !ssh.isDirectory()) problems.push(`/${home}/.ssh is not a directory (a link?); firstboot does not follow links in the root`);
    else fileSlotInRoot(root, `${home}/.ssh/authorized_keys`);
    return true;
  }
  if ((readInRoot(root, "etc/group") ?? "").split("\n").some((l) => l.split(":")[0] === u)) {
    problems.push(`${at}: admin.user "${u}": a group of that name exists already; name a new user`);
  }
  const h = lstatInRoot(root, home);
  if (h !== null) problems.push(`${at}: admin.user "${u}" is new but /${home} exists already; firstboot makes a new user's home itself`);
  return false;
}

// Everything to write, computed and checked without touching ROOT.
export function planFirstboot(cfg: FirstbootConfig, root: string, templates: string, file: string): Plan {
  const problems: string[] = [];
  const note = `# Written by portcullis firstboot from ${FIRSTBOOT_FILE}.\n`;
  const writes: Write[] = [];
  const removes: string[] = [];
  if (readInRoot(root, "etc/passwd") === null) problems.push(`${join(root, "etc/passwd")}: missing; is ${root} a root filesystem?`);

  // The installed board configuration, read (and its problems noted) once.
  let installed: { text: string; config: BoardConfig } | null | undefined;
  const board = (): { text: string; config: BoardConfig } | null => {
    if (installed !== undefined) return installed;
    installed = null;
    const text = readInRoot(root, BOARD_REL);
    if (text === null) problems.push(`${join(root, BOARD_REL)}: missing; install Portcullis first`);
    else installed = configOrProblems(() => ({ text, config: parseBoardText(text, join(root, BOARD_REL)) }), problems);
    return installed;
  };

  writes.push({ path: "etc/hostname", content: `${cfg.hostname}\n`, mode: 0o644 });
  let hosts = readInRoot(root, "etc/hosts") ?? "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n";
  const line = `127.0.1.1\t${cfg.hostname}`;
  hosts = /^127\.0\.1\.1\s.*$/m.test(hosts) ? hosts.replace(/^127\.0\.1\.1\s.*$/m, () => line) : `${hosts.replace(/\n?$/, "\n")}${line}\n`;
  writes.push({ path: "etc/hosts", content: hosts, mode: 0o644 });

  // A template of the overlay, or null (and the problem noted).
  const template = (rel: string, what: string): string | null => {
    try {
      return readOperatorFile(join(templates, rel), `${what} template (--templates DIR)`, MAX_FIRSTBOOT_FILE).toString("utf8");
    } catch (e) {
      if (!(e instanceof OperatorFileError)) throw e;
      problems.push(e.message);
      return null;
    }
  };
  for (const t of ["10-external.link", "11-internal.link"]) {
    const text = template(`etc/systemd/network/${t}.in`, ".link");
    if (text !== null) writes.push({ path: `etc/systemd/network/${t}`, content: fillMacs(text, cfg.external.mac, cfg.internal.mac), mode: 0o644 });
  }
  for (const side of ["external", "internal"] as const) {
    const path = `etc/systemd/network/20-portcullis-${side}.network`;
    if (cfg[side].address.length === 0) { removes.push(path); continue; }
    const text = template(`${path}.in`, ".network");
    if (text === null) continue;
    if (!text.split("\n").includes("%ADDRESS%")) problems.push(`${join(templates, `${path}.in`)}: the .network template has no %ADDRESS% line`);
    else writes.push({ path, content: fillNetworkTemplate(text, cfg, side), mode: 0o644 });
  }

  // The policy with the given groups replaced (and the admins' SSH rule),
  // checked in the board's mode.
  const policyRel = "etc/portcullis/policy.yaml";
  const policyPath = join(root, policyRel);
  const policyText = readInRoot(root, policyRel);
  const sshFrom = cfg.admin?.sshFrom ?? [];
  if ((cfg.groups.length > 0 || sshFrom.length > 0) && policyText === null) problems.push(`${policyPath}: missing; install Portcullis first`);
  else if (policyText !== null && (cfg.groups.length > 0 || cfg.admin)) {
    let changed = cfg.groups.length > 0;
    const mode: Mode = board()?.config.mode ?? "host";
    const doc = parseDocument(policyText);
    if (doc.errors.length) problems.push(`${policyPath}: the installed policy is not valid YAML; fix it first (portcullis check ${policyPath})`);
    const have = doc.get("groups");
    const names = isMap(have) ? have.items.map((i) => String((i.key as { value?: unknown } | null)?.value)) : [];
    for (const g of cfg.groups) {
      if (!names.includes(g.name)) {
        problems.push(`${formatPos(g.pos)}: the policy has no group "${printable(g.name)}"${suggest(g.name, names)}; its groups: ${names.join(", ") || "none"}`);
        continue;
      }
      const seq = doc.createNode(g.entries);
      doc.setIn(["groups", g.name], seq);
    }
    // SSH to the appliance itself on its internal side, first in the rules
    // (a rule of host mode: in gateway mode the rules match forwarded packets
    // only). The admin section without ssh_from drops an earlier such rule.
    const rules = doc.get("rules");
    if (cfg.admin && isSeq(rules)) {
      const before = rules.items.length;
      rules.items = rules.items.filter((r) => !(isMap(r) && r.get("name") === ADMIN_SSH_RULE));
      changed ||= rules.items.length !== before;
    }
    if (sshFrom.length > 0) {
      if (mode !== "host") problems.push(`${formatPos(cfg.admin!.sshFromPos!)}: admin.ssh_from needs board mode host (this board is ${mode}: its own traffic is not matched by policy rules; manage it from a third interface)`);
      if (!isSeq(rules)) problems.push(`${policyPath}: the policy has no rules list to add the ${ADMIN_SSH_RULE} rule to`);
      else {
        changed = true;
        rules.items.unshift(doc.createNode({
          name: ADMIN_SSH_RULE, action: "allow", interface: "internal", direction: "in", proto: "tcp", src: sshFrom, dport: 22,
          comment: `SSH to the appliance from its admins (${FIRSTBOOT_FILE})`,
        }));
      }
    }
    try {
      if (changed && doc.errors.length === 0) {
        const text = doc.toString();
        compilePolicyText(text, policyPath, { mode });
        writes.push({ path: policyRel, content: text, mode: 0o644 });
      }
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(`${file}: with these groups and rules the policy would not pass portcullis check (mode ${mode}; lines as it would be written):`, ...e.all.map((x) => `  ${x.message}`));
    }
  }

  if (cfg.ha) {
    const b = board();
    if (b) writes.push(...planHa(cfg.ha, b.text, root, problems));
  }

  let exists = false;
  if (cfg.admin) {
    const u = cfg.admin.user;
    exists = adminExists(cfg.admin, root, problems);
    writes.push({ path: `etc/sudoers.d/90-portcullis-${u}`, content: `${note}${u} ALL=(ALL:ALL) NOPASSWD: ALL\n`, mode: 0o440 });
  }
  // Each file to write or remove: a regular file or nothing, no link on the way.
  for (const rel of [...writes.map((w) => w.path), ...removes]) {
    try { fileSlotInRoot(root, rel); } catch (e) { if (!(e instanceof RootPathError)) throw e; if (!problems.includes(e.message)) problems.push(e.message); }
  }
  if (problems.length) throw new FirstbootError(problems);
  return { writes, removes, admin: cfg.admin ? { user: cfg.admin.user, keys: cfg.admin.keys, exists } : null, hostname: cfg.hostname };
}

// F(), or null with its ConfigError's lines noted.
function configOrProblems<T>(f: () => T, problems: string[], head: string[] = [], indent = ""): T | null {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems.push(...head, ...e.all.map((x) => `${indent}${x.message}`));
    return null;
  }
}

// The HA pair: board.yaml (TEXT, as installed) with its ha: section set to
// the file's, everything else in it (comments too) as it was, checked by the
// board's parser; then keepalived.conf, the notify hook and conntrackd's
// configuration for that board, exactly as `portcullis ha --apply` with its
// defaults writes them, each refused (noted) if a file there is not ours.
function planHa(ha: NonNullable<FirstbootConfig["ha"]>, text: string, root: string, problems: string[]): Write[] {
  const path = join(root, BOARD_REL);
  const doc = parseDocument(text);
  if (doc.has("ha")) doc.set("ha", ha.node.clone());
  else {
    const key = new Scalar("ha");
    key.spaceBefore = true;
    key.commentBefore = ` One appliance of an HA pair, from ${FIRSTBOOT_FILE} (keepalived's files: portcullis ha --apply).`;
    doc.add(doc.createPair(key, ha.node.clone()));
  }
  const out = doc.toString();
  const board = configOrProblems(() => parseBoardText(out, path), problems,
    [`${formatPos(ha.pos)}: with this ha: the board configuration would not pass its parser (lines as ${path} would be written):`], "  ");
  if (!board) return [];
  const writes: Write[] = [{ path: BOARD_REL, content: out, mode: 0o644 }];
  for (const f of haFiles(board, installedHaOptions())) {
    const rel = f.path.replace(/^\/+/, "");
    const have = readInRoot(root, rel);
    if (have !== null && !isOurs(have)) problems.push(`${formatPos(ha.pos)}: ${notOurs(f.path)} (ha: here would replace it)`);
    writes.push({ path: rel, content: f.text, mode: f.mode });
  }
  return writes;
}

// A .network template filled for SIDE: the MACs as in the .link files, and
// each of the lines %ADDRESS% and %GATEWAY% replaced by one line per value
// (none when there is none). Split and join: no $-patterns of replace.
function fillNetworkTemplate(text: string, cfg: FirstbootConfig, side: "external" | "internal"): string {
  const lines = (key: string, values: string[]): string[] => values.map((v) => `${key}=${v}`);
  return fillMacs(text, cfg.external.mac, cfg.internal.mac).split("\n")
    .flatMap((l) => (l === "%ADDRESS%" ? lines("Address", cfg[side].address) : l === "%GATEWAY%" ? lines("Gateway", cfg[side].gateway) : [l]))
    .join("\n");
}
