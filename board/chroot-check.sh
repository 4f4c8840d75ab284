#!/usr/bin/env bash
# Installs an x64 bundle into a fresh Debian 12 root (debootstrap, cached) and
# runs the installed daemon there the way portcullis.service does: as the
# user portcullis with only CAP_NET_ADMIN (ambient and bounding set) and
# no_new_privs, in a network namespace with ext0/int0 (a veth pair), the
# kernel rules loaded from /etc/portcullis/board.yaml by the installed
# `portcullis rules --apply`. Checks: install and a second no-op install in
# the chroot, systemd-analyze verify with the chroot's systemd, the daemon's
# uid and capabilities, its control socket (0600, owned by portcullis),
# `portcullis stats` as the service user, a clean SIGTERM exit; then a board
# with ha:, whose install puts keepalived and conntrackd in from the
# bundle's debs/ with no network, and the generated files.
#
# Usage: board/chroot-check.sh BUNDLE.tar.gz [ROOTFS]
#   ROOTFS defaults to /var/tmp/portcullis-debian12 (made by debootstrap from
#   deb.debian.org the first time, about 2 minutes; kept for later runs).
# Node: Debian 12 ships Node 18; the project needs >= 20, so this machine's
# /usr/bin/node is copied into the root (on a device: NodeSource or the
# Node.js binaries, see board/README.md).
set -eu
tarball="$(readlink -f "${1:?usage: chroot-check.sh BUNDLE.tar.gz [ROOTFS]}")"
base="${2:-/var/tmp/portcullis-debian12}"
[ "$(id -u)" = 0 ] || { echo "chroot-check: needs root" >&2; exit 1; }
[ -f "$tarball" ] || { echo "chroot-check: $1 is not a file" >&2; exit 1; }
# ROOTFS is removed and made again when it is incomplete: never / or a relative path.
case "$base" in /?*) ;; *) echo "chroot-check: ROOTFS must be an absolute path other than /" >&2; exit 1 ;; esac
[ "$(readlink -m "$base")" != / ] || { echo "chroot-check: ROOTFS must not be /" >&2; exit 1; }

if [ ! -x "$base/usr/bin/systemd-analyze" ]; then
  command -v debootstrap >/dev/null || { echo "chroot-check: apt-get install debootstrap" >&2; exit 1; }
  rm -rf "$base.tmp"
  echo "chroot-check: debootstrap bookworm into $base (once)" >&2
  debootstrap --variant=minbase --include=libnetfilter-queue1,libnetfilter-conntrack3,iptables,nftables,systemd,passwd \
    bookworm "$base.tmp" http://deb.debian.org/debian >&2
  mv "$base.tmp" "$base"
fi

# A throwaway copy of the base root for this run.
C="$(mktemp -d /var/tmp/portcullis-chroot.XXXXXX)"
ns="pcchk$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$C"; }
trap cleanup EXIT
cp -a "$base/." "$C/"
cp "$(readlink -f "$(command -v node)")" "$C/usr/bin/node"
mkdir -p "$C/root/bundle"
tar -C "$C/root/bundle" -xzf "$tarball"
b="$(cd "$C/root/bundle" && ls -d portcullis-*)"
[ "$(printf '%s\n' "$b" | wc -l)" = 1 ] && [ -x "$C/root/bundle/$b/install.sh" ] || { echo "chroot-check: $1 does not hold one bundle" >&2; exit 1; }

echo "== install (first run)"
chroot "$C" "/root/bundle/$b/install.sh" --ext-mac dc:a6:32:00:00:01 --int-mac 00:e0:4c:00:00:02
echo "== install (second run)"
out="$(chroot "$C" "/root/bundle/$b/install.sh" --ext-mac dc:a6:32:00:00:01 --int-mac 00:e0:4c:00:00:02)"
echo "$out"
case "$out" in *"nothing to do"*) ;; *) echo "FAIL: the second install was not a no-op" >&2; exit 1 ;; esac
echo "== systemd-analyze verify (the chroot's systemd)"
chroot "$C" systemd-analyze verify /etc/systemd/system/portcullis.service /etc/systemd/system/portcullis-rules.service 2>&1 \
  | grep -v "Ignoring extra certs" || true
chroot "$C" systemd-analyze verify /etc/systemd/system/portcullis.service /etc/systemd/system/portcullis-rules.service >/dev/null 2>&1 \
  || { echo "FAIL: systemd-analyze verify" >&2; exit 1; }

