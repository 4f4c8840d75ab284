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
  nft:nftables nginx:nginx curl:curl nmap:nmap ping:iputils-ping)

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

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "ensure: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >&2
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "ensure: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi

# The NFQUEUE addon is a separate build step (binding.gyp exists, but
# package.json says "gypfile": false so that `npm ci` never runs node-gyp and
# never needs libnetfilter-queue-dev): built here, after the Debian packages
# above, when build/Release/nfq.node is missing or older than its sources.
# node-gyp (npm's own) builds offline against the installed Node headers.
addon=build/Release/nfq.node
if [ ! -f "$addon" ] || [ host/native/nfq.c -nt "$addon" ] || [ binding.gyp -nt "$addon" ]; then
  if [ -z "${npm_config_nodedir:-}" ]; then
    nodeprefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
    [ -f "$nodeprefix/include/node/common.gypi" ] && export npm_config_nodedir="$nodeprefix"
  fi
  echo "ensure: npm run build:addon" >&2
  npm run -s build:addon >&2
fi
echo "ensure: ready for $what" >&2
