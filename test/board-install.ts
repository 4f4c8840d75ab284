// The board bundle and its install.sh (board/): `npm run test:board`, not
// part of `npm test` (it builds bundles and needs Debian's cross toolchain).
// Builds the x64 and arm64 bundles, installs the x64 one into temporary
// roots and checks: the manifest, a fresh install, a second run changing
// nothing, an operator-edited policy surviving an upgrade, a bundle whose
// policy does not pass `check` leaving the previous version current,
// rollback, the installed tree running, systemd-analyze verify on the units,
// and the arm64 addon being an aarch64 ELF shared object.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const TMP = mkdtempSync(join("/var/tmp", "portcullis-board-test-"));
const OUT = join(TMP, "out");

function sh(cmd: string, args: string[], o: { cwd?: string; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: o.cwd ?? ROOT, encoding: "utf8", input: o.input, maxBuffer: 64 << 20 });
}
function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

// One unpacked bundle per arch (built once).
const unpacked: Record<string, string> = {};
function bundle(arch: "x64" | "arm64"): string {
  if (unpacked[arch]) return unpacked[arch]!;
  const out = ok(sh("bash", ["board/bundle.sh", "--arch", arch, "--no-build", "--out", OUT]), `bundle ${arch}`);
  const tarball = out.trim().split("\n").pop()!;
  assert.ok(tarball.endsWith(`portcullis-${VERSION}-${arch}.tar.gz`), tarball);
  const dir = join(TMP, `unpacked-${arch}`);
  mkdirSync(dir, { recursive: true });
  ok(sh("tar", ["-C", dir, "-xzf", tarball]), "tar x");
  return (unpacked[arch] = join(dir, `portcullis-${VERSION}-${arch}`));
}

