// `portcullis demo`: every packet of a capture through the release core, one
// line each (streamed: bounded memory), then the core's own counters. Without a rule table the core can
// only say "well-formed" (the default verdict, reason no_table) or why not.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import { applianceDemo, demoDown } from "../demo/appliance.js";
import { pairDemo } from "../demo/pair.js";
import * as ABI from "../core/abi.js";
import { Batch } from "../core/batch.js";
import { Core, type PacketMeta } from "../core/core.js";
import { reasonName } from "../core/reasons.js";
import { type EngineName } from "../core/load.js";
import { engineOption } from "./engine.js";
import { describePacket, ipEnds } from "../packets/describe.js";
import { Output } from "../io/output.js";
import { linkTypeName, type PcapRecord } from "../pcap/read.js";
import { captureRecords, indexWidth, json2, openCapture } from "./replay.js";

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

// Streams the capture (bounded memory, whatever its size): each packet is
// printed as its batch is decided; the counters come at the end. In JSON the
// document is written as it goes, so capture and counters come last.
export function runDemo(opts: { pcap?: string; json?: boolean; engine?: EngineName }): void {
  const path = opts.pcap ?? join(PACKAGE_ROOT, DEFAULT_PCAP);
  const capture = openCapture(path);
  const out = new Output();
  try {
    const core = new Core("release", undefined, opts.engine ? { engine: opts.engine } : {});
    core.setDefaultVerdict(ABI.VERDICT_DROP);
    core.resetCounters();
    const width = indexWidth(capture.size);
    if (opts.json) {
      out.write(`{\n  "core": "release",\n  "note": ${JSON.stringify(EXPLANATION)},\n  "roles": ${JSON.stringify(ROLE_RULE)},\n  "packets": [`);
    } else {
      for (const l of [`portcullis demo: ${path} (${capture.format}), release core`, EXPLANATION, ROLE_RULE, ""]) out.line(l);
    }
    let t0: bigint | null = null;
    let index = 0;
    const links = new Set<number>();
    const batch = new Batch(core);
    let pending: PcapRecord[] = [];
    const flush = (): void => {
      if (pending.length === 0) return;
      const n = batch.run();
      if (n !== pending.length) throw new Error(`the core refused a batch of ${pending.length} packets (status ${-n})`);
      pending.forEach((r, i) => {
        const p: DemoPacket = {
          index: ++index,
          tsNs: r.ts.toString(),
          time: Number(r.ts - t0!) / 1e9,
          hook: HOOK_NAMES[roleOf(r.ip).hook]!,
          summary: describePacket(r.ip, r.ethertype),
          verdict: core.verdict(i) === ABI.VERDICT_ACCEPT ? "accept" : "drop",
          reason: reasonName(core.reason(i)),
        };
        if (opts.json) out.write(`${index === 1 ? "" : ","}\n    ${json2(p, "    ")}`);
        else out.line(`${String(p.index).padStart(width)}  ${p.time.toFixed(6)}  ${p.hook.padEnd(3)}  ${p.summary}  => ${p.verdict} ${p.reason}`);
      });
      batch.clear();
      pending = [];
    };
    try {
      for (const r of captureRecords(capture)) {
        t0 ??= r.ts;
        links.add(r.linkType);
        // The IP packet's length on the wire: the frame's, less the link header.
        const meta: PacketMeta = {
          ...roleOf(r.ip), hwProto: r.ethertype, tsNs: r.ts, wireLen: r.wirelen - (r.caplen - r.ip.length),
        };
        if (!batch.add(r.ip, meta)) {
          flush();
          if (!batch.add(r.ip, meta)) throw new Error(`packet ${index + 1} (${r.ip.length} bytes) does not fit in a batch`);
        }
        pending.push(r);
      }
    } catch (e) {
      try { flush(); } catch { /* the first error is the one to tell */ }
      out.flush();
      throw e;
    }
    flush();

    const c = core.counters();
    const reasons = Object.fromEntries(c.reasons.filter((r) => r.packets > 0n)
      .map((r) => [r.name, { packets: Number(r.packets), bytes: Number(r.bytes) }]));
    const verdicts = {
      drop: { packets: Number(c.drop.packets), bytes: Number(c.drop.bytes) },
      accept: { packets: Number(c.accept.packets), bytes: Number(c.accept.bytes) },
    };
    const linkTypes = [...links].map(linkTypeName).join(", ") || "no packets";
    if (opts.json) {
      out.write(index === 0 ? "],\n" : "\n  ],\n");
      const counters = { reasons, verdicts, batches: Number(c.batches), packets: Number(c.packets), badBatches: Number(c.badBatches) };
      out.write(`  "capture": ${json2({ path, format: capture.format, linkTypes, records: index }, "  ")},\n  "counters": ${json2(counters, "  ")}\n}\n`);
      out.flush();
      return;
    }
    out.line("");
    out.line(`Link layers: ${linkTypes}`);
    out.line("By reason:");
    const rw = Math.max(8, ...Object.keys(reasons).map((k) => k.length));
    for (const [name, n] of Object.entries(reasons)) out.line(`  ${name.padEnd(rw)}  ${n.packets} packets, ${n.bytes} bytes`);
    if (Object.keys(reasons).length === 0) out.line("  (no packets)");
    out.line("By verdict:");
    for (const [name, n] of Object.entries(verdicts)) out.line(`  ${name.padEnd(rw)}  ${n.packets} packets, ${n.bytes} bytes`);
    out.line(`${c.packets} packets in ${c.batches} batch${c.batches === 1n ? "" : "es"}`);
    out.flush();
  } finally {
    capture.close();
  }
}

