// The Debian package (board/deb.sh) and its apt repository (board/repo.sh):
// `npm run test:board`, not part of `npm test`. Builds the amd64 and arm64
// packages (lintian runs in deb.sh: a build with a lintian error or an
// unjustified warning fails), makes newer ones from the amd64 package
// (dpkg-deb -R, a new Version and a change, dpkg-deb -b), and in fresh
// copies of the Debian 12 root board/chroot-check.sh debootstraps checks:
// apt install, remove and purge against the file list and the user database
// (chroot); under a real systemd (systemd-nspawn, systemd as PID 1, as
// board/nspawn-check.sh --deb boots it) the units enabled and the daemon READY, an
// operator's policy edit kept across an upgrade with --force-confold and the
// daemon restarted, an upgrade whose check fails leaving the old daemon and
// rules running, the way back and a downgrade with apt install ./older.deb,
// remove stopping the daemon; the arm64 package's addon under qemu-user on
// the package's own arm64 Node; and a client root upgrading from the signed
// repository with apt upgrade, refusing an unsigned or wrongly signed one.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const TMP = mkdtempSync(join("/var/tmp", "pdeb-test-"));
const OUT = join(TMP, "out");
const BASE = "/var/tmp/portcullis-debian12"; // board/chroot-check.sh's Debian 12 root

function sh(cmd: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: o.cwd ?? ROOT, encoding: "utf8", env: o.env ?? process.env, maxBuffer: 256 << 20 });
}
function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

const built: Record<string, string> = {};
function deb(arch: "amd64" | "arm64"): string {
  if (built[arch]) return built[arch]!;
  const r = sh("bash", ["board/deb.sh", "--arch", arch, "--no-build", "--out", OUT]);
  const out = ok(r, `deb.sh --arch ${arch}`);
  const file = out.trim().split("\n").pop()!;
  assert.is(file, join(OUT, `portcullis_${VERSION}_${arch}.deb`));
  assert.not.match(r.stderr, /^[EW]: /m, "lintian: no error, no warning left");
  return (built[arch] = file);
}

// The amd64 package as another version, with `mutate` applied to its
// unpacked tree (dpkg-deb -R): what a newer (or broken) build looks like.
function variant(version: string, mutate: (dir: string) => void = () => {}): string {
  const dir = join(TMP, `variant-${version}`);
  rmSync(dir, { recursive: true, force: true });
  ok(sh("dpkg-deb", ["-R", deb("amd64"), dir]), "dpkg-deb -R");
  const re = new RegExp(VERSION.replace(/\./g, "\\."), "g");
  for (const f of ["DEBIAN/control", "DEBIAN/postinst", "usr/lib/portcullis/app/package.json"]) {
    writeFileSync(join(dir, f), readFileSync(join(dir, f), "utf8").replace(f === "DEBIAN/control" ? /^Version: .*$/m : re, f === "DEBIAN/control" ? `Version: ${version}` : version));
  }
  mutate(dir);
  ok(sh("sh", ["-c", "find . \\( -path ./DEBIAN -o -path ./etc \\) -prune -o -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums"], { cwd: dir }), "md5sums");
  const file = join(TMP, "variants", `portcullis_${version}_amd64.deb`);
  mkdirSync(join(TMP, "variants"), { recursive: true });
  ok(sh("dpkg-deb", ["--build", "-Zgzip", "-z1", "--root-owner-group", dir, file]), "dpkg-deb --build");
  rmSync(dir, { recursive: true, force: true });
  return file;
}
const NEXT = "0.1.1", BROKEN = "0.1.2";
const variants: Record<string, string> = {};
function next(): string {
  // Ships a changed default policy: with the operator's edit, dpkg's conffile question.
  return (variants[NEXT] ??= variant(NEXT, (d) => {
    const p = join(d, "etc/portcullis/policy.yaml");
    writeFileSync(p, `${readFileSync(p, "utf8")}# shipped with ${NEXT}\n`);
  }));
}
function broken(): string {
  // Its `portcullis check` rejects every policy: its postinst must refuse.
  return (variants[BROKEN] ??= variant(BROKEN, (d) => {
    const cli = join(d, "usr/lib/portcullis/app/dist/host/cli.js");
    writeFileSync(cli, `if (process.argv[2] === "check") { console.error("${BROKEN} rejects every policy"); process.exit(1); }\n${readFileSync(cli, "utf8")}`);
  }));
}

