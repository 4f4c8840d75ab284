#!/usr/bin/env bash
# Installs this Portcullis bundle (run it from the unpacked bundle):
#   ./install.sh [--root DIR] [--ext-mac MAC --int-mac MAC] [--no-start]
#   ./install.sh [--root DIR] --rollback
#
# - verifies MANIFEST.sha256;
# - copies app/ (and overlay/, the templates `portcullis firstboot` fills) to
#   DIR/opt/portcullis/<version> (unchanged if already there);
# - validates the policy that will be in force (the operator's edited
#   /etc/portcullis/policy.yaml, else the shipped one) with the NEW version's
#   `portcullis check` before anything else changes; a failure leaves the
#   previous version current and the system untouched;
# - copies overlay/ into DIR; files under /etc/portcullis/ that the operator
#   edited (checksum differs from what the last install wrote) are kept, the
#   shipped file goes beside them as FILE.new;
# - enables the units (portcullis-firstboot.service runs only when the boot
#   partition has portcullis-firstboot.yaml) and creates the user `portcullis`;
# - points DIR/opt/portcullis/current at the new version and `previous` at
#   the old one (kept for --rollback);
# - on a live system (--root /) reloads systemd and restarts the daemon if it
#   was running; if it then fails, switches back to the previous version.
# Running it again changes nothing and says so.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
root=/ rollback=0 ext_mac="" int_mac="" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --rollback) rollback=1; shift ;;
    --ext-mac) ext_mac="${2:?}"; shift 2 ;;
    --int-mac) int_mac="${2:?}"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "install: unknown argument: $1" >&2; exit 1 ;;
  esac
done
root="$(cd "$root" && pwd)"
R="${root%/}"                       # "" for /
opt="$R/opt/portcullis"
state="$opt/.install"               # checksums of the config files we wrote
live=0
[ -z "$R" ] && [ -d /run/systemd/system ] && live=1
changes=0
say() { echo "install: $*"; }
changed() { changes=$((changes + 1)); say "$*"; }

# Points $opt/$1 at $2 atomically (a symlink renamed over the old one).
setlink() { ln -sfn "$2" "$opt/.$1.tmp"; mv -Tf "$opt/.$1.tmp" "$opt/$1"; }

restart_if_live() {
  [ "$live" = 1 ] && [ "$start" = 1 ] || return 0
  systemctl daemon-reload
  if systemctl is-active -q portcullis.service; then
    systemctl restart portcullis.service && sleep 2 && systemctl is-active -q portcullis.service
  fi
}

if [ "$rollback" = 1 ]; then
  prev="$(readlink "$opt/previous" 2>/dev/null || true)"
  cur="$(readlink "$opt/current" 2>/dev/null || true)"
  [ -n "$prev" ] && [ -d "$opt/$prev" ] || { say "no previous version to roll back to"; exit 1; }
  setlink current "$prev"
  setlink previous "$cur"
  say "rolled back: current is $prev (was $cur)"
  restart_if_live || { say "the daemon did not start on $prev either; see journalctl -u portcullis"; exit 1; }
  exit 0
fi

version="$(cat "$here/VERSION")"
arch="$(cat "$here/ARCH")"

# 1. The manifest.
(cd "$here" && sha256sum --quiet -c MANIFEST.sha256) || { say "MANIFEST.sha256 does not verify: the bundle is damaged"; exit 1; }

# 2. The application, into opt/portcullis/<version>.
command -v node >/dev/null || { say "node (>= 20) is needed: apt-get install nodejs (Debian 12 ships 18: use NodeSource or the Node.js binaries)"; exit 1; }
dest="$opt/$version"
mkdir -p "$opt" "$state"
fresh=0
if [ -d "$dest" ] && cmp -s "$here/MANIFEST.sha256" "$dest/.MANIFEST.sha256"; then
  :
