// The board configuration's `ha:` section: this appliance's half of a pair
// that shares virtual addresses with keepalived (VRRP) and, optionally,
// replicates the kernel's conntrack entries with conntrackd (FTFW over UDP).
// Read by board.ts (the same YamlReader and Diagnostics); the generators are
// host/ha/keepalived.ts and host/ha/conntrackd.ts, the kernel rules that let
// VRRP and the sync traffic through are in rules.ts.
//
//   ha:
//     vrid: 51                  # VRRP virtual router id, 1-255 (the same on both appliances)
//     priority: 150             # 1-254; the higher one is master (the other appliance: e.g. 100)
//     version: 3                # VRRP 2 or 3 (default 3; IPv6 virtual addresses need 3)
//     advert: 0.1               # advertisement interval, s (v2: whole seconds 1-255; v3: 0.01-40.95 in 0.01 steps); default 1
//     preempt: true             # a returning higher-priority appliance takes over again (default true)
//     preempt_delay: 0          # s (0-1000) it waits first; only with preempt: true
//     unicast: false            # adverts to each side's peer instead of 224.0.0.18 / ff02::12 (default false)
//     auth: { type: pass, password: s3cret }   # VRRPv2 only: pass or ah, a password of 1-8 characters
//     external:                 # a side listed here runs VRRP
//       virtual: [203.0.113.10/24, 2001:db8:1::10/64]   # IPv6: plus the virtual router's link-local address
//                             # (keepalived.ts vrrpLinkLocal), unless one fe80:: address is listed (at most one)
//       peer: 203.0.113.3       # the other appliance on this segment (an address, or one per family: [v4, v6])
//     internal:
//       virtual: [198.51.100.1/24]
//       peer: 198.51.100.3
//     sync:                     # conntrackd (off when absent)
//       enabled: true
//       side: internal          # or dev: sync0 (a link of its own, not a guarded NIC)
//       address: 198.51.100.2   # this appliance's address on that link
//       peer: 198.51.100.3      # the other appliance's
//       port: 3780              # UDP (default 3780)
import { isScalar, isSeq } from "yaml";
import { type Pos } from "../config/errors.js";
import { type Entry, type YamlReader } from "../config/yaml.js";
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "../policy/addr.js";

export type HaSide = "external" | "internal";
const HA_SIDES: readonly HaSide[] = ["external", "internal"];

export interface HaAddress { family: 4 | 6; addr: string } //     canonical text
export interface HaVirtual extends HaAddress { len: number } //   an interface address: host bits allowed

export interface HaSideConfig {
  virtual: HaVirtual[]; // at least one
  peer: HaAddress[]; //   at most one per family
}

export interface HaSyncConfig {
  enabled: boolean;
  side?: HaSide; //      the link: a guarded side's NIC ...
  dev?: string; //       ... or a device of its own (exactly one of the two)
  address: HaAddress; // this appliance's, on that link
  peer: HaAddress; //    the other appliance's (same family)
  port: number;
}

export interface HaConfig {
  vrid: number;
  priority: number;
  version: 2 | 3;
  advertCs: number; // the advertisement interval in centiseconds (v2: a multiple of 100)
  preempt: boolean;
  preemptDelay: number; // s
  unicast: boolean;
  auth?: { type: "pass" | "ah"; password: string };
  external?: HaSideConfig;
  internal?: HaSideConfig;
  sync?: HaSyncConfig;
}

export const HA_KEYS = ["vrid", "priority", "version", "advert", "preempt", "preempt_delay", "unicast", "auth", "external", "internal", "sync"];
const SIDE_KEYS = ["virtual", "peer"];
const AUTH_KEYS = ["type", "password"];
const SYNC_KEYS = ["enabled", "side", "dev", "address", "peer", "port"];
export const AUTH_TYPES = ["pass", "ah"] as const;
export const DEFAULT_SYNC_PORT = 3780;
const MAX_PASSWORD = 8; // VRRPv2's authentication data is 8 bytes (RFC 2338 5.3.10); keepalived cuts longer ones
const PASSWORD_RE = /^[\x21-\x7e]{1,8}$/; //  printable, no space, nothing to quote in keepalived.conf

// An address (no prefix), canonical, or null.
export function parseHaAddress(text: string): HaAddress | null {
  const v4 = parseIPv4(text);
  if (v4 !== null) return { family: 4, addr: formatIPv4(v4) };
  const v6 = parseIPv6(text);
  return v6 !== null ? { family: 6, addr: formatIPv6(v6) } : null;
}

// An interface address ADDR/LEN (LEN defaults to the full length).
export function parseHaVirtual(text: string): HaVirtual | null {
  const slash = text.indexOf("/");
  const a = parseHaAddress(slash < 0 ? text : text.slice(0, slash));
  if (!a) return null;
  const full = a.family === 4 ? 32 : 128;
  if (slash < 0) return { ...a, len: full };
  const l = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(l) || Number(l) < 1 || Number(l) > full) return null;
  return { ...a, len: Number(l) };
}

