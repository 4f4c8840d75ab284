#!/usr/bin/env bash
# Builds the Debian package of the appliance:
#   dist-board/portcullis_<version>_<arch>.deb
# from the tree board/bundle.sh stages (bundle.sh --tree: the same app/ and
# overlay/ the bundle ships, so an addon the bundle gains is packaged too),
# with dpkg-deb, then runs lintian on it (no error, no warning that
# board/deb/lintian-overrides does not justify).
#
# Usage: npm run board:deb -- --arch amd64|arm64 [--out DIR] [--no-build]
#                             [--wasmtime-lib FILE]
#
# What goes where (board/README.md, "The Debian package"):
#   /usr/lib/portcullis/app/       the staged app/ (dist/, build/, node_modules/, ...),
#                                  with overlay/ in it (portcullis firstboot's templates)
#   /usr/lib/portcullis/node/      Node.js 20 for <arch> (node-linux-<arch> from the
#                                  npm registry: Debian 12's nodejs is 18, the project needs 20)
#   /usr/bin/portcullis            the CLI on that Node
#   /lib/systemd/system/*.service  the overlay's units, their paths pointed at the above
#   /etc/portcullis/*, /etc/sysctl.d/90-portcullis.conf   conffiles
#   /usr/lib/sysusers.d/portcullis.conf                    the system user
# Maintainer scripts: board/deb/{postinst,prerm,postrm}.
set -eu
cd "$(dirname "$0")/.."
root="$PWD"
NODE_VERSION=20.20.2           # as board/image.sh
cache=/var/tmp/portcullis-image-cache

die() { echo "deb: $*" >&2; exit 1; }
arch="" out="dist-board" bundle_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch|--out|--wasmtime-lib) [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" ;;
  esac
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) bundle_args+=(--no-build); shift ;;
    --wasmtime-lib) bundle_args+=(--wasmtime-lib "$2"); shift 2 ;;
    *) die "unknown argument: $(printf '%q' "$1")" ;;
  esac
done
case "$arch" in
  amd64) barch=x64 narch=x64 strip=strip ;;
  arm64) barch=arm64 narch=arm64 strip=aarch64-linux-gnu-strip ;;
  *) die "--arch amd64|arm64 is required" ;;
esac
for t in dpkg-deb lintian fakeroot "$strip"; do
  command -v "$t" >/dev/null || die "$t missing (bash board/ensure-board.sh)"
done
[ ! -e "$out" ] || [ -d "$out" ] || die "--out $out: not a directory"
version="$(node -p 'require("./package.json").version')"

work="$(mktemp -d "${TMPDIR:-/var/tmp}/portcullis-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$(bash board/bundle.sh --arch "$barch" "${bundle_args[@]}" --tree "$work/tree" | tail -1)"
[ -f "$tree/app/dist/host/cli.js" ] || die "bundle.sh --tree did not stage the app"
[ -f "$tree/app/build/Release/nfq.node" ] || die "no NFQUEUE addon for $arch in the staged tree (bash board/ensure-board.sh)"

P="$work/pkg"
lib="$P/usr/lib/portcullis"
mkdir -p "$lib" "$P/usr/bin" "$P/lib/systemd/system" "$P/usr/lib/sysusers.d" \
  "$P/usr/share/doc/portcullis" "$P/usr/share/lintian/overrides" "$P/DEBIAN"
mv "$tree/app" "$lib/app"
cp -r "$tree/overlay" "$lib/app/overlay"

