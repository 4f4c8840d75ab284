// `portcullis firstboot [--boot DIR] [--root DIR] [--templates DIR] [--set-hostname]`: applies
// the first-boot file of a flashed board, BOOT/portcullis-firstboot.yaml (the
// FAT boot partition, /boot/firmware on the Pi), to the root filesystem ROOT:
//
//   version: 1
//   hostname: edge-proxy-1
//   external: { mac: "dc:a6:32:12:34:56", address: [203.0.113.1/24], gateway: 203.0.113.254 }
//   internal: { mac: "00:e0:4c:12:34:56", address: [198.51.100.1/24] }
//   groups:   { listener: [203.0.113.1], front_end: [198.51.100.10] }
//   admin:    { user: admin, ssh_keys: ["ssh-ed25519 AAAA... me@laptop"] }
//
// It writes /etc/hostname and the 127.0.1.1 line of /etc/hosts, the .link
// files naming the NICs by MAC (from the overlay's .link.in templates), a
// systemd-networkd .network file per side with static addresses, the policy
// with the given groups replaced (it must pass `portcullis check` in the
// board's mode), and the admin user with its SSH keys and passwordless sudo.
// Everything is checked before anything is written: a bad file changes
// nothing in ROOT, its errors (FILE:LINE:COL: what) go to stderr and to
// BOOT/portcullis-firstboot.errors.txt, and the exit status is 1. After a
// success the file is renamed portcullis-firstboot.yaml.done, so a second run
// finds nothing to do.
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { writeAtomic } from "../daemon/state.js";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { BoardError, readBoardFile } from "../kernel/board.js";
import { isPrefix, parseIPv4, parseIPv6, parsePrefix } from "../policy/addr.js";
import { compilePolicyText, type Mode } from "../policy/compile.js";
import { formatPos, PolicyError, type Pos } from "../policy/errors.js";
import { suggest } from "../policy/parse.js";

export const FIRSTBOOT_FILE = "portcullis-firstboot.yaml";
export const ERRORS_FILE = "portcullis-firstboot.errors.txt";

export interface NicConfig { mac: string; address: string[]; gateway: string[] }
export interface FirstbootConfig {
  hostname: string;
  external: NicConfig;
  internal: NicConfig;
  groups: Array<{ name: string; entries: string[]; pos: Pos }>;
  admin: { user: string; keys: string[]; sshFrom: string[]; sshFromPos: Pos | null } | null;
}

export class FirstbootError extends Error {
  constructor(readonly all: string[]) {
    super(all.join("\n"));
    this.name = "FirstbootError";
  }
}

const TOP_KEYS = ["version", "hostname", "external", "internal", "groups", "admin"];
const NIC_KEYS = ["mac", "address", "gateway"];
const ADMIN_KEYS = ["user", "ssh_keys", "ssh_from"];
const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const USER_RE = /^[a-z_][a-z0-9_-]{0,30}$/;
const RESERVED_USERS = new Set(["root", "portcullis", "daemon", "bin", "sys", "nobody", "sshd", "_apt", "systemd-network", "systemd-timesync", "messagebus"]);
const KEY_TYPES = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"];

// An interface address: ADDRESS/LEN (host bits allowed, unlike a policy prefix).
function ifaceAddress(text: string): { family: 4 | 6 } | string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return `"${text}" must be ADDRESS/LENGTH, e.g. 203.0.113.1/24`;
  const family = parseIPv4(m[1]!) !== null ? 4 : parseIPv6(m[1]!) !== null ? 6 : 0;
  if (family === 0) return `"${m[1]}" is not an IPv4 or IPv6 address`;
  const len = Number(m[2]);
  if (len < 1 || len > (family === 4 ? 32 : 128)) return `"${text}": the length must be 1 to ${family === 4 ? 32 : 128}`;
  return { family };
}

// An OpenSSH public key line: TYPE BASE64 [COMMENT], the blob naming TYPE.
function sshKeyProblem(line: string): string | null {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2 || !KEY_TYPES.includes(parts[0]!)) {
    return `not an SSH public key: it must start with one of ${KEY_TYPES.join(", ")} (the one line of a .pub file)`;
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(parts[1]!)) return "the key's second field is not base64";
  const blob = Buffer.from(parts[1]!, "base64");
  const n = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (n < 0 || 4 + n > blob.length || blob.subarray(4, 4 + n).toString("latin1") !== parts[0]) {
    return `the key's data does not hold a ${parts[0]} key (damaged or cut short?)`;
  }
  return null;
}