else
  [ -d "$dest" ] && say "replacing $dest (same version, different contents)"
  rm -rf "$dest.tmp"
  cp -a "$here/app" "$dest.tmp"
  # The overlay too: `portcullis firstboot` fills the .link.in templates from it.
  cp -a "$here/overlay" "$dest.tmp/overlay"
  cp "$here/MANIFEST.sha256" "$dest.tmp/.MANIFEST.sha256"
  fresh=1
fi
work="$dest"; [ "$fresh" = 1 ] && work="$dest.tmp"
discard() { [ "$fresh" = 1 ] && rm -rf "$dest.tmp"; return 0; }

# The addon: shipped for this arch, or built here.
if [ ! -f "$work/build/Release/nfq.node" ]; then
  inc="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
  [ -f "$inc/node_api.h" ] || inc=/usr/include/nodejs
  if command -v cc >/dev/null && [ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ] && [ -f "$inc/node_api.h" ]; then
    say "building the NFQUEUE addon on this machine"
    cc -shared -fPIC -O2 -std=gnu11 -DNAPI_VERSION=8 -D_GNU_SOURCE -I"$inc" \
      "$work/host/native/nfq.c" -o "$work/build/Release/nfq.node" -lnetfilter_queue -lnfnetlink
  else
    discard
    say "this $arch bundle has no NFQUEUE addon and it cannot be built here:"
    say "  apt-get install gcc libc6-dev libnetfilter-queue-dev nodejs-dev (or the Node headers), then run install.sh again"
    exit 1
  fi
fi

# Runtime libraries the addon links to (a warning: the files can be installed
# before the packages are).
if ! ls "$R"/usr/lib/*/libnetfilter_queue.so.1 "$R"/lib/*/libnetfilter_queue.so.1 >/dev/null 2>&1; then
  say "WARNING: libnetfilter_queue.so.1 not found in ${R:-/}: apt-get install libnetfilter-queue1 (and nftables or iptables) before starting the daemon"
fi

# 3. Validate the policy that will be in force, with the new version.
cfg_is_edited() {  # $1 = path under etc/portcullis; 0 if the operator edited it
  local t="$R/$1" rec="$state/$(echo "$1" | tr / _).sha256"
  [ -f "$t" ] || return 1
  [ -f "$rec" ] || { cmp -s "$t" "$here/overlay/$1" && return 1 || return 0; }
  [ "$(sha256sum < "$t" | cut -d' ' -f1)" != "$(cat "$rec")" ]
}
policy="$here/overlay/etc/portcullis/policy.yaml"
cfg_is_edited etc/portcullis/policy.yaml && policy="$R/etc/portcullis/policy.yaml"
mode="$(sed -n 's/^mode:[[:space:]]*\([a-z]*\).*/\1/p' "$R/etc/portcullis/board.yaml" 2>/dev/null | head -1)"
[ -n "$mode" ] || mode="$(sed -n 's/^mode:[[:space:]]*\([a-z]*\).*/\1/p' "$here/overlay/etc/portcullis/board.yaml" | head -1)"
if ! out="$(node "$work/dist/host/cli.js" check "$policy" --mode "${mode:-host}" 2>&1)"; then
  discard
  say "the policy does not pass portcullis $version check; nothing changed (current stays $(readlink "$opt/current" 2>/dev/null || echo none)):"
  printf '%s\n' "$out" | sed 's/^/  /' >&2
  exit 1
fi
if [ "$fresh" = 1 ]; then
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  changed "installed $dest"
fi

