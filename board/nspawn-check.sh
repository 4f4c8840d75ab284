#!/usr/bin/env bash
# Boots a Debian 12 root with Portcullis installed under systemd-nspawn, so
# the units run as on a device: under a real systemd (PID 1 of the
# container), each in its sandbox (seccomp filter, capabilities, namespaces,
# the IP allow list), on this machine's kernel (iptables-legacy here: it has
# no nft_queue). ext0 and int0 are veths whose other ends stay down in this
# namespace, so nothing the container sends leaves it.
#   BUNDLE: an x64 bundle installed with install.sh; then board/image/bootcheck/
#   (the image boot check) checks the appliance and powers it off; its
#   "bootcheck: ..." lines are printed with the console.
#   --deb OLD NEW BROKEN: three amd64 packages (a version, a newer one, one
#   whose check fails); board/deb/container-check.sh installs, upgrades, rolls
#   back, downgrades, removes and purges them inside, and prints
#   "debcheck: KEY=VALUE" lines (test/board-deb.ts).
#
# Usage: board/nspawn-check.sh BUNDLE.tar.gz [ROOTFS] [SECONDS]
#        board/nspawn-check.sh --deb OLD.deb NEW.deb BROKEN.deb [ROOTFS] [SECONDS]
#   ROOTFS: the Debian 12 root board/chroot-check.sh made (default
#   /var/tmp/portcullis-debian12); SECONDS: limit (default 300).
# Exit status 0 when the check finished, 1 otherwise.
set -eu
debs=()
if [ "${1:-}" = --deb ]; then
  [ $# -ge 4 ] || { echo "usage: nspawn-check.sh --deb OLD.deb NEW.deb BROKEN.deb [ROOTFS] [SECONDS]" >&2; exit 1; }
  for d in "$2" "$3" "$4"; do [ -f "$d" ] || { echo "nspawn-check: $d is not a file" >&2; exit 1; }; debs+=("$(readlink -f "$d")"); done
  shift 4
  word=debcheck done_line='debcheck: done=yes'
else
  tarball="$(readlink -f "${1:?usage: nspawn-check.sh BUNDLE.tar.gz [ROOTFS] [SECONDS]}")"
  shift
  word=bootcheck done_line='bootcheck: done'
fi
base="${1:-/var/tmp/portcullis-debian12}"
limit="${2:-300}"
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
mkdir -p "$R/usr/local/lib/portcullis-bootcheck"
if [ "${#debs[@]}" = 0 ]; then
  cp "$(readlink -f "$(command -v node)")" "$R/usr/bin/node"
  mkdir -p "$C/bundle"
  tar -C "$C/bundle" -xzf "$tarball"
  "$C"/bundle/portcullis-*/install.sh --root "$R" --no-start >&2
  cp "$here/image/bootcheck/bootcheck.sh" "$here/image/bootcheck/sandbox.mjs" "$R/usr/local/lib/portcullis-bootcheck/"
  cp "$here/image/bootcheck/portcullis-bootcheck.service" "$R/etc/systemd/system/"
else
  mkdir -p "$R/root/debs"
  cp "${debs[0]}" "$R/root/debs/old.deb"; cp "${debs[1]}" "$R/root/debs/new.deb"; cp "${debs[2]}" "$R/root/debs/bad.deb"
  cp "$here/deb/container-check.sh" "$R/usr/local/lib/portcullis-bootcheck/"
  printf '%s\n' '[Unit]' 'Description=Portcullis package check (board/nspawn-check.sh --deb)' 'After=systemd-networkd.service' \
    '[Service]' 'Type=oneshot' 'ExecStart=/bin/sh /usr/local/lib/portcullis-bootcheck/container-check.sh' 'TimeoutStartSec=infinity' \
    '[Install]' 'WantedBy=multi-user.target' > "$R/etc/systemd/system/portcullis-bootcheck.service"
  # No apt run of the system's own beside the check's (the dpkg lock).
  for t in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer; do ln -sf /dev/null "$R/etc/systemd/system/$t"; done
fi
# The NICs' addresses (systemd-networkd, also without carrier), and the check.
mkdir -p "$R/etc/systemd/network"
for n in ext0:203.0.113.1/24 int0:198.51.100.1/24; do
  printf '[Match]\nName=%s\n\n[Network]\nAddress=%s\nConfigureWithoutCarrier=yes\n' "${n%%:*}" "${n#*:}" > "$R/etc/systemd/network/20-${n%%:*}.network"
done
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
# The container's journal: the check's lines, whole.
journalctl --root="$R" -b -o cat --no-pager 2>/dev/null | grep -a "^\\($word\\|apt\\): " || true
if journalctl --root="$R" -b -o cat --no-pager 2>/dev/null | grep -aqx "$done_line"; then echo "nspawn-check: ok"; exit 0; fi
echo "nspawn-check: the check did not finish"
exit 1