export function parseFirstbootText(text: string, file: string): FirstbootConfig {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const errors: Array<{ pos: Pos; what: string }> = [];
  const start: Pos = { file, line: 1, col: 1 };
  const at = (n: Node | null | undefined, fallback: Pos): Pos => {
    if (!n || !n.range) return fallback;
    const p = lc.linePos(n.range[0]);
    return { file, line: p.line, col: p.col };
  };
  const err = (pos: Pos, what: string): void => { errors.push({ pos, what }); };
  const cfg: FirstbootConfig = {
    hostname: "", external: { mac: "", address: [], gateway: [] }, internal: { mac: "", address: [], gateway: [] }, groups: [], admin: null,
  };
  const done = (): FirstbootConfig => {
    if (errors.length === 0) return cfg;
    errors.sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col);
    throw new FirstbootError(errors.map((e) => `${formatPos(e.pos)}: ${e.what}`));
  };
  for (const e of doc.errors) {
    const p = lc.linePos(e.pos[0]);
    err({ file, line: p.line, col: p.col }, e.code === "DUPLICATE_KEY" ? "this key appears twice in the same mapping" : `YAML: ${e.message.split("\n")[0]}`);
  }
  if (errors.length) return done();

  type Entry = { key: Pos; value: Node | null };
  const mapping = (n: Node | null, allowed: readonly string[] | null, what: string, fallback: Pos): Map<string, Entry> => {
    const out = new Map<string, Entry>();
    if (!n || !isMap(n)) {
      err(at(n, fallback), `${what} must be a mapping of keys to values`);
      return out;
    }
    for (const item of n.items) {
      const k = item.key as Node | null;
      const kpos = at(k, at(n, fallback));
      const key = k && isScalar(k) && typeof k.value === "string" ? k.value : null;
      if (key === null) err(kpos, `keys of ${what} must be plain words`);
      else if (allowed && !allowed.includes(key)) err(kpos, `unknown key "${key}" in ${what}${suggest(key, allowed)}; allowed: ${allowed.join(", ")}`);
      else out.set(key, { key: kpos, value: (item.value as Node | null) ?? null });
    }
    return out;
  };
  const str = (e: Entry, what: string): string | null => {
    const v = e.value && isScalar(e.value) ? e.value.value : null;
    if (typeof v === "string" && v !== "") return v;
    err(at(e.value, e.key), `${what} must be text, not ${JSON.stringify(v)}`);
    return null;
  };
  // A value or a list of values, each with its position.
  const list = (e: Entry, what: string): Array<{ text: string; pos: Pos }> => {
    const items = e.value && isSeq(e.value) ? (e.value.items as Array<Node | null>) : [e.value];
    if (e.value && isSeq(e.value) && items.length === 0) err(at(e.value, e.key), `${what} is an empty list`);
    const out: Array<{ text: string; pos: Pos }> = [];
    for (const it of items) {
      const v = it && isScalar(it) ? it.value : null;
      if (typeof v === "string" && v !== "") out.push({ text: v, pos: at(it, e.key) });
      else err(at(it, e.key), `each entry of ${what} must be text, not ${it && !isScalar(it) ? "a list or mapping" : JSON.stringify(v)}`);
    }
    return out;
  };

  const topNode = doc.contents as Node | null;
  if (!topNode || (isScalar(topNode) && topNode.value === null)) {
    err(start, "the first-boot file is empty; it needs version, hostname, external and internal");
    return done();
  }
  const top = mapping(topNode, TOP_KEYS, "the first-boot file", start);
  const need = (k: string, hint: string): Entry | undefined => {
    const v = top.get(k);
    if (!v && isMap(topNode)) err(at(topNode, start), `the first-boot file has no "${k}:" (${hint})`);
    return v;
  };
  const ver = need("version", "write version: 1");
  if (ver && !(ver.value && isScalar(ver.value) && ver.value.value === 1)) err(at(ver.value, ver.key), "unsupported version; this reads version: 1");
  const host = need("hostname", "the appliance's name");
  if (host) {
    const h = str(host, "hostname");
    if (h !== null && !HOSTNAME_RE.test(h)) err(at(host.value, host.key), `hostname "${h}" must be one name of 1-63 letters, digits and - (no dots, no - at either end)`);
    else if (h !== null) cfg.hostname = h;
  }
  for (const side of ["external", "internal"] as const) {
    const s = need(side, `a mapping with mac: the ${side} NIC`);
    if (!s) continue;
    const m = mapping(s.value, NIC_KEYS, side, s.key);
    const mac = m.get("mac");
    if (!mac) {
      if (s.value && isMap(s.value)) err(at(s.value, s.key), `${side} has no "mac:" (the MAC address of the ${side} NIC, as ip -br link shows it)`);
    } else {
      const v = str(mac, `${side}.mac`);
      if (v !== null && !MAC_RE.test(v.toLowerCase())) err(at(mac.value, mac.key), `${side}.mac "${v}" is not a MAC address like dc:a6:32:12:34:56`);
      else if (v !== null) cfg[side].mac = v.toLowerCase();
    }
    const families = new Set<number>();
    const addr = m.get("address");
    if (addr) {
      for (const a of list(addr, `${side}.address`)) {
        const r = ifaceAddress(a.text);
        if (typeof r === "string") err(a.pos, `${side}.address: ${r}`);
        else { families.add(r.family); cfg[side].address.push(a.text); }
      }
    }
    const gw = m.get("gateway");
    if (gw) {
      for (const g of list(gw, `${side}.gateway`)) {
        const family = parseIPv4(g.text) !== null ? 4 : parseIPv6(g.text) !== null ? 6 : 0;
        if (family === 0) err(g.pos, `${side}.gateway "${g.text}" is not an IPv4 or IPv6 address`);
        else if (!families.has(family)) err(g.pos, `${side}.gateway ${g.text} is IPv${family} but ${side} has no IPv${family} address`);
        else cfg[side].gateway.push(g.text);
      }
    }
  }
  if (cfg.external.mac !== "" && cfg.external.mac === cfg.internal.mac) {
    err(top.get("internal")!.key, `external and internal have the same MAC ${cfg.external.mac}`);
  }
  const groups = top.get("groups");
  if (groups) {
    for (const [name, e] of mapping(groups.value, null, "groups", groups.key)) {
      const entries: string[] = [];
      for (const x of list(e, `groups.${name}`)) {
        const p = parsePrefix(x.text);
        if (isPrefix(p)) entries.push(x.text);
        else err(x.pos, `groups.${name}: ${p.what}`);
      }
      cfg.groups.push({ name, entries, pos: e.key });
    }
  }
  const admin = top.get("admin");
  if (admin) {
    const m = mapping(admin.value, ADMIN_KEYS, "admin", admin.key);
    const u = m.get("user");
    const k = m.get("ssh_keys");
    if (isMap(admin.value) && (!u || !k)) err(at(admin.value, admin.key), `admin needs both "user:" and "ssh_keys:"`);
    let user: string | null = null;
    if (u) {
      user = str(u, "admin.user");
      if (user !== null && (!USER_RE.test(user) || RESERVED_USERS.has(user))) {
        err(at(u.value, u.key), `admin.user "${user}" must be a new login name: lower-case letter or _, then letters, digits, _ or - (not a system user)`);
        user = null;
      }
    }
    const keys: string[] = [];
    if (k) {
      for (const x of list(k, "admin.ssh_keys")) {
        const p = sshKeyProblem(x.text);
        if (p) err(x.pos, `admin.ssh_keys: ${p}`);
        else keys.push(x.text.trim());
      }
    }
    const from = m.get("ssh_from");
    const sshFrom: string[] = [];
    if (from) {
      for (const x of list(from, "admin.ssh_from")) {
        const p = parsePrefix(x.text);
        if (isPrefix(p)) sshFrom.push(x.text);
        else err(x.pos, `admin.ssh_from: ${p.what}`);
      }
    }
    if (user !== null && keys.length > 0) cfg.admin = { user, keys, sshFrom, sshFromPos: from ? from.key : null };
  }
  return done();
}