// A copy of the x64 bundle as another version, with `mutate` applied and the
// manifest made again (what a newer bundle looks like).
function variant(version: string, mutate: (dir: string) => void = () => {}): string {
  const dir = join(TMP, `variant-${version}`, `portcullis-${version}-x64`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(bundle("x64"), dir, { recursive: true });
  writeFileSync(join(dir, "VERSION"), `${version}\n`);
  const pj = join(dir, "app", "package.json");
  writeFileSync(pj, readFileSync(pj, "utf8").replace(`"version": "${VERSION}"`, `"version": "${version}"`));
  mutate(dir);
  ok(sh("bash", ["-c", "find . -type f ! -name MANIFEST.sha256 -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum > MANIFEST.sha256"], { cwd: dir }), "manifest");
  return dir;
}

// A root with just enough of /etc for useradd --prefix.
let roots = 0;
function newRoot(): string {
  const r = join(TMP, `root${roots++}`);
  mkdirSync(join(r, "etc"), { recursive: true });
  writeFileSync(join(r, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  writeFileSync(join(r, "etc/group"), "root:x:0:\n");
  writeFileSync(join(r, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o600 });
  writeFileSync(join(r, "etc/gshadow"), "root:*::\n", { mode: 0o600 });
  return r;
}
const install = (b: string, root: string, ...extra: string[]) => sh(join(b, "install.sh"), ["--root", root, ...extra]);
const current = (root: string) => readlinkSync(join(root, "opt/portcullis/current"));

// Every path under root with its type, size, mode and mtime.
function snapshot(root: string, dirTimes = true): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = lstatSync(p);
      lines.push(`${p.slice(root.length)} ${s.mode.toString(8)} ${s.size} ${s.isDirectory() && !dirTimes ? "" : s.mtimeMs}${s.isSymbolicLink() ? " -> " + readlinkSync(p) : ""}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(root);
  return lines.join("\n");
}

test("the manifest verifies, and install.sh refuses a damaged bundle", () => {
  const b = bundle("x64");
  ok(sh("sha256sum", ["--quiet", "-c", "MANIFEST.sha256"], { cwd: b }), "sha256sum -c");
  const manifest = readFileSync(join(b, "MANIFEST.sha256"), "utf8");
  for (const f of ["app/build/release.wasm", "app/build/Release/nfq.node", "app/dist/host/cli.js", "install.sh",
    "overlay/etc/systemd/system/portcullis.service", "overlay/etc/portcullis/policy.yaml", "app/node_modules/commander/package.json",
    "app/node_modules/yaml/package.json", "app/node_modules/@assemblyscript/loader/package.json"]) {
    assert.ok(manifest.includes(`  ${f}\n`), `manifest lists ${f}`);
  }
  const bad = variant("9.9.9");
  writeFileSync(join(bad, "app/dist/host/cli.js"), "// damaged\n", { flag: "a" });
  const r = install(bad, newRoot());
  assert.is.not(r.status, 0);
  assert.match(r.stdout, /MANIFEST.sha256 does not verify/);
});

test("fresh install into an empty root; a second run changes nothing and says so", () => {
  const b = bundle("x64");
  const root = newRoot();
  const first = ok(install(b, root), "install");
  assert.match(first, new RegExp(`current is ${VERSION.replace(/\./g, "\\.")}`));
  assert.is(current(root), VERSION);
  for (const f of ["etc/portcullis/policy.yaml", "etc/portcullis/board.yaml", "etc/systemd/system/portcullis.service",
    "etc/systemd/system/portcullis-rules.service", "etc/sysctl.d/90-portcullis.conf",
    `opt/portcullis/${VERSION}/dist/host/cli.js`, `opt/portcullis/${VERSION}/build/release.wasm`, `opt/portcullis/${VERSION}/build/Release/nfq.node`]) {
    assert.ok(existsSync(join(root, f)), f);
  }
  assert.is(readFileSync(join(root, "etc/portcullis/policy.yaml"), "utf8"), readFileSync(join(ROOT, "host/policy/default.yaml"), "utf8"));
  assert.is(readlinkSync(join(root, "etc/systemd/system/multi-user.target.wants/portcullis.service")), "/etc/systemd/system/portcullis.service");
  assert.match(readFileSync(join(root, "etc/passwd"), "utf8"), /^portcullis:x:\d+:\d+::\/var\/lib\/portcullis:\/usr\/sbin\/nologin$/m);
  const before = snapshot(root);
  const second = ok(install(b, root), "second install");
  assert.match(second, /nothing to do/);
  assert.is(snapshot(root), before);
});

test("the installed tree runs: check, rules, the addon loads", () => {
  const b = bundle("x64");
  const root = newRoot();
  ok(install(b, root), "install");
  const cli = join(root, "opt/portcullis/current/dist/host/cli.js");
  assert.match(ok(sh("node", [cli, "--version"]), "--version"), new RegExp(VERSION.replace(/\./g, "\\.")));
  ok(sh("node", [cli, "check", join(root, "etc/portcullis/policy.yaml")]), "check");
  const rules = ok(sh("node", [cli, "rules", "--config", join(root, "etc/portcullis/board.yaml")]), "rules");
  assert.match(rules, /ext0/);
  assert.match(rules, /int0/);
  const addon = join(root, "opt/portcullis/current/build/Release/nfq.node");
  ok(sh("node", ["-e", `require(${JSON.stringify(addon)})`]), "addon loads");
});

test("MACs fill the .link templates", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root, "--ext-mac", "dc:a6:32:00:00:01", "--int-mac", "00:e0:4c:00:00:02"), "install");
  const ext = readFileSync(join(root, "etc/systemd/network/10-external.link"), "utf8");
  const int = readFileSync(join(root, "etc/systemd/network/11-internal.link"), "utf8");
  assert.match(ext, /^MACAddress=dc:a6:32:00:00:01$/m);
  assert.match(ext, /^Name=ext0$/m);
  assert.match(int, /^MACAddress=00:e0:4c:00:00:02$/m);
  assert.match(int, /^Name=int0$/m);
});

test("an operator-edited policy survives an upgrade; rollback returns to the previous version", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root), "install");
  const policy = join(root, "etc/portcullis/policy.yaml");
  const edited = readFileSync(policy, "utf8").replace("external_http_80: true", "external_http_80: false");
  assert.is.not(edited, readFileSync(policy, "utf8"));
  writeFileSync(policy, edited);
  // The new version ships a changed default policy too.
  const next = variant("0.1.99", (d) => {
    const p = join(d, "overlay/etc/portcullis/policy.yaml");
    writeFileSync(p, readFileSync(p, "utf8") + "# shipped with 0.1.99\n");
  });
  const out = ok(install(next, root), "upgrade");
  assert.match(out, /kept the operator's/);
  assert.is(readFileSync(policy, "utf8"), edited);
  assert.match(readFileSync(`${policy}.new`, "utf8"), /# shipped with 0\.1\.99/);
  assert.is(current(root), "0.1.99");
  assert.is(readlinkSync(join(root, "opt/portcullis/previous")), VERSION);
  // An unedited board.yaml is replaced by the shipped one silently: unchanged here.
  assert.not.ok(existsSync(join(root, "etc/portcullis/board.yaml.new")));
  assert.match(ok(install(next, root), "again"), /nothing to do/);

  assert.match(ok(install(next, root, "--rollback"), "rollback"), /rolled back/);
  assert.is(current(root), VERSION);
  assert.is(readlinkSync(join(root, "opt/portcullis/previous")), "0.1.99");
  assert.ok(existsSync(join(root, "opt/portcullis/0.1.99/dist/host/cli.js")), "the rolled-back-from version is kept");
  assert.is(readFileSync(policy, "utf8"), edited);
});

test("an unedited policy is upgraded with the new default", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root), "install");
  const next = variant("0.1.98", (d) => {
    const p = join(d, "overlay/etc/portcullis/policy.yaml");
    writeFileSync(p, readFileSync(p, "utf8") + "# shipped with 0.1.98\n");
  });
  ok(install(next, root), "upgrade");
  assert.match(readFileSync(join(root, "etc/portcullis/policy.yaml"), "utf8"), /# shipped with 0\.1\.98/);
  assert.not.ok(existsSync(join(root, "etc/portcullis/policy.yaml.new")));
});

// The configuration an install leaves in a root, for comparing byte for
// byte: every file's mode and content, every link's target under etc/,
// usr/local/ and opt/, except the installed trees and the undo record
// themselves (current/previous apart).
function configState(root: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const rel = p.slice(root.length);
      if (/^\/opt\/portcullis\/(?!\.install$)[^/]+$/.test(rel) || /^\/opt\/portcullis\/\.install\/undo/.test(rel)) continue;
      const s = lstatSync(p);
      const sum = s.isFile() ? createHash("sha256").update(readFileSync(p)).digest("hex") : "";
      lines.push(`${rel} ${s.mode.toString(8)} ${sum}${s.isSymbolicLink() ? " -> " + readlinkSync(p) : ""}`);
      if (s.isDirectory()) walk(p);
    }
  };
  for (const top of ["etc", "usr/local", "opt"]) if (existsSync(join(root, top))) walk(join(root, top));
  return lines.join("\n");
}
const MACS = ["--ext-mac", "dc:a6:32:00:00:01", "--int-mac", "00:e0:4c:00:00:02"];
// A newer bundle that changes a unit, the default policy and the sysctl file,
// and adds a file to the overlay.
const changedOverlay = (version: string, extra: (d: string) => void = () => {}) => variant(version, (d) => {
  for (const f of ["etc/systemd/system/portcullis.service", "etc/portcullis/policy.yaml", "etc/sysctl.d/90-portcullis.conf"]) {
    writeFileSync(join(d, "overlay", f), `${readFileSync(join(d, "overlay", f), "utf8")}# changed in ${version}\n`);
  }
  writeFileSync(join(d, "overlay/etc/sysctl.d/91-portcullis-extra.conf"), `# new in ${version}\n`);
  extra(d);
});

test("reinstalling the same version with other contents leaves the live tree alone, beside it, and rollback returns to it", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root), "install");
  const live = join(root, "opt/portcullis", VERSION);
  const liveBefore = snapshot(live);
  const same = variant(VERSION, (d) => writeFileSync(join(d, "app/dist/host/another-build.js"), "// another build\n"));
  const out = ok(install(same, root), "reinstall");
  const name = current(root);
  assert.match(name, new RegExp(`^${VERSION.replace(/\./g, "\\.")}\\+[0-9a-f]{12}$`));
  assert.ok(out.includes(`install: ${join(root, "opt/portcullis", VERSION)} holds another bundle of version ${VERSION}: this one goes to ${join(root, "opt/portcullis", name)}\n`), out);
  assert.is(readlinkSync(join(root, "opt/portcullis/previous")), VERSION);
  assert.is(snapshot(live), liveBefore);
  assert.ok(existsSync(join(root, "opt/portcullis", name, "dist/host/another-build.js")));
  assert.match(ok(install(same, root), "again"), /nothing to do/);
  assert.match(ok(install(same, root, "--rollback"), "rollback"), new RegExp(`rolled back: current is ${VERSION.replace(/\./g, "\\.")} \\(was ${name.replace(/[.+]/g, "\\$&")}\\)`));
  assert.is(current(root), VERSION);
  assert.is(snapshot(live), liveBefore);
});

