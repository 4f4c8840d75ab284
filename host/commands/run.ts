// `portcullis run --policy POLICY [--queue N | --queues A-B] [--mode host|gateway]
// [--external DEV --internal DEV]`: the daemon. Loads the core, compiles or
// loads the table, binds the queues, and runs until SIGTERM/SIGINT, when it
// gives every queued packet its verdict, unbinds and exits 0. SIGHUP reloads;
// so does saving the policy (--watch, on by default; --no-watch turns it
// off). Every committed table is kept in --state-dir, and a start whose
// policy does not load comes back with it. --metrics ADDR:PORT serves
// Prometheus text on loopback or the internal interface. See
// host/daemon/README-reload.md.
import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_CONTROL } from "../daemon/control.js";
import { sdNotify, startWatchdog } from "../daemon/notify.js";
import { Daemon } from "../daemon/daemon.js";
import { JsonLogger } from "../daemon/log.js";
import { checkMetricsHost, MetricsServer, parseListenAddress } from "../daemon/metrics.js";
import { DEFAULT_STATE_DIR, startDaemon } from "../daemon/state.js";
import { PolicyWatcher } from "../daemon/watch.js";
import { NfqSource, rolesFor } from "../daemon/nfq-source.js";
import { MODES, type Mode } from "../policy/compile.js";
import { parseSwitchOverride } from "./check.js";
import { networkInterfaces } from "node:os";
import { type OffloadStart, readBoardFile } from "../kernel/board.js";
import { haVirtualAddresses } from "../kernel/board-ha.js";
import { Offload } from "../daemon/offload.js";
import { Conntrack } from "../native/ct.js";
import { queueFlags } from "../kernel/rules.js";
import { type EngineName } from "../core/load.js";
import { engineOption } from "./engine.js";
import { DEFAULT_COPY_RANGE, parseCopyRangeArg } from "../kernel/copy-range.js";

function int(name: string, lo: number, hi: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) throw new InvalidArgumentError(`${name} must be a whole number from ${lo} to ${hi}`);
    return Number(v);
  };
}

export function parseQueues(v: string): number[] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(v);
  if (!m) throw new InvalidArgumentError(`"${v}" is not a queue number or a range A-B`);
  const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
  if (a > 65535 || b > 65535 || b < a || b - a >= 64) throw new InvalidArgumentError(`queue range ${v}: numbers up to 65535, at most 64 queues, A <= B`);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

export interface RunOptions {
  policy: string;
  board?: string;
  queue?: number[];
  queues?: number[];
  mode: Mode;
  external?: string;
  internal?: string;
  control: string;
  set: Record<string, boolean>;
  maxFlows?: number;
  maxSources?: number;
  maxBlocks?: number;
  copyRange?: number; //   default: the board's copy_range:, else DEFAULT_COPY_RANGE (headers only)
  queueMaxlen: number;
  failOpen?: boolean;
  gso?: boolean;
  watch: boolean;
  stateDir: string;
  recheck?: boolean;
  metrics?: { host: string; port: number };
  engine?: EngineName; //   default: the board's engine:, else V8
  offload?: OffloadStart; // the board's offload: (enabled), with what to do at start
  ha?: boolean; //          the board has ha: (one of a pair; host/daemon/ha.ts)
  haVirtual?: string[]; //  its virtual addresses: all of them here at start -> master until keepalived says otherwise
  pickup?: boolean; //     TCP pickup (default: the board's tcp.pickup, else on with ha:, else off)
  liberal?: boolean; //    window tracking off (the board's tcp.liberal; no flag)
}

// The queues to bind and their flags, from the command line.
function queueSpecs(o: RunOptions): Array<{ queue: number; failOpen: boolean }> {
  return (o.queues ?? o.queue ?? [0]).map((queue) => ({ queue, failOpen: o.failOpen ?? false }));
}

