#!/usr/bin/env bash
# What `npm run test:board` needs beyond `npm test` (host/setup/ensure.sh):
# the arm64 cross toolchain and libraries, qemu-user, debootstrap,
# systemd-analyze, systemd-nspawn; for `npm run board:deb`/`board:repo` and
# their test dpkg (dpkg-deb), fakeroot, lintian, reprepro, gnupg; for `npm run board:image` mtools, dosfstools, fdisk,
# e2fsprogs, bmap-tools, xz-utils; for its test qemu-system-arm. Installs
# only what is missing (apt-get, as root).
set -eu
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(crossbuild-essential-arm64)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# board/nspawn-check.sh (test/board-bench.ts): the units under a real systemd.
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v file >/dev/null || missing+=(file)
command -v setpriv >/dev/null || missing+=(util-linux)
# board:deb (board/deb.sh), its lintian run and board:repo (board/repo.sh).
command -v dpkg-deb >/dev/null || missing+=(dpkg)
# board/bundle.sh: the index of the HA pair's packages in the bundle's debs/.
command -v dpkg-scanpackages >/dev/null || missing+=(dpkg-dev)
command -v fakeroot >/dev/null || missing+=(fakeroot)
command -v lintian >/dev/null || missing+=(lintian)
command -v reprepro >/dev/null || missing+=(reprepro)
command -v gpg >/dev/null || missing+=(gnupg)
# board:image: FAT and ext4 file systems made as files, the MBR, the bmap.
command -v mkfs.vfat >/dev/null || missing+=(dosfstools)
command -v mcopy >/dev/null || missing+=(mtools)
command -v sfdisk >/dev/null || missing+=(fdisk)
command -v debugfs >/dev/null || missing+=(e2fsprogs)
command -v bmaptool >/dev/null || missing+=(bmap-tools)
command -v xz >/dev/null || missing+=(xz-utils)
# board/image/qemu-boot.sh (test/board-image.ts): the image booted under qemu.
command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
[ -f /usr/lib/aarch64-linux-gnu/libnetfilter_queue.so ] || missing+=(libnetfilter-queue-dev:arm64 libnfnetlink-dev:arm64)
[ -f /usr/lib/aarch64-linux-gnu/libnetfilter_conntrack.so ] || missing+=(libnetfilter-conntrack-dev:arm64 libnetfilter-conntrack3:arm64)
# The HA pair (the image and the package carry them): keepalived, conntrackd.
command -v keepalived >/dev/null || missing+=(keepalived)
command -v conntrackd >/dev/null || missing+=(conntrackd)
[ "${#missing[@]}" -gt 0 ] || exit 0
[ "$(id -u)" = 0 ] || { echo "ensure-board: missing Debian packages: ${missing[*]} (run as root)" >&2; exit 1; }
# apt's helpers run as _apt and need a world-writable TMPDIR (this
# machine's /tmp is 0700).
export TMPDIR=/var/tmp DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
echo "ensure-board: installing ${missing[*]}" >&2
# Their services must not start here (nothing uses a system instance):
# policy-rc.d says no to every start during this install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
