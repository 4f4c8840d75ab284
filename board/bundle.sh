#!/usr/bin/env bash
# Builds the install bundle for the board:
#   dist-board/portcullis-<version>-<arch>.tar.gz
# holding app/ (the host as compiled by tsc to plain JavaScript, the release
# wasm core, the NFQUEUE addon for <arch>, the production node_modules, the
# benchmarks and the on-device checks of board/bench/),
# overlay/ (board/rootfs_overlay), debs/ (keepalived and conntrackd with what
# they depend on, for an HA pair), install.sh and MANIFEST.sha256.
#
# Usage: npm run board:bundle -- --arch x64|arm64 [--ext-mac MAC --int-mac MAC]
#                                [--out DIR] [--no-build] [--wasmtime-lib FILE]
#                                [--tree DIR]
#   --ext-mac/--int-mac  fill the .link templates now (else install.sh does)
#   --no-build           ship dist/ and build/ as they are (no npm run build)
#   --tree DIR           only stage app/ and overlay/ into DIR (a new directory) and
#                        stop: what board/deb.sh packages, so the bundle and the
#                        Debian package ship the same files from this one list
#   --wasmtime-lib FILE  the wasmtime C API library of the target (arm64: needed for
#                        --engine wasmtime; x64: default .wasmtime/, from ensure.sh)
#
# arm64: the addon is cross-compiled with Debian's crossbuild-essential-arm64
# against libnetfilter-queue-dev:arm64 and the Node headers of this machine
# (N-API: the headers are the same on every arch). If the cross toolchain or
# the arm64 libraries are missing the bundle is built without the addon and
# install.sh builds it on the device (it says what to install if it cannot).
set -eu
cd "$(dirname "$0")/.."
root="$PWD"

die() { echo "bundle: $*" >&2; exit 1; }
shown() { printf '%q' "$1"; }
arch="" ext_mac="" int_mac="" out="dist-board" build=1 wasmtime_lib="" tree=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch|--ext-mac|--int-mac|--out|--wasmtime-lib|--tree) [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" ;;
  esac
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --ext-mac) ext_mac="$2"; shift 2 ;;
    --int-mac) int_mac="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --wasmtime-lib) wasmtime_lib="$2"; shift 2 ;;
    --tree) tree="$2"; shift 2 ;;
    *) die "unknown argument: $(shown "$1")" ;;
  esac
done
case "$arch" in
  x64|arm64) ;;
  *) die "--arch x64|arm64 is required" ;;
esac
[ ! -e "$out" ] || [ -d "$out" ] || die "--out $(shown "$out"): not a directory"
[ -z "$tree" ] || [ ! -e "$tree" ] || die "--tree $(shown "$tree"): already there (give a new directory)"
version="$(node -p 'require("./package.json").version')"
[[ "$version" =~ ^[0-9A-Za-z][0-9A-Za-z._-]*$ ]] && [[ "$version" != *..* ]] || die "package.json's version $(shown "$version") is not a version"
name="portcullis-$version-$arch"

if [ "$build" = 1 ]; then
  npm run -s build >&2
fi
[ -f dist/host/cli.js ] || { echo "bundle: dist/host/cli.js missing (npm run build)" >&2; exit 1; }
[ -f build/release.wasm ] || { echo "bundle: build/release.wasm missing (npm run build:core)" >&2; exit 1; }
# The MACs, checked by host/firstboot/links.ts (built above), the one checker
# and filler of the .link templates: they go in as data, never into a program.
if [ -n "$ext_mac$int_mac" ]; then
  why="$(node dist/host/firstboot/links.js --check "$ext_mac" "$int_mac" 2>&1)" || die "$why"
fi
ext_mac="${ext_mac,,}" int_mac="${int_mac,,}"

stage="$(mktemp -d "${TMPDIR:-/var/tmp}/portcullis-bundle.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
b="$stage/$name"
[ -z "$tree" ] || { mkdir -p "$tree"; b="$(cd "$tree" && pwd)"; }
mkdir -p "$b/app/build/Release" "$b/app/bin" "$b/app/node_modules" "$b/app/host/native"

# The application: the repository's layout, so paths relative to
# dist/host/**.js (../../../build/release.wasm, build/Release/nfq.node,
# package.json) resolve the same.
cp -r dist/host "$b/app/dist-host.tmp"
mkdir -p "$b/app/dist" && mv "$b/app/dist-host.tmp" "$b/app/dist/host"
find "$b/app/dist" -name '*.map' -delete
cp build/release.wasm "$b/app/build/"
cp bin/portcullis.js "$b/app/bin/"
cp README.md "$b/app/"
cp host/native/nfq.c host/native/ct.c "$b/app/host/native/"
# The shipped default policy, also the demo's (portcullis demo reads it here).
mkdir -p "$b/app/host/policy"
cp host/policy/default.yaml "$b/app/host/policy/"
cp binding.gyp "$b/app/"
node -e '
  const p = require("./package.json");
  const out = { name: p.name, version: p.version, description: p.description, license: p.license,
    private: true, type: "module", engines: p.engines, bin: p.bin, dependencies: p.dependencies };
  process.stdout.write(JSON.stringify(out, null, 2) + "\n");' > "$b/app/package.json"
