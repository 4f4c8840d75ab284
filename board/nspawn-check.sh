#!/usr/bin/env bash
# Boots a Debian 12 root with an x64 bundle installed under systemd-nspawn, so
# the units run as on a device: under a real systemd (PID 1 of the
# container), each in its sandbox (seccomp filter, capabilities, namespaces,
# the IP allow list), on this machine's kernel (iptables-legacy here: it has
# no nft_queue). ext0 and int0 are veths whose other ends stay down in this
# namespace, so nothing the container sends leaves it. Then
# board/image/bootcheck/ (the image boot check) checks the appliance and
# powers it off; its "bootcheck: ..." lines are printed with the console.
#
# Usage: board/nspawn-check.sh BUNDLE.tar.gz [ROOTFS] [SECONDS]
#   ROOTFS: the Debian 12 root board/chroot-check.sh made (default
#   /var/tmp/portcullis-debian12); SECONDS: limit (default 300).
# Exit status 0 when the boot check finished, 1 otherwise.
set -eu
tarball="$(readlink -f "${1:?usage: nspawn-check.sh BUNDLE.tar.gz [ROOTFS] [SECONDS]}")"
base="${2:-/var/tmp/portcullis-debian12}"
limit="${3:-300}"
here="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" = 0 ] || { echo "nspawn-check: needs root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "nspawn-check: apt-get install systemd-container" >&2; exit 1; }
[ -x "$base/usr/lib/systemd/systemd" ] || { echo "nspawn-check: no Debian root with systemd in $base (board/chroot-check.sh makes it)" >&2; exit 1; }

C="$(mktemp -d /var/tmp/portcullis-nspawn.XXXXXX)"
npid=""
cleanup() { [ -z "$npid" ] || kill "$npid" 2>/dev/null || true; rm -rf "$C"; }
trap cleanup EXIT
cp -a "$base/." "$C/root"
R="$C/root"
cp "$(readlink -f "$(command -v node)")" "$R/usr/bin/node"
mkdir -p "$C/bundle"
tar -C "$C/bundle" -xzf "$tarball"
"$C"/bundle/portcullis-*/install.sh --root "$R" --no-start >&2
# The NICs' addresses (systemd-networkd, also without carrier), and the check.
mkdir -p "$R/etc/systemd/network" "$R/usr/local/lib/portcullis-bootcheck"
for n in ext0:203.0.113.1/24 int0:198.51.100.1/24; do
  printf '[Match]\nName=%s\n\n[Network]\nAddress=%s\nConfigureWithoutCarrier=yes\n' "${n%%:*}" "${n#*:}" > "$R/etc/systemd/network/20-${n%%:*}.network"
done
cp "$here/image/bootcheck/bootcheck.sh" "$here/image/bootcheck/sandbox.mjs" "$R/usr/local/lib/portcullis-bootcheck/"
cp "$here/image/bootcheck/portcullis-bootcheck.service" "$R/etc/systemd/system/"
ln -sf /etc/systemd/system/portcullis-bootcheck.service "$R/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd.service "$R/etc/systemd/system/multi-user.target.wants/"
echo portcullis > "$R/etc/hostname"

tag="pcn$$"
timeout "$limit" systemd-nspawn -q -D "$R" -b --register=no --keep-unit -M "$tag" \
  --network-veth-extra="${tag}e:ext0" --network-veth-extra="${tag}i:int0" > "$C/console.log" 2>&1 < /dev/null &
npid=$!
wait "$npid" || true
npid=""
tr -d '\r' < "$C/console.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'
# The container's journal: the boot check's lines, whole.
journalctl --root="$R" -b -o cat --no-pager 2>/dev/null | grep -a '^bootcheck: ' || true
if journalctl --root="$R" -b -o cat --no-pager 2>/dev/null | grep -aqx 'bootcheck: done'; then echo "nspawn-check: ok"; exit 0; fi
echo "nspawn-check: the boot check did not finish"
exit 1
