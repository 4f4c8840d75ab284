// `portcullis firstboot` (host/firstboot/; the command host/commands/
// firstboot.ts): the first-boot file of a flashed board applied to a
// temporary root made from the board overlay (and its templates).
// Checks the exact files written (hostname, hosts, .link, .network, policy
// groups, sudoers, authorized_keys, the user; with ha:, board.yaml's ha: and
// keepalived's files as haFiles makes them), that the policy passes
// `portcullis check`, that a second run does nothing, and that broken files
// (bad YAML, MAC, address, key, unknown key or group) are refused with
// FILE:LINE:COL and change nothing in the root.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync,
  truncateSync, writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { parse } from "yaml";
import { parseFirstbootText } from "../host/firstboot/parse.js";
import { EXAMPLE, EXAMPLE_HA } from "./helpers/firstboot-example.js";
import { haFiles, installedCommand, installedHaOptions } from "../host/ha/files.js";
import { parseBoardText } from "../host/kernel/board.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist/host/cli.js");
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6lRG0jhR50R9EHm1rR1QKVYndomFiPc40SH6qJwb9+ REPLACE-ME-with-your-key@example";
const TMP = mkdtempSync(join("/var/tmp", "portcullis-firstboot-test-"));

let n = 0;
// A root as the image has it (overlay installed, no .link files yet) and a boot dir.
function setup(firstboot: string | null): { root: string; boot: string; file: string } {
  const d = join(TMP, `t${n++}`);
  const root = join(d, "root"), boot = join(d, "boot");
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(boot, { recursive: true });
  cpSync(join(ROOT, "board/rootfs_overlay/etc/portcullis"), join(root, "etc/portcullis"), { recursive: true });
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\n");
  writeFileSync(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o600 });
  writeFileSync(join(root, "etc/gshadow"), "root:*::\n", { mode: 0o600 });
  writeFileSync(join(root, "etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\tportcullis\n::1\t\tlocalhost ip6-localhost ip6-loopback\n");
  writeFileSync(join(root, "etc/hostname"), "portcullis\n");
  const file = join(boot, "portcullis-firstboot.yaml");
  if (firstboot !== null) writeFileSync(file, firstboot);
  return { root, boot, file };
}
const run = (boot: string, root: string, o: { cwd?: string; extra?: string[] } = {}) =>
  spawnSync("node", [CLI, "firstboot", "--boot", boot, "--root", root, ...(o.extra ?? [])], { encoding: "utf8", cwd: o.cwd, timeout: 20000 });

