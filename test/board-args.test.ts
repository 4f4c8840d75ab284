// board/install.sh and board/bundle.sh check every argument before they do
// anything (issue 12): a MAC is a MAC, --root a directory, the bundle's
// VERSION and ARCH what they must be; the MACs reach the .link files as data
// (host/firstboot/links.ts), never inside a sed program. Fast: a small
// bundle made here from dist/ (the full bundles are npm run test:board's).
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TMP = mkdtempSync(join("/var/tmp", "portcullis-board-args-"));
const EVIL = "x;touch${IFS}PWNED;#/e;#";

let n = 0;
const fresh = (what: string): string => {
  const d = join(TMP, `${what}${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};
// Without the colour variables of the test runner (node warns when both are set).
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "FORCE_COLOR" && k !== "NODE_DISABLE_COLORS"));
const sh = (cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 120000, env: ENV });

// The smallest bundle install.sh takes: dist/host, the wasm and addon, the
// overlay, VERSION, ARCH and the manifest.
function miniBundle(version = "0.0.1", arch = "x64"): string {
  const b = join(fresh("bundle"), `portcullis-${version}-x64`);
  mkdirSync(join(b, "app/dist"), { recursive: true });
  cpSync(join(ROOT, "dist/host"), join(b, "app/dist/host"), { recursive: true });
  mkdirSync(join(b, "app/build/Release"), { recursive: true });
  cpSync(join(ROOT, "build/release.wasm"), join(b, "app/build/release.wasm"));
  cpSync(join(ROOT, "build/Release/nfq.node"), join(b, "app/build/Release/nfq.node"));
  cpSync(join(ROOT, "package.json"), join(b, "app/package.json"));
  symlinkSync(join(ROOT, "node_modules"), join(b, "app/node_modules"));
  mkdirSync(join(b, "app/bin"));
  cpSync(join(ROOT, "bin/portcullis.js"), join(b, "app/bin/portcullis.js"));
  cpSync(join(ROOT, "board/rootfs_overlay"), join(b, "overlay"), { recursive: true });
  cpSync(join(ROOT, "board/install.sh"), join(b, "install.sh"));
  writeFileSync(join(b, "VERSION"), `${version}\n`);
  writeFileSync(join(b, "ARCH"), `${arch}\n`);
  const m = sh("bash", ["-c", "find . -type f ! -name MANIFEST.sha256 -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum > MANIFEST.sha256"], b);
  assert.is(m.status, 0, m.stderr);
  return b;
}
function newRoot(): string {
  const r = fresh("root");
  mkdirSync(join(r, "etc"));
  writeFileSync(join(r, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nportcullis:x:999:999::/var/lib/portcullis:/usr/sbin/nologin\n");
  return r;
}

test("install.sh: an --ext-mac that is a sed program is refused before anything runs; nothing is written", () => {
  const b = miniBundle();
  const root = newRoot(), cwd = fresh("cwd");
  const r = sh("bash", [join(b, "install.sh"), "--root", root, "--ext-mac", EVIL, "--int-mac", "00:e0:4c:00:00:02"], cwd);
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.is(r.stderr, `install: --ext-mac "${EVIL}" is not a MAC address like dc:a6:32:12:34:56\n`);
  assert.is(r.stdout, "");
  assert.not.ok(existsSync(join(cwd, "PWNED")), "the injected command ran");
  assert.equal(readdirSync(root), ["etc"]);
  assert.equal(readdirSync(cwd), []);
});

test("install.sh: the MACs fill the .link files as data (upper case lowered); bad or half-given MACs and a bad --root are refused", () => {
  const b = miniBundle();
  const root = newRoot();
  const ok = sh("bash", [join(b, "install.sh"), "--root", root, "--ext-mac", "DC:A6:32:00:00:01", "--int-mac", "00:e0:4c:00:00:02"], fresh("cwd"));
  assert.is(ok.status, 0, ok.stdout + ok.stderr);
  assert.is(readFileSync(join(root, "etc/systemd/network/10-external.link"), "utf8"),
    readFileSync(join(ROOT, "board/rootfs_overlay/etc/systemd/network/10-external.link.in"), "utf8").replaceAll("%EXT_MAC%", "dc:a6:32:00:00:01"));
  assert.is(readFileSync(join(root, "etc/systemd/network/11-internal.link"), "utf8"),
    readFileSync(join(ROOT, "board/rootfs_overlay/etc/systemd/network/11-internal.link.in"), "utf8").replaceAll("%INT_MAC%", "00:e0:4c:00:00:02"));
  // The .network templates are firstboot's to fill: none of them lands in the root.
  assert.equal(readdirSync(join(root, "etc/systemd/network")).sort(), ["10-external.link", "11-internal.link"]);
  const bad: Array<[string[], string]> = [
    [["--ext-mac", "01:00:5e:00:00:01", "--int-mac", "00:e0:4c:00:00:02"], "install: --ext-mac \"01:00:5e:00:00:01\" is a multicast address, not a NIC's"],
    [["--ext-mac", "dc:a6:32:00:00:01"], "install: give both --ext-mac and --int-mac, or neither"],
    [["--ext-mac", "dc:a6:32:00:00:01", "--int-mac", "dc:a6:32:00:00:01"], "install: --ext-mac and --int-mac are the same MAC dc:a6:32:00:00:01"],
    [["--ext-mac", "dc:a6:32:00:00:01", "--int-mac", "00:e0:4c:00:00:02\nx"], "install: --int-mac \"00:e0:4c:00:00:02\\x0ax\" is not a MAC address like dc:a6:32:12:34:56"],
    [["--ext-mac"], "install: --ext-mac needs a value"],
    [["--bogus"], "install: unknown argument: --bogus (see --help)"],
  ];
  for (const [args, msg] of bad) {
    const r = sh("bash", [join(b, "install.sh"), "--root", root, ...args], fresh("cwd"));
    assert.is(r.status, 1, args.join(" "));
    assert.is(r.stderr, `${msg}\n`, args.join(" "));
  }
  const nodir = sh("bash", [join(b, "install.sh"), "--root", join(TMP, "no-such-root")], fresh("cwd"));
  assert.is(nodir.status, 1);
  assert.is(nodir.stderr, `install: --root ${join(TMP, "no-such-root")}: not a directory\n`);
});

test("install.sh: a bundle whose VERSION is a path or whose ARCH is not one is refused, nothing written outside opt/portcullis", () => {
  for (const [version, arch, msg] of [["../../etc", "x64", "install: the bundle's VERSION ../../etc is not a version"],
    ["0.0.2", "x64; rm", "install: the bundle's ARCH x64\\;\\ rm is not x64 or arm64"]] as const) {
    const b = miniBundle(version, arch);
    const root = newRoot();
    const r = sh("bash", [join(b, "install.sh"), "--root", root], fresh("cwd"));
    assert.is(r.status, 1, r.stdout + r.stderr);
    assert.is(r.stderr, `${msg}\n`);
    assert.equal(readdirSync(join(root, "etc")), ["passwd"]);
    assert.equal(readdirSync(root), ["etc"]);
  }
});

test("bundle.sh: an --ext-mac that is a sed program is refused before anything runs", () => {
  const out = fresh("out");
  const r = sh("bash", [join(ROOT, "board/bundle.sh"), "--arch", "x64", "--no-build", "--out", out, "--ext-mac", EVIL, "--int-mac", "00:e0:4c:00:00:02"], ROOT);
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.is(r.stderr, `bundle: --ext-mac "${EVIL}" is not a MAC address like dc:a6:32:12:34:56\n`);
  assert.not.ok(existsSync(join(ROOT, "PWNED")), "the injected command ran");
  assert.equal(readdirSync(out), []);
  for (const [args, msg] of [[["--arch", "x64", "--out"], "bundle: --out needs a value"], [["--arch", "riscv"], "bundle: --arch x64|arm64 is required"],
    [["--arch", "x64", "--no-build", "--ext-mac", "dc:a6:32:00:00:01"], "bundle: give both --ext-mac and --int-mac, or neither"]] as const) {
    const b = sh("bash", [join(ROOT, "board/bundle.sh"), ...args], ROOT);
    assert.is(b.status, 1);
    assert.is(b.stderr, `${msg}\n`);
  }
});

test("links.js: the one filler of the templates refuses a bad MAC with one line", () => {
  const tpl = join(ROOT, "board/rootfs_overlay/etc/systemd/network/10-external.link.in");
  const r = sh("node", [join(ROOT, "dist/host/firstboot/links.js"), tpl, "dc:a6:32:00:00:01/e", "00:e0:4c:00:00:02"], TMP);
  assert.is(r.status, 2);
  assert.is(r.stderr, "--ext-mac \"dc:a6:32:00:00:01/e\" is not a MAC address like dc:a6:32:12:34:56\n");
  assert.is(r.stdout, "");
  const fifo = join(TMP, "fifo");
  assert.is(spawnSync("mkfifo", [fifo]).status, 0);
  const f = sh("node", [join(ROOT, "dist/host/firstboot/links.js"), fifo, "dc:a6:32:00:00:01", "00:e0:4c:00:00:02"], TMP);
  assert.is(f.status, 1);
  assert.is(f.stderr, `${fifo}: the .link template must be a regular file, not a FIFO\n`);
});

test.after(() => {
  rmSync(join(ROOT, "PWNED"), { force: true });
  rmSync(TMP, { recursive: true, force: true });
});
test.run();
