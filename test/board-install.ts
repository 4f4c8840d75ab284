// The board bundle and its install.sh (board/): `npm run test:board`, not
// part of `npm test` (it builds bundles and needs Debian's cross toolchain).
// Builds the x64 and arm64 bundles, installs the x64 one into temporary
// roots and checks: the manifest, a fresh install, a second run changing
// nothing, an operator-edited policy surviving an upgrade, a bundle whose
// policy does not pass `check` leaving the previous version current,
// rollback, the installed tree running, systemd-analyze verify on the units,
// and the arm64 addon being an aarch64 ELF shared object.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
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

test("a Debian 12 root (debootstrap): install, no-op re-install, verify, the daemon as user portcullis with CAP_NET_ADMIN only (board/chroot-check.sh)", () => {
  bundle("x64");
  const out = ok(sh("bash", ["board/chroot-check.sh", join(OUT, `portcullis-${VERSION}-x64.tar.gz`)]), "chroot-check");
  assert.match(out, /^CapEff:\s+0000000000001000$/m);
  assert.match(out, /^daemon exit status 0$/m);
  assert.match(out, /chroot-check: ok$/m);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