// Every path under root: mode, owner, size, content hash, mtime (of
// directories too unless dirTimes is false), link target.
function snapshot(root: string, dirTimes = true): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = lstatSync(p);
      const sum = s.isFile() ? createHash("sha256").update(readFileSync(p)).digest("hex").slice(0, 16) : "";
      lines.push(`${p.slice(root.length)} ${s.mode.toString(8)} ${s.uid}:${s.gid} ${s.size} ${sum} ${s.isDirectory() && !dirTimes ? "" : s.mtimeMs}${s.isSymbolicLink() ? ` -> ${readlinkSync(p)}` : ""}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(root);
  return lines.join("\n");
}
// Refused before anything is written: exit 1, the errors file is stderr,
// the root unchanged byte for byte, the file left where it is.
function refused(t: { root: string; boot: string; file: string }, expected: RegExp, o: { cwd?: string; extra?: string[] } = {}): void {
  const before = snapshot(t.root);
  const text = readFileSync(t.file, "utf8");
  const r = run(t.boot, t.root, o);
  assert.is(r.status, 1, `${r.stdout}${r.stderr}`);
  assert.is(r.stdout, "");
  assert.ok(expected.test(r.stderr), r.stderr);
  assert.not.match(r.stderr, /^\s+at /m, "no stack trace");
  assert.is(readFileSync(join(t.boot, "portcullis-firstboot.errors.txt"), "utf8"), r.stderr);
  assert.is(snapshot(t.root), before);
  assert.is(readFileSync(t.file, "utf8"), text);
}
const read = (root: string, p: string) => readFileSync(join(root, p), "utf8");

test("the example file: exact hostname, .link, .network, policy groups, user, keys, sudo; the file is marked done", () => {
  const { root, boot, file } = setup(EXAMPLE);
  const r = run(boot, root);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, "");
  assert.match(r.stdout, /^portcullis firstboot: created user admin$/m);
  assert.match(r.stdout, /^portcullis firstboot: applied .*portcullis-firstboot\.yaml to .*; renamed it portcullis-firstboot\.yaml\.done$/m);
  assert.not.ok(existsSync(file));
  assert.is(readFileSync(`${file}.done`, "utf8"), EXAMPLE);

  assert.is(read(root, "etc/hostname"), "portcullis\n");
  assert.is(read(root, "etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\tportcullis\n::1\t\tlocalhost ip6-localhost ip6-loopback\n");
  assert.is(read(root, "etc/systemd/network/10-external.link"),
    "# The Internet-side NIC, pinned by MAC so it is always ext0 (board.yaml\n# external.dev). dc:a6:32:00:00:01 is filled in by board:bundle --ext-mac or\n" +
    "# install.sh --ext-mac.\n[Match]\nMACAddress=dc:a6:32:00:00:01\n\n[Link]\nName=ext0\n");
  assert.is(read(root, "etc/systemd/network/11-internal.link"),
    "# The internal NIC (Front End pool, Director, Office Web Apps side), pinned by\n# MAC so it is always int0 (board.yaml internal.dev). 00:e0:4c:00:00:02 is filled in\n" +
    "# by board:bundle --int-mac or install.sh --int-mac.\n[Match]\nMACAddress=00:e0:4c:00:00:02\n\n[Link]\nName=int0\n");
  assert.is(read(root, "etc/systemd/network/20-portcullis-external.network"),
    "# Written by portcullis firstboot from portcullis-firstboot.yaml.\n# The external NIC, matched by MAC; static addresses only.\n" +
    "[Match]\nMACAddress=dc:a6:32:00:00:01\n\n[Network]\nAddress=203.0.113.1/24\nAddress=2001:db8:1::1/64\nGateway=203.0.113.254\n" +
    "DHCP=no\nIPv6AcceptRA=no\nLinkLocalAddressing=ipv6\n");
  assert.is(read(root, "etc/systemd/network/20-portcullis-internal.network"),
    "# Written by portcullis firstboot from portcullis-firstboot.yaml.\n# The internal NIC, matched by MAC; static addresses only.\n" +
    "[Match]\nMACAddress=00:e0:4c:00:00:02\n\n[Network]\nAddress=198.51.100.1/24\nAddress=2001:db8:2::1/64\n" +
    "DHCP=no\nIPv6AcceptRA=no\nLinkLocalAddressing=ipv6\n");

  const policy = parse(read(root, "etc/portcullis/policy.yaml")) as { groups: Record<string, string[]>; rules: unknown[] };
  assert.equal(policy.groups, {
    listener: ["203.0.113.1", "2001:db8:1::1"],
    proxy_internal: ["198.51.100.1", "2001:db8:2::1"],
    front_end: ["198.51.100.10", "198.51.100.11"],
    office_web_apps: ["198.51.100.30"],
  });
  assert.is(policy.rules.length, 6);
  assert.equal(policy.rules[0], {
    name: "admin-ssh", action: "allow", interface: "internal", direction: "in", proto: "tcp", src: ["192.0.2.0/28"], dport: 22,
    comment: "SSH to the appliance from its admins (portcullis-firstboot.yaml)",
  });
  const check = spawnSync("node", [CLI, "check", join(root, "etc/portcullis/policy.yaml")], { encoding: "utf8" });
  assert.is(check.status, 0, check.stderr);
  assert.match(check.stdout, /^ {2}front_end +2 entries: 2 IPv4 addresses, 0 IPv6 addresses/m);
  assert.match(check.stdout, /^ {2}office_web_apps +1 entry: 1 IPv4 address, 0 IPv6 addresses/m);
  assert.match(check.stdout, /^ {2}internal in +1 rule$/m);

  const pw = read(root, "etc/passwd").split("\n").find((l) => l.startsWith("admin:"));
  assert.match(pw ?? "", /^admin:x:(\d+):(\d+):Portcullis admin:\/home\/admin:\/bin\/bash$/);
  const uid = Number(pw!.split(":")[2]);
  assert.is(read(root, "home/admin/.ssh/authorized_keys"), `${KEY}\n`);
  const ak = statSync(join(root, "home/admin/.ssh/authorized_keys"));
  assert.is(ak.mode & 0o777, 0o600);
  assert.is(ak.uid, uid);
  assert.is(statSync(join(root, "home/admin/.ssh")).mode & 0o777, 0o700);
  assert.is(read(root, "etc/sudoers.d/90-portcullis-admin"),
    "# Written by portcullis firstboot from portcullis-firstboot.yaml.\nadmin ALL=(ALL:ALL) NOPASSWD: ALL\n");
  assert.is(statSync(join(root, "etc/sudoers.d/90-portcullis-admin")).mode & 0o777, 0o440);

  // Run again: the file is marked done, nothing changes.
  const before = snapshot(root);
  const again = run(boot, root);
  assert.is(again.status, 0, again.stderr);
  assert.match(again.stdout, /^portcullis firstboot: no .*portcullis-firstboot\.yaml: nothing to do$/m);
  assert.is(snapshot(root), before);
});

test("a new file later: same user, new key and name; addresses dropped remove the .network file", () => {
  const { root, boot, file } = setup(EXAMPLE);
  assert.is(run(boot, root).status, 0);
  const other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP6lRG0jhR50R9EHm1rR1QKVYndomFiPc40SH6qJwb9+ second@example";
  writeFileSync(file, EXAMPLE.replace("hostname: portcullis", "hostname: edge-2")
    .replace(/  address: \[198\.51\.100\.1\/24, "2001:db8:2::1\/64"\]\n/, "")
    .replace(/ {4}- "ssh-ed25519 [^\n]*\n/, `    - "${other}"\n`));
  const r = run(boot, root);
  assert.is(r.status, 0, r.stderr);
  assert.not.match(r.stdout, /created user/);
  assert.is(read(root, "etc/hostname"), "edge-2\n");
  assert.match(read(root, "etc/hosts"), /^127\.0\.1\.1\tedge-2$/m);
  assert.is(read(root, "home/admin/.ssh/authorized_keys"), `${other}\n`);
  assert.not.ok(existsSync(join(root, "etc/systemd/network/20-portcullis-internal.network")));
  assert.ok(existsSync(join(root, "etc/systemd/network/20-portcullis-external.network")));
  assert.is(read(root, "etc/passwd").split("\n").filter((l) => l.startsWith("admin:")).length, 1);
  const rules = (parse(read(root, "etc/portcullis/policy.yaml")) as { rules: Array<{ name: string }> }).rules;
  assert.equal(rules.map((x) => x.name), ["admin-ssh", "ext-http-80", "ext-https-443", "int-http-8080", "int-https-4443", "int-https-443-owa"]);
  // Without ssh_from the admin-ssh rule goes.
  writeFileSync(file, EXAMPLE.replace("  ssh_from: [192.0.2.0/28]\n", ""));
  assert.is(run(boot, root).status, 0);
  const after = (parse(read(root, "etc/portcullis/policy.yaml")) as { rules: Array<{ name: string }> }).rules;
  assert.equal(after.map((x) => x.name), ["ext-http-80", "ext-https-443", "int-http-8080", "int-https-4443", "int-https-443-owa"]);
});

// Each broken file: exit 1, this exact error line, the root unchanged, the
// file left in place and the errors written beside it.
const BROKEN: Array<[string, (s: string) => string, RegExp]> = [
  ["bad YAML", (s) => s.replace("hostname: portcullis", "hostname: [portcullis"), /:\d+:\d+: YAML: /],
  ["a bad MAC", (s) => s.replace("dc:a6:32:00:00:01", "dc:a6:32:00:00"),
    /firstboot\.yaml:23:8: external\.mac "dc:a6:32:00:00" is not a MAC address like dc:a6:32:12:34:56$/m],
  ["a bad interface address", (s) => s.replace("198.51.100.1/24,", "198.51.100.300/24,"),
    /firstboot\.yaml:28:13: internal\.address: "198\.51\.100\.300" is not an IPv4 or IPv6 address$/m],
  ["a bad group address", (s) => s.replace("front_end: [198.51.100.10,", "front_end: [198.51.100.10/33,"),
    /firstboot\.yaml:36:15: groups\.front_end: "198\.51\.100\.10\/33": the prefix length must be 0 to 32$/m],
  ["an unknown key", (s) => s.replace("hostname: portcullis", "hostnme: portcullis"),
    /firstboot\.yaml:14:1: unknown key "hostnme" in the first-boot file \(did you mean "hostname"\?\); allowed: version, hostname, external, internal, groups, admin, ha$/m],
  ["an unknown group", (s) => s.replace("front_end: [", "frontend: ["),
    /firstboot\.yaml:36:3: the policy has no group "frontend" \(did you mean "front_end"\?\); its groups: listener, proxy_internal, front_end, office_web_apps$/m],
  ["a gateway without an address of its family", (s) => s.replace("gateway: 203.0.113.254", 'gateway: "2001:db8:9::1"').replace('address: [203.0.113.1/24, "2001:db8:1::1/64"]', "address: 203.0.113.1/24"),
    /firstboot\.yaml:25:12: external\.gateway 2001:db8:9::1 is IPv6 but external has no IPv6 address$/m],
  ["a damaged SSH key", (s) => s.replace("AAAAC3NzaC1lZDI1NTE5AAAAIP6l", "AAAAC3NzaC1yc2EAAAAIP6l"),
    /firstboot\.yaml:50:7: admin\.ssh_keys: the key's data does not hold a ssh-ed25519 key \(damaged or cut short\?\)$/m],
  ["a system user as admin", (s) => s.replace("user: admin", "user: root"),
    /firstboot\.yaml:48:9: admin\.user "root" must be a new login name/m],
  ["a multicast MAC", (s) => s.replace("dc:a6:32:00:00:01", "01:00:5e:00:00:01"),
    /firstboot\.yaml:23:8: external\.mac "01:00:5e:00:00:01" is a multicast address, not a NIC's$/m],
];
for (const [what, mutate, expected] of BROKEN) {
  test(`${what}: refused with FILE:LINE:COL, nothing in the root changed`, () => {
    const text = mutate(EXAMPLE);
    assert.is.not(text, EXAMPLE, "the mutation applies");
    const { root, boot, file } = setup(text);
    const before = snapshot(root);
    const r = run(boot, root);
    assert.is(r.status, 1, r.stdout);
    assert.match(r.stderr, expected);
    assert.ok(r.stderr.startsWith(file), r.stderr);
    assert.match(r.stderr, /error(s)? applying .*portcullis-firstboot\.yaml; nothing changed/);
    assert.is(r.stdout, "");
    assert.is(snapshot(root), before);
    assert.is(readFileSync(file, "utf8"), text);
    assert.is(readFileSync(join(boot, "portcullis-firstboot.errors.txt"), "utf8"), r.stderr);
    // Fixed: applies, and the errors file goes.
    writeFileSync(file, EXAMPLE);
    const ok = run(boot, root);
    assert.is(ok.status, 0, ok.stderr);
    assert.not.ok(existsSync(join(boot, "portcullis-firstboot.errors.txt")));
  });
}

test("groups with which the policy would not pass check: refused, nothing written", () => {
  // proxy_internal IPv6 only, front_end IPv4 only: the internal rules from one
  // to the other could never match (a family mismatch is an error).
  const { root, boot } = setup(EXAMPLE.replace('proxy_internal: [198.51.100.1, "2001:db8:2::1"]', 'proxy_internal: ["2001:db8:2::1"]'));
  const before = snapshot(root);
  const r = run(boot, root);
  assert.is(r.status, 1, r.stdout);
  assert.match(r.stderr, /firstboot\.yaml: with these groups and rules the policy would not pass portcullis check \(mode host; lines as it would be written\):\n {2}.*etc\/portcullis\/policy\.yaml:107:10: src is IPv6 only and dst is IPv4 only: this rule can never match/);
  assert.is(snapshot(root), before);
});

test("ssh_from on a gateway-mode board: refused, nothing written", () => {
  const { root, boot } = setup(EXAMPLE);
  const b = join(root, "etc/portcullis/board.yaml");
  writeFileSync(b, readFileSync(b, "utf8").replace("mode: host", "mode: gateway"));
  const before = snapshot(root);
  const r = run(boot, root);
  assert.is(r.status, 1, r.stdout);
  assert.match(r.stderr, /firstboot\.yaml:51:3: admin\.ssh_from needs board mode host \(this board is gateway: its own traffic is not matched by policy rules; manage it from a third interface\)$/m);
  assert.is(snapshot(root), before);
});

test("an empty file and a missing section name what is missing", () => {
  const empty = setup("");
  const r = run(empty.boot, empty.root);
  assert.is(r.status, 1);
  assert.match(r.stderr, /firstboot\.yaml:1:1: the first-boot file is empty; it needs version, hostname, external and internal$/m);
  const partial = setup("version: 1\nhostname: x\nexternal: { mac: \"dc:a6:32:00:00:01\" }\n");
  const r2 = run(partial.boot, partial.root);
  assert.is(r2.status, 1);
  assert.match(r2.stderr, /firstboot\.yaml:1:1: the first-boot file has no "internal:" \(a mapping with mac: the internal NIC\)$/m);
});

test("the unit: systemd-analyze verify accepts it; it runs the command once per file, before the filter and the network", () => {
  const unit = join(ROOT, "board/rootfs_overlay/etc/systemd/system/portcullis-firstboot.service");
  const v = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
  assert.is(v.status, 0, v.stderr);
  assert.is(v.stderr.trim(), "");
  const lines = readFileSync(unit, "utf8").split("\n");
  for (const l of ["ConditionPathExists=/boot/firmware/portcullis-firstboot.yaml", "Type=oneshot",
    "ExecStart=/usr/bin/node /opt/portcullis/current/dist/host/cli.js firstboot --boot /boot/firmware --root /",
    "ExecStartPost=+-/usr/bin/hostname --file /etc/hostname",
    // keepalived after it: its ConditionFileNotEmpty= sees the keepalived.conf written on that boot.
    "Before=portcullis-rules.service portcullis.service keepalived.service systemd-networkd.service network-pre.target ssh.service sysinit.target shutdown.target",
    "WantedBy=multi-user.target"]) {
    assert.ok(lines.includes(l), l);
  }
});

// The HA pair: ha: into board.yaml, keepalived's files as `portcullis ha --apply` writes them.
const HA_FILES = ["etc/keepalived/keepalived.conf", "etc/keepalived/portcullis-notify.sh", "etc/keepalived/portcullis-conntrackd.conf"];
const OVERLAY_BOARD = readFileSync(join(ROOT, "board/rootfs_overlay/etc/portcullis/board.yaml"), "utf8");

test("ha: (the example's): board.yaml gets it, the rest as it was; keepalived's files exactly as haFiles makes them; a second run changes nothing", () => {
  assert.is.not(EXAMPLE_HA, EXAMPLE, "the example's ha: block is uncommented");
  const t = setup(EXAMPLE_HA);
  const r = run(t.boot, t.root);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, "");
  for (const p of ["etc/portcullis/board.yaml", ...HA_FILES]) assert.match(r.stdout, new RegExp(`^portcullis firstboot: wrote /${p.replaceAll(".", "\\.")}$`, "m"), p);
  const text = read(t.root, "etc/portcullis/board.yaml");
  assert.ok(text.startsWith(`${OVERLAY_BOARD}\n# One appliance of an HA pair, from portcullis-firstboot.yaml (keepalived's files: portcullis ha --apply).\nha:\n`), text);
  const board = parseBoardText(text, "board.yaml");
  const want = parseFirstbootText(EXAMPLE_HA, "fb.yaml").ha!.config;
  assert.equal(board.ha, want);
  assert.equal(want, {
    vrid: 51, priority: 150, version: 3, advertCs: 100, preempt: true, preemptDelay: 0, unicast: false,
    external: { virtual: [{ family: 4, addr: "203.0.113.10", len: 24 }, { family: 6, addr: "2001:db8:1::10", len: 64 }],
      peer: [{ family: 4, addr: "203.0.113.2" }, { family: 6, addr: "2001:db8:1::2" }] },
    internal: { virtual: [{ family: 4, addr: "198.51.100.254", len: 24 }], peer: [{ family: 4, addr: "198.51.100.2" }] },
    sync: { enabled: true, side: "internal", address: { family: 4, addr: "198.51.100.1" }, peer: { family: 4, addr: "198.51.100.2" }, port: 3780 },
  });
  const { ha: _, ...rest } = board;
  assert.equal(rest, parseBoardText(OVERLAY_BOARD, "board.yaml"));
  // What `portcullis ha --apply` with its defaults writes for that board.
  const o = installedHaOptions();
  assert.equal(o, { board: "/etc/portcullis/board.yaml", dir: "/etc/keepalived", runDir: "/run/portcullis-ha", control: "/run/portcullis/control.sock", portcullis: "portcullis" });
  const files = haFiles(board, o);
  assert.equal(files.map((f) => f.path), HA_FILES.map((p) => `/${p}`));
  for (const f of files) {
    assert.is(read(t.root, f.path), f.text, f.path);
    assert.is(statSync(join(t.root, f.path)).mode & 0o777, f.mode, f.path);
  }
  assert.match(read(t.root, HA_FILES[0]!), /^\tinterface ext0$/m);
  assert.match(read(t.root, HA_FILES[0]!), /^\tpriority 150$/m);
  assert.match(read(t.root, HA_FILES[2]!), /^\t\tInterface int0$/m);
  assert.ok(read(t.root, HA_FILES[1]!).endsWith("\nexec portcullis ha notify \"$role\" --control '/run/portcullis/control.sock'\n"));

  // The same file again: nothing written, nothing changed.
  writeFileSync(t.file, EXAMPLE_HA);
  const before = snapshot(t.root);
  const again = run(t.boot, t.root);
  assert.is(again.status, 0, again.stderr);
  assert.is(again.stdout, `portcullis firstboot: applied ${t.file} to ${t.root}; renamed it portcullis-firstboot.yaml.done\n`);
  assert.is(snapshot(t.root), before);

  // Another priority later: board.yaml's ha: replaced where it is, the files (ours) replaced.
  writeFileSync(t.file, EXAMPLE_HA.replace("priority: 150", "priority: 100"));
  const later = run(t.boot, t.root);
  assert.is(later.status, 0, later.stderr);
  assert.is(read(t.root, "etc/portcullis/board.yaml"), text.replace("priority: 150", "priority: 100"));
  assert.match(read(t.root, HA_FILES[0]!), /^\tpriority 100$/m);
});

