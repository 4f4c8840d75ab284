// The HA pair's configuration (issue 17 part 2): the board's ha: section and
// its errors at FILE:LINE:COL; keepalived.conf, conntrackd.conf and the
// notify hook as exact text; keepalived's own --config-test and a real
// conntrackd start accepting what is generated (in a namespace of this
// test, prefix pch<pid>-); `portcullis ha --apply` and the files it will
// not replace; `portcullis ha notify` through a daemon's control socket,
// with the role in stats and metrics.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatHa, formatStats } from "../host/commands/ctl.js";
import { ConfigError } from "../host/config/errors.js";
import { request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { renderMetrics } from "../host/daemon/metrics.js";
import { conntrackdConf } from "../host/ha/conntrackd.js";
import { haFiles, isOurs } from "../host/ha/files.js";
import { keepalivedConf, vrrpLinkLocal } from "../host/ha/keepalived.js";
import { boardProblem, parseBoardText } from "../host/kernel/board.js";
import { DEFAULT_POLICY } from "./helpers/appliance.js";
import { HaLab } from "./helpers/ha-lab.js";

const TMP = mkdtempSync(join(tmpdir(), "pch-config-"));
chmodSync(TMP, 0o700);
const CLI = join(process.cwd(), "bin", "portcullis.js");
const lines = (...l: string[]): string => `${l.join("\n")}\n`;
const BASE = "version: 1\nmode: gateway\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\n";

const PAIR = `${BASE}ha:
  vrid: 51
  priority: 150
  advert: 0.1
  preempt_delay: 2
  external:
    virtual: [203.0.113.10/24, 2001:db8:1::10/64]
    peer: [203.0.113.3, "2001:db8:1::3"]
  internal:
    virtual: 198.51.100.1/24
    peer: 198.51.100.3
  sync: { side: internal, address: 198.51.100.2, peer: 198.51.100.3 }
`;
const V2 = `${BASE}ha:
  vrid: 7
  priority: 100
  version: 2
  advert: 1
  preempt: false
  unicast: true
  auth: { type: pass, password: s3cret }
  external:
    virtual: 203.0.113.10/24
    peer: 203.0.113.3
`;

test("the ha: section as read: defaults filled, addresses canonical, one peer per family", () => {
  const b = parseBoardText(PAIR, "pair.yaml");
  assert.equal(b.ha, {
    vrid: 51, priority: 150, version: 3, advertCs: 10, preempt: true, preemptDelay: 2, unicast: false,
    external: {
      virtual: [{ family: 4, addr: "203.0.113.10", len: 24 }, { family: 6, addr: "2001:db8:1::10", len: 64 }],
      peer: [{ family: 4, addr: "203.0.113.3" }, { family: 6, addr: "2001:db8:1::3" }],
    },
    internal: { virtual: [{ family: 4, addr: "198.51.100.1", len: 24 }], peer: [{ family: 4, addr: "198.51.100.3" }] },
    sync: { enabled: true, side: "internal", address: { family: 4, addr: "198.51.100.2" }, peer: { family: 4, addr: "198.51.100.3" }, port: 3780 },
  });
});

test("the commented ha: example of board/portcullis.yaml reads as it says", () => {
  const text = readFileSync("board/portcullis.yaml", "utf8");
  const block = text.slice(text.indexOf("\n# ha:\n") + 1).split("\n").filter((l) => l.startsWith("#"))
    .map((l) => l.replace(/^# ?/, "")).filter((l) => !/^\s*#/.test(l)).join("\n");
  const b = parseBoardText(`${BASE}${block}\n`, "board/portcullis.yaml");
  assert.equal([b.ha?.vrid, b.ha?.priority, b.ha?.version, b.ha?.advertCs, b.ha?.external?.virtual.length, b.ha?.sync?.side], [51, 150, 3, 10, 2, "internal"]);
});

// Each case: the ha: section (after BASE), then every error as "code line:col".
const BAD: Array<[string, string, string[]]> = [
  ["authentication with VRRPv3", "ha:\n  vrid: 1\n  priority: 100\n  auth: { type: pass, password: x }\n  external: { virtual: [203.0.113.10/24] }\n", ["auth_v3 8:9"]],
  ["an IPv6 virtual address with VRRPv2", "ha:\n  vrid: 1\n  priority: 100\n  version: 2\n  external: { virtual: [\"2001:db8:1::10/64\"] }\n", ["v6_needs_v3 9:25"]],
  ["a VRRPv2 interval that is not whole seconds, a v3 one finer than centiseconds",
    "ha:\n  vrid: 1\n  priority: 100\n  version: 2\n  advert: 0.5\n  external: { virtual: [203.0.113.10] }\n", ["bad_advert 9:11"]],
  ["VRRPv3 interval in centiseconds", "ha:\n  vrid: 1\n  priority: 100\n  advert: 0.015\n  external: { virtual: [203.0.113.10] }\n", ["bad_advert 8:11"]],
  ["an unknown key, vrid and priority out of range", "ha:\n  vrid: 256\n  priority: 255\n  prempt: false\n  external: { virtual: [203.0.113.10] }\n",
    ["bad_number 6:9", "bad_number 7:13", "unknown_key 8:3"]],
  ["no side, no vrid", "ha:\n  priority: 100\n", ["missing_key 6:3", "missing_key 6:3"]],
  ["unicast without a peer of the family; a bad address", "ha:\n  vrid: 1\n  priority: 100\n  unicast: true\n  external: { virtual: [203.0.113.10/24, 203.0.113.300] }\n",
    ["bad_peer 9:13", "bad_address 9:42"]],
  ["two link-local virtual addresses on one side", "ha:\n  vrid: 1\n  priority: 100\n  internal: { virtual: [\"fe80::1/64\", \"2001:db8:2::1/64\", \"fe80::2/64\"] }\n", ["bad_address 8:59"]],
  ["an empty list of virtual addresses", "ha:\n  vrid: 1\n  priority: 100\n  internal: { virtual: [] }\n", ["bad_address 8:24"]],
  ["preempt_delay without preemption", "ha:\n  vrid: 1\n  priority: 100\n  preempt: false\n  preempt_delay: 3\n  internal: { virtual: [198.51.100.1/24] }\n", ["bad_preempt 9:18"]],
  ["sync: side and dev, a peer that is its own address", "ha:\n  vrid: 1\n  priority: 100\n  internal: { virtual: [198.51.100.1/24] }\n" +
    "  sync: { side: internal, dev: sync0, address: 192.0.2.1, peer: 192.0.2.1 }\n", ["bad_sync 9:32", "bad_peer 9:65"]],
];

for (const [what, ha, want] of BAD) {
  test(`ha: errors: ${what}`, () => {
    try {
      parseBoardText(BASE + ha, "b.yaml");
      assert.unreachable("should have failed");
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      assert.equal(e.all.map((x) => `${x.code} ${x.line}:${x.col}`), want, e.all.map((x) => x.message).join("\n"));
    }
  });
}

test("ha: the messages an operator reads", () => {
  const msg = (ha: string): string[] => {
    try { parseBoardText(BASE + ha, "b.yaml"); return []; } catch (e) { return (e as ConfigError).all.map((x) => x.message); }
  };
  assert.equal(msg("ha:\n  vrid: 1\n  priority: 100\n  auth: { type: ah, password: x }\n  external: { virtual: [203.0.113.10] }\n"),
    ["b.yaml:8:9: VRRP version 3 has no authentication (RFC 5798 removed it): remove ha.auth, or use version: 2"]);
  assert.equal(msg("ha:\n  vrid: 1\n  priority: 100\n  prempt: false\n  external: { virtual: [203.0.113.10] }\n"),
    ['b.yaml:8:3: unknown key "prempt" in ha (did you mean "preempt"?); allowed: vrid, priority, version, advert, preempt, preempt_delay, unicast, auth, external, internal, sync']);
  assert.equal(msg("ha:\n  vrid: 1\n  priority: 100\n  version: 2\n  advert: 0.5\n  external: { virtual: [203.0.113.10] }\n"),
    ["b.yaml:9:11: ha.advert must be whole seconds 1-255 with VRRP version 2, not 0.5"]);
  assert.equal(msg("ha:\n  vrid: 1\n  priority: 100\n  version: 2\n  auth: { type: pass, password: toolongpw }\n  external: { virtual: [203.0.113.10] }\n"),
    ["b.yaml:9:33: ha.auth.password must be 1-8 printable characters without spaces (VRRPv2 carries 8 bytes)"]);
  assert.equal(msg('ha:\n  vrid: 1\n  priority: 100\n  external: { virtual: ["fe80::1/64", "fe80::2/64"] }\n'),
    ["b.yaml:8:39: ha.external.virtual: fe80::2: one link-local address per side, the virtual router's (RFC 5798 5.2.9: the first of an IPv6 advert)"]);
});

const header = ["HEADER"];

test("keepalived.conf, VRRPv2: one instance with PASS authentication, unicast to the peer, no preemption, the hooks on the instance", () => {
  assert.is(keepalivedConf(parseBoardText(V2, "v2.yaml"), { hook: "/etc/keepalived/portcullis-notify.sh", header }), lines(
    "# HEADER", "",
    "global_defs {", "\tscript_user root", "\tenable_script_security", "\tvrrp_version 2", "}", "",
    "vrrp_instance portcullis_external_v4 {",
    "\tstate BACKUP", "\tinterface ext0", "\tvirtual_router_id 7", "\tpriority 100", "\tadvert_int 1", "\tnopreempt",
    "\tauthentication {", "\t\tauth_type PASS", "\t\tauth_pass s3cret", "\t}",
    "\tunicast_peer {", "\t\t203.0.113.3", "\t}",
    "\tvirtual_ipaddress {", "\t\t203.0.113.10/24 dev ext0", "\t}",
    "\tnotify_master \"/etc/keepalived/portcullis-notify.sh master\"",
    "\tnotify_backup \"/etc/keepalived/portcullis-notify.sh backup\"",
    "\tnotify_fault \"/etc/keepalived/portcullis-notify.sh fault\"",
    "}",
  ));
});

test("keepalived.conf, VRRPv3 at 0.1 s: an instance per side and family in one sync group carrying the hooks, multicast, preempt delay", () => {
  const inst = (name: string, dev: string, ...vips: string[]): string[] => [
    "", `vrrp_instance ${name} {`, "\tstate BACKUP", `\tinterface ${dev}`, "\tvirtual_router_id 51", "\tpriority 150", "\tadvert_int 0.10", "\tpreempt_delay 2",
    "\tvirtual_ipaddress {", ...vips.map((v) => `\t\t${v} dev ${dev}`), "\t}", "}",
  ];
  assert.is(keepalivedConf(parseBoardText(PAIR, "p.yaml"), { hook: "/h", header }), lines(
    "# HEADER", "",
    "global_defs {", "\tscript_user root", "\tenable_script_security", "\tvrrp_version 3", "}", "",
    "vrrp_sync_group portcullis {", "\tgroup {", "\t\tportcullis_external_v4", "\t\tportcullis_external_v6", "\t\tportcullis_internal_v4", "\t}",
    "\tnotify_master \"/h master\"", "\tnotify_backup \"/h backup\"", "\tnotify_fault \"/h fault\"", "}",
    ...inst("portcullis_external_v4", "ext0", "203.0.113.10/24"),
    // VRID 51's virtual router link-local address first (RFC 5798 5.2.9).
    ...inst("portcullis_external_v6", "ext0", "fe80::200:5eff:fe00:233/64", "2001:db8:1::10/64"),
    ...inst("portcullis_internal_v4", "int0", "198.51.100.1/24"),
  ));
});

test("keepalived.conf, IPv6: the virtual router's link-local address first, the side's own when it lists one (wherever), else the one of the virtual MAC", () => {
  assert.equal([1, 51, 255].map((v) => vrrpLinkLocal(v).addr), ["fe80::200:5eff:fe00:201", "fe80::200:5eff:fe00:233", "fe80::200:5eff:fe00:2ff"]);
  const conf = (virtual: string): string[] => {
    const b = parseBoardText(`${BASE}ha:\n  vrid: 9\n  priority: 100\n  internal: { virtual: ${virtual} }\n`, "ll.yaml");
    const text = keepalivedConf(b, { hook: "/h", header });
    const l = text.slice(text.indexOf("\tvirtual_ipaddress {\n")).split("\n");
    return l.slice(1, l.indexOf("\t}"));
  };
  assert.equal(conf('["2001:db8:2::1/64", "2001:db8:2::2/64"]'), ["\t\tfe80::200:5eff:fe00:209/64 dev int0", "\t\t2001:db8:2::1/64 dev int0", "\t\t2001:db8:2::2/64 dev int0"]);
  assert.equal(conf('["2001:db8:2::1/64", "FE80::1/64"]'), ["\t\tfe80::1/64 dev int0", "\t\t2001:db8:2::1/64 dev int0"]);
  assert.equal(conf('["fe80::9/64"]'), ["\t\tfe80::9/64 dev int0"]);
  // A configuration made otherwise (not read from a file) is checked the same.
  const b = parseBoardText(`${BASE}ha:\n  vrid: 9\n  priority: 100\n  internal: { virtual: ["fe80::1/64"] }\n`, "ll.yaml");
  b.ha!.internal!.virtual.push({ family: 6, addr: "fe80::2", len: 64 });
  assert.is(boardProblem(b), "ha.internal.virtual: one link-local address per side, the virtual router's (RFC 5798 5.2.9: the first of an IPv6 advert)");
});

test("conntrackd.conf: FTFW over UDP on the internal NIC, our own lock and socket, the appliance's addresses ignored", () => {
  assert.is(conntrackdConf(parseBoardText(PAIR, "p.yaml"), "/run/x", header), lines(
    "# HEADER", "",
    "Sync {", "\tMode FTFW {", "\t\tDisableExternalCache off", "\t}",
    "\tUDP {", "\t\tIPv4_address 198.51.100.2", "\t\tIPv4_Destination_Address 198.51.100.3", "\t\tPort 3780", "\t\tInterface int0",
    "\t\tSndSocketBuffer 1249280", "\t\tRcvSocketBuffer 1249280", "\t\tChecksum on", "\t}", "}", "",
    "General {", "\tHashSize 32768", "\tHashLimit 131072", "\tLogFile off", "\tSyslog on",
    "\tLockFile /run/x/conntrackd.lock", "\tUNIX {", "\t\tPath /run/x/conntrackd.ctl", "\t}",
    "\tNetlinkBufferSize 2097152", "\tNetlinkBufferSizeMaxGrowth 8388608",
    "\tFilter From Userspace {", "\t\tProtocol Accept {", "\t\t\tTCP", "\t\t}", "\t\tAddress Ignore {",
    "\t\t\tIPv4_address 127.0.0.1", "\t\t\tIPv6_address ::1", "\t\t\tIPv4_address 203.0.113.10", "\t\t\tIPv6_address 2001:db8:1::10",
    "\t\t\tIPv4_address 198.51.100.1", "\t\t\tIPv4_address 198.51.100.2", "\t\t\tIPv4_address 198.51.100.3",
    "\t\t}", "\t}", "}",
  ));
});

test("the hook: conntrackd's primary-backup steps, then the role to the daemon; a stamp that detects edits", () => {
  const files = haFiles(parseBoardText(PAIR, "p.yaml"), { board: "/b.yaml", dir: "/etc/keepalived", runDir: "/run/ha", control: "/run/portcullis/control.sock", portcullis: "portcullis" });
  assert.equal(files.map((f) => [f.path, f.mode.toString(8)]), [
    ["/etc/keepalived/keepalived.conf", "644"], ["/etc/keepalived/portcullis-notify.sh", "755"], ["/etc/keepalived/portcullis-conntrackd.conf", "644"],
  ]);
  const hook = files[1]!.text.split("\n");
  assert.is(hook[0], "#!/bin/sh");
  assert.match(hook[1]!, /^# portcullis-ha sha256=[0-9a-f]{64} /);
  assert.equal(hook.slice(2), [
    "# Generated by `portcullis ha --apply` from /b.yaml: edit that file and apply again.",
    "set -u",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'role="${1:-}"',
    'log() { logger -t portcullis-ha -- "$*" 2>/dev/null || echo "portcullis-ha: $*" >&2; }',
    'case "$role" in master|backup|fault) ;; *) log "usage: $0 master|backup|fault (not \\"$role\\")"; exit 2 ;; esac',
    "CONF='/etc/keepalived/portcullis-conntrackd.conf'",
    "LOCK='/run/ha/conntrackd.lock'",
    'ct() { conntrackd -C "$CONF" "$@" >/dev/null 2>&1 || log "conntrackd $* failed (exit $?)"; }',
    'mkdir -p "$(dirname "$LOCK")"',
    'case "$role" in',
    "master)", "\tct -c; ct -f; ct -R; ct -B ;;",
    "backup)",
    '\tif ! conntrackd -C "$CONF" -s >/dev/null 2>&1; then',
    '\t\t[ -f "$LOCK" ] && { log "conntrackd was not stopped cleanly; removing its lock file"; rm -f "$LOCK"; }',
    '\t\tconntrackd -C "$CONF" -d >/dev/null 2>&1 || log "cannot start conntrackd"',
    "\tfi",
    "\tct -t; ct -n ;;",
    "fault)", "\tct -t ;;",
    "esac",
    "exec portcullis ha notify \"$role\" --control '/run/portcullis/control.sock'",
    "",
  ]);
  for (const f of files) assert.ok(isOurs(f.text), f.path);
  assert.not.ok(isOurs(files[0]!.text.replace("priority 150", "priority 160")), "an edit breaks the stamp");
  assert.not.ok(isOurs("vrrp_instance mine {\n}\n"), "an operator's file has none");
});

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

test("portcullis ha --apply: writes the three files, again over its own, never over an operator's or an edited one", () => {
  const board = join(TMP, "pair.yaml");
  writeFileSync(board, PAIR);
  const dir = join(TMP, "etc");
  mkdirSync(dir);
  const args = ["ha", "--config", board, "--dir", dir, "--run-dir", join(TMP, "run"), "--control", join(TMP, "c.sock")];
  let r = cli(...args, "--apply");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, ["keepalived.conf", "portcullis-notify.sh", "portcullis-conntrackd.conf"].map((f) => `portcullis ha: wrote ${join(dir, f)}\n`).join(""));
  assert.is(statSync(join(dir, "portcullis-notify.sh")).mode & 0o777, 0o755);
  // What it prints is what it wrote.
  assert.is(cli(...args).stdout, readFileSync(join(dir, "keepalived.conf"), "utf8"));
  assert.is(cli(...args, "--conntrackd").stdout, readFileSync(join(dir, "portcullis-conntrackd.conf"), "utf8"));
  assert.is(cli(...args, "--hook").stdout, readFileSync(join(dir, "portcullis-notify.sh"), "utf8"));
  r = cli(...args, "--apply");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, ["keepalived.conf", "portcullis-notify.sh", "portcullis-conntrackd.conf"].map((f) => `portcullis ha: unchanged ${join(dir, f)}\n`).join(""),
    "files that hold what would be written are left alone");
  chmodSync(join(dir, "portcullis-notify.sh"), 0o700);
  writeFileSync(board, PAIR.replace("priority: 150", "priority: 145"));
  r = cli(...args, "--apply");
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, [`wrote ${join(dir, "keepalived.conf")}`, `wrote ${join(dir, "portcullis-notify.sh")}`, `unchanged ${join(dir, "portcullis-conntrackd.conf")}`]
    .map((l) => `portcullis ha: ${l}\n`).join(""), "its own files are replaced where they differ (the hook: its mode)");
  assert.match(readFileSync(join(dir, "keepalived.conf"), "utf8"), /priority 145/);
  assert.is(statSync(join(dir, "portcullis-notify.sh")).mode & 0o777, 0o755);
  writeFileSync(board, PAIR);
  assert.is(cli(...args, "--apply").status, 0);
  // An edited file: refused, nothing written.
  const conf = join(dir, "keepalived.conf");
  writeFileSync(conf, readFileSync(conf, "utf8").replace("priority 150", "priority 160"));
  writeFileSync(board, PAIR.replace("priority: 150", "priority: 140"));
  // Every write is a rename over the file: an inode kept is a file not written.
  const others = ["portcullis-notify.sh", "portcullis-conntrackd.conf"].map((f) => join(dir, f));
  const inodes = others.map((f) => statSync(f).ino);
  r = cli(...args, "--apply");
  assert.is(r.status, 1);
  assert.is(r.stderr, `portcullis: error: ${conf} was not written by \`portcullis ha --apply\` (or was edited since): left as it is; move it away, or give another --dir\n`);
  assert.match(readFileSync(conf, "utf8"), /priority 160/);
  assert.equal(others.map((f) => statSync(f).ino), inodes, "nothing written (the hook's stamp is a hash: matching its text for 140 failed now and then)");
  // An operator's file in its place: the same.
  writeFileSync(conf, "vrrp_instance mine {\n}\n");
  assert.is(cli(...args, "--apply").status, 1);
  assert.is(readFileSync(conf, "utf8"), "vrrp_instance mine {\n}\n");
  // One-line errors: no ha:, a bad board, a bad --portcullis.
  writeFileSync(join(TMP, "single.yaml"), BASE);
  r = cli("ha", "--config", join(TMP, "single.yaml"));
  assert.is(r.stderr, `portcullis: error: ${join(TMP, "single.yaml")} has no ha: section (see board/portcullis.yaml)\n`);
  writeFileSync(join(TMP, "bad.yaml"), `${BASE}ha:\n  vrid: 0\n  priority: 1\n  internal: { virtual: [198.51.100.1/24] }\n`);
  r = cli("ha", "--config", join(TMP, "bad.yaml"));
  assert.is(r.status, 1);
  assert.is(r.stderr, `${join(TMP, "bad.yaml")}:6:9: ha.vrid must be a whole number 1-255\nportcullis: 1 error in ${join(TMP, "bad.yaml")}\n`);
  r = cli(...args, "--portcullis", "portcullis; reboot");
  assert.is(r.status, 1);
  assert.match(r.stderr, /option '--portcullis <command>' argument 'portcullis; reboot' is invalid/);
});

// The real programs accept what is generated: keepalived's --config-test in
// a namespace with the board's devices, and conntrackd started (in the
// foreground, ended by its pid) answering its own -s.
test("keepalived --config-test and a conntrackd start accept the generated files", async () => {
  const lab = new HaLab("cfg");
  try {
    await lab.clearStale();
    const ns = lab.namespace("a");
    lab.veth(ns, "ext0", ns, "ext0p");
    lab.veth(ns, "int0", ns, "int0p");
    lab.run(ns, ["ip", "addr", "add", "198.51.100.2/24", "dev", "int0"]);
    for (const [name, text] of [["pair", PAIR], ["v2", V2]] as const) {
      const board = join(lab.dir, `${name}.yaml`);
      writeFileSync(board, text);
      const dir = join(lab.dir, `etc-${name}`);
      mkdirSync(dir);
      const r = cli("ha", "--config", board, "--dir", dir, "--run-dir", join(lab.dir, "run"), "--control", join(lab.dir, "c.sock"), "--apply");
      assert.is(r.status, 0, r.stderr);
      const t = lab.run(ns, ["keepalived", "--config-test", "-f", join(dir, "keepalived.conf")], false);
      assert.is(t.status, 0, `${name}: ${t.stderr}`);
      assert.is(t.stderr, "", `${name}: keepalived has no warning`);
    }
    // A broken file is refused by the same check (the check can fail).
    writeFileSync(join(lab.dir, "broken.conf"), "vrrp_instance x {\n\tinterface nosuchdev0\n\tvirtual_router_id 300\n}\n");
    assert.is.not(lab.run(ns, ["keepalived", "--config-test", "-f", join(lab.dir, "broken.conf")], false).status, 0);
    mkdirSync(join(lab.dir, "run"), { recursive: true });
    const conf = join(lab.dir, "etc-pair", "portcullis-conntrackd.conf");
    const c = lab.spawn(ns, ["conntrackd", "-C", conf], "conntrackd");
    let s = { status: 1, stdout: "", stderr: "" };
    for (let i = 0; i < 50 && s.status !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = lab.run(ns, ["conntrackd", "-C", conf, "-s"], false);
    }
    assert.is(s.status, 0, `conntrackd -s: ${s.stderr} (log: ${lab.log("conntrackd")})`);
    assert.match(s.stdout, /cache internal:/);
    assert.ok(existsSync(join(lab.dir, "run", "conntrackd.ctl")), "its socket is ours, under --run-dir");
    await lab.end(c);
  } finally {
    await lab.down();
  }
});

test("portcullis ha notify: the role over the control socket, in stats and metrics, with the time and count of transitions", async () => {
  const dir = mkdtempSync(join(TMP, "daemon-"));
  const sock = join(dir, "ctl", "control.sock");
  const d = new Daemon({ policy: DEFAULT_POLICY, mode: "gateway", control: sock, ha: true }, new JsonLogger(() => {}));
  const notify = (role: string): Promise<{ status: number | null; out: string; err: string }> => new Promise((res) => {
    const c = spawn(process.execPath, [CLI, "ha", "notify", role, "--control", sock], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (b: Buffer) => { out += b.toString(); });
    c.stderr.on("data", (b: Buffer) => { err += b.toString(); });
    c.on("close", (status) => res({ status, out, err }));
  });
  try {
    assert.ok((await d.reload()).ok);
    await d.listen();
    const st0 = (await request(sock, { cmd: "stats" })).stats as { ha: Record<string, unknown> };
    assert.equal({ role: st0.ha.role, since: st0.ha.since, transitions: st0.ha.transitions }, { role: "unknown", since: null, transitions: 0 });
    assert.match(renderMetrics(d), /^portcullis_ha_role\{role="master"\} 0\nportcullis_ha_role\{role="backup"\} 0\nportcullis_ha_role\{role="fault"\} 0$/m);
    let r = await notify("backup");
    assert.is(r.status, 0, r.err);
    assert.is(r.out, "portcullis ha: the daemon is backup (transition 1)\n");
    const t0 = Date.now();
    r = await notify("master");
    assert.is(r.out, "portcullis ha: the daemon is master (transition 2)\n");
    r = await notify("master");
    assert.is(r.out, "portcullis ha: the daemon is master (transition 2)\n", "the same role again is no transition");
    const st = (await request(sock, { cmd: "stats" })).stats as Parameters<typeof formatStats>[0] & { ha: { role: string; since: string; transitions: number; notifies: number } };
    assert.is(st.ha.role, "master");
    assert.is(st.ha.transitions, 2);
    assert.is(st.ha.notifies, 3);
    const since = Date.parse(st.ha.since);
    assert.ok(since >= t0 - 1000 && since <= Date.now(), st.ha.since);
    assert.ok(formatStats(st).split("\n").includes(`ha: master since ${st.ha.since}, 2 transitions`), formatStats(st));
    const m = renderMetrics(d);
    assert.match(m, /^portcullis_ha_role\{role="master"\} 1\nportcullis_ha_role\{role="backup"\} 0\nportcullis_ha_role\{role="fault"\} 0$/m);
    assert.ok(m.includes(`\nportcullis_ha_last_transition_timestamp_seconds ${since / 1000}\n`), m);
    assert.ok(m.includes("\nportcullis_ha_transitions_total 2\n"));
    r = await notify("primary");
    assert.is(r.status, 1);
    assert.is(r.err, "error: command-argument value 'primary' is invalid for argument 'role'. the role is master, backup, fault\n");
    const bad = await request(sock, { cmd: "ha", role: "leader" });
    assert.equal(bad, { ok: false, error: 'ha: "role" must be master, backup, fault' });
  } finally {
    await d.stop();
  }
});

test("a daemon of a pair that starts holding the virtual addresses is master until keepalived says otherwise", async () => {
  const d = new Daemon({ policy: DEFAULT_POLICY, mode: "host", ha: true, haInitial: "master" }, new JsonLogger(() => {}));
  try {
    assert.ok((await d.reload()).ok);
    const h = (d.stats() as { ha: Parameters<typeof formatHa>[0] }).ha;
    assert.equal([h.role, h.inferred, h.transitions], ["master", true, 0]);
    assert.is(formatHa(h), "ha: master (from the virtual addresses at start; keepalived has not said yet), 0 transitions");
    d.haNotify("master");
    const k = (d.stats() as { ha: Parameters<typeof formatHa>[0] }).ha;
    assert.equal([k.role, k.inferred, k.transitions], ["master", false, 0], "keepalived agrees: no transition");
    assert.is(formatHa(k), "ha: master (since the daemon started; keepalived said so 1 time), 0 transitions");
    d.haNotify("master");
    assert.is(formatHa((d.stats() as { ha: Parameters<typeof formatHa>[0] }).ha), "ha: master (since the daemon started; keepalived said so 2 times), 0 transitions");
  } finally {
    await d.stop();
  }
});

test("a daemon without ha: shows no ha line until keepalived speaks", async () => {
  const d = new Daemon({ policy: DEFAULT_POLICY, mode: "host" }, new JsonLogger(() => {}));
  try {
    assert.ok((await d.reload()).ok);
    assert.is((d.stats() as { ha: unknown }).ha, null);
    assert.not.match(renderMetrics(d), /portcullis_ha_/);
    d.haNotify("fault");
    assert.is((d.stats() as { ha: { role: string } }).ha.role, "fault");
  } finally {
    await d.stop();
  }
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));

test.run();
