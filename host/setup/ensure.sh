#!/usr/bin/env bash
# Installs what a command needs when it is missing: npm packages (npm ci) and
# Debian packages (apt-get). Safe to run again: it only acts on what is absent.
# Usage: ensure.sh test|demo
set -eu
cd "$(dirname "$0")/../.."
what="${1:-test}"

# Debian packages each command needs, as "command-to-look-for:package".
need=(gcc:gcc wasm2c:wabt ip:iproute2 tcpdump:tcpdump
  iptables-legacy:iptables make:make g++:g++ python3:python3
  nft:nftables nginx:nginx curl:curl nmap:nmap ping:iputils-ping conntrack:conntrack
  keepalived:keepalived conntrackd:conntrackd)

missing=()
for pair in "${need[@]}"; do
  cmd="${pair%%:*}"; pkg="${pair#*:}"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ -f /usr/src/wasm2c/wasm-rt-impl.c ] || missing+=(wabt)
# The reference topology proxies with nginx's stream module (a separate package).
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
# The NFQUEUE addon (host/native/nfq.c) builds against these headers.
[ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || missing+=(libnetfilter-queue-dev)
# The conntrack addon (host/native/ct.c, flow offload) builds against these.
[ -f /usr/include/libnetfilter_conntrack/libnetfilter_conntrack.h ] || missing+=(libnetfilter-conntrack-dev)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "ensure: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # keepalived and conntrackd (the HA pair, test/ha.test.ts) come with
  # system services; the tests run their own instances in namespaces with
  # their own files and never use a system instance: no service starts
  # during this install (policy-rc.d exit 101).
  ha_pkgs=$(printf '%s\n' "${missing[@]}" | grep -cx 'keepalived\|conntrackd' || true)
  if [ "$ha_pkgs" -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >&2
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

# The wasmtime engine (--engine wasmtime): the wasmtime C API library from
# the pip wheel wasmtime==49.0.0, installed into .wasmtime/ of the project
# (gitignored; not the system Python: --target skips PEP 668's check). Only
# the library is used; the addon build/Release/wasmtime.node links it.
WASMTIME_VERSION=49.0.0
case "$(uname -m)" in aarch64|arm64) wt_arch=linux-aarch64 ;; *) wt_arch=linux-x86_64 ;; esac
wt_lib=".wasmtime/wasmtime/$wt_arch/_libwasmtime.so"
if [ ! -f "$wt_lib" ] || ! grep -qx "Version: $WASMTIME_VERSION" .wasmtime/wasmtime-*.dist-info/METADATA 2>/dev/null; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
      echo "ensure: installing Debian package python3-pip (for wasmtime)" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >&2
    fi
  fi
  echo "ensure: pip install --target .wasmtime wasmtime==$WASMTIME_VERSION" >&2
  rm -rf .wasmtime.tmp
  if python3 -m pip install -q --disable-pip-version-check --no-deps --target .wasmtime.tmp "wasmtime==$WASMTIME_VERSION" >&2 \
    && [ -f ".wasmtime.tmp/wasmtime/$wt_arch/_libwasmtime.so" ]; then
    rm -rf .wasmtime && mv .wasmtime.tmp .wasmtime
  else
    rm -rf .wasmtime.tmp
    echo "ensure: could not install wasmtime $WASMTIME_VERSION for $wt_arch with pip: --engine wasmtime will not be available" >&2
  fi
fi

# The NFQUEUE and conntrack addons are a separate build step (binding.gyp
# exists, but package.json says "gypfile": false so that `npm ci` never runs
# node-gyp and never needs libnetfilter-queue-dev): built here, after the
# Debian packages above, when build/Release/nfq.node or ct.node is missing or
# older than its sources.
# node-gyp (npm's own) builds offline against the installed Node headers.
addon=build/Release/nfq.node
wt_addon=build/Release/wasmtime.node
ct_addon=build/Release/ct.node
# stale OUT SRC...: OUT is missing or older than binding.gyp or a SRC.
stale() {
  local out="$1"; shift
  [ -f "$out" ] || return 0
  for src in binding.gyp "$@"; do [ "$src" -nt "$out" ] && return 0; done
  return 1
}
if stale "$addon" host/native/nfq.c || stale "$ct_addon" host/native/ct.c || { [ -f "$wt_lib" ] && stale "$wt_addon" host/native/wasmtime.c host/native/wasmtime-api.h "$wt_lib"; }; then
  if [ -z "${npm_config_nodedir:-}" ]; then
    nodeprefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
    [ -f "$nodeprefix/include/node/common.gypi" ] && export npm_config_nodedir="$nodeprefix"
  fi
  # make relinks on changed sources, not on a newly installed library.
  if [ -f "$wt_lib" ] && [ "$wt_lib" -nt "$wt_addon" ]; then rm -f "$wt_addon" build/Release/obj.target/wasmtime.node; fi
  echo "ensure: npm run build:addon" >&2
  npm run -s build:addon >&2
  # Up to date now, even where make had nothing to relink (binding.gyp changed).
  touch "$addon" "$ct_addon"; [ ! -f "$wt_addon" ] || touch "$wt_addon"
fi
echo "ensure: ready for $what" >&2
