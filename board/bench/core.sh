#!/usr/bin/env bash
# The core benchmarks on the device, from the installed tree, as JSON only
# (the device has no vega; render on the build machine with
# `npm run bench -- --compare`):
#   core.sh [--out DIR] [--app DIR] [--quick] [--only PARTS] [--classbench DIR]
# Runs node APP/dist/bench/run.js --only PARTS --json-only --out DIR and
# writes OUT/<host>-<date>.json (default OUT /var/tmp/portcullis-bench).
#   --app         the installed tree (default /opt/portcullis/current)
#   --only        default classbench,established,reload,memory,core
#   --classbench  a copy of the ClassBench sets (the repository's
#                 ../shared/classbench/hypersplit; not in the bundle): without
#                 it the ClassBench parts are left out and the JSON says so
# wasm2c + gcc -O2 joins the core comparison when wasm2c (Debian: wabt) and
# gcc are installed; otherwise the JSON records it as not available.
set -eu
app=/opt/portcullis/current out=/var/tmp/portcullis-bench only=classbench,established,reload,memory,core
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app="${2:?--app needs a directory}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --only) only="${2:?--only needs a list of parts}"; shift 2 ;;
    --classbench) extra+=(--classbench "${2:?--classbench needs a directory}"); shift 2 ;;
    --quick) extra+=(--quick); shift ;;
    *) echo "core: unknown argument: $1 (core.sh [--out DIR] [--app DIR] [--quick] [--only PARTS] [--classbench DIR])" >&2; exit 2 ;;
  esac
done
run="$app/dist/bench/run.js"
[ -f "$run" ] || { echo "core: no $run: --app is not an installed Portcullis tree with its benchmarks" >&2; exit 2; }
mkdir -p "$out"
exec node "$run" --only "$only" --json-only --out "$out" ${extra[@]+"${extra[@]}"}
