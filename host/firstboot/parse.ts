// The first-boot file, BOOT/portcullis-firstboot.yaml, read and checked
// against its schema (the YAML and the positioned errors are host/config/'s):
//
//   version: 1
//   hostname: edge-proxy-1
//   external: { mac: "dc:a6:32:12:34:56", address: [203.0.113.1/24], gateway: 203.0.113.254 }
//   internal: { mac: "00:e0:4c:12:34:56", address: [198.51.100.1/24] }
//   groups:   { listener: [203.0.113.1], front_end: [198.51.100.10] }
//   admin:    { user: admin, ssh_keys: ["ssh-ed25519 AAAA... me@laptop"], ssh_from: [198.51.100.0/24] }
//   ha:       { vrid: 51, priority: 150, external: { virtual: [203.0.113.10/24] }, ... }
//
// ha: is the board configuration's section of an HA pair, read by the
// board's own reader (host/kernel/board-ha.ts readHa), its device names
// checked as the board's; plan.ts puts it into /etc/portcullis/board.yaml.
//
// The file is written by anyone with the SD card and applied as root, so
// everything in it is checked here: the admin a new login name that is no
// system user, each key one OpenSSH public key without options or control
// characters, MACs a NIC's, addresses ADDRESS/LENGTH, gateways of a family the
// side has an address of. What needs the root (existing accounts, the policy's
// groups) is plan.ts's.
import { isScalar, isSeq, type Node } from "yaml";
import { Diagnostics, type Pos } from "../config/errors.js";
import { type Entry, isEmpty, printable, YamlReader } from "../config/yaml.js";
import { devOk } from "../kernel/board.js";
import { type HaConfig, readHa } from "../kernel/board-ha.js";
import { isPrefix, parseIPv4, parseIPv6, parsePrefix } from "../policy/addr.js";
import { macProblem } from "./links.js";

export const FIRSTBOOT_FILE = "portcullis-firstboot.yaml";
export const ERRORS_FILE = "portcullis-firstboot.errors.txt";
// The first-boot file and the templates are read at most this large.
export const MAX_FIRSTBOOT_FILE = 1 << 20;

export interface NicConfig { mac: string; address: string[]; gateway: string[] }
export interface FirstbootConfig {
  hostname: string;
  external: NicConfig;
  internal: NicConfig;
  groups: Array<{ name: string; entries: string[]; pos: Pos }>;
  admin: { user: string; userPos: Pos; keys: string[]; sshFrom: string[]; sshFromPos: Pos | null } | null;
  // The board's ha: as read, and its YAML (what goes into board.yaml).
  ha: { config: HaConfig; node: Node; pos: Pos } | null;
}


const TOP_KEYS = ["version", "hostname", "external", "internal", "groups", "admin", "ha"];
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


// The first-boot file's configuration, or a ConfigError with every problem
// in `all` (FILE:LINE:COL: what).
export function parseFirstbootText(text: string, file: string): FirstbootConfig {
  const diag = new Diagnostics(Infinity);
  const y = new YamlReader(text, file, diag);
  const cfg: FirstbootConfig = {
    hostname: "", external: { mac: "", address: [], gateway: [] }, internal: { mac: "", address: [], gateway: [] }, groups: [], admin: null, ha: null,
  };
  if (!y.reportSyntax()) readFirstboot(y, cfg);
  diag.check();
  return cfg;
}