interface Write { path: string; content: string; mode: number }
export interface Plan { writes: Write[]; removes: string[]; admin: { user: string; keys: string[] } | null; hostname: string }

export const ADMIN_SSH_RULE = "admin-ssh";

// The default templates: the installed bundle's overlay (install.sh keeps it
// beside the app), else the repository's.
function defaultTemplates(): string {
  const app = fileURLToPath(new URL("../../../", import.meta.url));
  return existsSync(join(app, "overlay")) ? join(app, "overlay") : join(app, "board", "rootfs_overlay");
}

// Everything to write, computed and checked without touching ROOT.
export function planFirstboot(cfg: FirstbootConfig, root: string, templates: string, file: string): Plan {
  const problems: string[] = [];
  const R = (p: string) => join(root, p);
  const note = `# Written by portcullis firstboot from ${FIRSTBOOT_FILE}.\n`;
  const writes: Write[] = [];
  const removes: string[] = [];
  if (!existsSync(R("etc/passwd"))) problems.push(`${R("etc/passwd")}: missing; is ${root} a root filesystem?`);

  writes.push({ path: "etc/hostname", content: `${cfg.hostname}\n`, mode: 0o644 });
  let hosts = existsSync(R("etc/hosts")) ? readFileSync(R("etc/hosts"), "utf8") : "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n";
  const line = `127.0.1.1\t${cfg.hostname}`;
  hosts = /^127\.0\.1\.1\s.*$/m.test(hosts) ? hosts.replace(/^127\.0\.1\.1\s.*$/m, line) : `${hosts.replace(/\n?$/, "\n")}${line}\n`;
  writes.push({ path: "etc/hosts", content: hosts, mode: 0o644 });

  for (const t of ["10-external.link", "11-internal.link"]) {
    const src = join(templates, "etc/systemd/network", `${t}.in`);
    if (!existsSync(src)) { problems.push(`${src}: the .link template is missing (--templates DIR)`); continue; }
    const text = readFileSync(src, "utf8").replaceAll("%EXT_MAC%", cfg.external.mac).replaceAll("%INT_MAC%", cfg.internal.mac);
    writes.push({ path: `etc/systemd/network/${t}`, content: text, mode: 0o644 });
  }
  for (const side of ["external", "internal"] as const) {
    const nic = cfg[side];
    const path = `etc/systemd/network/20-portcullis-${side}.network`;
    if (nic.address.length === 0) { removes.push(path); continue; }
    writes.push({
      path, mode: 0o644,
      content: `${note}# The ${side} NIC, matched by MAC; static addresses only.\n[Match]\nMACAddress=${nic.mac}\n\n[Network]\n` +
        `${nic.address.map((a) => `Address=${a}\n`).join("")}${nic.gateway.map((g) => `Gateway=${g}\n`).join("")}` +
        "DHCP=no\nIPv6AcceptRA=no\nLinkLocalAddressing=ipv6\n",
    });
  }

  // The policy with the given groups replaced (and the admins' SSH rule),
  // checked in the board's mode.
  const policyPath = R("etc/portcullis/policy.yaml");
  const sshFrom = cfg.admin?.sshFrom ?? [];
  if ((cfg.groups.length > 0 || sshFrom.length > 0) && !existsSync(policyPath)) problems.push(`${policyPath}: missing; install Portcullis first`);
  else if (existsSync(policyPath) && (cfg.groups.length > 0 || cfg.admin)) {
    let changed = cfg.groups.length > 0;
    let mode: Mode = "host";
    try {
      mode = readBoardFile(R("etc/portcullis/board.yaml")).mode;
    } catch (e) {
      if (!(e instanceof BoardError)) throw e;
      problems.push(...e.all.map((x) => x.message));
    }
    const doc = parseDocument(readFileSync(policyPath, "utf8"));
    if (doc.errors.length) problems.push(`${policyPath}: the installed policy is not valid YAML; fix it first (portcullis check ${policyPath})`);
    const have = doc.get("groups");
    const names = isMap(have) ? have.items.map((i) => String((i.key as { value?: unknown } | null)?.value)) : [];
    for (const g of cfg.groups) {
      if (!names.includes(g.name)) {
        problems.push(`${formatPos(g.pos)}: the policy has no group "${g.name}"${suggest(g.name, names)}; its groups: ${names.join(", ") || "none"}`);
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
        writes.push({ path: "etc/portcullis/policy.yaml", content: text, mode: 0o644 });
      }
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      problems.push(`${file}: with these groups and rules the policy would not pass portcullis check (mode ${mode}; lines as it would be written):`, ...e.all.map((x) => `  ${x.message}`));
    }
  }

  if (cfg.admin) {
    const u = cfg.admin.user;
    writes.push({ path: `etc/sudoers.d/90-portcullis-${u}`, content: `${note}${u} ALL=(ALL:ALL) NOPASSWD: ALL\n`, mode: 0o440 });
  }
  if (problems.length) throw new FirstbootError(problems);
  return { writes, removes, admin: cfg.admin, hostname: cfg.hostname };
}

