// `portcullis firstboot` (host/commands/firstboot.ts): the first-boot file of
// a flashed board applied to a temporary root made from the board overlay.
// Checks the exact files written (hostname, hosts, .link, .network, policy
// groups, sudoers, authorized_keys, the user), that the policy passes
// `portcullis check`, that a second run does nothing, and that broken files
// (bad YAML, MAC, address, key, unknown key or group) are refused with
// FILE:LINE:COL and change nothing in the root.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist/host/cli.js");
const EXAMPLE = readFileSync(join(ROOT, "board/firstboot.example.yaml"), "utf8");
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
const run = (boot: string, root: string) =>
  spawnSync("node", [CLI, "firstboot", "--boot", boot, "--root", root], { encoding: "utf8" });

function snapshot(root: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = lstatSync(p);
      lines.push(`${p.slice(root.length)} ${s.mode.toString(8)} ${s.uid} ${s.size} ${s.mtimeMs}${s.isSymbolicLink() ? ` -> ${readlinkSync(p)}` : ""}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(root);
  return lines.join("\n");
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
    /firstboot\.yaml:14:1: unknown key "hostnme" in the first-boot file \(did you mean "hostname"\?\); allowed: version, hostname, external, internal, groups, admin$/m],
  ["an unknown group", (s) => s.replace("front_end: [", "frontend: ["),
    /firstboot\.yaml:36:3: the policy has no group "frontend" \(did you mean "front_end"\?\); its groups: listener, proxy_internal, front_end, office_web_apps$/m],
  ["a gateway without an address of its family", (s) => s.replace("gateway: 203.0.113.254", 'gateway: "2001:db8:9::1"').replace('address: [203.0.113.1/24, "2001:db8:1::1/64"]', "address: 203.0.113.1/24"),
    /firstboot\.yaml:25:12: external\.gateway 2001:db8:9::1 is IPv6 but external has no IPv6 address$/m],
  ["a damaged SSH key", (s) => s.replace("AAAAC3NzaC1lZDI1NTE5AAAAIP6l", "AAAAC3NzaC1yc2EAAAAIP6l"),
    /firstboot\.yaml:50:7: admin\.ssh_keys: the key's data does not hold a ssh-ed25519 key \(damaged or cut short\?\)$/m],
  ["a system user as admin", (s) => s.replace("user: admin", "user: root"),
    /firstboot\.yaml:48:9: admin\.user "root" must be a new login name/m],
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
    "Before=portcullis-rules.service portcullis.service systemd-networkd.service network-pre.target ssh.service sysinit.target shutdown.target",
    "WantedBy=multi-user.target"]) {
    assert.ok(lines.includes(l), l);
  }
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
