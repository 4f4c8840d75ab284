// The large-table run: ClassBench fw1_10K (../shared/classbench) in the
// kernel and in Portcullis, with the bench's UDP flow crossing the whole
// table without matching it.
//
// fw1_10K ends with a catch-all (0.0.0.0/0 0.0.0.0/0 any any, an `allow`
// by ClassBench's alternation, host/rules/classbench.ts), so no flow can
// miss every rule: the rules that can match the bench flow (any of the
// four sources, the sink's address, UDP, source port 40000, port 9000) are
// left out, and the count is reported. Then one rule accepts the bench
// flow, and the default denies. The same TableSpec becomes the kernel's
// rules (stateless, linear: kernel-filter.ts) and the daemon's compiled
// table (written to a file; `portcullis run --policy` takes compiled
// tables). That the kept rules match none of the bench flow is checked
// twice: by the range test that chose them, and by the release core's own
// classifier on the flow's headers.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Core } from "../../host/core/core.js";
import { parseIPv4 } from "../../host/policy/addr.js";
import { buildTable } from "../../host/rules/build.js";
import { readFilters } from "../../host/rules/classbench.js";
import { HEADER_SIZE } from "../../host/rules/format.js";
import { type Range32, type RuleSpec, type TableSpec } from "../../host/rules/model.js";
import { UDP_PORT, UDP_SPORT } from "./contenders.js";
import { DST, SOURCES } from "./net.js";

// ../shared/classbench beside the checkout (dist/bench/e2e/ -> the checkout's parent).
export const FW1_10K = fileURLToPath(new URL("../../../../shared/classbench/hypersplit/fw1_10K.rules", import.meta.url));
const PROTO_UDP = 17;

export interface Fw1Tables {
  spec: TableSpec; //      kept rules + the bench flow's accept, default deny
  tableFile: string; //    the same, compiled for the daemon
  total: number; //        rules in the file
  kept: number;
  excluded: string[]; //   the rules left out (they can match the bench flow)
}

const v4 = (a: string): number => {
  const n = parseIPv4(a);
  if (n === null) throw new Error(`${a} is not an IPv4 address`);
  return n;
};
const hits = (rs: Range32[] | null, lo: number, hi: number): boolean => rs === null || rs.some(([a, b]) => a <= hi && b >= lo);

// Whether a rule can match some packet of the bench flow.
export function matchesBenchFlow(r: RuleSpec): boolean {
  const src = r.src === null || SOURCES.some((s) => hits(r.src!.v4, v4(s), v4(s)));
  const dst = r.dst === null || hits(r.dst.v4, v4(DST), v4(DST));
  const proto = r.protos === null || r.protos.includes(PROTO_UDP);
  return src && dst && proto && hits(r.sport, UDP_SPORT, UDP_SPORT) && hits(r.dport, UDP_PORT, UDP_PORT);
}

export function benchFlowRule(): RuleSpec {
  const d = v4(DST);
  return {
    action: "allow", log: false, ctx: null, src: null, dst: { v4: [[d, d]], v6: [] }, protos: [PROTO_UDP],
    sport: null, dport: [[UDP_PORT, UDP_PORT]], tcpFlags: null, line: 0, info: `bench flow: UDP to ${DST}:${UDP_PORT}`,
  };
}

// The first matching rule (0-based) for each of the flow's headers, from
// the release core (classify_headers); -1 for none.
function coreFirstMatch(table: Uint8Array): number[] {
  const core = new Core("release");
  core.loadTable(table);
  const heads = SOURCES.map((s) => ({ src: v4(s), sport: UDP_SPORT }));
  heads.forEach((h, i) => {
    const at = core.dataPtr + i * HEADER_SIZE;
    core.view.setUint32(at, h.src, true); core.view.setUint32(at + 4, v4(DST), true);
    core.view.setUint16(at + 8, h.sport, true); core.view.setUint16(at + 10, UDP_PORT, true); core.view.setUint8(at + 12, PROTO_UDP);
  });
  const n = core.x.classify_headers(heads.length, 0);
  if (n !== heads.length) throw new Error(`classify_headers returned ${n}`);
  return Array.from(new Int32Array(core.memory.buffer, core.dataPtr + heads.length * HEADER_SIZE, heads.length));
}

export function fw1Tables(dir: string, file = FW1_10K): Fw1Tables {
  const all = readFilters(file).rules;
  const kept = all.filter((r) => !matchesBenchFlow(r));
  const excluded = all.filter(matchesBenchFlow).map((r) => `line ${r.line}: ${r.info.replace(/^\S+ /, "")}`);
  const alone = coreFirstMatch(buildTable({ rules: kept, defaultAction: "deny" }).bytes);
  if (alone.some((m) => m !== -1)) throw new Error(`the core matches the bench flow against kept fw1_10K rule(s) ${[...new Set(alone)].join(",")}`);
  const spec: TableSpec = { rules: [...kept, benchFlowRule()], defaultAction: "deny" };
  const bytes = buildTable(spec).bytes;
  const withFlow = coreFirstMatch(bytes);
  if (withFlow.some((m) => m !== kept.length)) throw new Error(`the core does not give the bench flow its own rule (${kept.length}): ${[...new Set(withFlow)].join(",")}`);
  const tableFile = join(dir, "fw1_10K-bench.table");
  writeFileSync(tableFile, bytes);
  return { spec, tableFile, total: all.length, kept: kept.length, excluded };
}
