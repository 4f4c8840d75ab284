// The units' sandboxes: which units there are, the exposure each may have
// and the exposures each keeps (each for a reason), and the reading of
// `systemd-analyze security` (test/units.test.ts with this machine's
// systemd, test/board-image.ts with the image's, offline and booted).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import * as assert from "uvu/assert";

export const DIRS = ["board/rootfs_overlay/etc/systemd/system", "board/image/rootfs/etc/systemd/system"];

// What no sandbox setting can take away from each unit, and why.
const NODE = "MemoryDenyWriteExecute="; //                   V8 maps the code it compiles executable
const ROOT_USER = "User=/DynamicUser="; //                   root's files, root's tools
export const KEPT: Record<string, { max: number; kept: string[] }> = {
  "portcullis.service": {
    max: 2.0,
    kept: [
      "RootDirectory=/RootImage=", //                        the installed tree and Node are the host's
      "AmbientCapabilities=", "CapabilityBoundingSet=~CAP_NET_ADMIN", // binding NFQUEUE queues
      NODE,
      "RestrictAddressFamilies=~AF_NETLINK", //              NFQUEUE
      "RestrictAddressFamilies=~AF_UNIX", //                 control socket, sd_notify
      "RestrictAddressFamilies=~AF_(INET|INET6)", //         --metrics on loopback (IPAddressAllow=localhost)
      "IPAddressDeny=", //                                   ... which is that allow list
      "PrivateNetwork=", "PrivateUsers=", //                 the host's queues, the host's CAP_NET_ADMIN
      "DeviceAllow=", //                                     char-rtc:r, from ProtectClock=
    ],
  },
  "portcullis-rules.service": {
    max: 5.0,
    kept: [ROOT_USER, NODE, "RestrictAddressFamilies=~AF_NETLINK", "RestrictAddressFamilies=~AF_UNIX",
      "RestrictAddressFamilies=~AF_(INET|INET6)", //         iptables-legacy's raw sockets
      "CapabilityBoundingSet=~CAP_NET_ADMIN", "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)",
      "ProcSubset=", //                                      iptables-legacy-save reads /proc/net/ip_tables_names
      "PrivateNetwork=", "PrivateUsers=", "DeviceAllow="],
  },
  "portcullis-firstboot.service": {
    max: 5.0,
    kept: [ROOT_USER, NODE, "SystemCallFilter=~@privileged", // chown (useradd, the keys)
      "CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)", "CapabilityBoundingSet=~CAP_(CHOWN|FSETID|SETFCAP)",
      "RestrictAddressFamilies=~AF_UNIX", "PrivateUsers=", "DeviceAllow=",
      "UMask="], //                                          /etc/hostname, hosts, .link files are 0644
  },
  "portcullis-growroot.service": {
    max: 5.0,
    kept: [ROOT_USER, "PrivateDevices=", "DeviceAllow=", //  the disk's block devices
      "CapabilityBoundingSet=~CAP_SYS_ADMIN", //             partx's BLKPG
      "CapabilityBoundingSet=~CAP_SYS_(NICE|RESOURCE)", //   ext4's online resize
      "ProcSubset=", //                                      resize2fs reads /proc/mounts
      "RestrictAddressFamilies=~AF_UNIX", "PrivateUsers="],
  },
  "portcullis-ssh-keygen.service": {
    max: 5.0,
    kept: ["RootDirectory=/RootImage=", ROOT_USER, "RestrictAddressFamilies=~AF_UNIX", "PrivateUsers=", "DeviceAllow="],
  },
};

// The unit files of the overlay and the image, under the repository ROOT.
export function unitFiles(root: string): Array<{ name: string; file: string; rel: string }> {
  return DIRS.flatMap((d) => readdirSync(join(root, d)).filter((f) => f.endsWith(".service")).map((f) => ({ name: f, file: join(root, d, f), rel: join(d, f) })));
}

// The exposure and the settings that add to it ("✗" lines), of one unit file.
// `text` is what `systemd-analyze security [--offline=yes] UNIT` printed.
export function readSecurity(text: string): { exposure: number; exposed: string[] } {
  const m = /Overall exposure level for \S+: (\d+\.\d+) /.exec(text);
  assert.ok(m, `no overall exposure in:\n${text}`);
  return { exposure: Number(m![1]), exposed: [...text.matchAll(/^✗ (\S+)/gm)].map((x) => x[1]!).sort() };
}

