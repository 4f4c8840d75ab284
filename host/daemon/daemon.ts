// The daemon: one core, its rule table, the packet sources (NFQUEUE handles),
// the control socket and the signals. Reload is a transaction: the file is
// read and compiled in a worker thread (compiler.ts) while the batches go on,
// then staged in the core and committed, with no batch in between (the event
// loop never runs one in the middle); a failure leaves the live table as it
// was and says why. Reloads, canary starts and promotions run one at a time,
// in the order they were asked for (a queue, at most MAX_TABLE_JOBS deep).
import { Core } from "../core/core.js";
import { limitCounters } from "../core/limits.js";
import { blockListSizes, blockRequest, sourcesRequest } from "./blocks.js";
import { type CoreConfig } from "../core/load.js";
import { type Mode } from "../policy/compile.js";
import { TableView } from "../rules/inspect.js";
import { errorLine, TableCompiler, type CompilerOptions } from "./compiler.js";
import { ControlServer, type ControlLimits } from "./control.js";
import { Engine, type PacketSource, UNDECIDED_CAUSES, UNDECIDED_KEY, type UndecidedCause } from "./engine.js";
import { type Logger } from "./log.js";
import { type Offload } from "./offload.js";
import { haRequestRole, HaState } from "./ha.js";
import { LastGoodWriter } from "./state.js";
import { Shadow } from "./shadow.js";

export interface DaemonOptions {
  policy: string; //            a YAML policy or a compiled table
  mode: Mode;
  switches?: Record<string, boolean>;
  core?: CoreConfig;
  control?: string; //          control socket path; none when absent
  maxBatch?: number;
  stateDir?: string; //         the last good table is saved here after each commit (state.ts)
  controlLimits?: ControlLimits; // connections and idle timeout of the control socket (control.ts)
  compiler?: CompilerOptions; //  the compile worker's timeout and heap (compiler.ts)
  ha?: boolean; //               one of an HA pair (the board's ha:): its role is in the stats from the start
  haInitial?: "master" | "backup"; // the role the virtual addresses suggest at start (ha.ts)
}

// Table operations (reload, canary start, promote) queued or running at once;
// one more is refused with a line saying so.
export const MAX_TABLE_JOBS = 4;

// How a reload was asked for (watch.ts, state.ts, the control socket).
export interface ReloadOptions {
  content?: Uint8Array; //      the file's bytes, already read (the watcher reads them until stable)
  recheck?: boolean; //         re-decide every tracked flow after the commit; end those now refused
  trigger?: string; //          start, sighup, watch, control
  from?: string; //             where the bytes came from when not `path` (the last good table)
}

export interface ReloadRecord {
  ticket: number | null;
  at: string;
  path: string;
  ok: boolean;
  error?: string;
  ms: { compile: number; stage: number; commit: number; total: number };
  rules?: number;
  trigger?: string;
  from?: string;
  recheck?: { ended: number; ms: number; revoked?: number; revokeMs?: number };
  saved?: string; //            the last good table file written after the commit
}

export class Daemon {
  readonly core: Core;
  readonly engine: Engine;
  private sources: PacketSource[] = [];
  private offload: Offload | null = null;
  private ha: HaState | null = null; // the first notify makes it when the board had no ha:
  private control: ControlServer | null = null;
  private table: TableView | null = null;
  private policyPath: string;
  readonly reloads: ReloadRecord[] = [];
  readonly reloadTotals = { ok: 0, error: 0, rechecks: 0, recheckEnded: 0 }; // since start (history keeps 100)
  readonly lastGood: LastGoodWriter | null; //  saves each committed table (opts.stateDir)
  readonly started = new Date();
  readonly compiler: TableCompiler;
  private jobs: Promise<unknown> = Promise.resolve(); // the tail of the table-operation queue
  private pending = 0; //                                table operations queued or running
  private stopping = false;

  constructor(readonly opts: DaemonOptions, private readonly log: Logger) {
    this.core = new Core("release", undefined, opts.core ?? {});
    this.engine = new Engine(this.core, log, opts.maxBatch ?? 256);
    this.policyPath = opts.policy;
    this.lastGood = opts.stateDir ? new LastGoodWriter(opts.stateDir, log) : null;
    this.compiler = new TableCompiler(opts.compiler ?? {});
    if (opts.ha) this.ha = new HaState(opts.haInitial);
  }