export function demoCommand(): Command {
  return new Command("demo")
    .description("the appliance in network namespaces with the default policy and real traffic (root); " +
      "with --pcap, a capture through the core without a rule table instead")
    .option("--ha", "two appliances as one (keepalived, gateway mode): kill the master under 50 streams, show the failover; torn down at the end")
    .option("--keep", "leave the topology and the daemon running, and print how to poke them")
    .option("--down", "remove what an earlier --keep left (safe to run twice)")
    .addOption(new Option("--mode <mode>", "host: the appliance is the proxy; gateway: it forwards to one").choices(["host", "gateway"]).default("host"))
    .option("--pcap <file>", `classify a pcap or pcapng capture offline instead (default capture: ${DEFAULT_PCAP})`)
    .option("--json", "with --pcap: print one JSON document")
    .option("--prefix <prefix>", "prefix of the namespace names (default none: inet, appliance, lan)")
    .option("--control <path>", "the demo daemon's control socket (default /run/portcullis/control.sock)")
    .option("--report <file>", "also write each probe's outcome as JSON to this file")
    .addOption(engineOption("the core (the demo daemon's, or --pcap's)"))
    .action(async (opts: { pcap?: string; json?: boolean; ha?: boolean; keep?: boolean; down?: boolean; mode: "host" | "gateway"; prefix?: string; control?: string; report?: string; engine?: EngineName }, cmd: Command) => {
      if (opts.pcap !== undefined || opts.json) return runDemo(opts);
      if (opts.prefix !== undefined && !/^[A-Za-z0-9_.-]{1,20}$/.test(opts.prefix)) throw new Error(`--prefix ${opts.prefix}: 1 to 20 of A-Z a-z 0-9 _ . -`);
      if (opts.down) return demoDown(undefined, opts.prefix);
      if (opts.ha) {
        const clash = ["keep", "control", "engine"].filter((k) => opts[k as keyof typeof opts] !== undefined)
          .concat(cmd.getOptionValueSource("mode") === "cli" ? ["mode"] : []);
        if (clash.length) throw new Error(`--ha does not take --${clash.join(", --")} (the pair is gateway mode, and is torn down at the end)`);
        const r = await pairDemo({ prefix: opts.prefix });
        if (opts.report) writeFileSync(opts.report, `${JSON.stringify(r, null, 2)}\n`);
        if (r.survived !== r.streams) process.exitCode = 1;
        return;
      }
      const r = await applianceDemo({ keep: opts.keep ?? false, mode: opts.mode, prefix: opts.prefix, control: opts.control, ...(opts.engine ? { engine: opts.engine } : {}) });
      if (opts.report) writeFileSync(opts.report, `${JSON.stringify(r, null, 2)}\n`);
      if (r.failed > 0) process.exitCode = 1;
    });
}
