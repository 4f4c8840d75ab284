#!/usr/bin/env bash
# Boots a copy of a board image under qemu-system-aarch64 (machine `virt`, not
# a Pi: no Pi firmware runs, the image's own Debian kernel and initrd are
# loaded by qemu) with two NICs whose MACs are the example first-boot file's,
# and prints the serial console until the boot is done. What it shows: the
# image's root boots with systemd, portcullis-firstboot.service applies the
# boot partition's file (NICs renamed ext0/int0 by MAC, user, policy), and
# portcullis-rules and portcullis (the daemon binding its queues on a real
# arm64 kernel) start, and the root grows to the (1 GiB larger) disk. What it cannot show: the Pi's own boot (GPU firmware,
# config.txt, its device tree) and its NICs; that needs the board.
#
# Usage: board/image/qemu-boot.sh IMAGE [SECONDS]   (default 900)
# Exit status 0 when the console shows the daemon ready, 1 otherwise.
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

# The kernel command line of the image's cmdline.txt, with the virt
# machine's console (ttyAMA0) instead of the Pi's, and the journal copied to
# it (whole lines: systemd's own status lines are cut to the console width).
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
  -kernel "$work/$kernel" -initrd "$work/$initrd" \
  -append "console=ttyAMA0 root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait systemd.journald.forward_to_console=1" \
  -drive "file=$work/disk.img,format=raw,if=virtio" \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0,mac=dc:a6:32:00:00:01,romfile= \
  -netdev user,id=n1 -device virtio-net-pci,netdev=n1,mac=00:e0:4c:00:00:02,romfile= \
  > "$work/console.log" 2>&1 < /dev/null &
qpid=$!
start=$SECONDS end=$((SECONDS + limit)) st=1 took=0
while [ $SECONDS -lt $end ] && kill -0 "$qpid" 2>/dev/null; do
  # Ready (Type=notify); then 20 s more of the console.
  if grep -q 'systemd\[1\]: Started portcullis.service' "$work/console.log"; then st=0; took=$((SECONDS - start)); sleep 20; break; fi
  grep -q 'systemd\[1\]: Failed to start portcullis.service' "$work/console.log" && break
  sleep 5
done
tr -d '\r' < "$work/console.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'
echo   # the console may end mid-line (a login prompt)
[ "$st" = 0 ] && echo "qemu-boot: ok (the daemon was ready after about $took s)" || echo "qemu-boot: the daemon did not become ready"
exit "$st"