test("the hook's command is the installed one: the package's launcher, install.sh's link, or in a checkout the PATH's", () => {
  assert.is(installedCommand("/usr/lib/portcullis/app/"), "/usr/bin/portcullis");
  assert.is(installedCommand("/usr/lib/portcullis/app"), "/usr/bin/portcullis");
  assert.is(installedCommand("/opt/portcullis/1.2.3/"), "/usr/local/bin/portcullis");
  assert.is(installedCommand(ROOT), "portcullis");
});

test("without ha: nothing about HA changes: a board.yaml with ha: keeps it, no keepalived files appear", () => {
  const t = setup(EXAMPLE);
  const withHa = `${OVERLAY_BOARD}ha:\n  vrid: 9\n  priority: 10\n  internal: { virtual: [198.51.100.254/24] }\n`;
  writeFileSync(join(t.root, "etc/portcullis/board.yaml"), withHa);
  const r = run(t.boot, t.root);
  assert.is(r.status, 0, r.stderr);
  assert.is(read(t.root, "etc/portcullis/board.yaml"), withHa);
  assert.not.ok(existsSync(join(t.root, "etc/keepalived")));
});

test("a bad ha: value: the board's own error at FILE:LINE:COL, one line, nothing written", () => {
  const t = setup(EXAMPLE_HA.replace("priority: 150", "priority: 300"));
  refused(t, new RegExp(`^${t.file}:65:13: ha\\.priority must be a whole number 1-254\nportcullis firstboot: 1 error applying ${t.file}; nothing changed \\(fix the file and run again, or reboot\\)\n$`));
  const d = setup(EXAMPLE_HA.replace("sync: { side: internal,", 'sync: { dev: "sync 0",'));
  refused(d, new RegExp(`^${d.file}:72:16: ha\\.sync\\.dev must be a network device name \\(1-15 letters, digits, _ \\. -\\), not "sync 0"\nportcullis firstboot: 1 error applying`));
  const v = setup(EXAMPLE_HA.replace("  vrid: 51", "  vrid: 51\n  version: 2"));
  refused(v, new RegExp(`^${v.file}:68:32: IPv6 virtual addresses need VRRP version 3 \\(RFC 5798\\); VRRPv2 is IPv4 only\nportcullis firstboot: 1 error applying`));
});