# Production dependencies only (npm ls --omit=dev), copied as installed.
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | while read -r dir; do
  rel="${dir#"$root"/}"
  mkdir -p "$b/app/$(dirname "$rel")"
  cp -r "$dir" "$b/app/$rel"
done

# The addon for the target.
addon="$b/app/build/Release/nfq.node"
case "$arch" in
  x64)
    [ "$(uname -m)" = x86_64 ] || { echo "bundle: x64 bundles are built on x86_64" >&2; exit 1; }
    bash host/setup/ensure.sh test >&2
    cp build/Release/nfq.node "$addon"
    cp build/Release/ct.node "$b/app/build/Release/ct.node"
    ;;
  arm64)
    nodeinc="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
    why=""
    command -v aarch64-linux-gnu-gcc >/dev/null || why="aarch64-linux-gnu-gcc missing (apt-get install crossbuild-essential-arm64)"
    [ -n "$why" ] || [ -f /usr/include/aarch64-linux-gnu/libnetfilter_queue/libnetfilter_queue.h ] \
      || [ -f /usr/lib/aarch64-linux-gnu/libnetfilter_queue.so ] \
      || why="libnetfilter-queue-dev:arm64 missing (dpkg --add-architecture arm64; apt-get update; apt-get install libnetfilter-queue-dev:arm64 libnfnetlink-dev:arm64)"
    [ -n "$why" ] || [ -f "$nodeinc/node_api.h" ] || why="Node headers missing ($nodeinc/node_api.h)"
    if [ -z "$why" ]; then
      aarch64-linux-gnu-gcc -shared -fPIC -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
        -Wno-missing-field-initializers -DNAPI_VERSION=8 -D_GNU_SOURCE -I"$nodeinc" \
        host/native/nfq.c -o "$addon" -lnetfilter_queue -lnfnetlink
      # The conntrack addon (flow offload), when libnetfilter-conntrack-dev:arm64 is there.
      if [ -f /usr/lib/aarch64-linux-gnu/libnetfilter_conntrack.so ]; then
        aarch64-linux-gnu-gcc -shared -fPIC -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
          -Wno-missing-field-initializers -DNAPI_VERSION=8 -D_GNU_SOURCE -I"$nodeinc" \
          host/native/ct.c -o "$b/app/build/Release/ct.node" -lnetfilter_conntrack -lnfnetlink
      else
        echo "bundle: WARNING: no arm64 conntrack addon (flow offload) in the bundle: libnetfilter-conntrack-dev:arm64 missing" >&2
      fi
    else
      echo "bundle: WARNING: no arm64 addon in the bundle: $why; install.sh will build it on the device" >&2
    fi
    ;;
esac

# The wasmtime engine (--engine wasmtime, engine: in the board config): the
# wasmtime C API library at app/.wasmtime/wasmtime/linux-<arch>/ (where the
# addon's rpath looks), its LICENSE beside it, and build/Release/wasmtime.node.
# x64: the library ensure.sh installed; arm64: only the one given with
# --wasmtime-lib FILE (board/README.md says where it comes from), else the
# board runs V8 only.
wt_license="$root/.wasmtime/wasmtime-49.0.0.dist-info/licenses/LICENSE"
[ -f "$wt_license" ] || wt_license="$root/../shared/wasmtime-c-api/LICENSE"
case "$arch" in x64) wt_dir=linux-x86_64 ;; arm64) wt_dir=linux-aarch64 ;; esac
[ -n "$wasmtime_lib" ] || [ "$arch" != x64 ] || wasmtime_lib=".wasmtime/wasmtime/$wt_dir/_libwasmtime.so"
if [ -n "$wasmtime_lib" ] && [ ! -f "$wasmtime_lib" ]; then
  echo "bundle: --wasmtime-lib $wasmtime_lib: no such file" >&2; exit 1
fi
wt_addon="$b/app/build/Release/wasmtime.node"
if [ -z "$wasmtime_lib" ]; then
  echo "bundle: no wasmtime library for $arch (give --wasmtime-lib FILE, see board/README.md): the board runs the core in V8 only" >&2
else
  mkdir -p "$b/app/.wasmtime/wasmtime/$wt_dir"
  cp "$wasmtime_lib" "$b/app/.wasmtime/wasmtime/$wt_dir/_libwasmtime.so"
  [ -f "$wt_license" ] && cp "$wt_license" "$b/app/.wasmtime/wasmtime/$wt_dir/LICENSE"
  cp host/native/wasmtime.c host/native/wasmtime-api.h "$b/app/host/native/"
  if [ "$arch" = x64 ]; then
    cp build/Release/wasmtime.node "$wt_addon"
  elif command -v aarch64-linux-gnu-gcc >/dev/null && [ -f "$nodeinc/node_api.h" ]; then
    aarch64-linux-gnu-gcc -shared -fPIC -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -DNAPI_VERSION=8 -D_GNU_SOURCE -I"$nodeinc" \
      host/native/wasmtime.c -o "$wt_addon" -L"$b/app/.wasmtime/wasmtime/$wt_dir" -l:_libwasmtime.so \
      -Wl,-rpath,"\$ORIGIN/../../.wasmtime/wasmtime/$wt_dir" \
      || { echo "bundle: cannot link the arm64 wasmtime addon against $wasmtime_lib (an aarch64 _libwasmtime.so?)" >&2; exit 1; }
  else
    echo "bundle: WARNING: the arm64 wasmtime addon is not built (aarch64-linux-gnu-gcc or the Node headers missing): the board runs V8 only" >&2
    rm -rf "$b/app/.wasmtime"
  fi
