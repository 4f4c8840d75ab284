// The notify hook keepalived runs at each transition (keepalived.ts):
// `HOOK master|backup|fault`. With `ha.sync` it first does conntrackd's
// primary-backup steps, as Debian's primary-backup.sh does:
//   master  -c commit the external cache (the other appliance's entries)
//              into the kernel, -f flush both caches, -R resync the internal
//              cache with the kernel, -B send a bulk update to the backup
//   backup  -s is conntrackd running? if not, start it (-d); -t shorten the
//              kernel's timers (the zombie entries of a master that was),
//              -n ask the master for a resync
//   fault   -t
// then tells the daemon its role over the control socket (`portcullis ha
// notify ROLE`): on master the daemon adopts the committed offloaded flows
// (host/daemon/ha.ts). A failing step is logged (logger, tag portcullis-ha)
// and the next still runs: the role must reach the daemon whatever
// conntrackd does. The exit status is the daemon's answer's.
import { type ConntrackdPaths } from "./conntrackd.js";

export interface HookOptions {
  portcullis: string; //  the command (a path, or a name found in PATH), may be "node /path/cli.js"
  control: string; //     the daemon's control socket
  conntrackd?: { conf: string; paths: ConntrackdPaths }; // with ha.sync
  header: string[];
}

const sh = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

export function hookScript(o: HookOptions): string {
  const out = [
    "#!/bin/sh",
    ...o.header.map((l) => `# ${l}`),
    "set -u",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'role="${1:-}"',
    'log() { logger -t portcullis-ha -- "$*" 2>/dev/null || echo "portcullis-ha: $*" >&2; }',
    'case "$role" in master|backup|fault) ;; *) log "usage: $0 master|backup|fault (not \\"$role\\")"; exit 2 ;; esac',
  ];
  if (o.conntrackd) {
    const c = o.conntrackd;
    out.push(
      `CONF=${sh(c.conf)}`,
      `LOCK=${sh(c.paths.lock)}`,
      'ct() { conntrackd -C "$CONF" "$@" >/dev/null 2>&1 || log "conntrackd $* failed (exit $?)"; }',
      'mkdir -p "$(dirname "$LOCK")"',
      'case "$role" in',
      "master)",
      "\tct -c; ct -f; ct -R; ct -B ;;",
      "backup)",
      '\tif ! conntrackd -C "$CONF" -s >/dev/null 2>&1; then',
      '\t\t[ -f "$LOCK" ] && { log "conntrackd was not stopped cleanly; removing its lock file"; rm -f "$LOCK"; }',
      '\t\tconntrackd -C "$CONF" -d >/dev/null 2>&1 || log "cannot start conntrackd"',
      "\tfi",
      "\tct -t; ct -n ;;",
      "fault)",
      "\tct -t ;;",
      "esac",
    );
  }
  out.push(`exec ${o.portcullis} ha notify "$role" --control ${sh(o.control)}`);
  return `${out.join("\n")}\n`;
}