function readFirstboot(y: YamlReader, cfg: FirstbootConfig): void {
  const err = (pos: Pos, what: string): void => y.diag.error("bad_value", pos, what);
  const str = (e: Entry, what: string): string | null => {
    const v = e.value && isScalar(e.value) ? e.value.value : null;
    if (typeof v === "string" && v !== "") return v;
    err(y.pos(e.value, e.key), `${what} must be text, not ${JSON.stringify(v)}`);
    return null;
  };
  // A value or a list of values, each with its position.
  const list = (e: Entry, what: string): Array<{ text: string; pos: Pos }> => {
    const items = e.value && isSeq(e.value) ? (e.value.items as Array<Node | null>) : [e.value];
    if (e.value && isSeq(e.value) && items.length === 0) err(y.pos(e.value, e.key), `${what} is an empty list`);
    const out: Array<{ text: string; pos: Pos }> = [];
    for (const it of items) {
      const v = it && isScalar(it) ? it.value : null;
      if (typeof v === "string" && v !== "") out.push({ text: v, pos: y.pos(it, e.key) });
      else err(y.pos(it, e.key), `each entry of ${what} must be text, not ${it && !isScalar(it) ? "a list or mapping" : JSON.stringify(v)}`);
    }
    return out;
  };
  // Prefixes, as policy groups hold them.
  const prefixes = (e: Entry, what: string): string[] => {
    const out: string[] = [];
    for (const x of list(e, what)) {
      const p = parsePrefix(x.text);
      if (isPrefix(p)) out.push(x.text);
      else err(x.pos, `${what}: ${p.what}`);
    }
    return out;
  };

  const topNode = y.top();
  if (isEmpty(topNode)) {
    err(y.start, "the first-boot file is empty; it needs version, hostname, external and internal");
    return;
  }
  const top = y.mapping(topNode, TOP_KEYS, "the first-boot file", y.start);
  if (!top) return;
  const ver = top.need("version", "write version: 1");
  if (ver && !(ver.value && isScalar(ver.value) && ver.value.value === 1)) err(y.pos(ver.value, ver.key), "unsupported version; this reads version: 1");
  const host = top.need("hostname", "the appliance's name");
  if (host) {
    const h = str(host, "hostname");
    if (h !== null && !HOSTNAME_RE.test(h)) err(y.pos(host.value, host.key), `hostname "${printable(h)}" must be one name of 1-63 letters, digits and - (no dots, no - at either end)`);
    else if (h !== null) cfg.hostname = h;
  }
  for (const side of ["external", "internal"] as const) {
    const s = top.need(side, `a mapping with mac: the ${side} NIC`);
    const m = s && y.mapping(s.value, NIC_KEYS, side, s.key);
    if (!m) continue;
    const mac = m.need("mac", `the MAC address of the ${side} NIC, as ip -br link shows it`);
    if (mac) {
      const v = str(mac, `${side}.mac`);
      const p = v === null ? null : macProblem(v);
      if (p !== null) err(y.pos(mac.value, mac.key), `${side}.mac ${p}`);
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
  const ha = top.get("ha");
  const haConfig = ha && readHa(y, ha, devOk);
  if (haConfig && ha.value) cfg.ha = { config: haConfig, node: ha.value, pos: ha.key };
  const groups = top.get("groups");
  const named = groups && y.mapping(groups.value, null, "groups", groups.key);
  for (const [name, e] of named?.entries ?? []) cfg.groups.push({ name, entries: prefixes(e, `groups.${name}`), pos: e.key });
  const admin = top.get("admin");
  const m = admin && y.mapping(admin.value, ADMIN_KEYS, "admin", admin.key);
  if (!m) return;
  const u = m.get("user");
  const k = m.get("ssh_keys");
  if (!u || !k) err(m.pos, `admin needs both "user:" and "ssh_keys:"`);
  let user: string | null = null;
  if (u) {
    user = str(u, "admin.user");
    if (user !== null && (!USER_RE.test(user) || RESERVED_USERS.has(user))) {
      err(y.pos(u.value, u.key), `admin.user "${printable(user)}" must be a new login name: lower-case letter or _, then letters, digits, _ or - (not a system user)`);
      user = null;
    }
  }
  const keys: string[] = [];
  for (const x of k ? list(k, "admin.ssh_keys") : []) {
    const r = sshKeyLine(x.text);
    if ("problem" in r) err(x.pos, `admin.ssh_keys: ${r.problem}`);
    else keys.push(r.line);
  }
  const from = m.get("ssh_from");
  const sshFrom = from ? prefixes(from, "admin.ssh_from") : [];
  if (user !== null && keys.length > 0) cfg.admin = { user, userPos: y.pos(u!.value, u!.key), keys, sshFrom, sshFromPos: from ? from.key : null };
}
