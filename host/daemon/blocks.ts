// The control socket's `block` and `sources` commands: the operator's view
// of, and hand on, the core's block lists and source table
// (assembly/limits/). Times are the engine's clock (process.hrtime), the
// batch time the core expires entries by.
//   {"cmd":"block","op":"list"}                                -> {"ok":true,"blocks":[...]}
//   {"cmd":"block","op":"add","addr":"A[/N]","list":L,"for":"10m"} -> {"ok":true,"added":{...}}
//   {"cmd":"block","op":"del","addr":"A[/N]","list":L}         -> {"ok":true,"removed":true|false}
//   {"cmd":"sources","top":N}                                  -> {"ok":true,"sources":[...],...}
// "list" may be left out when the live table has exactly one list.
import { type Core } from "../core/core.js";
import { blockAdd, blockDel, blocks, limitCounters, sources } from "../core/limits.js";
import { durationText, parseDuration } from "../policy/limit-text.js";
import { type TableView } from "../rules/inspect.js";

type Answer = Record<string, unknown>;
const now = (): bigint => process.hrtime.bigint();

function listOf(table: TableView | null, name: unknown): { name: string; key: number } | string {
  const lists = table?.lists ?? [];
  if (lists.length === 0) return "the live table has no block lists (declare one under lists: or with a limit's overload:)";
  if (name === undefined) {
    if (lists.length === 1) return lists[0]!;
    return `the live table has ${lists.length} block lists (${lists.map((l) => l.name).join(", ")}): say which with --list`;
  }
  if (typeof name !== "string") return '"list" must be a string';
  return lists.find((l) => l.name === name) ?? `no block list named "${name}" in the live table (its lists: ${lists.map((l) => l.name).join(", ")})`;
}

export function blockRequest(core: Core, table: TableView | null, req: Answer): Answer {
  const names = new Map((table?.lists ?? []).map((l) => [l.key, l.name]));
  const t = now();
  if (req.op === "list") {
    return {
      ok: true,
      blocks: blocks(core, t).map((b) => ({
        list: names.get(b.list) ?? `#${b.list}`, prefix: b.prefix,
        expiresInS: b.expiresNs === null ? null : Number(b.expiresNs - t) / 1e9,
      })),
      capacity: core.x.block_capacity(),
    };
  }
  if (req.op !== "add" && req.op !== "del") return { ok: false, error: '"op" must be list, add or del' };
  if (typeof req.addr !== "string") return { ok: false, error: '"addr" (an address or prefix) must be a string' };
  const list = listOf(table, req.list);
  if (typeof list === "string") return { ok: false, error: list };
  if (req.op === "del") return { ok: true, removed: blockDel(core, list.key, req.addr, t), list: list.name };
  let forNs = 0n;
  if (req.for !== undefined) {
    const d = typeof req.for === "string" ? parseDuration(req.for) : '"for" must be a duration like 10m';
    if (typeof d === "string") return { ok: false, error: d };
    forNs = d;
  }
  if (!blockAdd(core, list.key, req.addr, t, forNs)) {
    return { ok: false, error: `the block table has no room for ${req.addr} (${core.x.block_capacity()} entries in all; raise --max-blocks)` };
  }
  return { ok: true, added: { list: list.name, addr: req.addr, for: forNs === 0n ? "until removed" : durationText(forNs) } };
}

// The top N sources by live flows, then by how drained their bucket is (the
// new-flow rate they run at: the later their bucket is full again, the more
// they opened lately).
export function sourcesRequest(core: Core, table: TableView | null, req: Answer): Answer {
  const top = req.top === undefined ? 20 : req.top;
  if (typeof top !== "number" || !Number.isInteger(top) || top < 1 || top > 100_000) return { ok: false, error: '"top" must be a whole number from 1 to 100000' };
  const t = now();
  const rules = new Map<number, string>();
  for (const r of table?.rules ?? []) {
    const key = ruleKeyOf(table!, r.index);
    if (key !== null) rules.set(key, r.info);
  }
  const all = sources(core).map((s) => ({
    prefix: s.prefix, rule: rules.get(s.key) ?? null, flows: s.flows,
    refillS: s.fullNs > t ? Number(s.fullNs - t) / 1e9 : 0, idleS: t > s.seenNs ? Number(t - s.seenNs) / 1e9 : 0,
  }));
  all.sort((a, b) => b.flows - a.flows || b.refillS - a.refillS);
  return { ok: true, sources: all.slice(0, top), limits: limitCounters(core) };
}

// The source-table key of live rule r (its extension's), or null.
function ruleKeyOf(table: TableView, r: number): number | null {
  return table.ruleKeys[r] ?? null;
}

// Live entries per list of the live table (for stats and metrics).
export function blockListSizes(core: Core, table: TableView | null): Array<{ list: string; entries: number }> {
  const lists = table?.lists ?? [];
  const n = new Map(lists.map((l) => [l.key, 0]));
  for (const b of blocks(core, now())) if (n.has(b.list)) n.set(b.list, n.get(b.list)! + 1);
  return lists.map((l) => ({ list: l.name, entries: n.get(l.key)! }));
}