test("--rollback puts back the previous version's units and overlay byte for byte, links where they were; a second one goes forward again", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root, ...MACS), "install");
  const v1 = configState(root);
  const next = changedOverlay("0.1.95");
  ok(install(next, root, ...MACS), "upgrade");
  const v2 = configState(root);
  assert.is.not(v2, v1);
  assert.match(readFileSync(join(root, "etc/systemd/system/portcullis.service"), "utf8"), /# changed in 0\.1\.95\n$/);
  const back = ok(install(next, root, "--rollback"), "rollback");
  assert.match(back, /^install: restored \/etc\/systemd\/system\/portcullis\.service$/m);
  assert.match(back, /^install: restored \/etc\/sysctl\.d\/91-portcullis-extra\.conf$/m);
  assert.is(configState(root), v1);
  assert.is(current(root), VERSION);
  assert.is(readlinkSync(join(root, "opt/portcullis/previous")), "0.1.95");
  ok(install(next, root, "--rollback"), "forward");
  assert.is(configState(root), v2);
  assert.is(current(root), "0.1.95");
  assert.is(readlinkSync(join(root, "opt/portcullis/previous")), VERSION);
  // A file the operator changed after the install is kept, and said.
  const policy = join(root, "etc/portcullis/policy.yaml");
  writeFileSync(policy, `${readFileSync(policy, "utf8")}# the operator's\n`);
  const kept = ok(install(next, root, "--rollback"), "rollback with an edit");
  assert.match(kept, /^install: kept \/etc\/portcullis\/policy\.yaml: it was changed after the install$/m);
  assert.match(readFileSync(policy, "utf8"), /# the operator's\n$/);
  assert.is(readFileSync(join(root, "etc/systemd/system/portcullis.service"), "utf8"), readFileSync(join(bundle("x64"), "overlay/etc/systemd/system/portcullis.service"), "utf8"));
});

