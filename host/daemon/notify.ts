// systemd's readiness and watchdog protocol (sd_notify): READY=1 once the
// queues are bound, WATCHDOG=1 every half watchdog period from the event
// loop (so a daemon stuck in a batch stops pinging and systemd restarts it),
// STOPPING=1 on the way out. Without $NOTIFY_SOCKET (not started by
// systemd) every call is a no-op.
import { loadAddon } from "../native/nfq.js";

export function sdNotify(state: string): boolean {
  if (!process.env.NOTIFY_SOCKET) return false;
  return loadAddon().sdNotify(state);
}

// Starts the watchdog pings when systemd asked for them (WATCHDOG_USEC, for
// this pid). Returns the interval in ms, or 0 when there is no watchdog.
export function startWatchdog(onError: (e: Error) => void): number {
  const usec = Number(process.env.WATCHDOG_USEC ?? 0);
  const pid = process.env.WATCHDOG_PID;
  if (!process.env.NOTIFY_SOCKET || !Number.isFinite(usec) || usec <= 0 || (pid && Number(pid) !== process.pid)) return 0;
  const every = Math.max(50, Math.floor(usec / 2000));
  const t = setInterval(() => {
    try { sdNotify("WATCHDOG=1"); } catch (e) { onError(e as Error); }
  }, every);
  t.unref();
  return every;
}
