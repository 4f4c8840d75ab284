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
// The file is written by anyone with the SD card and applied as root: it is
// read with readOperatorFile (a regular file, at most 1 MiB), the admin must
// be a new account (or the one firstboot made before), a key one OpenSSH key
// without options or control characters, and no link in ROOT is followed
// (host/firstboot/rootfs.ts). Everything is checked before anything is
// written: a bad file changes nothing in ROOT, its errors (FILE:LINE:COL:
// what) go to stderr and to BOOT/portcullis-firstboot.errors.txt, and the
// exit status is 1. An error while applying undoes every change made (and is
// reported the same way). After a success the file is renamed
// portcullis-firstboot.yaml.done, so a second run finds nothing to do.
import { spawnSync } from "node:child_process";
import { closeSync, constants, existsSync, lstatSync, realpathSync, renameSync, statSync, unlinkSync, writeSync, openSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { fillLinkTemplate, macProblem, printable } from "../firstboot/links.js";
import { fileSlotInRoot, lstatInRoot, readInRoot, RootChange, RootPathError } from "../firstboot/rootfs.js";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";
import { BoardError, parseBoardText } from "../kernel/board.js";
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
  admin: { user: string; userPos: Pos; keys: string[]; sshFrom: string[]; sshFromPos: Pos | null } | null;
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
const USER_RE = /^[a-z_][a-z0-9_-]{0,30}$/;
// Never an admin: the users and groups of Debian's base-passwd, the system
// users of the packages an appliance has, and the service's own. (Any other
// existing account is refused too, by planFirstboot, from the root's files.)
const RESERVED_USERS = new Set([
  "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data", "backup", "list", "irc",
  "gnats", "nobody", "nogroup", "adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio",
  "dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff", "users", "input", "kvm", "render", "crontab",
  "netdev", "systemd-journal", "systemd-network", "systemd-resolve", "systemd-timesync", "systemd-coredump", "messagebus", "sshd",
  "_apt", "_ssh", "polkitd", "tss", "avahi", "dnsmasq", "statd", "ntp", "portcullis",
]);
// Each key type and how many SSH strings its blob holds (RFC 4253 6.6,
// RFC 5656, RFC 8709, OpenSSH PROTOCOL.u2f).
const KEY_FIELDS: Record<string, number> = {
  "ssh-ed25519": 2, "ssh-rsa": 3, "ecdsa-sha2-nistp256": 3, "ecdsa-sha2-nistp384": 3, "ecdsa-sha2-nistp521": 3,
  "sk-ssh-ed25519@openssh.com": 3, "sk-ecdsa-sha2-nistp256@openssh.com": 4,
};
const KEY_TYPES = Object.keys(KEY_FIELDS);
const MAX_KEY = 16384;

// An interface address: ADDRESS/LEN (host bits allowed, unlike a policy prefix).
function ifaceAddress(text: string): { family: 4 | 6 } | string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return `"${printable(text)}" must be ADDRESS/LENGTH, e.g. 203.0.113.1/24`;
  const family = parseIPv4(m[1]!) !== null ? 4 : parseIPv6(m[1]!) !== null ? 6 : 0;
  if (family === 0) return `"${m[1]}" is not an IPv4 or IPv6 address`;
  const len = Number(m[2]);
  if (len < 1 || len > (family === 4 ? 32 : 128)) return `"${text}": the length must be 1 to ${family === 4 ? 32 : 128}`;
  return { family };
}