// master when every virtual address is on this appliance's interfaces.
function initialRole(vips: string[]): "master" | "backup" {
  const here = new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
  return vips.length > 0 && vips.every((v) => here.has(v)) ? "master" : "backup";
}

export async function runDaemon(o: RunOptions): Promise<void> {
  const log = new JsonLogger();
  if (o.board) {
    // The board config names the mode, the devices and the queues, one set
    // per side with that side's fail-open setting.
    const b = readBoardFile(o.board);
    const specs = queueFlags(b).map((q) => ({ queue: q.queue, failOpen: q.failOpen }));
    return start({ ...o, mode: b.mode, external: b.external.dev, internal: b.internal.dev, engine: o.engine ?? b.engine, copyRange: o.copyRange ?? b.copyRange,
      ...(b.offload?.enabled ? { offload: b.offload.onStart } : {}), ...(b.ha ? { ha: true, haVirtual: haVirtualAddresses(b.ha) } : {}),
      pickup: o.pickup ?? b.tcp?.pickup ?? b.ha !== undefined, liberal: b.tcp?.liberal ?? false }, specs, log);
  }
  return start(o, queueSpecs(o), log);
}

async function start(o: RunOptions, specs: Array<{ queue: number; failOpen: boolean }>, log: JsonLogger): Promise<void> {
  const queues = specs.map((s) => s.queue);
  // Refuse a public metrics address before anything is bound.
  if (o.metrics) checkMetricsHost(o.metrics.host, o.internal);
  const daemon = new Daemon({
    policy: o.policy, mode: o.mode, switches: o.set, control: o.control,
    core: { ...(o.maxFlows ? { maxFlows: o.maxFlows } : {}), ...(o.maxSources ? { maxSources: o.maxSources } : {}),
      ...(o.maxBlocks ? { maxBlocks: o.maxBlocks } : {}), ...(o.engine ? { engine: o.engine } : {}),
      tcp: { pickup: o.pickup ?? false, liberal: o.liberal ?? false } }, stateDir: o.stateDir,
    ...(o.ha ? { ha: true, haInitial: initialRole(o.haVirtual ?? []) } : {}),
  }, log);
  // The policy, or else the last good table from --state-dir, or an error.
  const { fallback } = await startDaemon(daemon, log);
  // Offload: the kernel's conntrack followed, the flows an earlier daemon
  // offloaded adopted (or ended), before any queue is bound.
  if (o.offload) daemon.enableOffload(new Offload(daemon.core, log, { onStart: o.offload, conntrack: Conntrack.open({ events: true }) }));
  const roles = rolesFor({ ...(o.external ? { external: o.external } : {}), ...(o.internal ? { internal: o.internal } : {}) });
  for (const q of specs) {
    daemon.addSource(NfqSource.open({ queue: q.queue, copyRange: o.copyRange ?? DEFAULT_COPY_RANGE, maxLen: o.queueMaxlen, failOpen: q.failOpen, gso: o.gso ?? false, roles }));
  }
  await daemon.listen();
  let metrics: MetricsServer | null = null;
  if (o.metrics) {
    metrics = new MetricsServer(daemon, log);
    await metrics.listen(o.metrics.host, o.metrics.port);
  }
  const watcher = o.watch ? new PolicyWatcher(daemon, log, { recheck: o.recheck ?? false }) : null;
  watcher?.start();
  log.log("info", "started", {
    pid: process.pid, policy: o.policy, mode: o.mode, engine: daemon.core.engine, queues, roles, control: o.control, flows: daemon.core.flowCapacity,
    watch: o.watch, stateDir: o.stateDir, recheck: o.recheck ?? false, metrics: o.metrics ?? null, lastGoodTable: fallback, offload: o.offload ?? null,
    tcp: daemon.core.tcp,
  });
  // Under systemd (Type=notify): ready once the queues are bound, and a
  // watchdog ping from the event loop while it keeps turning.
  sdNotify(`READY=1\nSTATUS=filtering queues ${queues.join(",")} with ${o.policy}\nMAINPID=${process.pid}`);
  const watchdogMs = startWatchdog((e) => log.log("error", "watchdog ping failed", { error: e.message }));
  if (watchdogMs) log.log("info", "systemd watchdog", { pingEveryMs: watchdogMs });
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log.log("info", "stopping", { signal: sig });
    sdNotify("STOPPING=1");
    watcher?.stop();
    void (metrics?.close() ?? Promise.resolve()).then(() => daemon.stop()).then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // The reload compiles in a worker and queues behind any other; its record is logged.
  process.on("SIGHUP", () => { if (!stopping) void daemon.reload(undefined, undefined, { trigger: "sighup", recheck: o.recheck ?? false }); });
}

