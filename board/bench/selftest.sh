#!/usr/bin/env bash
# Self-test of the installed appliance, on the device, as root:
#   selftest.sh [--out DIR] [--app DIR] [--config BOARD.yaml] [--control SOCK]
#               [--netns NS] [--wait SECONDS] [--prefix P] [--checks NAME,...]
# Checks (board/bench/selftest.mjs): the installed tree against its manifest,
# the board config, the kernel's queue rules against the ones the config
# generates, the daemon on its control socket, every queue bound (daemon and
# kernel), counters moving (traffic on the NICs within --wait seconds,
# default 10), and the shipped default policy enforced on the reference
# topology in throwaway namespaces (P + inet/appliance/lan, default P
# "pcst-"; left-overs of an interrupted run are removed first) with its own
# daemon from this tree. Needs ip, curl and nginx for that last check.
# Writes OUT/selftest-<host>-<date>.json (default OUT /var/tmp/portcullis-bench);
# exit status 1 if a check failed.
#   --app      the installed tree (default /opt/portcullis/current)
#   --config   the board config (default /etc/portcullis/board.yaml)
#   --control  the live daemon's socket (default /run/portcullis/control.sock)
#   --netns    the network namespace of the board's NICs (default: this one)
#   --checks   run only these checks (with the ones they build on)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" = 0 ] || { echo "selftest: run it as root (it reads the kernel's rules and builds namespaces)" >&2; exit 2; }
command -v node >/dev/null || { echo "selftest: node is not on PATH" >&2; exit 2; }
exec node "$here/selftest.mjs" "$@"