test("a keepalived.conf in the root that portcullis did not write (or one of ours edited since): refused, nothing written", () => {
  const t = setup(EXAMPLE_HA);
  mkdirSync(join(t.root, "etc/keepalived"));
  writeFileSync(join(t.root, "etc/keepalived/keepalived.conf"), "vrrp_instance mine {\n}\n");
  const refusal = `${t.file}:63:1: /etc/keepalived/keepalived.conf was not written by \`portcullis ha --apply\` (or was edited since): left as it is; move it away (ha: here would replace it)`;
  refused(t, new RegExp(`^${refusal.replace(/[.()`]/g, "\\$&")}\nportcullis firstboot: 1 error applying ${t.file}; nothing changed`));
  // Ours, then edited by hand: the same.
  rmSync(join(t.root, "etc/keepalived/keepalived.conf"));
  assert.is(run(t.boot, t.root).status, 0);
  const conf = join(t.root, "etc/keepalived/keepalived.conf");
  writeFileSync(conf, readFileSync(conf, "utf8").replace("priority 150", "priority 160"));
  writeFileSync(t.file, EXAMPLE_HA.replace("priority: 150", "priority: 100"));
  refused(t, new RegExp(`^${refusal.replace(/[.()`]/g, "\\$&")}\nportcullis firstboot: 1 error applying`));
  assert.match(read(t.root, "etc/portcullis/board.yaml"), /^ {2}priority: 150 #/m);
});

test("ha: with /etc/keepalived a link out of the root: refused, nothing written there", () => {
  const t = setup(EXAMPLE_HA);
  const out = join(OUTSIDE, "keepalived");
  const empty = outsideEmpty(out);
  symlinkSync(out, join(t.root, "etc/keepalived"));
  refused(t, /^\/etc\/keepalived is a symbolic link, not a directory; firstboot does not follow links in the root\nportcullis firstboot: 1 error applying/);
  empty();
});

test("ha: with an installed board.yaml that does not parse: its error, nothing written", () => {
  const t = setup(EXAMPLE_HA);
  const b = join(t.root, "etc/portcullis/board.yaml");
  writeFileSync(b, OVERLAY_BOARD.replace("mode: host", "mode: hots"));
  refused(t, new RegExp(`^${b}:16:7: mode must be host or gateway, not "hots"\nportcullis firstboot: 1 error applying`));
});

// Issue 12, first boot: the file comes from a partition anyone with the card can write.
const OUTSIDE = join(TMP, "outside");
mkdirSync(OUTSIDE, { recursive: true });
const outsideEmpty = (d: string) => { mkdirSync(d, { recursive: true }); return () => assert.equal(readdirSync(d), [], `nothing written in ${d}`); };

test("admin.user naming an existing account is refused: a system user whose home is a link (bin -> usr/bin) keeps its owner", () => {
  const t = setup(EXAMPLE.replace("user: admin", "user: proxy"));
  appendFileSync(join(t.root, "etc/passwd"), "proxy:x:13:13:proxy:/bin:/usr/sbin/nologin\n");
  appendFileSync(join(t.root, "etc/group"), "proxy:x:13:\n");
  mkdirSync(join(t.root, "usr/bin"), { recursive: true });
  symlinkSync("usr/bin", join(t.root, "bin"));
  refused(t, /firstboot\.yaml:48:9: admin\.user "proxy" must be a new login name: .*\(not a system user\)$/m);
  assert.is(statSync(join(t.root, "usr/bin")).uid, 0);
});

test("admin.user naming an existing ordinary account is refused: a home of / or a link out of the root is never touched", () => {
  for (const [line, user] of [["alice:x:1000:1000::/:/bin/bash", "alice"], ["bob:x:1001:1001::/home/bob:/bin/bash", "bob"]] as const) {
    const t = setup(EXAMPLE.replace("user: admin", `user: ${user}`));
    appendFileSync(join(t.root, "etc/passwd"), `${line}\n`);
    appendFileSync(join(t.root, "etc/group"), `${user}:x:${line.split(":")[3]}:\n`);
    const out = join(OUTSIDE, user);
    const empty = outsideEmpty(out);
    mkdirSync(join(t.root, "home"));
    symlinkSync(out, join(t.root, "home/bob")); // absolute: outside the root
    const home = line.split(":")[5];
    refused(t, new RegExp(`firstboot\\.yaml:48:9: admin\\.user "${user}" is an existing account \\(uid ${line.split(":")[2]}, home ${home}\\) that portcullis firstboot did not make: name a new user$`, "m"));
    assert.is(statSync(t.root).uid, 0);
    empty();
  }
});

test("a new admin.user whose home already exists (a link out of the root) or whose name is a group's: refused", () => {
  const t = setup(EXAMPLE);
  const out = join(OUTSIDE, "carol");
  const empty = outsideEmpty(out);
  mkdirSync(join(t.root, "home"));
  symlinkSync(out, join(t.root, "home/admin"));
  refused(t, /firstboot\.yaml:48:9: admin\.user "admin" is new but \/home\/admin exists already; firstboot makes a new user's home itself$/m);
  empty();
  const g = setup(EXAMPLE.replace("user: admin", "user: wheel"));
  appendFileSync(join(g.root, "etc/group"), "wheel:x:10:\n");
  refused(g, /firstboot\.yaml:48:9: admin\.user "wheel": a group of that name exists already; name a new user$/m);
});

test("a key with a line break (an extra authorized_keys line with options) is refused; options before a key too", () => {
  const evil = `${KEY}\ncommand="touch /tmp/pwned",no-pty ${KEY}`;
  const t = setup(EXAMPLE.replace(`- "${KEY}"`, `- ${JSON.stringify(evil)}`));
  refused(t, /firstboot\.yaml:50:7: admin\.ssh_keys: the key holds a line break at character 114: give one key per list item, on one line, fields separated by spaces$/m);
  assert.is(KEY.length, 113);
  assert.not.ok(existsSync(join(t.root, "home/admin")));
  const o = setup(EXAMPLE.replace(`- "${KEY}"`, `- ${JSON.stringify(`from="0.0.0.0/0",command="/bin/sh" ${KEY}`)}`));
  refused(o, /firstboot\.yaml:50:7: admin\.ssh_keys: options before the key \("from="0\.0\.0\.0\/0",command="\/bin\/sh""\) are not accepted: give the key alone, TYPE BASE64 \[COMMENT\]$/m);
  const x = setup(EXAMPLE.replace(`- "${KEY}"`, `- "${KEY.replace("Jwb9+", "Jwb9+AAAA")}"`));
  refused(x, /firstboot\.yaml:50:7: admin\.ssh_keys: the key's data does not hold a ssh-ed25519 key \(damaged or cut short\?\)$/m);
});

test("the .network files come from the overlay's templates (--templates); a missing template or one without %ADDRESS% is refused", () => {
  const tpl = join(TMP, `templates${n++}`);
  cpSync(join(ROOT, "board/rootfs_overlay"), tpl, { recursive: true });
  const ext = join(tpl, "etc/systemd/network/20-portcullis-external.network.in");
  writeFileSync(ext, "[Match]\nMACAddress=%EXT_MAC%\n\n[Network]\n%ADDRESS%\nDNS=192.0.2.53\n%GATEWAY%\nConfigureWithoutCarrier=yes\n");
  const t = setup(EXAMPLE);
  const r = run(t.boot, t.root, { extra: ["--templates", tpl] });
  assert.is(r.status, 0, r.stderr);
  assert.is(read(t.root, "etc/systemd/network/20-portcullis-external.network"),
    "[Match]\nMACAddress=dc:a6:32:00:00:01\n\n[Network]\nAddress=203.0.113.1/24\nAddress=2001:db8:1::1/64\nDNS=192.0.2.53\n" +
    "Gateway=203.0.113.254\nConfigureWithoutCarrier=yes\n");
  assert.is(read(t.root, "etc/systemd/network/20-portcullis-internal.network"),
    readFileSync(join(ROOT, "board/rootfs_overlay/etc/systemd/network/20-portcullis-internal.network.in"), "utf8")
      .replace("%INT_MAC%", "00:e0:4c:00:00:02").replace("%ADDRESS%\n", "Address=198.51.100.1/24\nAddress=2001:db8:2::1/64\n").replace("%GATEWAY%\n", ""));

  writeFileSync(ext, "[Match]\nMACAddress=%EXT_MAC%\n[Network]\nAddress=%ADDRESS%\n");
  const noLine = setup(EXAMPLE);
  refused(noLine, new RegExp(`^${ext.replaceAll(".", "\\.")}: the \\.network template has no %ADDRESS% line\nportcullis firstboot: 1 error applying`, "m"),
    { extra: ["--templates", tpl] });
  rmSync(ext);
  const missing = setup(EXAMPLE);
  refused(missing, /: no such \.network template \(--templates DIR\) file\nportcullis firstboot: 1 error applying/, { extra: ["--templates", tpl] });
});

test("an error while applying (an immutable /etc/hosts): every change undone, the errors file written, the file left in place", () => {
  const t = setup(EXAMPLE.replace("hostname: portcullis", "hostname: edge-2"));
  const hosts = join(t.root, "etc/hosts");
  const before = snapshot(t.root, false);
  assert.is(spawnSync("chattr", ["+i", hosts]).status, 0, "chattr +i");
  try {
    const r = run(t.boot, t.root);
    assert.is(r.status, 1, r.stdout + r.stderr);
    assert.is(r.stdout, "");
    assert.is(r.stderr, `${t.file}: could not apply it: EPERM: operation not permitted, link '${hosts}' -> '${join(t.root, "etc/.hosts.firstboot-old")}'\n` +
      `portcullis firstboot: 1 error applying ${t.file}; every change made was undone, nothing changed (fix the cause and run again, or reboot)\n`);
    assert.is(readFileSync(join(t.boot, "portcullis-firstboot.errors.txt"), "utf8"), r.stderr);
    assert.is(snapshot(t.root, false), before);
    assert.ok(existsSync(t.file));
  } finally {
    spawnSync("chattr", ["-i", hosts]);
  }
  const ok = run(t.boot, t.root);
  assert.is(ok.status, 0, ok.stderr);
  assert.is(read(t.root, "etc/hostname"), "edge-2\n");
});

test("a relative --root is resolved first (useradd --prefix gets an absolute path)", () => {
  const t = setup(EXAMPLE);
  const r = run(t.boot, "root", { cwd: join(t.root, "..") });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^portcullis firstboot: created user admin$/m);
  assert.match(read(t.root, "etc/passwd"), /^admin:x:\d+:\d+:Portcullis admin:\/home\/admin:\/bin\/bash$/m);
  assert.is(read(t.root, "home/admin/.ssh/authorized_keys"), `${KEY}\n`);
});

test("the boot file as a FIFO, a link, a directory or over 1 MiB: one line, no hang, nothing changed", () => {
  const fifo = setup(null);
  assert.is(spawnSync("mkfifo", [fifo.file]).status, 0);
  const before = snapshot(fifo.root);
  const r = run(fifo.boot, fifo.root);
  assert.is(r.status, 1, `${r.signal} ${r.stdout}${r.stderr}`);
  assert.is(r.stderr, `${fifo.file}: the first-boot file must be a regular file, not a FIFO\nportcullis firstboot: 1 error applying ${fifo.file}; nothing changed (fix the file and run again, or reboot)\n`);
  assert.is(snapshot(fifo.root), before);
  const link = setup(null);
  writeFileSync(join(OUTSIDE, "linked.yaml"), EXAMPLE);
  symlinkSync(join(OUTSIDE, "linked.yaml"), link.file);
  const rl = run(link.boot, link.root);
  assert.is(rl.status, 1);
  assert.match(rl.stderr, /^.*firstboot\.yaml: a symbolic link; the first-boot file must be a regular file$/m);
  const big = setup(EXAMPLE);
  truncateSync(big.file, 2 << 20);
  refused(big, /firstboot\.yaml: the first-boot file is 2097152 bytes, over the 1048576-byte limit$/m);
  const dir = setup(null);
  mkdirSync(dir.file);
  const rd = run(dir.boot, dir.root);
  assert.is(rd.status, 1);
  assert.match(rd.stderr, /firstboot\.yaml: the first-boot file must be a regular file, not a directory$/m);
});

test("links in the root are not followed: an /etc/systemd/network pointing outside is refused, nothing written there", () => {
  const t = setup(EXAMPLE);
  const out = join(OUTSIDE, "network");
  const empty = outsideEmpty(out);
  mkdirSync(join(t.root, "etc/systemd"), { recursive: true });
  symlinkSync(out, join(t.root, "etc/systemd/network"));
  refused(t, /^\/etc\/systemd\/network is a symbolic link, not a directory; firstboot does not follow links in the root\nportcullis firstboot: 1 error applying/m);
  empty();
});

test("a later run for the admin it made: a ~/.ssh turned into a link is refused, the linked directory keeps its owner", () => {
  const t = setup(EXAMPLE);
  assert.is(run(t.boot, t.root).status, 0);
  rmSync(join(t.root, "home/admin/.ssh"), { recursive: true });
  symlinkSync("../../etc", join(t.root, "home/admin/.ssh"));
  writeFileSync(t.file, EXAMPLE);
  refused(t, /^\/home\/admin\/\.ssh is not a directory \(a link\?\); firstboot does not follow links in the root$/m);
  assert.is(statSync(join(t.root, "etc")).uid, 0);
  assert.not.ok(existsSync(join(t.root, "etc/authorized_keys")));
});

test("the errors file is never written through a link", () => {
  const t = setup(EXAMPLE.replace("dc:a6:32:00:00:01", "dc:a6:32:00:00"));
  const victim = join(OUTSIDE, "victim");
  writeFileSync(victim, "precious\n");
  symlinkSync(victim, join(t.boot, "portcullis-firstboot.errors.txt"));
  const r = run(t.boot, t.root);
  assert.is(r.status, 1);
  assert.match(r.stderr, /external\.mac "dc:a6:32:00:00" is not a MAC address/);
  assert.is(readFileSync(victim, "utf8"), "precious\n");
});

test("--set-hostname with a root other than / is refused (it would rename the machine running it)", () => {
  const t = setup(EXAMPLE.replace("hostname: portcullis", "hostname: renamed-by-test"));
  const before = snapshot(t.root);
  // In a UTS namespace of its own: if it did rename, only that namespace.
  const r = spawnSync("unshare", ["--uts", "sh", "-c", `node ${CLI} firstboot --boot ${t.boot} --root ${t.root} --set-hostname; echo "hostname=$(hostname)"`], { encoding: "utf8" });
  assert.match(r.stderr, new RegExp(`^--set-hostname renames the running system: use it with --root / only \\(the root here is ${t.root}\\)$`, "m"));
  assert.not.match(r.stdout, /hostname=renamed-by-test/);
  assert.is(snapshot(t.root), before);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
