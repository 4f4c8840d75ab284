#!/bin/sh
# Inside the container board/nspawn-check.sh --deb boots (run by its unit,
# under systemd): the Debian package's life as an operator or a fleet lives
# it, one "debcheck: KEY=VALUE" line per finding (test/board-deb.ts reads
# them; apt's output as "apt: " lines). /root/debs/{old,new,bad}.deb: a
# version, a newer one, one whose `portcullis check` fails.
#   apt install ./old.deb; the units enabled; the daemon active (Type=notify:
#   READY), the self-test (the files against dpkg's md5sums, its queue rules,
#   the daemon, every queue bound);
#   the operator edits /etc/portcullis/policy.yaml; apt install ./new.deb
#   with --force-confold: the edit kept, the daemon restarted after it;
#   apt install ./bad.deb: apt fails, the same daemon and its rules stay;
#   apt install ./new.deb (back), then ./old.deb (a downgrade): each restarts;
#   apt remove: the daemon stopped, the rules gone, the config kept;
#   apt purge: no file of the package, no /etc/portcullis, no user.
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
r() { echo "debcheck: $1=$2"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
pid() { systemctl show -p MainPID --value portcullis.service; }
state() { echo "$(systemctl show -p ActiveState --value portcullis.service)/$(systemctl show -p ActiveState --value portcullis-rules.service)"; }
# The self-test of the installed tree: its queue rules as the board config
# makes them, the daemon on its socket, every queue bound.
selftest() { /usr/lib/portcullis/node/bin/node /usr/lib/portcullis/app/board/bench/selftest.mjs --app /usr/lib/portcullis/app \
  --out /var/tmp/pdeb-selftest --checks installed,board-config,kernel-rules,daemon,queues-bound 2>&1 | sed -n 's/^selftest: \([0-9]* passed, [0-9]* failed\).*/\1/p'; }
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
r purge_links "$(ls /etc/systemd/system/multi-user.target.wants/ | grep -c '^portcullis\(-rules\|-firstboot\)\?\.service$')"
r purge_user "$(getent passwd portcullis; getent group portcullis; grep -c '^portcullis:' /etc/shadow /etc/gshadow | tr '\n' ' ')"
r done yes
systemctl poweroff --no-block