# 4. The overlay.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
links_done=1
(cd "$here/overlay" && find . -type f -printf '%P\n' | LC_ALL=C sort) | while read -r rel; do
  src="$here/overlay/$rel"
  case "$rel" in
    *.link.in)
      t="$R/${rel%.in}"
      if [ -z "$ext_mac" ] || [ -z "$int_mac" ]; then
        [ -f "$t" ] || say "skipping ${rel%.in}: give --ext-mac and --int-mac to pin the NICs by MAC"
        continue
      fi
      tmp="$(mktemp)"
      sed -e "s/%EXT_MAC%/$ext_mac/g" -e "s/%INT_MAC%/$int_mac/g" "$src" > "$tmp"
      if ! cmp -s "$tmp" "$t" 2>/dev/null; then
        mkdir -p "$(dirname "$t")"; install -m 0644 "$tmp" "$t"; echo "+ /${rel%.in}"
      fi
      rm -f "$tmp"
      continue ;;
    etc/portcullis/*)
      t="$R/$rel"; rec="$state/$(echo "$rel" | tr / _).sha256"
      if cfg_is_edited "$rel"; then
        if ! cmp -s "$src" "$t.new" 2>/dev/null && ! cmp -s "$src" "$t"; then
          install -m 0644 "$src" "$t.new"; echo "+ /$rel.new (kept the operator's /$rel)"
        fi
      else
        if ! cmp -s "$src" "$t" 2>/dev/null; then
          mkdir -p "$(dirname "$t")"; install -m 0644 "$src" "$t"; echo "+ /$rel"
        fi
        sum="$(sha256sum < "$src" | cut -d' ' -f1)"
        [ "$(cat "$rec" 2>/dev/null)" = "$sum" ] || echo "$sum" > "$rec"
      fi
      continue ;;
  esac
  t="$R/$rel"
  if ! cmp -s "$src" "$t" 2>/dev/null; then
    mkdir -p "$(dirname "$t")"; install -m 0644 "$src" "$t"; echo "+ /$rel"
  fi
done > "$log"
if [ -s "$log" ]; then
  while read -r line; do
    case "$line" in "+ "*) changed "wrote ${line#+ }" ;; *) echo "$line" ;; esac
  done < "$log"
fi

# Enable the units (the symlinks systemctl enable would make).
wants="$R/etc/systemd/system/multi-user.target.wants"
mkdir -p "$wants"
for u in portcullis-rules.service portcullis.service portcullis-firstboot.service; do
  if [ "$(readlink "$wants/$u" 2>/dev/null)" != "/etc/systemd/system/$u" ]; then
    ln -sfn "/etc/systemd/system/$u" "$wants/$u"; changed "enabled $u"
  fi
done
mkdir -p "$R/usr/local/bin"
if [ "$(readlink "$R/usr/local/bin/portcullis" 2>/dev/null)" != /opt/portcullis/current/bin/portcullis.js ]; then
  ln -sfn /opt/portcullis/current/bin/portcullis.js "$R/usr/local/bin/portcullis"; changed "linked /usr/local/bin/portcullis"
fi

# 5. The user.
if ! grep -q '^portcullis:' "$R/etc/passwd" 2>/dev/null; then
  if [ ! -f "$R/etc/passwd" ]; then
    say "no $R/etc/passwd: create the system user portcullis yourself"
  elif [ -z "$R" ]; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/portcullis --shell /usr/sbin/nologin portcullis
    changed "created user portcullis"
  else
    useradd --prefix "$R" --system --user-group --no-create-home --home-dir /var/lib/portcullis --shell /usr/sbin/nologin portcullis
    changed "created user portcullis in $R"
  fi
fi

# 6. Switch.
cur="$(readlink "$opt/current" 2>/dev/null || true)"
if [ "$cur" != "$version" ]; then
  [ -n "$cur" ] && setlink previous "$cur"
  setlink current "$version"
  changed "current is $version${cur:+ (previous: $cur, kept for --rollback)}"
  if ! restart_if_live; then
    say "the daemon did not start on $version; switching back to ${cur:-nothing}"
    [ -n "$cur" ] && setlink current "$cur" && restart_if_live || true
    exit 1
  fi
elif [ "$changes" -gt 0 ]; then
  restart_if_live || { say "the daemon did not restart; see journalctl -u portcullis"; exit 1; }
fi

if [ "$changes" = 0 ]; then
  say "nothing to do: portcullis $version ($arch) is installed and current in ${R:-/}"
else
  say "done: $changes change(s); portcullis $version ($arch) is current in ${R:-/}"
fi