test("a bundle whose policy fails check leaves the previous version current and the root unchanged", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root), "install");
  // Directory times aside (the new version is unpacked beside the others, then removed).
  const before = snapshot(root, false);
  const broken = variant("0.1.97", (d) => {
    writeFileSync(join(d, "overlay/etc/portcullis/policy.yaml"), "version: 1\ndefault: deny\nrules:\n  - action: allow\n    proto: bogus\n");
  });
  const r = install(broken, root);
  assert.is.not(r.status, 0, r.stdout);
  assert.match(r.stdout, /does not pass portcullis 0\.1\.97 check; nothing changed/);
  assert.is(current(root), VERSION);
  assert.not.ok(existsSync(join(root, "opt/portcullis/0.1.97")));
  assert.not.ok(existsSync(join(root, "opt/portcullis/0.1.97.tmp")));
  assert.is(snapshot(root, false), before);
});

test("rollback without a previous version is refused", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root), "install");
  const r = install(bundle("x64"), root, "--rollback");
  assert.is.not(r.status, 0);
  assert.match(r.stdout, /no previous version/);
});

test("systemd-analyze verify accepts the units", () => {
  const units = join(ROOT, "board/rootfs_overlay/etc/systemd/system");
  const r = sh("systemd-analyze", ["verify", join(units, "portcullis.service"), join(units, "portcullis-rules.service")]);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr.trim(), "", r.stderr);
  const unit = readFileSync(join(units, "portcullis.service"), "utf8");
  for (const line of ["User=portcullis", "AmbientCapabilities=CAP_NET_ADMIN", "CapabilityBoundingSet=CAP_NET_ADMIN", "NoNewPrivileges=yes",
    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
    "StateDirectory=portcullis", "RuntimeDirectory=portcullis", "Restart=on-failure", "Requires=portcullis-rules.service"]) {
    assert.ok(unit.split("\n").includes(line), line);
  }
  const rules = readFileSync(join(units, "portcullis-rules.service"), "utf8");
  assert.match(rules, /^Type=oneshot$/m);
  assert.match(rules, /^Before=portcullis\.service/m);
  assert.not.match(rules, /^ExecStop=/m);
});