function base(): string {
  if (!existsSync(join(BASE, "usr/lib/systemd/systemd"))) {
    const b = ok(sh("bash", ["board/bundle.sh", "--arch", "x64", "--no-build", "--out", OUT]), "bundle").trim().split("\n").pop()!;
    ok(sh("bash", ["board/chroot-check.sh", b, BASE]), "chroot-check (makes the Debian root)");
  }
  return BASE;
}
// A throwaway copy of the Debian 12 root.
let roots = 0;
function newRoot(): string {
  const r = join(TMP, `root${roots++}`);
  ok(sh("cp", ["-a", `${base()}/.`, `${r}/`]), "copy the root");
  return r;
}
// A command in the chroot with its own /proc (unshare -m: the mount goes with it).
function inRoot(r: string, script: string): SpawnSyncReturns<string> {
  return sh("unshare", ["-m", "sh", "-c", 'mount -t proc proc "$0/proc" && exec chroot "$0" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -ec "$1"', r, script]);
}
// Every path of a root with its type and mode, less apt's and dpkg's own
// records and logs (what any apt run changes).
function tree(r: string): string[] {
  // (and /run: a tmpfs on a running system, where systemctl leaves its marks)
  const skip = /^\/(var\/lib\/dpkg|var\/lib\/apt|var\/cache\/apt|var\/cache\/debconf|var\/log|proc|run|root\/debs)(\/|$)/;
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name), rel = p.slice(r.length);
      if (skip.test(rel)) continue;
      const s = lstatSync(p);
      out.push(`${rel} ${s.mode.toString(8)} ${s.uid}:${s.gid}${s.isSymbolicLink() ? ` -> ${readlinkSync(p)}` : ""}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(r);
  return out;
}

test("deb.sh builds both packages, lintian-clean: the fields, the conffiles, the file list, the scripts", () => {
  const a = deb("amd64");
  const f = ok(sh("dpkg-deb", ["-f", a]), "dpkg-deb -f");
  assert.match(f, /^Package: portcullis$/m);
  assert.match(f, new RegExp(`^Version: ${VERSION.replace(/\./g, "\\.")}$`, "m"));
  assert.match(f, /^Architecture: amd64$/m);
  assert.match(f, /^Depends: .*libnetfilter-queue1, libnetfilter-conntrack3, libnfnetlink0, nftables \| iptables, systemd$/m);
  // The HA pair's programs: suggested, not recommended: a single appliance
  // does without them, apt installs recommendations by default, and
  // Debian's conntrackd starts its own service with a sample configuration.
  assert.match(f, /^Suggests: keepalived, conntrackd$/m);
  assert.not.match(f, /^Recommends:/m);
  assert.is(ok(sh("sh", ["-c", `dpkg-deb --ctrl-tarfile ${a} | tar -xO ./conffiles`]), "conffiles"),
    "/etc/portcullis/board.yaml\n/etc/portcullis/policy.yaml\n/etc/sysctl.d/90-portcullis.conf\n");
  const files = ok(sh("dpkg-deb", ["-c", a]), "dpkg-deb -c");
  for (const p of ["./usr/bin/portcullis", "./usr/lib/portcullis/node/bin/node", "./usr/lib/portcullis/app/dist/host/cli.js",
    "./usr/lib/portcullis/app/build/release.wasm", "./usr/lib/portcullis/app/build/Release/nfq.node",
    "./usr/lib/portcullis/app/overlay/etc/systemd/network/10-external.link.in", "./lib/systemd/system/portcullis.service",
    "./lib/systemd/system/portcullis-rules.service", "./lib/systemd/system/portcullis-firstboot.service",
    "./usr/lib/sysusers.d/portcullis.conf", "./usr/share/lintian/overrides/portcullis", "./usr/share/doc/portcullis/copyright"]) {
    assert.ok(files.includes(` ${p}\n`), p);
  }
  assert.not.match(files, /\.\/opt\//);
  for (const line of files.trim().split("\n")) assert.match(line, /^\S+ root\/root /, line);
  // The units: the overlay's, with the package's paths.
  const unit = ok(sh("sh", ["-c", `dpkg-deb --fsys-tarfile ${a} | tar -xO ./lib/systemd/system/portcullis.service`]), "unit");
  assert.match(unit, /^ExecStart=\/usr\/lib\/portcullis\/node\/bin\/node \/usr\/lib\/portcullis\/app\/dist\/host\/cli\.js run /m);
  const overlay = readFileSync(join(ROOT, "board/rootfs_overlay/etc/systemd/system/portcullis.service"), "utf8");
  assert.is(unit.replace(/\/usr\/lib\/portcullis\/node\/bin\/node /g, "/usr/bin/node ").replace(/\/usr\/lib\/portcullis\/app\//g, "/opt/portcullis/current/"), overlay);
  const m = deb("arm64");
  assert.match(ok(sh("dpkg-deb", ["-f", m, "Architecture"]), "arch"), /^arm64$/m);
});

test("the arm64 package: its addon and its Node are aarch64, and its Node loads the addon and checks the policy under qemu-user", () => {
  const x = join(TMP, "arm64-x");
  ok(sh("dpkg-deb", ["-x", deb("arm64"), x]), "dpkg-deb -x");
  const app = join(x, "usr/lib/portcullis/app"), node = join(x, "usr/lib/portcullis/node/bin/node");
  assert.match(ok(sh("file", ["-b", join(app, "build/Release/nfq.node")]), "file"), /^ELF 64-bit LSB shared object, ARM aarch64/);
  assert.match(ok(sh("file", ["-b", node]), "file"), /^ELF 64-bit LSB (pie )?executable, ARM aarch64/);
  // The cross toolchain's arm64 libc and libstdc++, the arm64 libnetfilter_queue of this machine's multiarch directory.
  const q = (...args: string[]) => sh("qemu-aarch64-static", ["-L", "/usr/aarch64-linux-gnu", "-E", "LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib:/usr/lib/aarch64-linux-gnu", node, ...args]);
  const out = ok(q("-e", `const m = require(${JSON.stringify(join(app, "build/Release/nfq.node"))}); console.log(process.version, process.arch, typeof m.Queue)`), "the addon under qemu");
  assert.match(out, /^v20\.\d+\.\d+ arm64 function$/m);
  assert.match(ok(q(join(app, "dist/host/cli.js"), "check", join(x, "etc/portcullis/policy.yaml")), "check under qemu"), /default: deny/);
});

test("a Debian 12 root (chroot): apt install ./deb fetching a dependency from Debian, the user and the enable links; remove keeps the config; purge leaves nothing", () => {
  const r = newRoot();
  mkdirSync(join(r, "root/debs"));
  cpSync(deb("amd64"), join(r, "root/debs/p.deb"));
  // A dependency apt must fetch from Debian's mirror (the root's sources.list).
  ok(inRoot(r, "dpkg --purge libnetfilter-queue1"), "purge libnetfilter-queue1");
  const before = tree(r);
  const db = ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"].map((f) => `${f} ${sha(join(r, f))}`);
  const got = ok(inRoot(r, "apt-get update -q && apt-get install -y /root/debs/p.deb"), "apt install");
  assert.match(got, /^Setting up libnetfilter-queue1:amd64 /m);
  assert.match(readFileSync(join(r, "etc/passwd"), "utf8"), /^portcullis:x:\d+:\d+::\/var\/lib\/portcullis:\/usr\/sbin\/nologin$/m);
  assert.match(readFileSync(join(r, "etc/group"), "utf8"), /^portcullis:x:\d+:$/m);
  for (const u of ["portcullis.service", "portcullis-rules.service", "portcullis-firstboot.service"]) {
    assert.is(ok(inRoot(r, `readlink /etc/systemd/system/multi-user.target.wants/${u}`), "readlink").trim(), `/lib/systemd/system/${u}`);
  }
  assert.match(ok(inRoot(r, "portcullis check /etc/portcullis/policy.yaml"), "check"), /default: deny/);
  assert.match(ok(inRoot(r, "portcullis --version"), "--version"), new RegExp(`^${VERSION.replace(/\./g, "\\.")}$`, "m"));
  ok(inRoot(r, "systemd-analyze verify /lib/systemd/system/portcullis.service /lib/systemd/system/portcullis-rules.service /lib/systemd/system/portcullis-firstboot.service"), "systemd-analyze verify");
  const list = ok(inRoot(r, "dpkg -L portcullis"), "dpkg -L").trim().split("\n");
  assert.ok(list.includes("/usr/lib/portcullis/app/dist/host/cli.js"));
  const edited = readFileSync(join(r, "etc/portcullis/policy.yaml"), "utf8").replace("external_http_80: true", "external_http_80: false");
  writeFileSync(join(r, "etc/portcullis/policy.yaml"), edited);

  ok(inRoot(r, "apt-get remove -y portcullis"), "apt remove");
  assert.is(readFileSync(join(r, "etc/portcullis/policy.yaml"), "utf8"), edited, "remove keeps the edited policy");
  assert.ok(existsSync(join(r, "etc/portcullis/board.yaml")));
  assert.not.ok(existsSync(join(r, "usr/lib/portcullis")));
  assert.match(ok(inRoot(r, "dpkg-query -W -f='${Status}' portcullis"), "status"), /^deinstall ok config-files$/);

  ok(inRoot(r, "apt-get purge -y portcullis && apt-get autoremove --purge -y"), "apt purge");
  assert.is(inRoot(r, "dpkg-query -W portcullis").status, 1, "dpkg knows no portcullis");
  // Nothing of the package's file list is left (directories shared with others apart) ...
  for (const p of list) {
    let s; try { s = statSync(join(r, p)); } catch { continue; } // (/lib: usrmerge's link to a directory)
    if (!s.isDirectory()) assert.unreachable(`${p} is left`);
  }
  // ... nor anything else: the root is as it was, the user database byte for byte.
  assert.equal(tree(r), before);
  assert.equal(["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"].map((f) => `${f} ${sha(join(r, f))}`), db);
});

test("under a real systemd (nspawn): enabled, READY, a kept edit across an upgrade, a failed check keeps the old daemon and rules, back and down with apt install ./older.deb, remove, purge (board/nspawn-check.sh --deb)", () => {
  const r = sh("bash", ["board/nspawn-check.sh", "--deb", deb("amd64"), next(), broken(), base(), "900"]);
  const out = ok(r, "nspawn-check --deb");
  const got: Record<string, string> = {};
  for (const m of out.matchAll(/^debcheck: ([a-z_]+)=(.*)$/gm)) got[m[1]!] = m[2]!.trim();
  const v = VERSION;
  assert.equal(got, {
    install: "0", enabled: "enabled enabled enabled", state: "active/active", selftest: "5 passed, 0 failed", version: v,
    upgrade: "0", upgrade_kept: "yes", upgrade_dist: "yes", upgrade_restarted: "yes", upgrade_after_edit: "yes", upgrade_state: "active/active",
    upgrade_pkg: `install ok installed ${NEXT}`, upgrade_version: NEXT, upgrade_selftest: "5 passed, 0 failed",
    bad: "100", bad_said: "yes", bad_same_daemon: "yes", bad_state: "active/active", bad_pkg: `install ok half-configured ${BROKEN}`,
    bad_queues: "yes", bad_selftest: "5 passed, 0 failed",
    back: "0", back_restarted: "yes", back_state: "active/active", back_pkg: `install ok installed ${NEXT}`, back_selftest: "5 passed, 0 failed",
    down: "0", down_restarted: "yes", down_state: "active/active", down_pkg: `install ok installed ${v}`, down_version: v,
    down_selftest: "5 passed, 0 failed", down_kept: "yes",
    remove: "0", remove_daemon: "yes", remove_state: "inactive", remove_queues: "0", remove_config: "yes", remove_pkg: `deinstall ok config-files ${v}`,
    purge: "0", purge_left_files: "none", purge_left_dirs: "none", purge_links: "0", purge_user: "/etc/shadow:0 /etc/gshadow:0",
    done: "yes",
  }, out);
  assert.match(out, new RegExp(`^apt: portcullis: /etc/portcullis/policy\\.yaml does not pass portcullis ${BROKEN.replace(/\./g, "\\.")} check:$`, "m"));
});

test("board:repo: a signed repository; a client root upgrades with apt upgrade, signatures checked; an unsigned or wrongly signed one is refused", () => {
  const gnupg = join(TMP, "gnupg");
  mkdirSync(gnupg, { mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: gnupg };
  ok(sh("gpg", ["--batch", "--quiet", "--passphrase", "", "--quick-gen-key", "Portcullis fleet <fleet@example.org>", "ed25519", "sign", "never"], { env }), "gpg key");
  const key = ok(sh("gpg", ["--batch", "--with-colons", "--list-secret-keys"], { env }), "key").split("\n").find((l) => l.startsWith("fpr:"))!.split(":")[9]!;
  const repo = join(TMP, "repo"), d1 = join(TMP, "debs1"), d2 = join(TMP, "debs2"), d3 = join(TMP, "debs3");
  for (const [d, f] of [[d1, deb("amd64")], [d2, next()], [d3, broken()]] as const) { mkdirSync(d); cpSync(f, join(d, f.split("/").pop()!)); }
  assert.is(ok(sh("bash", ["board/repo.sh", "--debs", d1, "--out", repo, "--key", key], { env }), "repo.sh").trim(), repo);
  assert.match(readFileSync(join(repo, "dists/bookworm/InRelease"), "utf8"), /^-----BEGIN PGP SIGNED MESSAGE-----$/m);
  const r = newRoot();
  const client = (from: string) => {
    rmSync(join(r, "srv/repo"), { recursive: true, force: true });
    cpSync(from, join(r, "srv/repo"), { recursive: true });
  };
  client(repo);
  mkdirSync(join(r, "etc/apt/keyrings"), { recursive: true });
  cpSync(join(repo, "portcullis-archive-keyring.gpg"), join(r, "etc/apt/keyrings/portcullis.gpg"));
  writeFileSync(join(r, "etc/apt/sources.list"), ""); // only the repository (the root has the dependencies)
  writeFileSync(join(r, "etc/apt/sources.list.d/portcullis.list"), "deb [signed-by=/etc/apt/keyrings/portcullis.gpg] file:/srv/repo bookworm main\n");
  ok(inRoot(r, "apt-get update -q && apt-get install -y -q portcullis"), "install from the repository");
  const installed = () => ok(inRoot(r, "dpkg-query -W -f='${Version}' portcullis"), "version");
  assert.is(installed(), VERSION);
  // The fleet's upgrade: a newer package in the repository, apt update && apt upgrade.
  ok(sh("bash", ["board/repo.sh", "--debs", d2, "--out", repo, "--key", key], { env }), "repo.sh again");
  client(repo);
  ok(inRoot(r, "apt-get update -q && apt-get upgrade -y -q -o Dpkg::Options::=--force-confold"), "apt upgrade");
  assert.is(installed(), NEXT);
  // Signed by another key (repo.sh --test-key): apt update fails, nothing is upgraded.
  const wrong = join(TMP, "repo-wrong");
  ok(sh("bash", ["board/repo.sh", "--debs", d3, "--out", wrong, "--test-key"]), "repo.sh --test-key");
  client(wrong);
  // (apt says so and keeps the lists it had: the repository's packages are not seen)
  const seen = () => ok(inRoot(r, "apt-cache madison portcullis"), "madison");
  let u = inRoot(r, "apt-get update -q");
  assert.match(u.stdout + u.stderr, /^Err:1 file:\/srv\/repo bookworm InRelease\n +The following signatures couldn't be verified because the public key is not available: NO_PUBKEY /m);
  assert.not.match(seen(), new RegExp(BROKEN.replace(/\./g, "\\.")));
  assert.match(seen(), new RegExp(`portcullis\\s*\\|\\s*${NEXT.replace(/\./g, "\\.")}\\s*\\|\\s*file:/srv/repo bookworm/main amd64 Packages`));
  ok(inRoot(r, "apt-get upgrade -y -q"), "apt upgrade");
  assert.is(installed(), NEXT);
  // Unsigned: the same repository without its signatures (apt: "no longer signed", as this client had it signed).
  client(wrong);
  rmSync(join(r, "srv/repo/dists/bookworm/InRelease"));
  rmSync(join(r, "srv/repo/dists/bookworm/Release.gpg"));
  u = inRoot(r, "apt-get update -q");
  assert.is.not(u.status, 0, u.stdout);
  assert.match(u.stdout + u.stderr, /^E: The repository 'file:\/srv\/repo bookworm Release' is no longer signed\.$/m);
  assert.not.match(seen(), new RegExp(BROKEN.replace(/\./g, "\\.")));
  ok(inRoot(r, "apt-get upgrade -y -q"), "apt upgrade");
  assert.is(installed(), NEXT);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