// Writes (atomically, synced: the board may lose power at first boot) only
// what differs; returns whether it wrote.
function writeIfChanged(path: string, content: string, mode: number): boolean {
  if (existsSync(path) && readFileSync(path, "utf8") === content) return false;
  mkdirSync(dirname(path), { recursive: true });
  writeAtomic(path, content, mode);
  return true;
}

// Applies a checked plan; returns what it did, one line each.
export function applyPlan(plan: Plan, root: string, setHostname = false): string[] {
  const did: string[] = [];
  const R = (p: string) => join(root, p);
  if (plan.admin) {
    const u = plan.admin.user;
    const passwd = () => readFileSync(R("etc/passwd"), "utf8").split("\n").find((l) => l.startsWith(`${u}:`));
    if (!passwd()) {
      const args = ["--create-home", "--shell", "/bin/bash", "--comment", "Portcullis admin", u];
      const r = spawnSync("useradd", root === "/" ? args : ["--prefix", root, ...args], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`useradd ${u} failed: ${(r.stderr || r.error?.message || "").trim()}`);
      did.push(`created user ${u}`);
    }
    const [, , uid, gid, , home] = passwd()!.split(":");
    const ssh = join(R(home!), ".ssh");
    mkdirSync(ssh, { recursive: true, mode: 0o700 });
    if (writeIfChanged(join(ssh, "authorized_keys"), `${plan.admin.keys.join("\n")}\n`, 0o600)) did.push(`wrote ${home}/.ssh/authorized_keys (${plan.admin.keys.length} key${plan.admin.keys.length === 1 ? "" : "s"})`);
    for (const p of [R(home!), ssh, join(ssh, "authorized_keys")]) chownSync(p, Number(uid), Number(gid));
  }
  for (const w of plan.writes) if (writeIfChanged(R(w.path), w.content, w.mode)) did.push(`wrote /${w.path}`);
  for (const p of plan.removes) if (existsSync(R(p))) { rmSync(R(p)); did.push(`removed /${p}`); }
  if (setHostname) {
    // The running system took its name from /etc/hostname before this ran.
    try { writeFileSync("/proc/sys/kernel/hostname", plan.hostname); } catch { did.push("could not set the running hostname (it applies at the next boot)"); }
  }
  return did;
}