# The overlay: each file to its place in the package; one the package does not
# know about stops the build (so a new overlay file is placed on purpose).
conffiles="$work/conffiles"; : > "$conffiles"
(cd "$tree/overlay" && find . -type f -printf '%P\n' | LC_ALL=C sort) | while read -r rel; do
  case "$rel" in
    etc/portcullis/*|etc/sysctl.d/*)
      install -D -m 0644 "$tree/overlay/$rel" "$P/$rel"; echo "/$rel" >> "$conffiles" ;;
    etc/systemd/system/*.service)
      u="$P/lib/systemd/system/$(basename "$rel")"
      # The bundle's paths (install.sh's /opt/portcullis/current, a /usr/bin/node
      # the operator provides) become the package's.
      sed -e 's|/usr/bin/node /opt/portcullis/current/|/usr/lib/portcullis/node/bin/node /usr/lib/portcullis/app/|g' \
          -e 's|file:/opt/portcullis/current/|file:/usr/lib/portcullis/app/|g' "$tree/overlay/$rel" > "$u"
      chmod 0644 "$u"
      ! grep -n '/opt/\|/usr/bin/node' "$u" >&2 || die "$rel: a path the package does not have (above)" ;;
    etc/systemd/network/*.in) ;;   # templates: portcullis firstboot fills them from app/overlay
    *) die "overlay file $rel: board/deb.sh does not know where it goes" ;;
  esac
done
cp "$conffiles" "$P/DEBIAN/conffiles"

# The private Node (the npm registry's copy of the nodejs.org binary, cached
# beside board/image.sh's).
node_tgz="$cache/node-linux-$narch-$NODE_VERSION.tgz"
if [ ! -f "$node_tgz" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent "node-linux-$narch@$NODE_VERSION" >/dev/null)
fi
mkdir -p "$lib/node"
tar -C "$lib/node" --strip-components=1 --no-same-owner -xzf "$node_tgz" package/bin/node package/LICENSE
chmod 0755 "$lib/node/bin/node"
case "$arch" in amd64) m='x86-64' ;; arm64) m='ARM aarch64' ;; esac
file -b "$lib/node/bin/node" | grep -q "$m" || die "the node binary is not $m"
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$lib/node/bin/node"

# The addons and libraries, stripped (the -g builds' symbols are not shipped).
find "$lib/app" -type f \( -name '*.node' -o -name '*.so' \) -exec "$strip" --strip-unneeded --remove-section=.comment --remove-section=.note {} +
find "$lib/app" -type f \( -name '*.node' -o -name '*.so' \) -exec chmod 0644 {} +

cat > "$P/usr/bin/portcullis" <<'EOF'
#!/bin/sh
# The Portcullis CLI on the package's private Node.js (/usr/lib/portcullis/node).
exec /usr/lib/portcullis/node/bin/node /usr/lib/portcullis/app/dist/host/cli.js "$@"
EOF
chmod 0755 "$P/usr/bin/portcullis"
mkdir -p "$P/usr/share/man/man1"
gzip -9n < board/deb/portcullis.1 > "$P/usr/share/man/man1/portcullis.1.gz"
cp board/deb/sysusers.conf "$P/usr/lib/sysusers.d/portcullis.conf"
cp board/deb/lintian-overrides "$P/usr/share/lintian/overrides/portcullis"
cp board/deb/copyright "$P/usr/share/doc/portcullis/copyright"
date="$(git log -1 --format=%aD 2>/dev/null || date -R)"
printf 'portcullis (%s) bookworm; urgency=medium\n\n  * Built from %s.\n\n -- Portcullis maintainers <portcullis@example.org>  %s\n' \
  "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$date" | gzip -9n > "$P/usr/share/doc/portcullis/changelog.gz"
for s in postinst prerm postrm; do
  sed -e "s|#VERSION#|$version|g" -e "s|#ARCH#|$arch|g" "board/deb/$s" > "$P/DEBIAN/$s"
  chmod 0755 "$P/DEBIAN/$s"
done
find "$P" -type d -exec chmod 0755 {} +
find "$P" -type f ! -perm -u+x -exec chmod 0644 {} +

size="$(du -sk --exclude=DEBIAN "$P" | cut -f1)"
sed -e "s|#VERSION#|$version|" -e "s|#ARCH#|$arch|" -e "s|#SIZE#|$size|" board/deb/control > "$P/DEBIAN/control"
# md5sums: every file but the conffiles (as dh_md5sums; dpkg keeps their sums itself).
(cd "$P" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$P/DEBIAN/control" "$P/DEBIAN/conffiles" "$P/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/portcullis_${version}_$arch.deb"
fakeroot dpkg-deb --build -Zxz --root-owner-group "$P" "$deb.tmp" >/dev/null
mv "$deb.tmp" "$deb"
# lintian: errors and warnings fail the build; the overrides (with their
# reasons) are in board/deb/lintian-overrides, shipped where lintian reads them.
lintian --fail-on error,warning --info --display-level '>=warning' "$deb" >&2 || die "lintian: $deb (above)"
echo "$deb"
