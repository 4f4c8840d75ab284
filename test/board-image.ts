// The flashable image (board/image.sh): `npm run test:board`, not part of
// `npm test` (it builds a Debian root under qemu). Builds the image with the
// example first-boot file (or checks PORTCULLIS_IMAGE, an image just built
// with `--firstboot board/firstboot.example.yaml`), then reads it without
// mounting anything: the MBR (sfdisk -J), the FAT boot partition (mtools),
// the ext4 root (debugfs). Last, the root is copied out (debugfs rdump) and
// the installed arm64 Portcullis runs in it under qemu-user: `portcullis
// check` on the installed policy, and `portcullis firstboot` with the boot
// partition's file, as the first boot runs it. Last, a copy of the image is
// booted under qemu-system-aarch64 (board/image/qemu-boot.sh).
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { EXAMPLE, EXAMPLE_HA } from "./helpers/firstboot-example.js";
import { KEPT, readSecurity, unitFiles } from "./helpers/units.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const TMP = mkdtempSync(join("/var/tmp", "portcullis-image-test-"));

function sh(cmd: string, args: string[], input?: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", input, maxBuffer: 256 << 20 });
}
function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

let image = process.env.PORTCULLIS_IMAGE ?? "";
// A unit as the package ships it: the overlay's, its paths pointed at the package's tree and Node (board/deb.sh).
const packaged = (u: string) => readFileSync(join(ROOT, "board/rootfs_overlay/etc/systemd/system", u), "utf8")
  .replace(/\/usr\/bin\/node \/opt\/portcullis\/current\//g, "/usr/lib/portcullis/node/bin/node /usr/lib/portcullis/app/")
  .replace(/file:\/opt\/portcullis\/current\//g, "file:/usr/lib/portcullis/app/");
let boot = "", rootfs = "", dumped = "";
interface Part { start: number; size: number; type: string; bootable?: boolean }

test("board/image.sh builds the image", () => {
  if (image) return;
  const out = join(TMP, "portcullis.img");
  const t = Date.now();
  const r = sh("bash", ["board/image.sh", "--out", out, "--firstboot", "board/firstboot.example.yaml"]);
  assert.is(r.status, 0, `image.sh failed:\n${r.stderr.slice(-4000)}`);
  assert.is(r.stdout.trim().split("\n").pop(), out);
  console.log(`  image built in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  image = out;
});

test("the partition table: FAT32 (LBA) boot, bootable, at 4 MiB; Linux root to the end", () => {
  assert.ok(existsSync(image), image);
  assert.ok(existsSync(`${image}.bmap`), "the bmap file");
  const t = JSON.parse(ok(sh("sfdisk", ["-J", image]), "sfdisk -J")) as { partitiontable: { label: string; partitions: Part[] } };
  assert.is(t.partitiontable.label, "dos");
  const [p1, p2, ...rest] = t.partitiontable.partitions;
  assert.is(rest.length, 0);
  assert.equal({ start: p1!.start, size: p1!.size, type: p1!.type, bootable: p1!.bootable }, { start: 8192, size: 524288, type: "c", bootable: true });
  assert.equal({ start: p2!.start, type: p2!.type }, { start: 532480, type: "83" });
  assert.is((p2!.start + p2!.size) * 512, statSync(image).size);
  // The partitions as files (sparse copies), for mtools and debugfs.
  boot = join(TMP, "boot.fat");
  rootfs = join(TMP, "root.ext4");
  ok(sh("dd", [`if=${image}`, `of=${boot}`, "bs=512", `skip=${p1!.start}`, `count=${p1!.size}`, "conv=sparse", "status=none"]), "dd boot");
  ok(sh("dd", [`if=${image}`, `of=${rootfs}`, "bs=1M", `skip=${p2!.start / 2048}`, `count=${p2!.size / 2048}`, "conv=sparse", "status=none"]), "dd root");
});

const mtype = (f: string) => ok(sh("mtype", ["-i", boot, `::/${f}`]), `mtype ${f}`);
const dfs = (req: string) => ok(sh("debugfs", ["-R", req, rootfs]), `debugfs ${req}`);

test("the boot partition: Pi firmware, kernel, initrd, device trees, config.txt, cmdline.txt, the first-boot file", () => {
  assert.match(ok(sh("mlabel", ["-s", "-i", boot, "::"]), "mlabel"), /RASPIFIRM/);
  const names = ok(sh("mdir", ["-i", boot, "-b", "::/"]), "mdir").split("\n").filter(Boolean).map((l) => l.replace(/^::\//, ""));
  for (const f of ["bootcode.bin", "start4.elf", "fixup4.dat", "start.elf", "fixup.dat", "config.txt", "cmdline.txt",
    "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4-io.dtb", "bcm2837-rpi-3-b-plus.dtb",
    "portcullis-firstboot.yaml", "portcullis-firstboot.yaml.example"]) {
    assert.ok(names.includes(f), `${f} in ${names.join(" ")}`);
  }
  const kernel = names.find((n) => /^vmlinuz-6\.1\.0-\d+-arm64$/.test(n));
  const initrd = names.find((n) => /^initrd\.img-6\.1\.0-\d+-arm64$/.test(n));
  assert.ok(kernel && initrd, names.join(" "));
  const config = mtype("config.txt");
  assert.match(config, /^arm_64bit=1$/m);
  assert.match(config, new RegExp(`^kernel=${kernel!.replace(/\./g, "\\.")}$`, "m"));
  assert.match(config, new RegExp(`^initramfs ${initrd!.replace(/\./g, "\\.")}$`, "m"));
  assert.match(mtype("cmdline.txt").trim(), /^console=ttyS1,115200 console=tty0 root=LABEL=RASPIROOT rw fsck\.repair=yes net\.ifnames=0 +rootwait\s*$/);
  assert.is(mtype("portcullis-firstboot.yaml"), EXAMPLE);
  assert.is(mtype("portcullis-firstboot.yaml.example"), EXAMPLE);
  // The firmware is raspi-firmware's, byte for byte.
  const inFat = ok(sh("bash", ["-c", `mtype -i ${boot} ::/start4.elf | sha256sum`]), "sha fat");
  const inPkg = ok(sh("bash", ["-c", `debugfs -R 'cat /usr/lib/raspi-firmware/start4.elf' ${rootfs} 2>/dev/null | sha256sum`]), "sha pkg");
  assert.is(inFat, inPkg);
  assert.ok(statSync(boot).size === 524288 * 512);
});

test("the root file system: label, fstab, the Portcullis package installed, units enabled, its Node 20 for aarch64, no SSH host keys", () => {
  assert.match(ok(sh("dumpe2fs", ["-h", rootfs]), "dumpe2fs"), /^Filesystem volume name:\s+RASPIROOT$/m);
  assert.is(dfs("cat /etc/fstab"), readFileSync(join(ROOT, "board/image/rootfs/etc/fstab"), "utf8"));
  // The Debian package (board/deb.sh), installed by dpkg: its units are the overlay's with the package's paths.
  assert.match(dfs("cat /var/lib/dpkg/status"), new RegExp(`^Package: portcullis\nStatus: install ok installed\n(?:.+\n)*?Version: ${VERSION.replace(/\./g, "\\.")}\n`, "m"));
  for (const u of ["portcullis.service", "portcullis-rules.service", "portcullis-firstboot.service"]) {
    assert.is(dfs(`cat /lib/systemd/system/${u}`), packaged(u), u);
  }
  for (const [link, dest] of [["portcullis.service", "/lib/systemd/system/portcullis.service"],
    ["portcullis-rules.service", "/lib/systemd/system/portcullis-rules.service"],
    ["portcullis-firstboot.service", "/lib/systemd/system/portcullis-firstboot.service"],
    ["portcullis-ssh-keygen.service", "/etc/systemd/system/portcullis-ssh-keygen.service"],
    ["portcullis-growroot.service", "/etc/systemd/system/portcullis-growroot.service"],
    ["systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service"]]) {
    assert.match(dfs(`stat /etc/systemd/system/multi-user.target.wants/${link}`), new RegExp(`Fast link dest: "${dest}"`), link);
  }
  // The HA pair's programs (README, "HA pair"): installed; conntrackd's own
  // service off (the notify hook starts conntrackd with its own file).
  const status = dfs("cat /var/lib/dpkg/status");
  for (const p of ["keepalived", "conntrackd"]) assert.match(status, new RegExp(`^Package: ${p}\nStatus: install ok installed$`, "m"), p);
  assert.not.match(dfs("ls /etc/systemd/system/multi-user.target.wants"), /conntrackd\.service/);
  assert.is(dfs("cat /etc/portcullis/policy.yaml"), readFileSync(join(ROOT, "host/policy/default.yaml"), "utf8"));
  assert.match(dfs("cat /etc/passwd"), /^portcullis:x:\d+:\d+::\/var\/lib\/portcullis:\/usr\/sbin\/nologin$/m);
  const node = join(TMP, "node");
  ok(sh("debugfs", ["-R", `dump /usr/lib/portcullis/node/bin/node ${node}`, rootfs]), "dump node");
  assert.match(ok(sh("file", ["-b", node]), "file"), /^ELF 64-bit LSB (pie )?executable, ARM aarch64/);
  assert.not.match(dfs("ls -l /etc/ssh"), /ssh_host_/);
  assert.is(dfs("cat /etc/machine-id"), "");
  assert.match(dfs("cat /etc/apt/sources.list"), /^deb http:\/\/deb\.debian\.org\/debian bookworm main non-free-firmware$/m);
  assert.match(dfs("cat /etc/default/raspi-firmware"), /^ROOTPART=LABEL=RASPIROOT$/m);
  assert.is(dfs("cat /boot/firmware/config.txt"), "", "the boot files live on the FAT partition only");
});

test("the installed arm64 Portcullis runs in the image's root under qemu: check, then the first boot", () => {
  dumped = join(TMP, "rootdump");
  mkdirSync(dumped);
  ok(sh("debugfs", ["-R", `rdump / ${dumped}`, rootfs]), "rdump");
  // The character devices programs expect (rdump may not recreate them).
  ok(sh("bash", ["-c", `mkdir -p ${dumped}/dev && cd ${dumped}/dev && for d in null:3 zero:5 random:8 urandom:9; do rm -f \${d%:*}; mknod -m 666 \${d%:*} c 1 \${d#*:}; done`]), "mknod");
  const chroot = (...args: string[]) => sh("chroot", [dumped, ...args]);
  const NODE = "/usr/lib/portcullis/node/bin/node";
  assert.match(ok(chroot(NODE, "--version"), "node --version"), /^v20\.\d+\.\d+$/m);
  assert.match(ok(chroot(NODE, "-p", "process.arch"), "arch"), /^arm64$/m);
  const check = ok(chroot("/usr/bin/portcullis", "check", "/etc/portcullis/policy.yaml"), "portcullis check");
  assert.match(check, /^\/etc\/portcullis\/policy\.yaml: ok \(mode host, default deny\)$/m);
  ok(chroot(NODE, "-e", "require('/usr/lib/portcullis/app/build/Release/nfq.node')"), "the addon loads");
  // The first boot, as the unit runs it (without --set-hostname in a chroot).
  mkdirSync(join(dumped, "boot/firmware"), { recursive: true });
  ok(sh("mcopy", ["-i", boot, "::/portcullis-firstboot.yaml", join(dumped, "boot/firmware/")]), "mcopy");
  const fb = ok(chroot("/usr/bin/portcullis", "firstboot", "--boot", "/boot/firmware", "--root", "/"), "firstboot");
  assert.match(fb, /created user admin/);
  assert.match(fb, /renamed it portcullis-firstboot\.yaml\.done$/m);
  const r = (p: string) => readFileSync(join(dumped, p), "utf8");
  assert.match(r("etc/systemd/network/10-external.link"), /^MACAddress=dc:a6:32:00:00:01\n\n\[Link\]\nName=ext0\n$/m);
  assert.match(r("etc/systemd/network/11-internal.link"), /^MACAddress=00:e0:4c:00:00:02\n\n\[Link\]\nName=int0\n$/m);
  assert.match(r("home/admin/.ssh/authorized_keys"), /^ssh-ed25519 AAAA\S+ REPLACE-ME-with-your-key@example\n$/);
  assert.match(r("etc/passwd"), /^admin:x:1000:1000:Portcullis admin:\/home\/admin:\/bin\/bash$/m);
  assert.ok(existsSync(join(dumped, "home/admin/.bashrc")), "the home made from /etc/skel");
  assert.is(r("etc/hostname"), "portcullis\n");
  assert.match(ok(chroot("/usr/bin/portcullis", "check", "/etc/portcullis/policy.yaml"), "check after"),
    /^ {2}front_end +2 entries: 2 IPv4 addresses, 0 IPv6 addresses/m);
  // The image's own systemd accepts the units.
  const v = chroot("systemd-analyze", "verify", "/lib/systemd/system/portcullis-firstboot.service",
    "/etc/systemd/system/portcullis-ssh-keygen.service", "/etc/systemd/system/portcullis-growroot.service");
  assert.is(v.status, 0, v.stderr);
});

test("an HA pair's card in the image's root under qemu: the first-boot file's ha: becomes board.yaml's, keepalived's files are written for the package's command and keepalived accepts them; keepalived enabled, conntrackd's own service not", () => {
  assert.ok(dumped, "the test before dumps the root");
  assert.is.not(EXAMPLE_HA, EXAMPLE);
  const chroot = (...args: string[]) => sh("chroot", [dumped, ...args]);
  writeFileSync(join(dumped, "boot/firmware/portcullis-firstboot.yaml"), EXAMPLE_HA);
  const fb = ok(chroot("/usr/bin/portcullis", "firstboot", "--boot", "/boot/firmware", "--root", "/"), "firstboot with ha:");
  for (const f of ["etc/portcullis/board.yaml", "etc/keepalived/keepalived.conf", "etc/keepalived/portcullis-notify.sh", "etc/keepalived/portcullis-conntrackd.conf"]) {
    assert.ok(fb.split("\n").includes(`portcullis firstboot: wrote /${f}`), `${f}:\n${fb}`);
  }
  const r = (p: string) => readFileSync(join(dumped, p), "utf8");
  assert.match(r("etc/portcullis/board.yaml"), /^ha:\n {2}vrid: 51\b.*\n {2}priority: 150\b/m);
  assert.match(r("etc/keepalived/portcullis-notify.sh"), /^exec \/usr\/bin\/portcullis ha notify "\$role" --control /m);
  assert.match(r("etc/keepalived/keepalived.conf"), /^\tvirtual_router_id 51$/m);
  // keepalived (arm64, under qemu-user) parses what was written, where ext0
  // and int0 exist: a namespace of this test's own with a veth pair so named
  // (this kernel has no dummy links).
  const ns = `pcimg${process.pid}`;
  sh("ip", ["netns", "del", ns]);
  try {
    ok(sh("ip", ["netns", "add", ns]), "netns add");
    ok(sh("ip", ["-n", ns, "link", "add", "ext0", "type", "veth", "peer", "name", "int0"]), "veth ext0/int0");
    const t = sh("ip", ["netns", "exec", ns, "chroot", dumped, "/usr/sbin/keepalived", "--config-test", "-f", "/etc/keepalived/keepalived.conf"]);
    assert.is(t.status, 0, `${t.stdout}\n${t.stderr}`);
    assert.not.match(`${t.stdout}${t.stderr}`, /WARNING|error/i);
  } finally {
    sh("ip", ["netns", "del", ns]);
  }
  const wants = join(dumped, "etc/systemd/system/multi-user.target.wants");
  assert.ok(existsSync(join(wants, "keepalived.service")), "keepalived.service enabled: it starts once keepalived.conf exists");
  assert.not.ok(existsSync(join(wants, "conntrackd.service")), "conntrackd.service disabled: the notify hook starts conntrackd");
  // The board as the kernel rules read it: VRRP passes on both sides.
  const rules = ok(chroot("/usr/bin/portcullis", "rules", "--config", "/etc/portcullis/board.yaml"), "rules");
  assert.match(rules, /ha: VRRP \(IP protocol 112, to 224\.0\.0\.18 \/ ff02::12\) passes on external ext0, internal int0/);
});

test("the image's own systemd scores each unit's sandbox (offline): portcullis.service at most 2.0, the others at most 5.0", () => {
  for (const u of unitFiles(ROOT)) {
    const dir = existsSync(join(dumped, "lib/systemd/system", u.name)) ? "/lib/systemd/system" : "/etc/systemd/system"; // the package's, the image's own
    const r = sh("chroot", [dumped, "systemd-analyze", "security", "--offline=yes", "--no-pager", `${dir}/${u.name}`]);
    assert.is(r.status, 0, r.stderr);
    const s = readSecurity(r.stdout);
    console.log(`  ${u.name}: exposure ${s.exposure.toFixed(1)} (the image's systemd)`);
    assert.ok(s.exposure <= KEPT[u.name]!.max, `${u.name}: ${s.exposure}`);
    assert.equal(s.exposed, [...KEPT[u.name]!.kept].sort(), u.name);
  }
});

test("the image boots under qemu-system-aarch64 (virt): the first boot applied, the root grown, the daemon ready (board/image/qemu-boot.sh)", () => {
  const t = Date.now();
  const r = sh("bash", ["board/image/qemu-boot.sh", image, "1500"]);
  assert.is(r.status, 0, r.stdout.slice(-8000));
  console.log(`  booted in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  const out = r.stdout;
  assert.match(out, /portcullis firstboot: created user admin/);
  assert.match(out, /portcullis firstboot: applied \/boot\/firmware\/portcullis-firstboot\.yaml to \/; renamed it portcullis-firstboot\.yaml\.done/);
  assert.match(out, /portcullis-growroot: \/dev\/vda2 grew from (\d+) to (\d+) bytes/);
  const [, from, to] = /grew from (\d+) to (\d+) bytes/.exec(out)!;
  assert.is(Number(to) - Number(from), 1024 * 1024 * 1024);
  assert.match(out, /systemd\[1\]: Finished portcullis-rules\.service/);
  assert.match(out, /virtio_net virtio0 ext0: renamed from eth0/);
  assert.match(out, /virtio_net virtio1 int0: renamed from eth1/);
  assert.match(out, /systemd\[1\]: Started portcullis\.service/);
  assert.match(out, /^qemu-boot: ok/m);
  // The boot check (board/image/bootcheck/), under the image's systemd with the hardened units.
  const check = [...out.matchAll(/^(?:.*?: )?bootcheck: (.*)$/gm)].map((m) => m[1]!);
  const line = (prefix: string): string => check.find((l) => l.startsWith(prefix)) ?? `(no "${prefix}" line)`;
  console.log(check.map((l) => `  bootcheck: ${l}`).join("\n"));
  assert.is(line("unit portcullis-growroot:"), "unit portcullis-growroot: ActiveState=inactive NRestarts=0 Result=success SubState=dead");
  assert.is(line("unit portcullis-firstboot:"), "unit portcullis-firstboot: ActiveState=active NRestarts=0 Result=success SubState=exited");
  assert.is(line("unit portcullis-rules:"), "unit portcullis-rules: ActiveState=active NRestarts=0 Result=success SubState=exited");
  assert.is(line("unit portcullis:"), "unit portcullis: ActiveState=active NRestarts=0 Result=success SubState=running");
  assert.is(line("unit portcullis-ssh-keygen:"), "unit portcullis-ssh-keygen: ActiveState=inactive NRestarts=0 Result=success SubState=dead");
  assert.is(line("ssh host keys:"), "ssh host keys: 3");
  assert.is(line("cgroup:"), "cgroup: v2");
  for (const u of unitFiles(ROOT)) {
    const m = new RegExp(`^exposure ${u.name.replace(/\./g, "\\.")} (\\d+\\.\\d)$`).exec(line(`exposure ${u.name} `));
    assert.ok(m, line(`exposure ${u.name} `));
    console.log(`  ${u.name}: exposure ${m![1]} (the booted systemd)`);
    assert.ok(Number(m![1]) <= KEPT[u.name]!.max, `${u.name}: ${m![1]}`);
  }
  // The queue rules (nftables: this kernel has nft_queue) and the queues, as the self-test reads them.
  assert.is(line("selftest: ok   kernel-rules:"), "selftest: ok   kernel-rules: nftables table inet portcullis: 8 queue rules as /etc/portcullis/board.yaml generates");
  assert.match(line("selftest: ok   queues-bound:"), /^selftest: ok {3}queues-bound: queues 0, 1: reported by the daemon and bound in the kernel \(queue 0 peer \d+, queue 1 peer \d+\)$/);
  assert.match(line("selftest: ok   daemon:"), /; portcullis\.service active$/);
  assert.match(line("selftest: ok   installed:"), /files match the package's md5sums$/);
  // Packets decided by the policy's rules, in the daemon's sandbox.
  assert.match(line("selftest: ok   counters-moving:"), /^selftest: ok {3}counters-moving: \d+ packets? of traffic in \d+\.\d s, decided by a rule or a tracked flow \(rule_allow \+\d+.*; rules int-https-4443 \+\d+\)/);
  assert.not.ok(check.some((l) => l.startsWith("selftest: FAIL")), check.join("\n"));
  // A reload through ExecReload: committed, the same daemon, no restart.
  const reload = /^reload: control ok; the daemon pid (\d+) -> (\d+), active, restarts 0$/.exec(line("reload:"));
  assert.ok(reload && reload[1] === reload[2], line("reload:"));
  // A copy of the daemon's sandbox: threads and WebAssembly run, loopback works, other addresses and writes are refused.
  assert.match(line("sandbox: result"), /^sandbox: result ExecMainCode=[01] ExecMainStatus=0 Result=success$/);
  // IPAddressDeny=any: the appliance's own int0 address (over lo, not queued) is refused inside, reached outside.
  assert.is(line("unsandboxed output:"), "unsandboxed output: worker thread ran WebAssembly: 42; 127.0.0.1 listen and connect: ok; " +
    "udp 198.51.100.1:9: sent; connect 198.51.100.1:9: ECONNREFUSED");
  assert.is(line("sandbox output:"), "sandbox output: worker thread ran WebAssembly: 42; 127.0.0.1 listen and connect: ok; " +
    "udp 198.51.100.1:9: EPERM; connect 198.51.100.1:9: no answer in 3 s; write /etc/portcullis/sandbox-probe: EROFS; write /var/lib/portcullis-probe: EROFS");
  // With MemoryDenyWriteExecute= (not set, for this): node cannot run the WebAssembly core.
  console.log(`  ${line("mdwe: result")}; ${line("mdwe output:")}`);
  assert.match(line("mdwe: result"), /^mdwe: result ExecMainCode=[23] ExecMainStatus=\d+ Result=(signal|core-dump)$/);
  assert.is(line("sigsys:"), "sigsys: 0");
  assert.is(line("done"), "done");
  // The allow list as the booted systemd holds it.
  // (systemd prints each list in no fixed order: compared sorted)
  const lists = Object.fromEntries([...line("ip allow list:").matchAll(/(IPAddress\w+)=(\S+(?: [^=\s]+(?= |$))*)/g)].map((m) => [m[1]!, m[2]!.split(" ").sort()]));
  assert.equal(lists, { IPAddressAllow: ["127.0.0.0/8", "::1/128"], IPAddressDeny: ["0.0.0.0/0", "::/0"] }, line("ip allow list:"));
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));
test.run();
