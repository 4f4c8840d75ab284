// keepalived.conf from the board configuration's `ha:` (host/kernel/board-ha.ts).
//
// One vrrp_instance per side VRRP runs on and per address family of its
// virtual addresses (keepalived keeps an instance to one family), all with
// the same VRID: VRRP's VRID space is per segment and per family (RFC 5798
// 5.2.3). Every instance starts as BACKUP and the priority decides, so the
// two appliances' files differ only in the priority (and the peers). The
// instances are one vrrp_sync_group, so both sides move together: a
// gateway whose external address moved but whose internal one did not
// would black-hole the replies. The group's notify_master/backup/fault run
// the hook (hook.ts), which runs conntrackd's primary-backup steps and then
// tells the daemon its role. keepalived drops a sync group of one instance,
// so with one instance the hooks are on the instance.
//
// Adverts go to 224.0.0.18 (and ff02::12 for IPv6) by default, as VRRP
// says; with `unicast: true` to the side's peer only (unicast_peer), for
// segments where multicast is unwanted. VRRPv2 carries the PASS or AH
// authentication of `auth:`; VRRPv3 has none.
//
// An IPv6 instance's first virtual address is the virtual router's
// link-local address (RFC 5798 5.2.9; keepalived logs "the first IPv6 VIP
// address should be link local" otherwise, and refuses it with vrrp_strict):
// the side's own link-local virtual address when `virtual:` lists one, else
// vrrpLinkLocal(vrid), so both appliances announce the same one.
import { type BoardConfig } from "../kernel/board.js";
import { formatVirtual, type HaConfig, type HaSide, type HaVirtual, isLinkLocal, vrrpSides } from "../kernel/board-ha.js";

export interface VrrpInstance { name: string; side: HaSide; dev: string; family: 4 | 6 }

// The instances, in order: external before internal, IPv4 before IPv6.
export function vrrpInstances(board: BoardConfig): VrrpInstance[] {
  const ha = board.ha;
  if (!ha) return [];
  const out: VrrpInstance[] = [];
  for (const side of vrrpSides(ha)) {
    for (const family of [4, 6] as const) {
      if (ha[side]!.virtual.some((v) => v.family === family)) out.push({ name: `portcullis_${side}_v${family}`, side, dev: board[side].dev, family });
    }
  }
  return out;
}

// The link-local address of VRRP's virtual MAC 00-00-5E-00-02-{VRID} (RFC
// 5798 7.3) by modified EUI-64 (RFC 4291 appendix A), as routers derive
// the virtual router's link-local address: the same on both appliances.
export const vrrpLinkLocal = (vrid: number): HaVirtual =>
  ({ family: 6, addr: `fe80::200:5eff:fe00:2${vrid.toString(16).padStart(2, "0")}`, len: 64 });

// The virtual addresses of an instance, in keepalived's order: for IPv6 the
// link-local one first (the side's, or the generated one).
export function instanceVirtual(ha: HaConfig, i: VrrpInstance): HaVirtual[] {
  const own = ha[i.side]!.virtual.filter((v) => v.family === i.family);
  if (i.family === 4) return own;
  const ll = own.find((v) => isLinkLocal(v.addr)) ?? vrrpLinkLocal(ha.vrid);
  return [ll, ...own.filter((v) => v !== ll)];
}

// keepalived's advert_int: seconds, with centiseconds for VRRPv3.
export const advertText = (ha: HaConfig): string => ha.version === 2 ? String(ha.advertCs / 100) : (ha.advertCs / 100).toFixed(2);

export interface KeepalivedOptions {
  hook: string; //  the notify hook's path (hook.ts)
  header: string[]; // comment lines at the top (files.ts: who wrote it)
}

const q = (s: string): string => `"${s}"`;

export function keepalivedConf(board: BoardConfig, o: KeepalivedOptions): string {
  const ha = board.ha;
  if (!ha) throw new Error("the board configuration has no ha: section");
  const inst = vrrpInstances(board);
  const notify = (indent: string): string[] => (["master", "backup", "fault"] as const)
    .map((r) => `${indent}notify_${r} ${q(`${o.hook} ${r}`)}`);
  const out = [
    ...o.header.map((l) => `# ${l}`),
    "",
    "global_defs {",
    // The hook runs as root (it talks to conntrackd and the daemon's
    // owner-only control socket); keepalived refuses scripts that others
    // could replace.
    "\tscript_user root",
    "\tenable_script_security",
    "\tvrrp_version " + ha.version,
    "}",
  ];
  const group = inst.length > 1;
  if (group) {
    out.push("", "vrrp_sync_group portcullis {", "\tgroup {", ...inst.map((i) => `\t\t${i.name}`), "\t}", ...notify("\t"), "}");
  }
  for (const i of inst) {
    const side = ha[i.side]!;
    const peer = side.peer.find((p) => p.family === i.family);
    out.push("", `vrrp_instance ${i.name} {`,
      "\tstate BACKUP",
      `\tinterface ${i.dev}`,
      `\tvirtual_router_id ${ha.vrid}`,
      `\tpriority ${ha.priority}`,
      `\tadvert_int ${advertText(ha)}`,
      ...(ha.preempt ? (ha.preemptDelay > 0 ? [`\tpreempt_delay ${ha.preemptDelay}`] : []) : ["\tnopreempt"]));
    if (ha.auth) out.push("\tauthentication {", `\t\tauth_type ${ha.auth.type === "pass" ? "PASS" : "AH"}`, `\t\tauth_pass ${ha.auth.password}`, "\t}");
    if (ha.unicast && peer) out.push("\tunicast_peer {", `\t\t${peer.addr}`, "\t}");
    out.push("\tvirtual_ipaddress {", ...instanceVirtual(ha, i).map((v) => `\t\t${formatVirtual(v)} dev ${i.dev}`), "\t}");
    if (!group) out.push(...notify("\t"));
    out.push("}");
  }
  return `${out.join("\n")}\n`;
}
