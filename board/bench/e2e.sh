#!/usr/bin/env bash
# The end-to-end benchmarks (bench/e2e/) on the device, from the installed
# tree, in network namespaces of their own, as root:
#   e2e.sh [--out DIR] [--app DIR] [--quick]
# Runs node APP/dist/bench/e2e/main.js [--quick] --json OUT/<host>-<date>-e2e.json
# (default OUT /var/tmp/portcullis-bench).
set -eu
app=/opt/portcullis/current out=/var/tmp/portcullis-bench quick=()
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app="${2:?--app needs a directory}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    *) echo "e2e: unknown argument: $1 (e2e.sh [--out DIR] [--app DIR] [--quick])" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "e2e: run it as root (it builds network namespaces)" >&2; exit 2; }
[ -f "$app/dist/host/cli.js" ] || { echo "e2e: no $app/dist/host/cli.js: --app is not an installed Portcullis tree" >&2; exit 2; }
main="$app/dist/bench/e2e/main.js"
if [ ! -f "$main" ]; then
  echo "e2e: this installed tree has no end-to-end benchmarks ($main is missing):" >&2
  echo "e2e: its bundle was built before bench/e2e existed; build a new bundle (npm run board:bundle) and install it" >&2
  exit 3
fi
mkdir -p "$out"
file="$(cd "$out" && pwd)/$(hostname)-$(date -u +%F)-e2e.json"
node "$main" ${quick[@]+"${quick[@]}"} --json "$file"
echo "e2e: wrote $file"
