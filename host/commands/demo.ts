// `portcullis demo`: every packet of a capture through the release core, one
// line each, then the core's own counters. Without a rule table the core can
// only say "well-formed" (the default verdict, reason no_table) or why not.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import { applianceDemo, demoDown } from "../demo/appliance.js";
import * as ABI from "../core/abi.js";
import { Batch } from "../core/batch.js";
import { Core, type PacketMeta } from "../core/core.js";
import { reasonName } from "../core/reasons.js";
import { type EngineName } from "../core/load.js";
import { engineOption } from "./engine.js";
import { describePacket, ipEnds } from "../packets/describe.js";
import { captureFormat, linkTypeName, type PcapRecord, readCapture } from "../pcap/read.js";

const PACKAGE_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const DEFAULT_PCAP = "test/fixtures/reference.pcap";

// The proxy's external addresses in the reference capture.
const PROXY = new Set(["203.0.113.1", "2001:db8:1::1"]);

const HOOK_NAMES: Record<number, string> = {
  [ABI.HOOK_INPUT]: "in", [ABI.HOOK_OUTPUT]: "out", [ABI.HOOK_FORWARD]: "fwd",
};

const EXPLANATION =
  "No rule table is loaded yet, so every well-formed packet gets the default verdict (drop) " +
  "with reason no_table; a malformed packet gets the reason the decoder found.";
const ROLE_RULE =
  "Roles: to 203.0.113.1 / 2001:db8:1::1 or to multicast = external INPUT; " +
  "from them = external OUTPUT; anything else = FORWARD from external.";

function isMulticast(addr: string): boolean {
  return addr.includes(":") ? addr.toLowerCase().startsWith("ff") : Number(addr.split(".")[0]) >= 224;
}

// The interface role and hook of one packet, by the rule above.
export function roleOf(ip: Uint8Array): Required<Pick<PacketMeta, "inRole" | "outRole" | "hook">> {
  const ends = ipEnds(ip);
  if (ends && (PROXY.has(ends.dst) || isMulticast(ends.dst))) {
    return { inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE, hook: ABI.HOOK_INPUT };
  }
  if (ends && PROXY.has(ends.src)) return { inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL, hook: ABI.HOOK_OUTPUT };
  return { inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE, hook: ABI.HOOK_FORWARD };
}

export interface DemoPacket {
  index: number; //    1-based, as Wireshark numbers frames
  tsNs: string;
  time: number; //     seconds since the first packet
  hook: string;
  summary: string;
  verdict: "drop" | "accept";
  reason: string;
}

