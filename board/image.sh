#!/usr/bin/env bash
# Builds a flashable Raspberry Pi 4 image (arm64, Debian 12) with Portcullis
# installed, entirely from Debian's packages and this repository, without
# mounting anything:
#   dist-board/portcullis-<version>-rpi-arm64.img (+ .img.bmap, + .img.xz with --xz)
#
# Usage: npm run board:image -- [--out FILE.img] [--size 2G] [--firstboot FILE] [--xz]
#   --firstboot FILE  put FILE on the boot partition as portcullis-firstboot.yaml
#                     (board/firstboot.example.yaml shows the format; without
#                     it the example is there as portcullis-firstboot.yaml.example)
#   --size SIZE       the whole image (truncate(1) sizes; default 2G)
#   --xz              also write FILE.img.xz
#
# Steps: (1) the arm64 Debian package (board/deb.sh: the bundle's files, its
# own Node.js 20 for arm64; Debian 12 has only Node 18); (2) a Debian 12 arm64 root
# made by debootstrap, its second stage run through qemu-user-static and
# binfmt_misc, with Debian's kernel (linux-image-arm64) and the Pi boot
# firmware (raspi-firmware, from the non-free-firmware component:
# debootstrap fetches it from deb.debian.org itself, the host's apt sources
# are not used), whose hooks fill /boot/firmware with the kernel, initrd,
# device trees, config.txt and cmdline.txt; cached in
# /var/tmp/portcullis-image-cache; (3)-(4) the package installed with dpkg -i
# in the root (its postinst under qemu: the user, the policy checked, the
# units enabled; nothing started in a chroot);
# (5) the rest of board/image/rootfs, no SSH host keys and an empty machine
# id (made per board at its first boot, when the root also grows to the
# card); (6) a FAT32 boot partition made with
# mkfs.vfat + mcopy and an ext4 root made with mkfs.ext4 -d, put into an MBR
# image made by sfdisk.
set -eu
from="$PWD"                   # relative --out and --firstboot are from here
cd "$(dirname "$0")/.."

MIRROR=http://deb.debian.org/debian
BOOT_MIB=256                  # the FAT partition
BOOT_START=8192               # sectors (4 MiB, aligned for SD cards)
cache=/var/tmp/portcullis-image-cache

version="$(node -p 'require("./package.json").version')"
out="dist-board/portcullis-$version-rpi-arm64.img" size=2G firstboot="" xz=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a file}"; case "$out" in /*) ;; *) out="$from/$out" ;; esac; shift 2 ;;
    --size) size="${2:?--size needs a size like 2G}"; shift 2 ;;
    --firstboot) firstboot="$(cd "$from" && readlink -f "${2:?--firstboot needs a file}")"; shift 2 ;;
    --xz) xz=1; shift ;;
    *) echo "image: unknown argument: $1" >&2; exit 1 ;;
  esac
done
say() { echo "image: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot, useradd --prefix)"; exit 1; }
[ -z "$firstboot" ] || [ -f "$firstboot" ] || { say "--firstboot: no such file"; exit 1; }
bytes="$(numfmt --from=iec "$size" 2>/dev/null)" || { say "--size $size: not a size like 2G or 1500M"; exit 1; }
[ "$bytes" -ge $((1024 * 1024 * 1024)) ] || { say "--size $size: at least 1G"; exit 1; }
bytes=$((bytes / 1048576 * 1048576))   # whole MiB
bash board/ensure-board.sh
for t in debootstrap qemu-aarch64-static mkfs.vfat mcopy mkfs.ext4 sfdisk bmaptool; do
  command -v "$t" >/dev/null || { say "$t missing (bash board/ensure-board.sh)"; exit 1; }
done
t0=$SECONDS

