#!/usr/bin/env bash
# The Debian package's life under a real systemd: boots a copy of a Debian 12
# root under systemd-nspawn (systemd as PID 1, ext0/int0 veths whose other
# ends stay down here, as board/nspawn-check.sh does) with a oneshot unit that
# runs, inside, what an operator or a fleet runs, and prints one
# "debcheck: KEY=VALUE" line per finding (test/board-deb.ts reads them):
#   apt install ./OLD.deb; the units enabled; the daemon active (Type=notify:
#   READY) with its queue rules loaded (the self-test);
#   the operator edits /etc/portcullis/policy.yaml; apt install ./NEW.deb
#   with --force-confold: the edit kept, the daemon restarted, on NEW;
#   apt install ./BROKEN.deb (its check fails): apt fails, the NEW daemon
#   (same pid) and its rules stay;
#   apt install ./NEW.deb (back), then ./OLD.deb (a downgrade): each restarts;
#   apt remove: the daemon stopped, the rules gone, the config kept;
#   apt purge: no file of the package, no /etc/portcullis, no user.
# Usage: board/deb-nspawn-check.sh OLD.deb NEW.deb BROKEN.deb [ROOTFS] [SECONDS]
#   ROOTFS: the Debian 12 root board/chroot-check.sh made (default
#   /var/tmp/portcullis-debian12); SECONDS: limit (default 600).
set -eu
old="$(readlink -f "${1:?usage: deb-nspawn-check.sh OLD.deb NEW.deb BROKEN.deb [ROOTFS] [SECONDS]}")"
new="$(readlink -f "${2:?NEW.deb}")"
bad="$(readlink -f "${3:?BROKEN.deb}")"
base="${4:-/var/tmp/portcullis-debian12}"
limit="${5:-600}"
[ "$(id -u)" = 0 ] || { echo "deb-nspawn-check: needs root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "deb-nspawn-check: apt-get install systemd-container" >&2; exit 1; }
[ -x "$base/usr/lib/systemd/systemd" ] || { echo "deb-nspawn-check: no Debian root with systemd in $base (board/chroot-check.sh makes it)" >&2; exit 1; }

C="$(mktemp -d /var/tmp/pdeb-nspawn.XXXXXX)"
npid=""
cleanup() { [ -z "$npid" ] || kill "$npid" 2>/dev/null || true; rm -rf "$C"; }
trap cleanup EXIT
R="$C/root"
cp -a "$base/." "$R"
mkdir -p "$R/root/debs"
cp "$old" "$R/root/debs/old.deb"; cp "$new" "$R/root/debs/new.deb"; cp "$bad" "$R/root/debs/bad.deb"
for n in ext0:203.0.113.1/24 int0:198.51.100.1/24; do
  printf '[Match]\nName=%s\n\n[Network]\nAddress=%s\nConfigureWithoutCarrier=yes\n' "${n%%:*}" "${n#*:}" > "$R/etc/systemd/network/20-${n%%:*}.network"
done
ln -sf /lib/systemd/system/systemd-networkd.service "$R/etc/systemd/system/multi-user.target.wants/"
echo portcullis > "$R/etc/hostname"
# No apt run of the system's own beside the check's (the dpkg lock).
for t in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer; do ln -sf /dev/null "$R/etc/systemd/system/$t"; done
cat > "$R/etc/systemd/system/pdeb-check.service" <<'EOF'
[Unit]
Description=Portcullis package check (board/deb-nspawn-check.sh)
After=systemd-networkd.service
[Service]
Type=oneshot
ExecStart=/bin/sh /root/pdeb-check.sh
StandardOutput=journal+console
StandardError=journal
TimeoutStartSec=infinity
[Install]
WantedBy=default.target
EOF
ln -sf /etc/systemd/system/pdeb-check.service "$R/etc/systemd/system/multi-user.target.wants/"
cat > "$R/root/pdeb-check.sh" <<'EOF'
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
r() { echo "debcheck: $1=$2"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
pid() { systemctl show -p MainPID --value portcullis.service; }
state() { echo "$(systemctl show -p ActiveState --value portcullis.service)/$(systemctl show -p ActiveState --value portcullis-rules.service)"; }
# The self-test of the installed tree: its queue rules as the board config
# makes them, the daemon on its socket, every queue bound.
selftest() { /usr/lib/portcullis/node/bin/node /usr/lib/portcullis/app/board/bench/selftest.mjs --app /usr/lib/portcullis/app \
  --out /var/tmp/pdeb-selftest --checks installed,kernel-rules,daemon,queues-bound 2>&1 | sed -n 's/^selftest: \([0-9]* passed, [0-9]* failed\).*/\1/p'; }
queues() { { iptables-legacy-save 2>/dev/null; nft list ruleset 2>/dev/null; } | grep -ci 'queue'; }
pkg() { dpkg-query -W -f='${Status} ${Version}' portcullis 2>/dev/null; }
ai() { apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold "$1" > /var/tmp/apt.log 2>&1; s=$?; sed 's/^/apt: /' /var/tmp/apt.log; return $s; }

ai /root/debs/old.deb; r install $?
r enabled "$(systemctl is-enabled portcullis-rules.service portcullis.service portcullis-firstboot.service | tr '\n' ' ')"
r state "$(state)"; r selftest "$(selftest)"
r version "$(portcullis --version)"
p1="$(pid)"
sed -i 's/external_http_80: true/external_http_80: false/' /etc/portcullis/policy.yaml
edited="$(sha256sum < /etc/portcullis/policy.yaml)"

ai /root/debs/new.deb; r upgrade $?
r upgrade_kept "$(yn [ "$(sha256sum < /etc/portcullis/policy.yaml)" = "$edited" ])"
r upgrade_dist "$(yn grep -q '^# shipped with' /etc/portcullis/policy.yaml.dpkg-dist)"
p2="$(pid)"; r upgrade_restarted "$(yn [ "$p2" != "$p1" ] && [ "$p2" != 0 ])"
r upgrade_after_edit "$(yn [ "$(date -d "$(systemctl show -p ExecMainStartTimestamp --value portcullis.service)" +%s)" -ge "$(stat -c %Y /etc/portcullis/policy.yaml)" ])"
r upgrade_state "$(state)"; r upgrade_pkg "$(pkg)"; r upgrade_version "$(portcullis --version)"; r upgrade_selftest "$(selftest)"

ai /root/debs/bad.deb; r bad $?
r bad_said "$(yn grep -q 'nothing restarted: the running daemon and its rules stay as they were' /var/tmp/apt.log)"
r bad_same_daemon "$(yn [ "$(pid)" = "$p2" ])"
r bad_state "$(state)"; r bad_pkg "$(pkg)"; r bad_queues "$(yn [ "$(queues)" -gt 0 ])"; r bad_selftest "$(selftest)"

ai /root/debs/new.deb; r back $?
p3="$(pid)"; r back_restarted "$(yn [ "$p3" != "$p2" ] && [ "$p3" != 0 ])"
r back_state "$(state)"; r back_pkg "$(pkg)"; r back_selftest "$(selftest)"
ai /root/debs/old.deb; r down $?
p4="$(pid)"; r down_restarted "$(yn [ "$p4" != "$p3" ] && [ "$p4" != 0 ])"
r down_state "$(state)"; r down_pkg "$(pkg)"; r down_version "$(portcullis --version)"; r down_selftest "$(selftest)"
r down_kept "$(yn [ "$(sha256sum < /etc/portcullis/policy.yaml)" = "$edited" ])"

dpkg -L portcullis > /var/tmp/pdeb-files
apt-get remove -y -q portcullis > /var/tmp/apt.log 2>&1; r remove $?
r remove_daemon "$(yn [ -z "$(awk -v u="$(id -u portcullis)" '/^Uid:/ && $2 == u { print FILENAME }' /proc/[0-9]*/status 2>/dev/null)" ])"
r remove_state "$(systemctl show -p ActiveState --value portcullis.service)"
r remove_queues "$(queues)"
r remove_config "$(yn [ "$(sha256sum < /etc/portcullis/policy.yaml)" = "$edited" ])"
r remove_pkg "$(pkg)"
apt-get purge -y -q portcullis > /var/tmp/apt.log 2>&1; r purge $?
left=""
while read -r p; do if { [ -e "$p" ] || [ -L "$p" ]; } && [ ! -d "$p" ]; then left="$left $p"; fi; done < /var/tmp/pdeb-files
r purge_left_files "${left:-none}"
r purge_left_dirs "$(ls -d /etc/portcullis /usr/lib/portcullis /var/lib/portcullis /run/portcullis 2>/dev/null | tr '\n' ' ' | grep . || echo none)"
r purge_links "$(ls /etc/systemd/system/multi-user.target.wants/ | grep -c portcullis)"
r purge_user "$(getent passwd portcullis; getent group portcullis; grep -c '^portcullis:' /etc/shadow /etc/gshadow | tr '\n' ' ')"
r done yes
systemctl poweroff --no-block
EOF

tag="pdeb$$"
timeout "$limit" systemd-nspawn -q -D "$R" -b --register=no --keep-unit -M "$tag" \
  --network-veth-extra="${tag}e:ext0" --network-veth-extra="${tag}i:int0" > "$C/console.log" 2>&1 < /dev/null &
npid=$!
wait "$npid" || true
npid=""
# The check's lines, whole, from the container's journal.
journalctl --root="$R" -b -o cat --no-pager -u pdeb-check.service 2>/dev/null | grep -a '^\(debcheck\|apt\): ' || true
if journalctl --root="$R" -b -o cat --no-pager 2>/dev/null | grep -aqx 'debcheck: done=yes'; then echo "deb-nspawn-check: ok"; exit 0; fi
tr -d '\r' < "$C/console.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | tail -50
echo "deb-nspawn-check: the check did not finish"
exit 1