test("the arm64 bundle's addon is an aarch64 ELF shared object", () => {
  const b = bundle("arm64");
  const addon = join(b, "app/build/Release/nfq.node");
  assert.ok(existsSync(addon), "the arm64 bundle has no addon (is crossbuild-essential-arm64 / libnetfilter-queue-dev:arm64 installed?)");
  const f = ok(sh("file", ["-b", addon]), "file");
  assert.match(f, /^ELF 64-bit LSB shared object, ARM aarch64/);
  assert.ok(statSync(addon).size > 10000);
});

test("each bundle carries keepalived and conntrackd of its architecture, with what they depend on, as a local apt repository", () => {
  for (const [arch, debArch] of [["x64", "amd64"], ["arm64", "arm64"]] as const) {
    const debs = join(bundle(arch), "debs");
    const files = readdirSync(debs).filter((f) => f.endsWith(".deb"));
    for (const p of ["keepalived", "conntrackd", "libnetfilter-conntrack3", "libnl-3-200"]) {
      assert.ok(files.some((f) => f.startsWith(`${p}_`) && f.endsWith(`_${debArch}.deb`)), `${arch}: no ${p} for ${debArch} in ${files.join(" ")}`);
    }
    assert.equal(files.filter((f) => !f.endsWith(`_${debArch}.deb`) && !f.endsWith("_all.deb")), [], `${arch}: a package of another architecture`);
    // The index names every file, and only those.
    const index = readFileSync(join(debs, "Packages"), "utf8");
    const named = [...index.matchAll(/^Filename: \.\/(.+)$/gm)].map((m) => m[1]!).sort();
    assert.equal(named, [...files].sort(), `${arch}: Packages`);
    // The manifest covers them.
    const manifest = readFileSync(join(bundle(arch), "MANIFEST.sha256"), "utf8");
    assert.ok(files.every((f) => manifest.includes(`  debs/${f}\n`)), `${arch}: debs/ not in the manifest`);
  }
});

test("the installed tree's daemon passes the reference-topology demo (18 probes)", () => {
  const root = newRoot();
  ok(install(bundle("x64"), root), "install");
  const r = sh("node", [join(root, "opt/portcullis/current/dist/host/cli.js"), "demo"], { cwd: "/" });
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^18 probes as expected, 0 not$/m);
});