echo "== the installed daemon as the service runs it"
ip netns add "$ns"
ip -n "$ns" link add ext0 type veth peer name int0
for d in lo ext0 int0; do ip -n "$ns" link set "$d" up; done
ip netns exec "$ns" chroot "$C" /bin/sh -eu -c '
mount -t proc proc /proc; mount -t sysfs sysfs /sys
trap "umount /sys; umount /proc" EXIT
portcullis rules --config /etc/portcullis/board.yaml --apply | tail -3
# What RuntimeDirectory= and StateDirectory= make.
install -d -o portcullis -g portcullis -m 0700 /run/portcullis /var/lib/portcullis
setpriv --reuid portcullis --regid portcullis --init-groups --inh-caps -all,+net_admin \
  --ambient-caps -all,+net_admin --bounding-set -all,+net_admin --no-new-privs \
  /usr/bin/node /opt/portcullis/current/dist/host/cli.js run --policy /etc/portcullis/policy.yaml \
  --board /etc/portcullis/board.yaml --control /run/portcullis/control.sock --state-dir /var/lib/portcullis \
  > /var/tmp/daemon.log 2>&1 &
pid=$!
for i in $(seq 100); do [ -S /run/portcullis/control.sock ] && break; sleep 0.1; done
sleep 0.5
grep -E "^(Uid|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/$pid/status
grep -q "^CapEff:.*0000000000001000$" /proc/$pid/status || { echo "FAIL: capabilities"; exit 1; }
grep -q "^NoNewPrivs:.*1$" /proc/$pid/status || { echo "FAIL: no_new_privs"; exit 1; }
uid=$(id -u portcullis)
grep -q "^Uid:[[:space:]]*$uid[[:space:]]" /proc/$pid/status || { echo "FAIL: uid"; exit 1; }
ls -l /run/portcullis/control.sock
[ "$(stat -c %a:%U /run/portcullis/control.sock)" = 600:portcullis ] || { echo "FAIL: socket mode/owner"; exit 1; }
setpriv --reuid portcullis --regid portcullis --init-groups --bounding-set -all portcullis stats | head -3
kill -TERM $pid
st=0; wait $pid || st=$?
echo "daemon exit status $st"
[ "$st" = 0 ] || { cat /var/tmp/daemon.log; exit 1; }
portcullis rules --config /etc/portcullis/board.yaml --remove
' 2>&1 | grep -v "Ignoring extra certs"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "FAIL: the installed daemon" >&2; exit 1; }
echo "== an HA board: keepalived and conntrackd from the bundle, offline"
# The board gains ha:; install.sh, run with no network (the namespace above
# has none), installs the two from the bundle's debs/ with what they need,
# leaves conntrackd's own service disabled, and writes keepalived's files;
# a run after that changes nothing.
printf '%s\n' "ha:" "  vrid: 51" "  priority: 150" "  internal: { virtual: [198.51.100.1/24], peer: 198.51.100.3 }" \
  "  sync: { enabled: true, side: internal, address: 198.51.100.2, peer: 198.51.100.3 }" >> "$C/etc/portcullis/board.yaml"
[ ! -e "$C/usr/sbin/keepalived" ] && [ ! -e "$C/usr/sbin/conntrackd" ] || { echo "FAIL: the base root has keepalived or conntrackd already" >&2; exit 1; }
out="$(ip netns exec "$ns" chroot "$C" "/root/bundle/$b/install.sh" --ext-mac dc:a6:32:00:00:01 --int-mac 00:e0:4c:00:00:02 2>&1)" \
  || { echo "$out"; echo "FAIL: install with ha:" >&2; exit 1; }
echo "$out"
case "$out" in *"install: installed keepalived conntrackd from the bundle"*) ;; *) echo "FAIL: keepalived and conntrackd not installed from the bundle" >&2; exit 1 ;; esac
for p in keepalived conntrackd; do
  [ "$(chroot "$C" dpkg-query -W -f '${db:Status-Status}' "$p")" = installed ] || { echo "FAIL: $p is not installed" >&2; exit 1; }
done
chroot "$C" keepalived --version 2>&1 | head -1
[ ! -e "$C/etc/systemd/system/multi-user.target.wants/conntrackd.service" ] || { echo "FAIL: conntrackd.service is enabled" >&2; exit 1; }
[ ! -e "$C/usr/sbin/policy-rc.d" ] || { echo "FAIL: policy-rc.d left behind" >&2; exit 1; }
for f in keepalived.conf portcullis-notify.sh portcullis-conntrackd.conf; do
  head -2 "$C/etc/keepalived/$f" | grep -q '^# portcullis-ha sha256=' || { echo "FAIL: /etc/keepalived/$f was not written by portcullis ha" >&2; exit 1; }
done
grep -q 'virtual_router_id 51' "$C/etc/keepalived/keepalived.conf" || { echo "FAIL: keepalived.conf is not the board's" >&2; exit 1; }
out="$(ip netns exec "$ns" chroot "$C" "/root/bundle/$b/install.sh" --ext-mac dc:a6:32:00:00:01 --int-mac 00:e0:4c:00:00:02 2>&1)"
echo "$out"
case "$out" in *"nothing to do"*) ;; *) echo "FAIL: the install after the HA packages was not a no-op" >&2; exit 1 ;; esac
case "$out" in *"install: wrote"*) echo "FAIL: the no-op install wrote a file" >&2; exit 1 ;; esac
echo "chroot-check: ok"