export const formatVirtual = (v: HaVirtual): string => `${v.addr}/${v.len}`;

// An IPv6 link-local address (fe80::/10), canonical text.
export const isLinkLocal = (addr: string): boolean => /^fe[89ab][0-9a-f]:/.test(addr);

// Every virtual address (canonical text, without the length).
export const haVirtualAddresses = (ha: HaConfig): string[] => vrrpSides(ha).flatMap((s) => ha[s]!.virtual.map((v) => v.addr));

// The sides VRRP runs on, in order.
export const vrrpSides = (ha: HaConfig): HaSide[] => HA_SIDES.filter((s) => ha[s] !== undefined);

// Checks an HaConfig however it was made: the first problem, or null.
export function haProblem(ha: HaConfig, devOk: (d: string) => boolean): string | null {
  if (!Number.isInteger(ha.vrid) || ha.vrid < 1 || ha.vrid > 255) return `ha.vrid must be 1-255, not ${ha.vrid}`;
  if (!Number.isInteger(ha.priority) || ha.priority < 1 || ha.priority > 254) return `ha.priority must be 1-254, not ${ha.priority}`;
  if (ha.version !== 2 && ha.version !== 3) return `ha.version must be 2 or 3, not ${String(ha.version)}`;
  const ap = advertProblem(ha.version, ha.advertCs / 100);
  if (ap) return `ha.advert ${ap}`;
  if (!Number.isInteger(ha.preemptDelay) || ha.preemptDelay < 0 || ha.preemptDelay > 1000) return `ha.preempt_delay must be 0-1000 s, not ${ha.preemptDelay}`;
  if (!ha.preempt && ha.preemptDelay > 0) return "ha.preempt_delay needs preempt: true";
  if (ha.auth) {
    if (ha.version === 3) return AUTH_V3;
    if (!AUTH_TYPES.includes(ha.auth.type) || !PASSWORD_RE.test(ha.auth.password)) return `ha.auth must be { type: pass|ah, password: 1-${MAX_PASSWORD} printable characters }`;
  }
  const sides = vrrpSides(ha);
  if (sides.length === 0) return NO_SIDE;
  for (const s of sides) {
    const c = ha[s]!;
    if (c.virtual.length === 0) return `ha.${s}.virtual must list at least one address`;
    if (ha.version === 2 && c.virtual.some((v) => v.family === 6)) return `ha.${s}: ${V6_NEEDS_V3}`;
    if (c.virtual.filter((v) => v.family === 6 && isLinkLocal(v.addr)).length > 1) return `ha.${s}.virtual: ${ONE_LINK_LOCAL}`;
    if (c.peer.length > 2 || (c.peer.length === 2 && c.peer[0]!.family === c.peer[1]!.family)) return `ha.${s}.peer: at most one address per family`;
    if (ha.unicast) {
      for (const f of new Set(c.virtual.map((v) => v.family))) {
        if (!c.peer.some((p) => p.family === f)) return `ha.${s}: unicast: true needs a peer of IPv${f} (the virtual addresses of IPv${f} are announced to it)`;
      }
    }
  }
  const y = ha.sync;
  if (y) {
    if ((y.side === undefined) === (y.dev === undefined)) return "ha.sync needs side: or dev: (one of them)";
    if (y.side !== undefined && !HA_SIDES.includes(y.side)) return `ha.sync.side must be external or internal`;
    if (y.dev !== undefined && !devOk(y.dev)) return `ha.sync.dev must be a network device name, not ${JSON.stringify(y.dev)}`;
    if (y.address.family !== y.peer.family) return "ha.sync.address and ha.sync.peer must be of the same family";
    if (y.address.addr === y.peer.addr) return "ha.sync.address and ha.sync.peer are the same address";
    if (!Number.isInteger(y.port) || y.port < 1 || y.port > 65535) return `ha.sync.port must be 1-65535, not ${y.port}`;
  }
  return null;
}

const AUTH_V3 = "VRRP version 3 has no authentication (RFC 5798 removed it): remove ha.auth, or use version: 2";
const V6_NEEDS_V3 = "IPv6 virtual addresses need VRRP version 3 (RFC 5798); VRRPv2 is IPv4 only";
const ONE_LINK_LOCAL = "one link-local address per side, the virtual router's (RFC 5798 5.2.9: the first of an IPv6 advert)";
const NO_SIDE = "ha needs external: or internal: (or both) with the virtual addresses of that side: VRRP runs on the sides listed";

