// The units' sandboxes, as `systemd-analyze security --offline=yes` scores
// the unit files (no systemd needs to run here): portcullis.service at most
// 2.0, every other unit of the overlay and of the image at most 5.0, and the
// exposures each one keeps exactly the ones listed below, each for a reason
// (so loosening a unit fails here, and so does a unit added without its
// sandbox). test/board-image.ts runs the same check with the image's own
// systemd, and boots the image to show the daemon runs in its sandbox.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { KEPT, readSecurity, unitFiles } from "./helpers/units.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const units = unitFiles(ROOT);
const local = (args: string[]) => spawnSync("systemd-analyze", args, { encoding: "utf8" });
function security(file: string): string {
  const r = local(["security", "--offline=yes", "--no-pager", file]);
  assert.is(r.status, 0, `systemd-analyze security ${file}: ${r.stderr}`);
  return r.stdout;
}

test("every unit of the overlay and the image has its sandbox: the five units", () => {
  assert.equal(units.map((u) => u.name).sort(), Object.keys(KEPT).sort());
});

for (const u of units) {
  test(`${u.name}: exposure at most ${KEPT[u.name]?.max.toFixed(1)}, and only the exposures it cannot do without`, () => {
    const want = KEPT[u.name];
    assert.ok(want, `${u.name} has no entry here`);
    const s = readSecurity(security(u.file));
    console.log(`  ${u.name}: exposure ${s.exposure.toFixed(1)}`);
    assert.ok(s.exposure <= want!.max, `${u.name}: ${s.exposure} > ${want!.max}`);
    assert.equal(s.exposed, [...want!.kept].sort());
  });
}

test("the system call filter of every unit: native ABI only, the sets no unit needs denied, a denied call fails with EPERM (no SIGSYS); systemd-analyze verify accepts the units", () => {
  for (const u of units) {
    const out = security(u.file);
    assert.ok(readFileSync(u.file, "utf8").split("\n").includes("SystemCallErrorNumber=EPERM"), u.name);
    // @privileged: all but firstboot (useradd and the keys' chown).
    if (u.name !== "portcullis-firstboot.service") assert.match(out, /^✓ SystemCallFilter=~@privileged /m, u.name);
    assert.match(out, /^✓ SystemCallArchitectures= +Service may execute system calls only with native ABI/m, u.name);
    for (const set of ["@clock", "@cpu-emulation", "@debug", "@module", "@mount", "@obsolete", "@raw-io", "@reboot", "@resources", "@swap"]) {
      assert.match(out, new RegExp(`^✓ SystemCallFilter=~${set} `, "m"), `${u.name} ${set}`);
    }
  }
  // growroot's script is the image's (board/image/rootfs/usr/local/sbin), not on this machine.
  const v = local(["verify", ...units.filter((x) => x.name !== "portcullis-growroot.service").map((x) => x.file)]);
  assert.is(v.status, 0, v.stderr);
  assert.is(v.stderr, "");
});

test.run();
