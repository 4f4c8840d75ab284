#!/usr/bin/env bash
# Runs the arm64 bundle's code under qemu-user on this x86_64 machine:
# Debian's arm64 Node.js (18, the only arm64 Node in Debian 12's archive;
# unpacked with dpkg -x into a cache, not installed) loads the
# cross-compiled addon (build/Release/nfq.node) and runs
# `portcullis check` on the shipped policy with the arm64 bundle's JS.
#
# What cannot run under qemu-user: binding a queue. qemu-user 7.2 refuses
# netlink sockets other than NETLINK_ROUTE/AUDIT/KOBJECT_UEVENT, so the
# addon's NETLINK_NETFILTER socket fails with EPROTONOSUPPORT; the daemon's
# packet path needs the real board (or qemu-system).
#
# Usage: board/arm64-qemu-check.sh BUNDLE-arm64.tar.gz [CACHE]
# Needs: qemu-user-static, the arm64 architecture in dpkg (dpkg
# --add-architecture arm64; apt-get update) and the arm64 runtime libraries
# of node (installed below with apt-get when missing).
set -eu
tarball="$(readlink -f "${1:?usage: arm64-qemu-check.sh BUNDLE-arm64.tar.gz [CACHE]}")"
cache="${2:-/var/tmp/portcullis-arm64-node}"
command -v qemu-aarch64-static >/dev/null || { echo "arm64-qemu-check: apt-get install qemu-user-static" >&2; exit 1; }
export TMPDIR="${TMPDIR:-/var/tmp}"

if [ ! -x "$cache/x/usr/bin/node" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { echo "arm64-qemu-check: dpkg --add-architecture arm64 && apt-get update" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libbrotli1:arm64 libc-ares2:arm64 libicu72:arm64 libnghttp2-14:arm64 libssl3:arm64 \
    libstdc++6:arm64 libuv1:arm64 zlib1g:arm64 libnetfilter-queue1:arm64 libnfnetlink0:arm64 >&2
  rm -rf "$cache.tmp"; mkdir -p "$cache.tmp"
  (cd "$cache.tmp" && apt-get download nodejs:arm64 libnode108:arm64 node-cjs-module-lexer node-acorn node-undici >&2 \
    && for d in *.deb; do dpkg -x "$d" x; done)
  rm -rf "$cache"; mv "$cache.tmp" "$cache"
fi

work="$(mktemp -d /var/tmp/portcullis-arm64.XXXXXX)"
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$tarball"
app="$(ls -d "$work"/portcullis-*-arm64)/app"
# -L: the arm64 node's /usr/share/nodejs and /usr/lib/aarch64-linux-gnu
# files come from the cache; the rest (arm64 libc, libnetfilter_queue) from
# this machine's multiarch directories.
run() { qemu-aarch64-static -L "$cache/x" "$cache/x/usr/bin/node" "$@"; }

file -b "$app/build/Release/nfq.node"
run -e "
  const m = require('$app/build/Release/nfq.node');
  console.log('node', process.version, process.arch, 'addon exports:', Object.keys(m).sort().join(','));
  if (process.arch !== 'arm64' || typeof m.Queue !== 'function') process.exit(1);"
run "$app/dist/host/cli.js" check "$app/host/policy/default.yaml" | tail -1
echo "arm64-qemu-check: ok"
