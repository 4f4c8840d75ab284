// `portcullis firstboot [--boot DIR] [--root DIR] [--templates DIR] [--set-hostname]`:
// applies the first-boot file of a flashed board, BOOT/portcullis-firstboot.yaml
// (the FAT boot partition, /boot/firmware on the Pi), to the root filesystem
// ROOT: hostname, the .link and .network files of the NICs, the policy's
// groups, the admin user with its SSH keys and sudo, an HA pair's ha: (into
// board.yaml, and keepalived's files as `portcullis ha --apply` writes
// them). The work is host/firstboot/'s (run.ts: read, parse, plan, apply,
// mark done); this prints what it did, or every error on stderr with exit
// status 1.
import { Command } from "commander";
import { FIRSTBOOT_FILE } from "../firstboot/parse.js";
import { FirstbootError } from "../firstboot/plan.js";
import { defaultTemplates, runFirstboot } from "../firstboot/run.js";

export function firstbootCommand(): Command {
  return new Command("firstboot")
    .description(`apply the first-boot file (${FIRSTBOOT_FILE} on the boot partition): hostname, NIC MACs and addresses, policy groups, admin user and SSH keys, HA pair`)
    .option("--boot <dir>", "the boot partition", "/boot/firmware")
    .option("--root <dir>", "the root filesystem to configure", "/")
    .option("--templates <dir>", "the overlay with the .link.in and .network.in templates (default: the installed bundle's)")
    .option("--set-hostname", "also rename the running system (the unit does; only with --root /)")
    .action((o: { boot: string; root: string; templates?: string; setHostname?: boolean }) => {
      try {
        const r = runFirstboot(o.boot, o.root, o.templates ?? defaultTemplates(), o.setHostname === true);
        for (const l of r.lines) process.stdout.write(`portcullis firstboot: ${l}\n`);
      } catch (e) {
        if (!(e instanceof FirstbootError)) throw e;
        for (const l of e.all) process.stderr.write(`${l}\n`);
        process.exitCode = 1;
      }
    });
}