function readCaptureOrExplain(path: string): { records: PcapRecord[]; format: string } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`cannot read the capture ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  }
  return { records: readCapture(bytes), format: captureFormat(bytes) };
}

export function runDemo(opts: { pcap?: string; json?: boolean; engine?: EngineName }): void {
  const path = opts.pcap ?? join(PACKAGE_ROOT, DEFAULT_PCAP);
  const { records, format } = readCaptureOrExplain(path);
  const core = new Core("release", undefined, opts.engine ? { engine: opts.engine } : {});
  core.setDefaultVerdict(ABI.VERDICT_DROP);
  core.resetCounters();

  const t0 = records[0]?.ts ?? 0n;
  const packets: DemoPacket[] = [];
  const batch = new Batch(core);
  let pending: PcapRecord[] = [];
  const flush = (): void => {
    const n = batch.run();
    if (n !== pending.length) throw new Error(`the core refused a batch of ${pending.length} packets (status ${-n})`);
    pending.forEach((r, i) => {
      packets.push({
        index: packets.length + 1,
        tsNs: r.ts.toString(),
        time: Number(r.ts - t0) / 1e9,
        hook: HOOK_NAMES[roleOf(r.ip).hook]!,
        summary: describePacket(r.ip, r.ethertype),
        verdict: core.verdict(i) === ABI.VERDICT_ACCEPT ? "accept" : "drop",
        reason: reasonName(core.reason(i)),
      });
    });
    batch.clear();
    pending = [];
  };
  for (const r of records) {
    // The IP packet's length on the wire: the frame's, less the link header.
    const meta: PacketMeta = {
      ...roleOf(r.ip), hwProto: r.ethertype, tsNs: r.ts, wireLen: r.wirelen - (r.caplen - r.ip.length),
    };
    if (!batch.add(r.ip, meta)) {
      flush();
      if (!batch.add(r.ip, meta)) throw new Error(`packet ${packets.length + 1} (${r.ip.length} bytes) does not fit in a batch`);
    }
    pending.push(r);
  }
  if (pending.length) flush();

  const c = core.counters();
  const reasons = Object.fromEntries(c.reasons.filter((r) => r.packets > 0n)
    .map((r) => [r.name, { packets: Number(r.packets), bytes: Number(r.bytes) }]));
  const verdicts = {
    drop: { packets: Number(c.drop.packets), bytes: Number(c.drop.bytes) },
    accept: { packets: Number(c.accept.packets), bytes: Number(c.accept.bytes) },
  };
  const links = [...new Set(records.map((r) => linkTypeName(r.linkType)))].join(", ") || "no packets";

  if (opts.json) {
    const doc = {
      capture: { path, format, linkTypes: links, records: records.length },
      core: "release",
      note: EXPLANATION,
      roles: ROLE_RULE,
      packets,
      counters: { reasons, verdicts, batches: Number(c.batches), packets: Number(c.packets), badBatches: Number(c.badBatches) },
    };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  const out: string[] = [
    `portcullis demo: ${records.length} packets from ${path} (${format}, ${links}), release core`,
    EXPLANATION,
    ROLE_RULE,
    "",
  ];
  const w = String(records.length).length;
  for (const p of packets) {
    out.push(`${String(p.index).padStart(w)}  ${p.time.toFixed(6)}  ${p.hook.padEnd(3)}  ${p.summary}  => ${p.verdict} ${p.reason}`);
  }
  out.push("", "By reason:");
  const rw = Math.max(8, ...Object.keys(reasons).map((k) => k.length));
  for (const [name, n] of Object.entries(reasons)) out.push(`  ${name.padEnd(rw)}  ${n.packets} packets, ${n.bytes} bytes`);
  if (Object.keys(reasons).length === 0) out.push("  (no packets)");
  out.push("By verdict:");
  for (const [name, n] of Object.entries(verdicts)) out.push(`  ${name.padEnd(rw)}  ${n.packets} packets, ${n.bytes} bytes`);
  out.push(`${c.packets} packets in ${c.batches} batch${c.batches === 1n ? "" : "es"}`);
  process.stdout.write(`${out.join("\n")}\n`);
}

export function demoCommand(): Command {
  return new Command("demo")
    .description("the appliance in network namespaces with the default policy and real traffic (root); " +
      "with --pcap, a capture through the core without a rule table instead")
    .option("--keep", "leave the topology and the daemon running, and print how to poke them")
    .option("--down", "remove what an earlier --keep left (safe to run twice)")
    .addOption(new Option("--mode <mode>", "host: the appliance is the proxy; gateway: it forwards to one").choices(["host", "gateway"]).default("host"))
    .option("--pcap <file>", `classify a pcap or pcapng capture offline instead (default capture: ${DEFAULT_PCAP})`)
    .option("--json", "with --pcap: print one JSON document")
    .option("--prefix <prefix>", "prefix of the namespace names (default none: inet, appliance, lan)")
    .option("--control <path>", "the demo daemon's control socket (default /run/portcullis/control.sock)")
    .option("--report <file>", "also write each probe's outcome as JSON to this file")
    .addOption(engineOption("the core (the demo daemon's, or --pcap's)"))
    .action(async (opts: { pcap?: string; json?: boolean; keep?: boolean; down?: boolean; mode: "host" | "gateway"; prefix?: string; control?: string; report?: string; engine?: EngineName }) => {
      if (opts.pcap !== undefined || opts.json) return runDemo(opts);
      if (opts.prefix !== undefined && !/^[A-Za-z0-9_.-]{1,20}$/.test(opts.prefix)) throw new Error(`--prefix ${opts.prefix}: 1 to 20 of A-Z a-z 0-9 _ . -`);
      if (opts.down) return demoDown(undefined, opts.prefix);
      const r = await applianceDemo({ keep: opts.keep ?? false, mode: opts.mode, prefix: opts.prefix, control: opts.control, ...(opts.engine ? { engine: opts.engine } : {}) });
      if (opts.report) writeFileSync(opts.report, `${JSON.stringify(r, null, 2)}\n`);
      if (r.failed > 0) process.exitCode = 1;
    });
}