# qemu-aarch64 through binfmt_misc, so arm64 programs run in the chroot. The
# F flag (from qemu-user-static's binfmt.d file) opens the interpreter now,
# so it works inside the chroot too.
[ -f /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || { say "binfmt_misc qemu-aarch64 is disabled"; exit 1; }

# 1. The arm64 package.
deb="$(bash board/deb.sh --arch arm64 --out "$cache/deb" | tail -1)"
say "package $deb"

# 2. The Debian root, cached by its package list. linux-image-arm64 has the
# Pi 4's device trees (broadcom/bcm2711-*.dtb); raspi-firmware has the
# GPU firmware the Pi boots from (start4.elf, fixup4.dat, ...).
pkgs=systemd-sysv,udev,kmod,iproute2,netbase,linux-image-arm64,raspi-firmware,initramfs-tools,openssh-server
pkgs=$pkgs,libnetfilter-queue1,libnetfilter-conntrack3,nftables,iptables,ca-certificates,sudo,systemd-timesyncd,fdisk,nano,iputils-ping,less
# The HA pair (README, "HA pair"): keepalived (VRRP) and conntrackd.
pkgs=$pkgs,keepalived,conntrackd
args="--arch=arm64 --variant=minbase --components=main,non-free-firmware --include=$pkgs bookworm"
# The image's fstab and raspi-firmware settings go in between debootstrap's
# two stages, so the kernel's initramfs is made once with them, and its
# raspi-firmware hook writes /boot/firmware (kernel, initrd, bcm27*.dtb,
# config.txt with the kernel and initrd, cmdline.txt with
# root=LABEL=RASPIROOT). The cache is keyed by the arguments and these files.
boot_files="etc/fstab etc/default/raspi-firmware"
key="$( (echo "$args"; cd board/image/rootfs && sha256sum $boot_files) | sha256sum | cut -c1-12)"
base="$cache/debootstrap-$key"
if [ ! -f "$base/.done" ]; then
  say "debootstrap $args (once; 20-30 minutes, most of it under qemu)"
  # debootstrap's second stage mounts /proc and /sys in the root; a build
  # that was killed leaves them mounted, and rm -rf must never walk into
  # them (a mounted /sys or /dev belongs to the machine, not the cache).
  grep -F " $base.tmp/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
  if grep -qF " $base.tmp/" /proc/mounts; then say "cannot unmount what a killed build left mounted under $base.tmp"; exit 1; fi
  rm -rf "$base.tmp"; mkdir -p "$cache"
  # shellcheck disable=SC2086
  debootstrap --foreign $args "$base.tmp" "$MIRROR" >&2
  for f in $boot_files; do mkdir -p "$base.tmp/$(dirname "$f")"; cp "board/image/rootfs/$f" "$base.tmp/$f"; done
  chroot "$base.tmp" /debootstrap/debootstrap --second-stage >&2
  grep -q 'root=LABEL=RASPIROOT' "$base.tmp/boot/firmware/cmdline.txt" || { say "cmdline.txt lacks root=LABEL=RASPIROOT"; exit 1; }
  chroot "$base.tmp" apt-get clean
  rm -rf "$base.tmp"/var/lib/apt/lists/* "$base.tmp"/var/cache/debconf/*-old "$base.tmp"/var/log/*.log
  touch "$base.tmp/.done"; mv "$base.tmp" "$base"
fi

work="$(mktemp -d /var/tmp/portcullis-image.XXXXXX)"
trap 'rm -rf "$work" "$out.tmp"' EXIT
R="$work/root"
say "copying the Debian root"
cp -a "$base" "$R"; rm -f "$R/.done"

# 3-4. Portcullis, as on a device (MACs come from the first-boot file): the
# package, its dependencies already in the root (dpkg -i fails if one is not).
cp "$deb" "$R/var/tmp/portcullis.deb"
chroot "$R" dpkg -i /var/tmp/portcullis.deb >&2
rm -f "$R/var/tmp/portcullis.deb"
file -b "$R/usr/lib/portcullis/node/bin/node" | grep -q 'ARM aarch64' || { say "the node binary is not aarch64"; exit 1; }
say "node $(chroot "$R" /usr/lib/portcullis/node/bin/node --version) (arm64, under qemu)"

# 5. The rest of board/image/rootfs (sshd keys-only, apt sources with
# non-free-firmware, hostname, the units that make the SSH host keys and grow
# the root to the card at the first boot). SSH host keys and the
# machine id are made per board at its first boot; networkd brings up the
# NICs the first-boot file gives addresses to.
cp -r board/image/rootfs/. "$R/"
rm -f "$R"/etc/ssh/ssh_host_*
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R/etc/resolv.conf"
systemctl --root="$R" --quiet enable systemd-networkd.service portcullis-ssh-keygen.service portcullis-growroot.service 2>&1 | grep -v '^Created symlink' >&2 || true
[ -L "$R/etc/systemd/system/multi-user.target.wants/systemd-networkd.service" ] || { say "could not enable systemd-networkd"; exit 1; }
# conntrackd is started by the HA pair's notify hook with the configuration
# `portcullis ha --apply` writes, never as Debian's service with its sample
# configuration; keepalived's service stays enabled: it starts only once
# /etc/keepalived/keepalived.conf exists (ConditionFileNotEmpty).
systemctl --root="$R" --quiet disable conntrackd.service 2>&1 | grep -v '^Removed' >&2 || true

# 6. The partitions, as files: the boot files out of the root into a FAT32
# file system (mtools: the kernel here cannot mount FAT), the root into ext4.
fat="$work/boot.fat"
mkfs.vfat -C -F 32 -n RASPIFIRM "$fat" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -i "$fat" "$R"/boot/firmware/* ::/
cp board/firstboot.example.yaml "$work/portcullis-firstboot.yaml.example"
mcopy -i "$fat" "$work/portcullis-firstboot.yaml.example" ::/
[ -z "$firstboot" ] || mcopy -i "$fat" "$firstboot" ::/portcullis-firstboot.yaml
rm -rf "$R"/boot/firmware/*
root_start=$((BOOT_START + BOOT_MIB * 2048))
root_sectors=$((bytes / 512 - root_start))
need_kib=$(du -sk "$R" | cut -f1)
[ $((root_sectors / 2)) -gt $((need_kib * 5 / 4)) ] || { say "--size $size is too small: the root needs $((need_kib / 1024)) MiB plus room"; exit 1; }
say "mkfs.ext4 -d ($((need_kib / 1024)) MiB of files)"
mkfs.ext4 -q -F -L RASPIROOT -d "$R" "$work/root.ext4" $((root_sectors / 2))k

mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
truncate -s "$bytes" "$out.tmp"
sfdisk -q "$out.tmp" <<EOF
label: dos
unit: sectors
start=$BOOT_START, size=$((BOOT_MIB * 2048)), type=c, bootable
start=$root_start, size=$root_sectors, type=83
EOF
dd if="$fat" of="$out.tmp" bs=1M seek=$((BOOT_START / 2048)) conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$out.tmp" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
mv "$out.tmp" "$out"
bmaptool -q create -o "$out.bmap" "$out"
[ "$xz" = 0 ] || { xz -T0 -3 -kf "$out"; say "wrote $out.xz"; }
say "done in $((SECONDS - t0)) s: $out ($(du -h --apparent-size "$out" | cut -f1), $(du -h "$out" | cut -f1) used) and $out.bmap"
echo "$out"