  // Reads and compiles (or reads) a table in the worker. Throws with the reason.
  private async tableFrom(path: string, content?: Uint8Array): Promise<Uint8Array> {
    const a = await this.compiler.compile({ path, ...(content ? { content } : {}), mode: this.opts.mode, switches: this.opts.switches ?? {} });
    if (!a.ok) throw new Error(a.error);
    if (this.stopping) throw new Error("the daemon is stopping");
    return a.bytes;
  }

  // Runs `fn` after every table operation asked for before it; refuses
  // (throws) when the daemon stops or MAX_TABLE_JOBS are already there.
  private queued<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.stopping) return Promise.reject(new Error("the daemon is stopping"));
    if (this.pending >= MAX_TABLE_JOBS) {
      return Promise.reject(new Error(`${MAX_TABLE_JOBS} reloads are already queued or running; try again when they finish`));
    }
    this.pending++;
    const run = this.jobs.then(() => (this.stopping ? Promise.reject(new Error("the daemon is stopping")) : fn()));
    this.jobs = run.then(() => { this.pending--; }, () => { this.pending--; });
    return run;
  }

  get policy(): string { return this.policyPath; }

  // The reload transaction, after those asked for before it; resolves to its
  // record (also kept in history). Never rejects.
  reload(path = this.policyPath, prepared?: Uint8Array, o: ReloadOptions = {}): Promise<ReloadRecord> {
    return this.queued(() => this.transaction(path, prepared, o))
      .catch((e: Error) => this.record(this.newRecord(path, o), null, e, o));
  }

  private newRecord(path: string, o: ReloadOptions): ReloadRecord {
    const rec: ReloadRecord = { ticket: null, at: new Date().toISOString(), path, ok: false, ms: { compile: 0, stage: 0, commit: 0, total: 0 } };
    if (o.trigger) rec.trigger = o.trigger;
    if (o.from) rec.from = o.from;
    return rec;
  }

  private async transaction(path: string, prepared: Uint8Array | undefined, o: ReloadOptions): Promise<ReloadRecord> {
    const t0 = performance.now();
    const rec = this.newRecord(path, o);
    let committed: Uint8Array | null = null;
    let error: unknown = null;
    try {
      const bytes = prepared ?? await this.tableFrom(path, o.content);
      // From here to the commit nothing awaits: no batch runs in between.
      const t1 = performance.now();
      rec.ms.compile = t1 - t0;
      const ticket = this.core.stageTable(bytes);
      const t2 = performance.now();
      rec.ms.stage = t2 - t1;
      this.core.commitTable(ticket);
      rec.ms.commit = performance.now() - t2;
      rec.ticket = ticket;
      this.table = new TableView(bytes);
      this.engine.setTable(this.table);
      this.engine.shadow?.setLiveTable(this.table);
      this.policyPath = path;
      rec.ok = true;
      rec.rules = this.table.nrules;
      committed = bytes;
      if (o.recheck) {
        const t3 = performance.now();
        rec.recheck = this.recheck();
        rec.recheck.ms = performance.now() - t3;
      }
    } catch (e) {
      error = e;
    }
    rec.ms.total = performance.now() - t0;
    return this.record(rec, committed, error, o);
  }

  // Re-decides every tracked flow against the live table; an offloaded flow
  // it took back (ended, or its rule no longer offloads) makes the kernel
  // queue every offloaded flow again (a new generation: offload.ts).
  private recheck(): { ended: number; ms: number; revoked?: number; revokeMs?: number } {
    const before = this.core.counters().offload.revoked;
    const ended = this.core.recheckFlows(process.hrtime.bigint());
    const revoked = Number(this.core.counters().offload.revoked - before);
    this.reloadTotals.rechecks++;
    this.reloadTotals.recheckEnded += ended;
    const out: { ended: number; ms: number; revoked?: number; revokeMs?: number } = { ended, ms: 0 };
    if (this.offload) {
      out.revoked = revoked;
      if (revoked > 0) out.revokeMs = this.offload.revoke(`a re-check took ${revoked} offloaded flows back`);
    }
    return out;
  }

  // Offload on (offload.ts): after the first table is live, before the
  // queues are bound, so that adopted flows are tracked before their
  // packets can reach the core.
  enableOffload(o: Offload): void {
    this.offload = o;
    this.engine.offload = o;
    o.start();
    // A pair's daemon stands by until keepalived says it is master.
    if (this.ha) o.standby = this.ha.role !== "master";
  }

  // keepalived's notify (ha.ts): the role, and on master the adoption of
  // the kernel's offloaded flows.
  haNotify(role: "master" | "backup" | "fault"): Record<string, unknown> {
    this.ha ??= new HaState();
    const off = this.offload;
    const r = this.ha.notify(role, off ? () => off.adoptMarked(`ha: ${role}`) : null);
    if (off && role !== "master") off.standby = true;
    if (r.changed) this.log.log("info", "ha role", { role, adopted: r.adopted });
    return { ...this.ha.stats(), adoptedNow: r.adopted };
  }

  // Counts, saves, keeps and logs a finished (or refused) reload.
  private record(rec: ReloadRecord, committed: Uint8Array | null, error: unknown, o: ReloadOptions): ReloadRecord {
    if (error !== null) rec.error = errorLine(error);
    this.reloadTotals[rec.ok ? "ok" : "error"]++;
    if (committed && this.lastGood && !o.from) {
      this.lastGood.save(committed, { policy: rec.path, mode: this.opts.mode, ticket: rec.ticket, rules: rec.rules ?? 0 });
      rec.saved = this.lastGood.file; // written in the background
    }
    this.reloads.push(rec);
    if (this.reloads.length > 100) this.reloads.shift();
    this.log.log(rec.ok ? "info" : "error", rec.ok ? "table committed" : "reload refused; the live table is unchanged", { ...rec });
    return rec;
  }

  // Runs a candidate table beside the live one (shadow.ts); replaces any
  // candidate already running. Rejects with the reason when it cannot load.
  startShadow(path: string): Promise<Shadow> {
    return this.queued(async () => {
      const bytes = await this.tableFrom(path);
      const s = new Shadow(path, bytes, this.core, this.table, this.opts.core ?? {});
      this.engine.shadow = s;
      this.log.log("info", "candidate table running in the shadow", { path, rules: s.table.nrules });
      return s;
    });
  }

  // The candidate becomes the live table (through the reload transaction).
  // Rejects when no candidate is running.
  promote(): Promise<ReloadRecord> {
    return this.queued(async () => {
      const s = this.engine.shadow;
      if (!s) throw new Error("no candidate table is running (reload --shadow FILE first)");
      const rec = await this.transaction(s.path, s.bytes, {});
      if (rec.ok) {
        this.log.log("info", "candidate promoted", { ...s.report(), samples: undefined });
        if (this.engine.shadow === s) this.engine.shadow = null;
      }
      return rec;
    });
  }

  discard(): void {
    const s = this.engine.shadow;
    if (!s) throw new Error("no candidate table is running");
    this.log.log("info", "candidate discarded", { ...s.report(), samples: undefined });
    this.engine.shadow = null;
  }

  addSource(src: PacketSource): void {
    this.sources.push(src);
    this.engine.attach(src);
  }

  async listen(): Promise<void> {
    if (!this.opts.control) return;
    this.control = new ControlServer(this.opts.control, (req) => this.handle(req), this.opts.controlLimits ?? {});
    await this.control.listen();
  }

  private async handle(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    switch (req.cmd) {
      case "stats": return { ok: true, stats: this.stats() };
      case "reload": {
        if (req.path !== undefined && typeof req.path !== "string") return { ok: false, error: '"path" must be a string' };
        if (req.recheck !== undefined && typeof req.recheck !== "boolean") return { ok: false, error: '"recheck" must be true or false' };
        const r = await this.reload(req.path as string | undefined, undefined, { trigger: "control", recheck: req.recheck === true });
        return r.ok ? { ok: true, reload: r } : { ok: false, error: r.error, reload: r };
      }
      case "shadow": {
        if (typeof req.path !== "string") return { ok: false, error: '"path" (the candidate policy or table) must be a string' };
        try {
          return { ok: true, shadow: (await this.startShadow(req.path)).report() };
        } catch (e) {
          return { ok: false, error: errorLine(e) };
        }
      }
      case "promote": {
        const r = await this.promote();
        return r.ok ? { ok: true, reload: r } : { ok: false, error: r.error, reload: r };
      }
      case "offload": {
        // Every offloaded flow back to the queue: re-decided by the live
        // table (ended when refused), offloaded again at its next packet
        // when its rule still says so.
        if (req.action !== "revoke") return { ok: false, error: 'offload: "action" must be "revoke"' };
        if (!this.offload) return { ok: false, error: "offload is off (the board config's offload: { enabled: true } turns it on)" };
        const r = this.recheck();
        const ms = r.revokeMs ?? this.offload.revoke("operator");
        return { ok: true, revoke: { ended: r.ended, revoked: r.revoked ?? 0, ms } };
      }
      case "discard": {
        const report = this.engine.shadow?.report();
        this.discard();
        return { ok: true, shadow: report };
      }
      case "ha": {
        const role = haRequestRole(req);
        if (role !== "master" && role !== "backup" && role !== "fault") return { ok: false, error: role };
        const a = this.haNotify(role);
        return { ok: true, ha: { role: a.role, transitions: a.transitions, since: a.since, adopted: a.adoptedNow } };
      }
      case "block": return blockRequest(this.core, this.table, req);
      case "sources": return sourcesRequest(this.core, this.table, req);
      default: return { ok: false, error: `unknown command ${JSON.stringify(req.cmd)} (stats, reload, shadow, promote, discard, block, sources, offload, ha)` };
    }
  }

  stats(): Record<string, unknown> {
    const c = this.core.counters();
    // Each queue: the source's own figures and what the engine counted for it.
    const queues = this.sources.map((s) => ({ name: s.name, ...s.stats(), ...this.engine.sourceStats(s) }));
    // Packets dropped without a verdict of the core's, by cause (engine.ts).
    const undecided = Object.fromEntries(UNDECIDED_CAUSES.map((c) =>
      [c, queues.reduce((sum, q) => sum + (Number((q as Record<string, unknown>)[UNDECIDED_KEY[c]]) || 0), 0)])) as Record<UndecidedCause, number>;
    const rules = this.table ? this.core.ruleCounters(this.table.nrules).map((r, i) => ({
      rule: i, info: this.table!.rules[i]!.info, packets: r.packets, bytes: r.bytes, lastHitNs: r.lastHitNs,
    })) : [];
    return {
      started: this.started.toISOString(),
      policy: this.policyPath,
      mode: this.opts.mode,
      verdicts: { accept: c.accept, drop: c.drop },
      reasons: c.reasons.filter((r) => r.packets > 0n).map((r) => ({ reason: r.name, packets: r.packets, bytes: r.bytes })),
      rules,
      flows: { ...c.flows, capacity: this.core.flowCapacity },
      limits: limitCounters(this.core),
      blockLists: blockListSizes(this.core, this.table),
      undecided,
      queues,
      engine: { ...this.engine.stats },
      coreEngine: this.core.engine,
      batches: c.batches,
      packets: c.packets,
      reloads: this.reloads,
      reloadTotals: { ...this.reloadTotals },
      shadow: this.engine.shadow?.report() ?? null,
      offload: this.offload?.stats() ?? null,
      ha: this.ha?.stats() ?? null,
      tcp: { ...this.core.tcp, pickedUp: c.pickedUp },
    };
  }

  // Stops cleanly: no new wakeups, every packet already queued gets its
  // verdict, then the queues are unbound and the socket removed.
  async stop(): Promise<void> {
    this.engine.stop();
    // A reload in flight is refused (its compile stopped; nothing was
    // staged), and so is every one still queued; the live table stays.
    this.stopping = true;
    await this.compiler.close();
    await this.jobs;
    for (const s of this.sources) {
      try { this.engine.drain(s); } catch (e) { this.log.log("error", "drain failed", { source: s.name, error: String(e) }); }
      try { s.close(); } catch (e) { this.log.log("error", "close failed", { source: s.name, error: String(e) }); }
    }
    this.offload?.stop();
    await this.control?.close();
    await this.lastGood?.idle();
    this.log.log("info", "stopped", { packets: this.engine.stats.packets, batches: this.engine.stats.batches });
  }
}
