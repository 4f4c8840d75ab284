#!/usr/bin/env bash
# Installs this Portcullis bundle (run it from the unpacked bundle):
#   ./install.sh [--root DIR] [--ext-mac MAC --int-mac MAC] [--no-start]
#   ./install.sh [--root DIR] --rollback
#
# - verifies MANIFEST.sha256;
# - checks every argument first (a MAC is a MAC, DIR a directory, the
#   bundle's VERSION and ARCH what they must be) and refuses anything else;
# - copies app/ (and overlay/, the templates `portcullis firstboot` fills) to
#   DIR/opt/portcullis/<version> (unchanged if already there; a different
#   bundle of the same version goes to <version>+<its manifest's sha256>, so
#   the live tree is never replaced under `current`);
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
#   the old one (kept for --rollback), and records how every file it changed
#   was before (DIR/opt/portcullis/.install/undo);
# - on a live system (--root /) reloads systemd and restarts the daemon if it
#   was running; if it then fails, puts back current, previous and every file
#   it changed (units, overlay) as they were, and starts the old version.
# --rollback swaps current and previous and puts the files back as they were
# before the last install (a file changed since then is kept, and said).
# Running it again changes nothing and says so.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }
# Shown with control characters escaped: a message stays one line.
shown() { printf '%q' "$1"; }
root=/ rollback=0 ext_mac="" int_mac="" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root|--ext-mac|--int-mac) [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" ;;
  esac
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --rollback) rollback=1; shift ;;
    --ext-mac) ext_mac="$2"; shift 2 ;;
    --int-mac) int_mac="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown argument: $(shown "$1") (see --help)" ;;
  esac
done
# The MACs: checked by the bundle's host/firstboot/links.ts, the one checker
# and filler of the .link templates (they go in as data, never into a program).
links="$here/app/dist/host/firstboot/links.js"
if [ -n "$ext_mac$int_mac" ]; then
  command -v node >/dev/null || die "node (>= 20) is needed: apt-get install nodejs (Debian 12 ships 18: use NodeSource or the Node.js binaries)"
  [ -f "$links" ] || die "$links is missing: the bundle is damaged"
  why="$(node "$links" --check "$ext_mac" "$int_mac" 2>&1)" || die "$why"
