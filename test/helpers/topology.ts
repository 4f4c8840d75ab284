// The reference topology for tests: a prefix of this test process's own
// (pct<pid>-), so a test never touches a running demo or another run, and a
// sweep of namespaces left by test processes that no longer exist.
import { clearStaleRuns, type Topology } from "../../host/topology/topology.js";
import { type NsRole } from "../../host/topology/plan.js";

export const TEST_PREFIX = `pct${process.pid}-`;

// Namespaces pct<pid>- of dead processes: an interrupted earlier test run.
export const clearStaleTestTopologies = (): Promise<string[]> => clearStaleRuns("pct");

// The body a server answered with, or the curl exit status (28: timed out,
// 7: refused or unreachable) as "curl exit N".
export function get(t: Topology, from: NsRole, host: string, port: number, timeoutMs = 2000): string {
  const r = t.curl(from, host, port, timeoutMs);
  return r.ok ? r.body : `curl exit ${r.exit}`;
}

export const TIMED_OUT = "curl exit 28";
