#!/bin/sh
# The boot check of board/image/qemu-boot.sh (see portcullis-bootcheck.service):
# every line it prints starts with "bootcheck: "; board/image/qemu-boot.sh and
# test/board-image.ts read them. Then it powers the machine off.
say() { echo "bootcheck: $*"; }
show() { systemctl show -p "$2" "$1" | sort | tr '\n' ' ' | sed 's/ *$//'; } # UNIT PROPS: "A=x B=y", sorted
here=/usr/local/lib/portcullis-bootcheck
# The Debian package's tree, Node and unit (the image), or the bundle's
# (install.sh: board/nspawn-check.sh).
if [ -d /usr/lib/portcullis/app ]; then
  app=/usr/lib/portcullis/app node=/usr/lib/portcullis/node/bin/node unit=/lib/systemd/system/portcullis.service
else
  app=/opt/portcullis/current node=/usr/bin/node unit=/etc/systemd/system/portcullis.service
fi

# The units as systemd ran them: state, result, restarts.
for u in portcullis-growroot portcullis-firstboot portcullis-rules portcullis portcullis-ssh-keygen; do
  say "unit $u: $(show "$u.service" ActiveState,NRestarts,Result,SubState)"
done
# Their exposure as the running systemd sees them.
for u in portcullis portcullis-rules portcullis-firstboot portcullis-growroot portcullis-ssh-keygen; do
  say "exposure $u.service $(systemd-analyze security --no-pager "$u.service" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
done
say "ssh host keys: $(ls /etc/ssh/ssh_host_*_key 2>/dev/null | wc -l)"
# IPAddressDeny= is a BPF program on the unit's cgroup: cgroup v2 only
# (systemd runs without it on a v1 hierarchy, as in some containers).
[ -f /sys/fs/cgroup/cgroup.controllers ] && say "cgroup: v2" || say "cgroup: v1"

# The rules the rules unit loaded, and the daemon's queues (the self-test,
# which reads nftables or iptables-legacy and /proc/net/netfilter).
"$node" "$app/board/bench/selftest.mjs" --app "$app" --out /var/tmp/bootcheck --checks installed,board-config,kernel-rules,daemon,queues-bound 2>&1 | sed 's/^/bootcheck: selftest: /'

# Traffic the policy decides: connections from proxy_internal (int0,
# 198.51.100.1) to the Front End pool's 4443 (198.51.100.10), let in by the
# rule int-https-4443 in OUTPUT, one every 2 s while the self-test watches.
# No one answers the address (int0's network is qemu's, restricted), so
# nothing leaves; the SYNs are decided all the same.
(while :; do timeout 2 bash -c 'exec 3<>/dev/tcp/198.51.100.10/4443' 2>/dev/null; sleep 1; done) &
conn=$!
"$node" "$app/board/bench/selftest.mjs" --app "$app" --out /var/tmp/bootcheck --checks board-config,daemon,counters-moving --wait 30 2>&1 | sed 's/^/bootcheck: selftest: /'
kill "$conn"

# A reload through the unit's ExecReload, inside the sandbox.
pid="$(systemctl show -p MainPID --value portcullis.service)"
if systemctl reload portcullis.service; then
  last="$(portcullis stats --json | "$node" -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{const r=JSON.parse(s).reloads.at(-1);console.log(`${r.trigger} ${r.ok?"ok":"FAILED "+r.error}`)})')"
  say "reload: $last; the daemon pid $pid -> $(systemctl show -p MainPID --value portcullis.service), $(systemctl is-active portcullis.service), restarts $(systemctl show -p NRestarts --value portcullis.service)"
else
  say "reload: systemctl reload failed"
fi

# A copy of the daemon's sandbox running sandbox.mjs; then the same with
# MemoryDenyWriteExecute=yes, which V8 cannot run under. First the unit's
# IP allow list as systemd holds it, and sandbox.mjs's network probes as
# root outside any sandbox: what the allow list changes.
sandbox() { # NAME EXTRA-SETTING
  { echo "[Service]"
    sed -n '/^\[Service\]/,/^\[Install\]/p' "$unit" |
      grep -Ev '^(\[Service\]|\[Install\]|Type=|NotifyAccess=|WatchdogSec=|Exec|KillSignal=|TimeoutStopSec=|Restart|StateDirectory|RuntimeDirectory)'
    echo "Type=oneshot"
    echo "$2"
    echo "ExecStart=$node $here/sandbox.mjs"
  } > "/run/systemd/system/$1.service"
  systemctl daemon-reload
  systemctl start "$1.service" 2>/dev/null
  say "$3: result $(show "$1.service" ExecMainCode,ExecMainStatus,Result)"
  say "$3 output: $(journalctl -b -u "$1.service" -o cat | grep '^sandbox: ' | tail -1 | sed 's/^sandbox: //')"
}
say "ip allow list: $(show portcullis.service IPAddressAllow,IPAddressDeny)"
say "unsandboxed output: $("$node" $here/sandbox.mjs --net-only | sed 's/^sandbox: //')"
sandbox portcullis-sandbox "" sandbox
sandbox portcullis-sandbox-mdwe MemoryDenyWriteExecute=yes mdwe

# No process of ours was killed by the system call filter (SIGSYS).
say "sigsys: $(journalctl -b -o cat | grep -c 'status=31/SYS')"
say "done"
systemctl poweroff --no-block