fi
ext_mac="${ext_mac,,}" int_mac="${int_mac,,}"
[ -d "$root" ] || die "--root $(shown "$root"): not a directory"
root="$(cd "$root" && pwd -P)"
R="${root%/}"                       # "" for /
opt="$R/opt/portcullis"
state="$opt/.install"               # checksums of the config files we wrote; the undo record
live=0
[ -z "$R" ] && [ -d /run/systemd/system ] && live=1
changes=0
changed() { changes=$((changes + 1)); say "$*"; }
# The name of an installed tree: a version, or version+hash; never a path.
name_ok() { [[ "$1" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] && [[ "$1" != *..* ]]; }
link_name() {  # $1 = current|previous: where it points, "" if nowhere; a bad target stops
  local t
  t="$(readlink "$opt/$1" 2>/dev/null)" || { echo ""; return 0; }
  name_ok "$t" || die "$opt/$1 points at $(shown "$t"), not at an installed version; fix it by hand"
  echo "$t"
}

# The undo record: how the files install.sh changes were before it changed
# them. $state/undo is the one for going back to `previous`; a run builds
# $state/undo.new and keeps it only if it switched versions for good.
undo="$state/undo" undo_new="$state/undo.new"
sid() { if [ -L "$1" ]; then echo "l:$(readlink "$1")"; elif [ -f "$1" ]; then echo "f:$(sha256sum < "$1" | cut -d' ' -f1)"; else echo "-"; fi; }
join=0                              # 1: this run's changes join the record of the last switch
keep() {  # $1 = path under the root, about to change: saved once per record
  local rel="$1"
  if [ ! -d "$undo_new" ]; then
    if [ "$join" = 1 ]; then cp -a "$undo" "$undo_new"; fi
    mkdir -p "$undo_new/files"; touch "$undo_new/paths"
  fi
  grep -qxF -- "$rel" "$undo_new/paths" 2>/dev/null && return 0
  printf '%s\n' "$rel" >> "$undo_new/paths"
  if [ -e "$R/$rel" ] || [ -L "$R/$rel" ]; then
    mkdir -p "$undo_new/files/$(dirname "$rel")"
    cp -a "$R/$rel" "$undo_new/files/$rel"
  fi
}
seal() {  # $1 = a record: what each of its paths holds now (what this run wrote)
  local rel
  [ -f "$1/paths" ] || return 0
  : > "$1/wrote"
  while read -r rel; do printf '%s\t%s\n' "$rel" "$(sid "$R/$rel")" >> "$1/wrote"; done < "$1/paths"
}
restore() {  # $1 = a sealed record: every path put back as it was, unless changed since
  local rel wrote t
  [ -f "$1/wrote" ] || return 0
  while IFS=$'\t' read -r rel wrote; do
    if [ "$(sid "$R/$rel")" != "$wrote" ]; then say "kept /$rel: it was changed after the install"; continue; fi
    if [ -e "$1/files/$rel" ] || [ -L "$1/files/$rel" ]; then
      t="$(dirname "$R/$rel")/.$(basename "$rel").restore"
      mkdir -p "$(dirname "$R/$rel")"; rm -f "$t"
      cp -a "$1/files/$rel" "$t" && mv -Tf "$t" "$R/$rel"
    else
      rm -f "$R/$rel"
    fi
    echo "+ restored /$rel"
  done < "$1/wrote"
}

# Points $opt/$1 at $2 atomically (a symlink renamed over the old one).
setlink() { ln -sfn "$2" "$opt/.$1.tmp"; mv -Tf "$opt/.$1.tmp" "$opt/$1"; }

# On a live system: reloads systemd and restarts the daemon if it runs (or,
# with "always", in any case); fails if it does not stay up.
restart_if_live() {
  [ "$live" = 1 ] && [ "$start" = 1 ] || return 0
  systemctl daemon-reload
  [ "${1:-}" = always ] || systemctl is-active -q portcullis.service || return 0
  systemctl restart portcullis.service && sleep 2 && systemctl is-active -q portcullis.service
}

if [ "$rollback" = 1 ]; then
  prev="$(link_name previous)"
  cur="$(link_name current)"
  [ -n "$prev" ] && [ -d "$opt/$prev" ] || { say "no previous version to roll back to"; exit 1; }
  # The record for going forward again: the files as they are now.
  rm -rf "$undo_new"; mkdir -p "$undo_new"
  if [ -f "$undo/paths" ]; then
    while read -r rel; do keep "$rel"; done < "$undo/paths"
    restore "$undo" | sed 's/^+ /install: /'
  else
    say "no record of the files before $cur was installed: only the version is switched"
  fi
  seal "$undo_new"
  rm -rf "$undo"; mv "$undo_new" "$undo"
  setlink current "$prev"
  setlink previous "$cur"
  say "rolled back: current is $prev (was $cur)"
  restart_if_live || { say "the daemon did not start on $prev either; see journalctl -u portcullis"; exit 1; }
  exit 0
fi

version="$(cat "$here/VERSION")"
arch="$(cat "$here/ARCH")"
name_ok "$version" && [[ "$version" != *+* ]] || die "the bundle's VERSION $(shown "$version") is not a version"
case "$arch" in x64|arm64) ;; *) die "the bundle's ARCH $(shown "$arch") is not x64 or arm64" ;; esac

# 1. The manifest.
(cd "$here" && sha256sum --quiet -c MANIFEST.sha256) || { say "MANIFEST.sha256 does not verify: the bundle is damaged"; exit 1; }

# 2. The application, into opt/portcullis/<version>.
command -v node >/dev/null || { say "node (>= 20) is needed: apt-get install nodejs (Debian 12 ships 18: use NodeSource or the Node.js binaries)"; exit 1; }
name="$version"
if [ -d "$opt/$name" ] && ! cmp -s "$here/MANIFEST.sha256" "$opt/$name/.MANIFEST.sha256"; then
  name="$version+$(sha256sum < "$here/MANIFEST.sha256" | cut -c1-12)"
  say "$opt/$version holds another bundle of version $version: this one goes to $opt/$name"
fi
dest="$opt/$name"
mkdir -p "$opt" "$state"
fresh=0
if [ -d "$dest" ] && cmp -s "$here/MANIFEST.sha256" "$dest/.MANIFEST.sha256"; then
  :
