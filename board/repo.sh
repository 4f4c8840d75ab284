#!/usr/bin/env bash
# Turns a directory of portcullis .deb packages into a signed apt repository
# (reprepro), for a fleet to `apt update && apt upgrade` from:
#   OUT/dists/<codename>/{InRelease,Release,Release.gpg,main/binary-*/Packages*}
#   OUT/pool/main/p/portcullis/*.deb
#   OUT/portcullis-archive-keyring.gpg   the public key, for signed-by=
#
# Usage: npm run board:repo -- --debs DIR --out DIR (--key KEYID | --test-key)
#                              [--codename bookworm]
#   --key KEYID   sign with this key of the operator's gpg keyring ($GNUPGHOME,
#                 else ~/.gnupg); the key must be able to sign without a prompt
#                 (gpg-agent unlocked, or no passphrase)
#   --test-key    make a throwaway key in a temporary GNUPGHOME (for tests; the
#                 public half is written as above, the secret half is deleted)
# OUT is made anew if it holds no repository, else the packages are added to
# it (reprepro keeps the newest version of each architecture).
set -eu
die() { echo "repo: $*" >&2; exit 1; }
from="$PWD"
debs="" out="" key="" test_key=0 codename=bookworm
while [ $# -gt 0 ]; do
  case "$1" in
    --debs|--out|--key|--codename) [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" ;;
  esac
  case "$1" in
    --debs) debs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    --test-key) test_key=1; shift ;;
    --codename) codename="$2"; shift 2 ;;
    *) die "unknown argument: $(printf '%q' "$1")" ;;
  esac
done
[ -n "$debs" ] && [ -n "$out" ] || die "--debs DIR and --out DIR are required"
[ -n "$key" ] || [ "$test_key" = 1 ] || die "--key KEYID (the operator's signing key) or --test-key is required"
[ -z "$key" ] || [ "$test_key" = 0 ] || die "--key and --test-key: one of them"
[[ "$codename" =~ ^[a-z][a-z0-9-]*$ ]] || die "--codename $(printf '%q' "$codename"): not a codename"
case "$debs" in /*) ;; *) debs="$from/$debs" ;; esac
case "$out" in /*) ;; *) out="$from/$out" ;; esac
[ -d "$debs" ] || die "--debs $debs: not a directory"
for t in reprepro gpg dpkg-deb; do command -v "$t" >/dev/null || die "$t missing (bash board/ensure-board.sh)"; done
shopt -s nullglob
pkgs=("$debs"/portcullis_*.deb)
[ "${#pkgs[@]}" -gt 0 ] || die "no portcullis_*.deb in $debs"

tmp="$(mktemp -d "${TMPDIR:-/var/tmp}/portcullis-repo.XXXXXX")"
trap 'gpgconf --homedir "$tmp/gnupg" --kill all 2>/dev/null || true; rm -rf "$tmp"' EXIT
if [ "$test_key" = 1 ]; then
  export GNUPGHOME="$tmp/gnupg"
  mkdir -m 0700 "$GNUPGHOME"
  gpg --batch --quiet --passphrase '' --quick-gen-key "Portcullis test repository <repo@example.org>" ed25519 sign never 2>/dev/null
  key="$(gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1 == "fpr" { print $10; exit }')"
fi
gpg --batch --list-secret-keys "$key" >/dev/null 2>&1 || die "no secret key $(printf '%q' "$key") in ${GNUPGHOME:-~/.gnupg}"

mkdir -p "$out/conf"
cat > "$out/conf/distributions" <<EOF
Origin: Portcullis
Label: Portcullis
Codename: $codename
Architectures: amd64 arm64
Components: main
Description: Portcullis packet filter
SignWith: $key
EOF
for p in "${pkgs[@]}"; do
  reprepro -b "$out" --silent includedeb "$codename" "$p" || die "reprepro includedeb $p failed"
done
reprepro -b "$out" --silent export "$codename"
gpg --batch --export "$key" > "$out/portcullis-archive-keyring.gpg"
[ -s "$out/dists/$codename/InRelease" ] || die "no InRelease was written"
echo "$out"
