#!/usr/bin/env bash
# Boots a copy of a board image under qemu-system-aarch64 (machine `virt`, not
# a Pi: no Pi firmware runs, the image's own Debian kernel and initrd are
# loaded by qemu) with two NICs whose MACs are the example first-boot file's,
# and prints the serial console until the boot is done. What it shows: the
# image's root boots with systemd, portcullis-firstboot.service applies the
# boot partition's file (NICs renamed ext0/int0 by MAC, user, policy), and
# portcullis-rules and portcullis (the daemon binding its queues on a real
# arm64 kernel) start, and the root grows to the (1 GiB larger) disk. Then
# board/image/bootcheck/ (added to the copy only, enabled after the units)
# checks the appliance under its real systemd with the units' sandboxes: each
# unit's state and exposure, the rules loaded and the queues bound (the
# self-test), traffic decided by a rule (counters-moving), a reload through
# the unit, a copy of the daemon's sandbox running a worker thread with
# WebAssembly, loopback and a refused address, no SIGSYS; it prints
# "bootcheck: ..." lines and powers off. The NICs are on qemu's user network
# with restrict=on: nothing the guest sends leaves qemu. What it cannot show:
# the Pi's own boot (GPU firmware, config.txt, its device tree) and its NICs;
# that needs the board.
#
# Usage: board/image/qemu-boot.sh IMAGE [SECONDS]   (default 900)
# Exit status 0 when the console shows the daemon ready and the boot check
# done, 1 otherwise.
set -eu
image="$(readlink -f "${1:?usage: qemu-boot.sh IMAGE [SECONDS]}")"
limit="${2:-900}"
command -v qemu-system-aarch64 >/dev/null || { echo "qemu-boot: apt-get install qemu-system-arm" >&2; exit 1; }

work="$(mktemp -d /var/tmp/portcullis-qemu.XXXXXX)"
trap 'kill "$qpid" 2>/dev/null || true; rm -rf "$work"' EXIT
qpid=""
# A copy, so the image stays as built (the first boot changes it).
cp --sparse=always "$image" "$work/disk.img"
# A "card" 1 GiB larger than the image: the root grows into it.
truncate -s +1G "$work/disk.img"
boot_start="$(sfdisk -J "$work/disk.img" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).partitiontable.partitions[0].start))')"
kernel="$(mdir -i "$work/disk.img@@$((boot_start * 512))" -b ::/ | sed -n 's|^::/\(vmlinuz-.*\)$|\1|p' | head -1)"
initrd="$(mdir -i "$work/disk.img@@$((boot_start * 512))" -b ::/ | sed -n 's|^::/\(initrd\.img-.*\)$|\1|p' | head -1)"
mcopy -i "$work/disk.img@@$((boot_start * 512))" "::/$kernel" "::/$initrd" "$work/"
# The boot check, into the copy's root (debugfs writes the ext4 in place).
here="$(cd "$(dirname "$0")" && pwd)"
root_start="$(sfdisk -J "$work/disk.img" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).partitiontable.partitions[1].start))')"
rootfs="$work/disk.img?offset=$((root_start * 512))"
debugfs -w -f - "$rootfs" >/dev/null 2>"$work/debugfs.log" <<EOF
mkdir /usr/local/lib/portcullis-bootcheck
write $here/bootcheck/bootcheck.sh /usr/local/lib/portcullis-bootcheck/bootcheck.sh
write $here/bootcheck/sandbox.mjs /usr/local/lib/portcullis-bootcheck/sandbox.mjs
write $here/bootcheck/portcullis-bootcheck.service /etc/systemd/system/portcullis-bootcheck.service
symlink /etc/systemd/system/multi-user.target.wants/portcullis-bootcheck.service /etc/systemd/system/portcullis-bootcheck.service
EOF
for f in /usr/local/lib/portcullis-bootcheck/bootcheck.sh /usr/local/lib/portcullis-bootcheck/sandbox.mjs /etc/systemd/system/portcullis-bootcheck.service \
  /etc/systemd/system/multi-user.target.wants/portcullis-bootcheck.service; do
  debugfs -R "stat $f" "$rootfs" 2>/dev/null | grep -q '^Inode:' || { cat "$work/debugfs.log" >&2; echo "qemu-boot: could not add $f to the copy" >&2; exit 1; }
done

# The kernel command line of the image's cmdline.txt, with the virt
# machine's console (ttyAMA0) instead of the Pi's, and the journal copied to
# it (whole lines: systemd's own status lines are cut to the console width).
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
  -kernel "$work/$kernel" -initrd "$work/$initrd" \
  -append "console=ttyAMA0 root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait systemd.journald.forward_to_console=1" \
  -drive "file=$work/disk.img,format=raw,if=virtio" \
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=dc:a6:32:00:00:01,romfile= \
  -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1,mac=00:e0:4c:00:00:02,romfile= \
  > "$work/console.log" 2>&1 < /dev/null &
qpid=$!
start=$SECONDS end=$((SECONDS + limit)) ready=0 took=0 checked=0
while [ $SECONDS -lt $end ] && kill -0 "$qpid" 2>/dev/null; do
  # Ready (Type=notify); then the boot check, which powers off.
  if [ "$ready" = 0 ] && grep -q 'systemd\[1\]: Started portcullis.service' "$work/console.log"; then ready=1; took=$((SECONDS - start)); fi
  grep -q 'systemd\[1\]: Failed to start portcullis.service' "$work/console.log" && break
  grep -q 'bootcheck: done' "$work/console.log" && { checked=1; break; }
  sleep 5
done
# The power-off after the check (at most 60 s more).
for _ in $(seq 12); do kill -0 "$qpid" 2>/dev/null || break; sleep 5; done
# The check may finish and power off between two looks above: look once more.
if [ "$ready" = 0 ] && grep -q 'systemd\[1\]: Started portcullis.service' "$work/console.log"; then ready=1; took=$((SECONDS - start)); fi
grep -q 'bootcheck: done' "$work/console.log" && checked=1
tr -d '\r' < "$work/console.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'
echo   # the console may end mid-line (a login prompt)
if [ "$ready" = 1 ] && [ "$checked" = 1 ]; then
  echo "qemu-boot: ok (the daemon was ready after about $took s; the boot check done after $((SECONDS - start)) s)"
  exit 0
fi
[ "$ready" = 1 ] && echo "qemu-boot: the daemon was ready after about $took s, but the boot check did not finish" || echo "qemu-boot: the daemon did not become ready"
exit 1