// The SSH strings (uint32 length, bytes) of a key blob, or null if it is not
// made of them exactly.
function sshStrings(blob: Buffer): Buffer[] | null {
  const out: Buffer[] = [];
  for (let off = 0; off < blob.length;) {
    if (off + 4 > blob.length) return null;
    const n = blob.readUInt32BE(off);
    if (off + 4 + n > blob.length) return null;
    out.push(blob.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return out;
}

// One OpenSSH public key, the line of a .pub file: TYPE BASE64 [COMMENT],
// the blob holding a key of TYPE. Options (from=, command=, ...) are not
// accepted, nor any control character: an authorized_keys line is exactly
// one key. Returns the line as it is written, or the problem.
export function sshKeyLine(text: string): { line: string } | { problem: string } {
  // eslint-disable-next-line no-control-regex
  const cc = /[\u0000-\u001f\u007f-\u009f]/.exec(text);
  if (cc) {
    const name = cc[0] === "\n" || cc[0] === "\r" ? "a line break" : cc[0] === "\t" ? "a tab" : `the control character ${printable(cc[0])}`;
    return { problem: `the key holds ${name} at character ${cc.index + 1}: give one key per list item, on one line, fields separated by spaces` };
  }
  if (text.length > MAX_KEY) return { problem: `the key is ${text.length} characters long, over the ${MAX_KEY} an SSH public key can be` };
  const parts = text.trim().split(/ +/);
  const type = parts[0]!;
  if (!KEY_TYPES.includes(type)) {
    if (parts.length >= 3 && KEY_TYPES.includes(parts[1]!) || /^[a-z-]+(=|,|$)/.test(type) && parts.some((p) => KEY_TYPES.includes(p))) {
      return { problem: `options before the key ("${printable(type.slice(0, 40))}") are not accepted: give the key alone, TYPE BASE64 [COMMENT]` };
    }
    return { problem: `not an SSH public key: it must start with one of ${KEY_TYPES.join(", ")} (the one line of a .pub file)` };
  }
  const b64 = parts[1];
  if (b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return { problem: "the key's second field is not base64" };
  const blob = Buffer.from(b64, "base64");
  const fields = blob.toString("base64") === b64 ? sshStrings(blob) : null;
  const curve = type.startsWith("ecdsa-sha2-") ? type.slice("ecdsa-sha2-".length) : type.startsWith("sk-ecdsa-sha2-") ? "nistp256" : null;
  if (fields === null || fields.length !== KEY_FIELDS[type] || fields[0]!.toString("latin1") !== type ||
    (type.endsWith("ed25519") || type.startsWith("sk-ssh-ed25519")) && fields[1]!.length !== 32 ||
    curve !== null && fields[1]!.toString("latin1") !== curve) {
    return { problem: `the key's data does not hold a ${type} key (damaged or cut short?)` };
  }
  const comment = parts.slice(2).join(" ");
  return { line: comment ? `${type} ${b64} ${comment}` : `${type} ${b64}` };
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
      else if (allowed && !allowed.includes(key)) err(kpos, `unknown key "${printable(key)}" in ${what}${suggest(key, allowed)}; allowed: ${allowed.join(", ")}`);
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
    if (h !== null && !HOSTNAME_RE.test(h)) err(at(host.value, host.key), `hostname "${printable(h)}" must be one name of 1-63 letters, digits and - (no dots, no - at either end)`);
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
      const p = v === null ? null : macProblem(v);
      if (p !== null) err(at(mac.value, mac.key), `${side}.mac ${p}`);
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
        if (family === 0) err(g.pos, `${side}.gateway "${printable(g.text)}" is not an IPv4 or IPv6 address`);
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
        err(at(u.value, u.key), `admin.user "${printable(user)}" must be a new login name: lower-case letter or _, then letters, digits, _ or - (not a system user)`);
        user = null;
      }
    }
    const keys: string[] = [];
    if (k) {
      for (const x of list(k, "admin.ssh_keys")) {
        const r = sshKeyLine(x.text);
        if ("problem" in r) err(x.pos, `admin.ssh_keys: ${r.problem}`);
        else keys.push(r.line);
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
    if (user !== null && keys.length > 0) cfg.admin = { user, userPos: at(u!.value, u!.key), keys, sshFrom, sshFromPos: from ? from.key : null };
  }
  return done();
}

interface Write { path: string; content: string; mode: number }
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
const ACCOUNT_FILES = ["passwd", "group", "shadow", "gshadow", "subuid", "subgid"].flatMap((f) => [`etc/${f}`, `etc/${f}-`]);
const FIRST_UID = 1000;
const MAX_FIRSTBOOT_FILE = 1 << 20;

// The default templates: the installed bundle's overlay (install.sh keeps it
// beside the app), else the repository's.
function defaultTemplates(): string {
  const app = fileURLToPath(new URL("../../../", import.meta.url));
  return existsSync(join(app, "overlay")) ? join(app, "overlay") : join(app, "board", "rootfs_overlay");
}

interface Account { name: string; uid: number; gid: number; home: string }
function accounts(text: string | null): Map<string, Account> {
  const out = new Map<string, Account>();
  for (const l of (text ?? "").split("\n")) {
    const f = l.split(":");
    if (f.length >= 7) out.set(f[0]!, { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! });
  }
  return out;
}
const recorded = (text: string | null): Map<string, number> =>
  new Map((text ?? "").split("\n").filter((l) => /^[a-z_][a-z0-9_-]* \d+$/.test(l)).map((l) => [l.split(" ")[0]!, Number(l.split(" ")[1])]));

// Checks of the admin account against the root: a new name (no account, no
// group, no /home/USER yet), or the account firstboot made earlier with its
// home where it put it; never a link on the way.
function checkAdmin(cfg: NonNullable<FirstbootConfig["admin"]>, root: string, problems: string[]): boolean {
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

  writes.push({ path: "etc/hostname", content: `${cfg.hostname}\n`, mode: 0o644 });
  let hosts = readInRoot(root, "etc/hosts") ?? "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n";
  const line = `127.0.1.1\t${cfg.hostname}`;
  hosts = /^127\.0\.1\.1\s.*$/m.test(hosts) ? hosts.replace(/^127\.0\.1\.1\s.*$/m, () => line) : `${hosts.replace(/\n?$/, "\n")}${line}\n`;
  writes.push({ path: "etc/hosts", content: hosts, mode: 0o644 });

  for (const t of ["10-external.link", "11-internal.link"]) {
    const src = join(templates, "etc/systemd/network", `${t}.in`);
    let text: string;
    try {
      text = readOperatorFile(src, ".link template (--templates DIR)", MAX_FIRSTBOOT_FILE).toString("utf8");
    } catch (e) {
      if (!(e instanceof OperatorFileError)) throw e;
      problems.push(e.message);
      continue;
    }
    writes.push({ path: `etc/systemd/network/${t}`, content: fillLinkTemplate(text, cfg.external.mac, cfg.internal.mac), mode: 0o644 });
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
  const policyRel = "etc/portcullis/policy.yaml";
  const policyPath = join(root, policyRel);
  const policyText = readInRoot(root, policyRel);
  const sshFrom = cfg.admin?.sshFrom ?? [];
  if ((cfg.groups.length > 0 || sshFrom.length > 0) && policyText === null) problems.push(`${policyPath}: missing; install Portcullis first`);
  else if (policyText !== null && (cfg.groups.length > 0 || cfg.admin)) {
    let changed = cfg.groups.length > 0;
    let mode: Mode = "host";
    const boardRel = "etc/portcullis/board.yaml";
    try {
      const board = readInRoot(root, boardRel);
      if (board === null) problems.push(`${join(root, boardRel)}: missing; install Portcullis first`);
      else mode = parseBoardText(board, join(root, boardRel)).mode;
    } catch (e) {
      if (!(e instanceof BoardError)) throw e;
      problems.push(...e.all.map((x) => x.message));
    }
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
      if (!(e instanceof PolicyError)) throw e;
      problems.push(`${file}: with these groups and rules the policy would not pass portcullis check (mode ${mode}; lines as it would be written):`, ...e.all.map((x) => `  ${x.message}`));
    }
  }

  let exists = false;
  if (cfg.admin) {
    const u = cfg.admin.user;
    exists = checkAdmin(cfg.admin, root, problems);
    writes.push({ path: `etc/sudoers.d/90-portcullis-${u}`, content: `${note}${u} ALL=(ALL:ALL) NOPASSWD: ALL\n`, mode: 0o440 });
  }
  // Each file to write or remove: a regular file or nothing, no link on the way.
  for (const rel of [...writes.map((w) => w.path), ...removes]) {
    try { fileSlotInRoot(root, rel); } catch (e) { if (!(e instanceof RootPathError)) throw e; if (!problems.includes(e.message)) problems.push(e.message); }
  }
  if (problems.length) throw new FirstbootError(problems);
  return { writes, removes, admin: cfg.admin ? { user: cfg.admin.user, keys: cfg.admin.keys, exists } : null, hostname: cfg.hostname };
}

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
    // The root as an absolute path without links (useradd --prefix needs it).
    try {
      root = realpathSync(resolve(rootArg));
    } catch (e) {
      throw new FirstbootError([`--root ${rootArg}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (e as Error).message}`]);
    }
    if (!statSync(root).isDirectory()) throw new FirstbootError([`--root ${rootArg}: not a directory`]);
    if (setHostname && root !== "/") throw new FirstbootError([`--set-hostname renames the running system: use it with --root / only (the root here is ${root})`]);
    if (lstatSync(file).isSymbolicLink()) throw new FirstbootError([`${file}: a symbolic link; the first-boot file must be a regular file`]);
    let text: string;
    try {
      text = readOperatorFile(file, "first-boot file", MAX_FIRSTBOOT_FILE).toString("utf8");
    } catch (e) {
      if (e instanceof OperatorFileError) throw new FirstbootError([e.message]);
      throw e;
    }
    plan = planFirstboot(parseFirstbootText(text, file), root, templates, file);
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

export function firstbootCommand(): Command {
  return new Command("firstboot")
    .description(`apply the first-boot file (${FIRSTBOOT_FILE} on the boot partition): hostname, NIC MACs and addresses, policy groups, admin user and SSH keys`)
    .option("--boot <dir>", "the boot partition", "/boot/firmware")
    .option("--root <dir>", "the root filesystem to configure", "/")
    .option("--templates <dir>", "the overlay with the .link.in templates (default: the installed bundle's)")
    .option("--set-hostname", "also rename the running system (the unit does; only with --root /)")
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
