// The reference topology for tests: a prefix of this test process's own
// (pct<pid>-), so a test never touches a running demo or another run, and a
// sweep of namespaces left by test processes that no longer exist.
import { spawnSync } from "node:child_process";
import { clearLeftovers, type Topology } from "../../host/topology/topology.js";
import { type NsRole } from "../../host/topology/plan.js";

export const TEST_PREFIX = `pct${process.pid}-`;

// Namespaces pct<pid>- of dead processes: an interrupted earlier test run.
export async function clearStaleTestTopologies(): Promise<string[]> {
  const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
  const prefixes = new Set<string>();
  for (const line of list.split("\n")) {
    const m = /^(pct(\d+)-)/.exec(line);
    if (!m) continue;
    const pid = Number(m[2]);
    let alive = true;
    try { process.kill(pid, 0); } catch { alive = false; }
    if (!alive || pid === process.pid) prefixes.add(m[1]!);
  }
  const removed: string[] = [];
  for (const p of prefixes) removed.push(...await clearLeftovers(p));
  return removed;
}

// The body a server answered with, or the curl exit status (28: timed out,
// 7: refused or unreachable) as "curl exit N".
export function get(t: Topology, from: NsRole, host: string, port: number, timeoutMs = 2000): string {
  const r = t.curl(from, host, port, timeoutMs);
  return r.ok ? r.body : `curl exit ${r.exit}`;
}

export const TIMED_OUT = "curl exit 28";
