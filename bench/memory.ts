// Resident memory of the daemon's objects with the default 65,536-flow
// state table: a child process builds the Daemon (core, table, engine) as
// `portcullis run` does, minus the NFQUEUE addon and its sockets (their
// buffers are kernel memory, not the process's), then fills the state table
// with TCP flows and reports its RSS before and after.
//   node --expose-gc dist/bench/memory.js child
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { Daemon } from "../host/daemon/daemon.js";
import { type EngineName } from "../host/core/load.js";
import { JsonLogger } from "../host/daemon/log.js";
import { ipv4, PROTO_TCP, TCP_SYN, tcp } from "../host/packets/build.js";
import { type Section } from "./report.js";

export interface MemoryFigures { engine: EngineName; rssIdleMiB: number; rssFullMiB: number; flowsLive: number; capacity: number }

const MiB = (n: number): number => Math.round((n / 1048576) * 10) / 10;

async function child(policy: string, engine: EngineName): Promise<MemoryFigures> {
  const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
  const d = new Daemon({ policy, mode: "host", core: { engine } }, new JsonLogger(() => {}));
  if (!(await d.reload()).ok) throw new Error("the default policy did not load");
  await d.compiler.release(); // the steady state: the compile worker stops when idle (compiler.ts)
  gc();
  const rssIdle = process.memoryUsage().rss;
  // SYNs to 443 from distinct clients until the table is as full as its
  // buckets allow (two-choice 8-slot buckets fill to well over 90%).
  const b = new Batch(d.core);
  const meta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
  const cap = d.core.flowCapacity;
  for (let i = 0; i < cap * 2; i++) {
    const src = `198.51.100.${i & 255}`;
    if (!b.add(ipv4({ src, dst: "203.0.113.1", proto: PROTO_TCP, payload: tcp({ sport: 1024 + (i >> 8), dport: 443, flags: TCP_SYN }) }), meta)) {
      b.run(1_000_000n);
      b.clear();
      i--;
    }
  }
  b.run(1_000_000n);
  gc();
  return { engine, rssIdleMiB: MiB(rssIdle), rssFullMiB: MiB(process.memoryUsage().rss), flowsLive: Number(d.core.counters().flows.live), capacity: cap };
}

// One child per engine: RSS is the process's (wasmtime's 4 GiB reservation
// is address space, not resident).
// The memory part of the report: one row per engine.
export function memorySection(ms: MemoryFigures[]): Section {
  return {
    id: "memory",
    title: "Daemon resident memory (the daemon's objects without the NFQUEUE addon, default policy), per engine",
    notes: [],
    table: {
      head: ["engine", "state table", "flows live", "RSS idle MiB", "RSS full MiB", "target < 100 MiB"],
      rows: ms.map((m) => [m.engine, String(m.capacity), String(m.flowsLive), String(m.rssIdleMiB), String(m.rssFullMiB), m.rssFullMiB < 100 ? "met" : "MISSED"]),
    },
    lines: [],
    chart: null,
    data: ms,
  };
}

export function measureDaemonMemory(policy: string, engine: EngineName = "v8"): MemoryFigures {
  const r = spawnSync(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url), "child", policy, engine], { encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) throw new Error(`memory child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as MemoryFigures;
}

if (process.argv[2] === "child") process.stdout.write(`${JSON.stringify(await child(process.argv[3]!, (process.argv[4] ?? "v8") as EngineName))}\n`);