// Why SECONDS is not an advertisement interval of VERSION, or null.
function advertProblem(version: 2 | 3, seconds: number): string | null {
  if (version === 2) {
    return Number.isInteger(seconds) && seconds >= 1 && seconds <= 255 ? null : `must be whole seconds 1-255 with VRRP version 2, not ${seconds}`;
  }
  const cs = Math.round(seconds * 100);
  return Math.abs(cs - seconds * 100) < 1e-6 && cs >= 1 && cs <= 4095 ? null
    : `must be 0.01-40.95 s in steps of 0.01 (centiseconds) with VRRP version 3, not ${seconds}`;
}

// Reads `ha:` into an HaConfig; every problem goes to y.diag at its place.
export function readHa(y: YamlReader, e: Entry, devOk: (d: string) => boolean): HaConfig | undefined {
  const err = (code: string, at: Entry | Pos, what: string): void =>
    y.diag.error(code, "key" in at ? y.pos(at.value, at.key) : at, what);
  const scalar = (x: Entry): unknown => (x.value && isScalar(x.value) ? x.value.value : undefined);
  const int = (x: Entry | undefined, what: string, lo: number, hi: number, unit = ""): number | undefined => {
    if (!x) return undefined;
    const v = scalar(x);
    if (typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi) return v;
    err("bad_number", x, `${what} must be a whole number ${lo}-${hi}${unit}`);
    return undefined;
  };
  const text = (x: Entry, what: string): string | undefined => {
    const v = scalar(x);
    if (typeof v === "string") return v;
    err("bad_type", x, `${what} must be text, not ${JSON.stringify(v ?? null)}`);
    return undefined;
  };
  const address = (x: Entry, what: string): HaAddress | undefined => {
    const t = text(x, what);
    if (t === undefined) return undefined;
    const a = parseHaAddress(t);
    if (!a) err("bad_address", x, `${what} must be an IPv4 or IPv6 address (no prefix), not ${JSON.stringify(t)}`);
    return a ?? undefined;
  };
  // A scalar or a list of them, each an Entry at its own place.
  const items = (x: Entry): Entry[] => x.value && isSeq(x.value)
    ? x.value.items.map((n) => ({ key: y.pos(n as never, x.key), value: n as never }))
    : [x];

  const m = y.mapping(e.value, HA_KEYS, "ha", e.key);
  if (!m) return undefined;
  const ha: HaConfig = { vrid: 0, priority: 0, version: 3, advertCs: 100, preempt: true, preemptDelay: 0, unicast: false };
  const vrid = m.need("vrid", "the VRRP virtual router id, 1-255, the same on both appliances");
  ha.vrid = int(vrid, "ha.vrid", 1, 255) ?? 1;
  const pri = m.need("priority", "1-254: the appliance with the higher priority is master");
  ha.priority = int(pri, "ha.priority", 1, 254) ?? 1;
  const ver = m.get("version");
  if (ver) {
    const v = scalar(ver);
    if (v === 2 || v === 3) ha.version = v;
    else err("bad_version", ver, `ha.version must be 2 or 3 (VRRP), not ${JSON.stringify(v ?? null)}`);
  }
  const adv = m.get("advert");
  if (adv) {
    const v = scalar(adv);
    const why = typeof v === "number" ? advertProblem(ha.version, v) : "must be a number of seconds";
    if (why) err("bad_advert", adv, `ha.advert ${why}`);
    else ha.advertCs = Math.round((v as number) * 100);
  }
  const pre = m.get("preempt");
  if (pre) ha.preempt = y.boolean(pre, "ha.preempt") ?? true;
  const pd = m.get("preempt_delay");
  if (pd) {
    ha.preemptDelay = int(pd, "ha.preempt_delay", 0, 1000, " (seconds)") ?? 0;
    if (!ha.preempt && ha.preemptDelay > 0) err("bad_preempt", pd, "ha.preempt_delay needs preempt: true (without preemption nothing waits)");
  }
  const uni = m.get("unicast");
  if (uni) ha.unicast = y.boolean(uni, "ha.unicast") ?? false;
  const au = m.get("auth");
  if (au) {
    if (ha.version === 3) err("auth_v3", au, AUTH_V3);
    else {
      const a = y.mapping(au.value, AUTH_KEYS, "ha.auth", au.key);
      const ty = a?.need("type", "pass or ah");
      const pw = a?.need("password", `1-${MAX_PASSWORD} printable characters, the same on both appliances`);
      let type: "pass" | "ah" | undefined;
      if (ty) {
        const v = scalar(ty);
        if (v === "pass" || v === "ah") type = v;
        else err("bad_auth", ty, `ha.auth.type must be pass or ah, not ${JSON.stringify(v ?? null)}`);
      }
      let password: string | undefined;
      if (pw) {
        const v = scalar(pw);
        const s = typeof v === "number" ? String(v) : v;
        if (typeof s === "string" && PASSWORD_RE.test(s)) password = s;
        else err("bad_auth", pw, `ha.auth.password must be 1-${MAX_PASSWORD} printable characters without spaces (VRRPv2 carries 8 bytes)`);
      }
      if (type && password) ha.auth = { type, password };
    }
  }
  for (const side of HA_SIDES) {
    const se = m.get(side);
    if (!se) continue;
    const s = y.mapping(se.value, SIDE_KEYS, `ha.${side}`, se.key);
    if (!s) continue;
    const c: HaSideConfig = { virtual: [], peer: [] };
    const vi = s.need("virtual", "the virtual addresses of this side, ADDR/LEN, e.g. [203.0.113.10/24]");
    const listed = vi ? items(vi) : [];
    if (vi && vi.value && isSeq(vi.value) && listed.length === 0) err("bad_address", vi, `ha.${side}.virtual must list at least one address`);
    for (const it of listed) {
      const t = text(it, `ha.${side}.virtual`);
      if (t === undefined) continue;
      const v = parseHaVirtual(t);
      if (!v) { err("bad_address", it, `ha.${side}.virtual: ${JSON.stringify(t)} is not ADDR or ADDR/LEN (an IPv4 or IPv6 interface address)`); continue; }
      if (v.family === 6 && ha.version === 2) { err("v6_needs_v3", it, V6_NEEDS_V3); continue; }
      if (c.virtual.some((x) => x.addr === v.addr)) { err("duplicate_address", it, `ha.${side}.virtual lists ${v.addr} twice`); continue; }
      if (v.family === 6 && isLinkLocal(v.addr) && c.virtual.some((x) => x.family === 6 && isLinkLocal(x.addr))) {
        err("bad_address", it, `ha.${side}.virtual: ${v.addr}: ${ONE_LINK_LOCAL}`);
        continue;
      }
      c.virtual.push(v);
    }
    const pe = s.get("peer");
    for (const it of pe ? items(pe) : []) {
      const a = address(it, `ha.${side}.peer`);
      if (!a) continue;
      if (c.peer.some((p) => p.family === a.family)) { err("bad_peer", it, `ha.${side}.peer: one address per family (IPv${a.family} twice)`); continue; }
      c.peer.push(a);
    }
    if (ha.unicast && c.virtual.length > 0) {
      for (const f of new Set(c.virtual.map((v) => v.family))) {
        if (!c.peer.some((p) => p.family === f)) err("bad_peer", se, `ha.${side}: unicast: true needs a peer of IPv${f} (the virtual addresses of IPv${f} are announced to it)`);
      }
    }
    ha[side] = c;
  }
  if (!m.get("external") && !m.get("internal")) y.diag.error("missing_key", m.pos, NO_SIDE);
  const sy = m.get("sync");
  if (sy) {
    const s = y.mapping(sy.value, SYNC_KEYS, "ha.sync", sy.key);
    if (s) {
      const en = s.get("enabled");
      const enabled = en ? y.boolean(en, "ha.sync.enabled") ?? false : true;
      const sd = s.get("side"), dv = s.get("dev");
      let side: HaSide | undefined, dev: string | undefined;
      if (sd && dv) err("bad_sync", dv, "ha.sync: give side: or dev:, not both");
      else if (!sd && !dv) y.diag.error("missing_key", s.pos, 'ha.sync has no "side:" or "dev:" (the link conntrackd sends on: external, internal, or a device of its own)');
      if (sd) {
        const v = scalar(sd);
        if (v === "external" || v === "internal") side = v;
        else err("bad_sync", sd, `ha.sync.side must be external or internal, not ${JSON.stringify(v ?? null)}`);
      } else if (dv) {
        const v = scalar(dv);
        if (typeof v === "string" && devOk(v)) dev = v;
        else err("bad_dev", dv, `ha.sync.dev must be a network device name (1-15 letters, digits, _ . -), not ${JSON.stringify(v ?? null)}`);
      }
      const ad = s.need("address", "this appliance's address on the sync link");
      const pr = s.need("peer", "the other appliance's address on the sync link");
      const address0 = ad ? address(ad, "ha.sync.address") : undefined;
      const peer = pr ? address(pr, "ha.sync.peer") : undefined;
      if (address0 && peer && address0.family !== peer.family) err("bad_peer", pr!, "ha.sync.peer must be of the same family as ha.sync.address");
      else if (address0 && peer && address0.addr === peer.addr) err("bad_peer", pr!, "ha.sync.peer is this appliance's own address (ha.sync.address)");
      const port = int(s.get("port"), "ha.sync.port", 1, 65535) ?? DEFAULT_SYNC_PORT;
      if (address0 && peer && (side || dev)) {
        ha.sync = { enabled, ...(side ? { side } : {}), ...(dev ? { dev } : {}), address: address0, peer, port };
      }
    }
  }
  return ha;
}