test("the arm64 bundle under qemu-user: the addon loads in arm64 Node, check passes (board/arm64-qemu-check.sh)", () => {
  bundle("arm64");
  const out = ok(sh("bash", ["board/arm64-qemu-check.sh", join(OUT, `portcullis-${VERSION}-arm64.tar.gz`)]), "arm64-qemu-check");
  assert.match(out, /^node v\d+\.\d+\.\d+ arm64 addon exports: .*Queue/m);
  assert.match(out, /arm64-qemu-check: ok$/m);
});

test("a Debian 12 root (debootstrap): install, no-op re-install, verify, the daemon as user portcullis with CAP_NET_ADMIN only, an HA board's keepalived and conntrackd from the bundle with no network (board/chroot-check.sh)", () => {
  bundle("x64");
  const out = ok(sh("bash", ["board/chroot-check.sh", join(OUT, `portcullis-${VERSION}-x64.tar.gz`)]), "chroot-check");
  assert.match(out, /^CapEff:\s+0000000000001000$/m);
  assert.match(out, /^daemon exit status 0$/m);
  assert.match(out, /^install: installed keepalived conntrackd from the bundle$/m);
  assert.match(out, /^Keepalived v2\.2\.7 /m);
  assert.match(out, /chroot-check: ok$/m);
});

// Stands in for systemctl in a chroot where no systemd runs: `restart
// portcullis.service` starts what the installed unit's ExecStart says (the
// installed version's daemon, for real) and succeeds if it is still up 3 s
// later; `is-active` says whether it is.
const FAKE_SYSTEMCTL = `#!/bin/sh
pidf=/run/portcullis-test.pid
echo "systemctl $*" >> /run/systemctl-test.log
alive() { [ -f $pidf ] && kill -0 "$(cat $pidf)" 2>/dev/null; }
case "$1" in
  daemon-reload) exit 0 ;;
  is-active) alive ;;
  restart|stop)
    if alive; then kill "$(cat $pidf)"; while kill -0 "$(cat $pidf)" 2>/dev/null; do sleep 0.1; done; fi
    rm -f $pidf
    [ "$1" = stop ] && exit 0
    cmd="$(sed -n 's/^ExecStart=//p' /etc/systemd/system/portcullis.service)"
    mkdir -p /run/portcullis /var/lib/portcullis
    $cmd >> /run/portcullis-test.log 2>&1 &
    echo $! > $pidf
    sleep 3
    alive ;;
  *) echo "fake systemctl: $*" >&2; exit 1 ;;
esac
`;