fi

# The benchmarks and the on-device checks (board/bench/, board/README.md):
# what dist/bench/run.js (and bench/e2e, when built) imports, without vega
# (board/bench/bundle-files.mjs), and the wasm2c driver's source (the core
# benchmark adds wasm2c + gcc -O2 when the device has them). The ClassBench
# sets (../shared/classbench: external data without a licence statement)
# are not shipped; the benchmark leaves them out and says so.
node board/bench/bundle-files.mjs "$b/app"
mkdir -p "$b/app/test/wasm2c" "$b/app/board/bench"
cp test/wasm2c/driver.c "$b/app/test/wasm2c/"
# The end-to-end benchmark's C tools, compiled on the device by its gcc.
if [ -d bench/e2e ]; then
  mkdir -p "$b/app/bench/e2e"
  find bench/e2e -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \) -exec cp {} "$b/app/bench/e2e/" \;
fi
cp board/bench/*.sh board/bench/selftest.mjs "$b/app/board/bench/"
chmod 0755 "$b"/app/board/bench/*.sh

# The overlay, with the .link templates filled if the MACs were given.
cp -r board/rootfs_overlay "$b/overlay"
if [ -n "$ext_mac" ]; then
  for t in "$b"/overlay/etc/systemd/network/*.link.in; do
    node dist/host/firstboot/links.js "$t" "$ext_mac" "$int_mac" > "${t%.in}"
    rm "$t"
  done
fi
# --tree: the staged files are all board/deb.sh takes.
if [ -n "$tree" ]; then echo "$b"; exit 0; fi
# The HA pair's Debian packages (README, "HA pair"): keepalived and
# conntrackd and every package they depend on, for the target's
# architecture, from the mirror this machine's apt uses, resolved with an
# apt state of its own (this machine's is not touched) in which nothing is
# installed, with their index (dpkg-scanpackages: debs/ is a local apt
# repository). install.sh installs them from there, offline, on a board with
# ha:, letting apt choose what to add or upgrade as `apt-get install` would.
# Without the mirror or dpkg-dev the bundle goes without them and says so
# (a single appliance does not need them).
case "$arch" in x64) debarch=amd64 ;; arm64) debarch=arm64 ;; esac
apt_state="$stage/apt"
mkdir -p "$apt_state/lists/partial" "$apt_state/cache" "$b/debs/partial"
apt_opts=(-qq -o Dir::State::Lists="$apt_state/lists" -o Dir::State::status=/dev/null -o Dir::Cache="$apt_state/cache"
  -o Dir::Cache::archives="$b/debs" -o Debug::NoLocking=1 -o APT::Architecture="$debarch" -o APT::Architectures::="$debarch"
  -o APT::Sandbox::User=root)
if why="$( { command -v dpkg-scanpackages >/dev/null || { echo "dpkg-scanpackages missing: apt-get install dpkg-dev"; exit 1; }
              apt-get "${apt_opts[@]}" update && apt-get "${apt_opts[@]}" install --download-only -y --no-install-recommends keepalived conntrackd; } 2>&1)" \
    && ls "$b"/debs/keepalived_*_"$debarch".deb "$b"/debs/conntrackd_*_"$debarch".deb >/dev/null 2>&1; then
  rm -rf "$b/debs/partial" "$b/debs/lock"
  (cd "$b/debs" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null > Packages)
  echo "bundle: keepalived and conntrackd for $debarch: $(find "$b/debs" -name '*.deb' | wc -l) packages, $(du -sm "$b/debs" | cut -f1) MB" >&2
else
  rm -rf "$b/debs"
  echo "bundle: WARNING: no keepalived and conntrackd packages in the bundle (apt: $(printf '%s\n' "$why" | grep . | tail -1)); install.sh asks for apt-get install keepalived conntrackd on a board with ha:" >&2
fi
cp board/install.sh "$b/install.sh"
chmod 0755 "$b/install.sh"
printf '%s\n' "$version" > "$b/VERSION"
printf '%s\n' "$arch" > "$b/ARCH"

# The manifest: sha256 of every file, paths relative to the bundle root.
(cd "$b" && find . -type f ! -name MANIFEST.sha256 -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > MANIFEST.sha256)

mkdir -p "$out"
tarball="$out/$name.tar.gz"
# Reproducible-ish: fixed owner and order.
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -czf "$tarball.tmp" "$name"
mv "$tarball.tmp" "$tarball"
echo "$tarball"