export interface FirstbootResult { status: "done" | "nothing"; lines: string[] }

// The whole command: read, check, apply, mark done; or report and change nothing.
export function runFirstboot(boot: string, root: string, templates = defaultTemplates(), setHostname = false): FirstbootResult {
  const file = join(boot, FIRSTBOOT_FILE);
  if (!existsSync(file)) return { status: "nothing", lines: [`no ${file}: nothing to do`] };
  const errorsFile = join(boot, ERRORS_FILE);
  let plan: Plan;
  try {
    plan = planFirstboot(parseFirstbootText(readFileSync(file, "utf8"), file), root, templates, file);
  } catch (e) {
    if (!(e instanceof FirstbootError)) throw e;
    const n = e.all.filter((l) => !l.startsWith("  ")).length;
    e.all.push(`portcullis firstboot: ${n} error${n === 1 ? "" : "s"} applying ${file}; nothing changed (fix the file and run again, or reboot)`);
    try { writeFileSync(errorsFile, `${e.all.join("\n")}\n`); } catch { /* a read-only boot partition: the journal has them */ }
    throw e;
  }
  const lines = applyPlan(plan, root, setHostname);
  renameSync(file, `${file}.done`);
  rmSync(errorsFile, { force: true });
  lines.push(`applied ${file} to ${root}; renamed it ${FIRSTBOOT_FILE}.done`);
  return { status: "done", lines };
}

export function firstbootCommand(): Command {
  return new Command("firstboot")
    .description(`apply the first-boot file (${FIRSTBOOT_FILE} on the boot partition): hostname, NIC MACs and addresses, policy groups, admin user and SSH keys`)
    .option("--boot <dir>", "the boot partition", "/boot/firmware")
    .option("--root <dir>", "the root filesystem to configure", "/")
    .option("--templates <dir>", "the overlay with the .link.in templates (default: the installed bundle's)")
    .option("--set-hostname", "also rename the running system (the unit does; not in a chroot)")
    .action((o: { boot: string; root: string; templates?: string; setHostname?: boolean }) => {
      try {
        const r = runFirstboot(o.boot, o.root, o.templates ?? defaultTemplates(), o.setHostname === true);
        for (const l of r.lines) process.stdout.write(`portcullis firstboot: ${l}\n`);
      } catch (e) {
        if (!(e instanceof FirstbootError)) throw e;
        for (const l of e.all) process.stderr.write(`${l}\n`);
        process.exitCode = 1;
      }
    });
}