test("a failed start (a Debian 12 chroot, the daemon really started): back to the previous version with its units, overlay and links, byte for byte", () => {
  const base = "/var/tmp/portcullis-debian12"; // debootstrapped by chroot-check.sh (the test before)
  assert.ok(existsSync(join(base, "usr/bin/systemd-analyze")), `${base} is missing: run board/chroot-check.sh once`);
  const C = mkdtempSync("/var/tmp/portcullis-failed-start-");
  const ns = `pcfs${process.pid}`;
  try {
    ok(sh("cp", ["-a", `${base}/.`, `${C}/`]), "copy the root");
    ok(sh("cp", [readlinkSync("/proc/self/exe"), join(C, "usr/bin/node")]), "node");
    mkdirSync(join(C, "run/systemd/system"), { recursive: true }); // what install.sh takes for a live system
    writeFileSync(join(C, "usr/local/sbin/systemctl"), FAKE_SYSTEMCTL, { mode: 0o755 });
    const b1 = bundle("x64");
    const b2 = changedOverlay("0.1.94");
    // Passes check, and its daemon exits at once: a version that does not start.
    const b3 = changedOverlay("0.1.93", (d) => {
      const cli = join(d, "app/dist/host/cli.js");
      writeFileSync(cli, `if (process.argv[2] === "run") { console.error("0.1.93 does not start"); process.exit(1); }\n${readFileSync(cli, "utf8")}`);
    });
    for (const [b, to] of [[b1, "b1"], [b2, "b2"], [b3, "b3"]] as const) ok(sh("cp", ["-a", b, join(C, "root", to)]), "copy a bundle");
    ok(sh("ip", ["netns", "add", ns]), "netns");
    ok(sh("ip", ["-n", ns, "link", "add", "ext0", "type", "veth", "peer", "name", "int0"]), "veth");
    for (const d of ["lo", "ext0", "int0"]) ok(sh("ip", ["-n", ns, "link", "set", d, "up"]), "up");
    // Each command in the namespace with /proc and /sys of its own (ip netns
    // exec gives it a mount namespace: the mounts go with it).
    const inC = (...args: string[]) => spawnSync("ip", ["netns", "exec", ns, "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "sh", "-ec", 'mount -t proc proc "$0/proc"; mount -t sysfs sysfs "$0/sys"; exec chroot "$0" "$@"', C, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
    ok(inC("/root/b1/install.sh", ...MACS), "install 0.1.0");
    ok(inC("systemctl", "restart", "portcullis.service"), `start 0.1.0: ${readFileSync(join(C, "run/portcullis-test.log"), "utf8")}`);
    ok(inC("/root/b2/install.sh", ...MACS), "upgrade to 0.1.94 (restarted)");
    assert.is(current(C), "0.1.94");
    assert.is(readlinkSync(join(C, "opt/portcullis/previous")), VERSION);
    const before = configState(C);
    const undo = join(C, "opt/portcullis/.install/undo");
    const undoBefore = existsSync(undo) ? snapshot(undo) : "(none)";
    const r = inC("/root/b3/install.sh", ...MACS);
    assert.is(r.status, 1, `${r.stdout}\n${r.stderr}`);
    assert.is(current(C), "0.1.94");
    assert.is(readlinkSync(join(C, "opt/portcullis/previous")), VERSION);
    assert.is(configState(C), before);
    assert.match(readFileSync(join(C, "etc/systemd/system/portcullis.service"), "utf8"), /# changed in 0\.1\.94\n$/);
    assert.match(readFileSync(join(C, "etc/sysctl.d/91-portcullis-extra.conf"), "utf8"), /^# new in 0\.1\.94\n$/);
    assert.not.ok(existsSync(join(C, "opt/portcullis/0.1.93")));
    assert.is(existsSync(undo) ? snapshot(undo) : "(none)", undoBefore);
    assert.is.not(undoBefore, "(none)");
    assert.match(r.stdout, /^install: the daemon did not start on 0\.1\.93; switching back to 0\.1\.94 with its files$/m);
    assert.match(r.stdout, /^install: restored \/etc\/systemd\/system\/portcullis\.service$/m);
    assert.match(r.stdout, /^install: restored \/etc\/sysctl\.d\/91-portcullis-extra\.conf$/m);
    // 0.1.94 runs again, and a rollback from there still reaches 0.1.0 with its files.
    assert.is(inC("systemctl", "is-active", "-q", "portcullis.service").status, 0, "0.1.94 is running again");
    assert.match(readFileSync(join(C, "run/portcullis-test.log"), "utf8"), /0\.1\.93 does not start/);
    ok(inC("/root/b2/install.sh", "--rollback"), "rollback to 0.1.0");
    assert.is(current(C), VERSION);
    assert.is(readFileSync(join(C, "etc/systemd/system/portcullis.service"), "utf8"), readFileSync(join(b1, "overlay/etc/systemd/system/portcullis.service"), "utf8"));
    assert.not.ok(existsSync(join(C, "etc/sysctl.d/91-portcullis-extra.conf")));
    assert.is(inC("systemctl", "is-active", "-q", "portcullis.service").status, 0, "0.1.0 is running");
  } finally {
    spawnSync("ip", ["netns", "exec", ns, "chroot", C, "/usr/local/sbin/systemctl", "stop", "portcullis.service"]);
    spawnSync("ip", ["netns", "del", ns]);
    if (!readFileSync("/proc/mounts", "utf8").includes(` ${C}/`)) rmSync(C, { recursive: true, force: true });
  }
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