export function runCommand(): Command {
  return new Command("run")
    .description("run the filter: bind NFQUEUE queues and decide every packet until SIGTERM/SIGINT (SIGHUP reloads)")
    .requiredOption("--policy <file>", "YAML policy or compiled table")
    .option("--board <file>", "board config (board/portcullis.yaml): mode, devices, queues and fail-open per side")
    .option("--queue <n>", "NFQUEUE number", (v) => parseQueues(v))
    .option("--queues <a-b>", "a range of NFQUEUE numbers (one handle each)", (v) => parseQueues(v))
    .addOption(new Option("--mode <mode>", "host: the appliance is the proxy; gateway: it forwards").choices(MODES).default("host"))
    .option("--external <dev>", "the external NIC (its packets get the external role)")
    .option("--internal <dev>", "the internal NIC")
    .option("--control <path>", "control socket", DEFAULT_CONTROL)
    .addOption(new Option("--set <switch=on|off>", "turn a switch of the policy on or off (repeatable)").argParser(parseSwitchOverride).default({}))
    .addOption(engineOption("the core (overrides the board config's engine:)"))
    .option("--max-flows <n>", "state table capacity", int("--max-flows", 16, 2097152))
    .option("--max-sources <n>", "source table capacity (per-source limits; default 16384)", int("--max-sources", 16, 2097152))
    .option("--max-blocks <n>", "block-list entries, all lists together (default 4096)", int("--max-blocks", 16, 2097152))
    .option("--copy-range <bytes>", `bytes of each packet copied from the kernel (default ${DEFAULT_COPY_RANGE}: the headers the core reads; ` +
      "a packet whose headers run past it is dropped as snap_truncated; 65535: whole packets)", parseCopyRangeArg)
    .option("--queue-maxlen <n>", "kernel queue length", int("--queue-maxlen", 1, 1 << 20), 4096)
    .option("--fail-open", "when a queue is full the kernel accepts packets uninspected (default: drops them)")
    .option("--gso", "take GSO packets unsegmented (headers only are classified)")
    .option("--pickup", "TCP pickup: a mid-stream segment of a 5-tuple the rules allow creates its flow (a hot standby's setting; " +
      "default: the board config's tcp.pickup, else on with ha: (a hot standby), else off)")
    .option("--no-watch", "do not reload when the policy file changes (default: saving the policy applies it)")
    .option("--state-dir <dir>", "keep the last committed table here; a start whose policy does not load uses it", DEFAULT_STATE_DIR)
    .option("--recheck", "reloads the daemon starts itself (SIGHUP, file watch) re-check every tracked flow and end those the new table refuses")
    .option("--metrics <addr:port>", "serve Prometheus metrics at http://ADDR:PORT/metrics; loopback or an internal-interface address only (default: off)",
      (v) => { try { return parseListenAddress(v); } catch (e) { throw new InvalidArgumentError((e as Error).message); } })
    .action(async (o: RunOptions) => {
      if (o.queue && o.queues) throw new Error("give --queue or --queues, not both");
      if (o.board && (o.queue || o.queues || o.external || o.internal)) {
        throw new Error("--board names the queues and devices: do not also give --queue(s), --external or --internal");
      }
      await runDaemon(o);
    });
}