else
  [ -e "$dest" ] && die "$dest is there with other contents than this bundle; remove it by hand"
  rm -rf "$dest.tmp"
  cp -a "$here/app" "$dest.tmp"
  # The overlay too: `portcullis firstboot` fills the .link.in and .network.in templates from it.
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
  say "the policy does not pass portcullis $version check; nothing changed (current stays $(link_name current | grep . || echo none)):"
  printf '%s\n' "$out" | sed 's/^/  /' >&2
  exit 1
fi
if [ "$fresh" = 1 ]; then
  mv -T "$dest.tmp" "$dest"
  work="$dest"
  changed "installed $dest"
fi
cur="$(link_name current)"
old_prev="$(link_name previous)"
rm -rf "$undo_new"
# Not switching versions: the changes join the record of the last switch.
[ "$cur" = "$name" ] && [ -f "$undo/paths" ] && join=1

# 4. The overlay.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
links_done=1
(cd "$here/overlay" && find . -type f -printf '%P\n' | LC_ALL=C sort) | while read -r rel; do
  src="$here/overlay/$rel"
  case "$rel" in
    *.network.in)
      continue ;;  # firstboot's alone: it fills them with the addresses of portcullis-firstboot.yaml
    *.link.in)
      t="$R/${rel%.in}"
      if [ -z "$ext_mac" ] || [ -z "$int_mac" ]; then
        [ -f "$t" ] || say "skipping ${rel%.in}: give --ext-mac and --int-mac to pin the NICs by MAC"
        continue
      fi
      tmp="$(mktemp)"
      # The MACs go in as data (host/firstboot/links.ts), never into a program.
      node "$links" "$src" "$ext_mac" "$int_mac" > "$tmp"
      if ! cmp -s "$tmp" "$t" 2>/dev/null; then
        keep "${rel%.in}"; mkdir -p "$(dirname "$t")"; install -m 0644 "$tmp" "$t"; echo "+ /${rel%.in}"
      fi
      rm -f "$tmp"
      continue ;;
    etc/portcullis/*)
      t="$R/$rel"; rec="$state/$(echo "$rel" | tr / _).sha256"
      if cfg_is_edited "$rel"; then
        if ! cmp -s "$src" "$t.new" 2>/dev/null && ! cmp -s "$src" "$t"; then
          keep "$rel.new"; install -m 0644 "$src" "$t.new"; echo "+ /$rel.new (kept the operator's /$rel)"
        fi
      else
        if ! cmp -s "$src" "$t" 2>/dev/null; then
          keep "$rel"; mkdir -p "$(dirname "$t")"; install -m 0644 "$src" "$t"; echo "+ /$rel"
        fi
        sum="$(sha256sum < "$src" | cut -d' ' -f1)"
        [ "$(cat "$rec" 2>/dev/null)" = "$sum" ] || { keep "${rec#"$R"/}"; echo "$sum" > "$rec"; }
      fi
      continue ;;
  esac
  t="$R/$rel"
  if ! cmp -s "$src" "$t" 2>/dev/null; then
    keep "$rel"; mkdir -p "$(dirname "$t")"; install -m 0644 "$src" "$t"; echo "+ /$rel"
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
    keep "etc/systemd/system/multi-user.target.wants/$u"; ln -sfn "/etc/systemd/system/$u" "$wants/$u"; changed "enabled $u"
  fi
done
mkdir -p "$R/usr/local/bin"
if [ "$(readlink "$R/usr/local/bin/portcullis" 2>/dev/null)" != /opt/portcullis/current/bin/portcullis.js ]; then
  keep usr/local/bin/portcullis; ln -sfn /opt/portcullis/current/bin/portcullis.js "$R/usr/local/bin/portcullis"; changed "linked /usr/local/bin/portcullis"
fi

# The HA pair (board.yaml has ha:, README "HA pair"): keepalived and
# conntrackd. The bundle carries them with every package they depend on
# (debs/, a local apt repository); on a live system the ones missing are
# installed from there and nowhere else (a sources list of that directory
# only, its own lists: the system's apt state is not changed), so offline;
# apt adds or upgrades what they need as `apt-get install` would. No service
# starts meanwhile (policy-rc.d) and conntrackd's own service is disabled
# (the notify hook starts conntrackd with the generated file). --rollback
# leaves the packages installed. Then the new version writes their files and
# the notify hook (`portcullis ha --apply`, which never replaces a file it
# did not write: a refusal is a warning); the older version's `portcullis ha
# --apply` writes its own again.
install_ha_packages() {  # $@ = the packages missing
  local rc_d=0 out a
  [ -f "$here/debs/Packages" ] || { say "WARNING: the board has ha: but $* is not installed and the bundle has no packages: apt-get install keepalived conntrackd"; return 0; }
  a="$(mktemp -d)"
  printf 'deb [trusted=yes] file:%s ./\n' "$here/debs" > "$a/sources.list"
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
  local opts=(-q -o Dir::Etc::SourceList="$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$a/lists"
    -o Dir::Cache="$a/cache" -o APT::Sandbox::User=root)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && rc_d=1
  fi
  if out="$( { apt-get "${opts[@]}" update && DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y --no-install-recommends "$@"; } 2>&1)"; then
    changed "installed $* from the bundle"
    case " $* " in *" conntrackd "*) systemctl --quiet disable conntrackd.service 2>/dev/null || true ;; esac
  else
    say "WARNING: the board has ha: but $* could not be installed from the bundle: $(printf '%s\n' "$out" | grep -E '^(E:| .*: Depends)' | head -2 | tr -s ' \n' ' ')"
  fi
  [ "$rc_d" = 0 ] || rm -f /usr/sbin/policy-rc.d
  rm -rf "$a"
}
if grep -q '^ha:' "$R/etc/portcullis/board.yaml" 2>/dev/null; then
  missing=()
  for p in keepalived conntrackd; do [ -x "$R/usr/sbin/$p" ] || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ -z "$R" ]; then
      install_ha_packages "${missing[@]}"
    else
      say "WARNING: the board has ha: but ${missing[*]} is not installed in $R: install them there (apt-get install keepalived conntrackd, or the bundle's debs/)"
    fi
  fi
  if [ -z "$R" ]; then
    # Not counted as a change: the files are the board's, rewritten as they were.
    if out="$(node "$work/dist/host/cli.js" ha --config /etc/portcullis/board.yaml --apply --portcullis /usr/local/bin/portcullis 2>&1)"; then
      printf '%s\n' "$out" | grep -v '^portcullis ha: unchanged ' | sed 's/^portcullis ha: /install: /' || true
    else
      say "WARNING: the HA pair's files were not written: $out"
    fi
  else
    say "the board has ha: run 'portcullis ha --config /etc/portcullis/board.yaml --apply' on the device"
  fi
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
[ "$cur" = "$name" ] || { mkdir -p "$undo_new/files"; touch "$undo_new/paths"; }
seal "$undo_new"
if [ "$cur" != "$name" ]; then
  [ -n "$cur" ] && setlink previous "$cur"
  setlink current "$name"
  changed "current is $name${cur:+ (previous: $cur, kept for --rollback)}"
  if ! restart_if_live; then
    # Back exactly as it was: the files this run changed, both links, and
    # the tree it unpacked.
    say "the daemon did not start on $name; switching back to ${cur:-nothing} with its files"
    restore "$undo_new" | sed 's/^+ /install: /'
    rm -rf "$undo_new"
    if [ -n "$cur" ]; then setlink current "$cur"; else rm -f "$opt/current"; fi
    if [ -n "$old_prev" ]; then setlink previous "$old_prev"; else rm -f "$opt/previous"; fi
    [ "$fresh" = 1 ] && rm -rf "$dest"
    # It ran before (or there would have been no restart to fail): start it again.
    [ -z "$cur" ] || restart_if_live always || say "the daemon did not start on $cur either; see journalctl -u portcullis"
    exit 1
  fi
elif [ "$changes" -gt 0 ]; then
  restart_if_live || { say "the daemon did not restart; see journalctl -u portcullis"; exit 1; }
fi
if [ -d "$undo_new" ]; then
  rm -rf "$undo"; mv "$undo_new" "$undo"
fi

if [ "$changes" = 0 ]; then
  say "nothing to do: portcullis $version ($arch) is installed and current in ${R:-/}"
else
  say "done: $changes change(s); portcullis $version ($arch) is current in ${R:-/}"
fi
