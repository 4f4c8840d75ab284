// A minimal NFQUEUE consumer for test/nfq.test.ts, run inside a network
// namespace (`ip netns exec NS node dist/test/helpers/nfq-child.js ...`):
// binds the queue, classifies what arrives with the release core (no rule
// table: every well-formed packet gets the default verdict), sends the
// verdicts, and reports.
//
//   stdout: "READY {...}" once bound; "P packets accepted dropped" after each
//   wakeup; "STATS {...}" on SIGTERM (then it exits 0).
//   --try-open: only tries to bind, prints "OPEN {ok, code, message, ...}" and exits.
//   --stall-ms N: reads nothing for N ms or until SIGUSR2.
//   --fault KIND:COUNT[:AFTER[:ERRNO]]: the addon's test hook (testHookFault),
//     set once the queue is bound (repeatable).
//   --pattern a,d,...: the i-th packet received gets the i-th verdict of the
//     list (cycling) instead of the core's, so that one batch mixes both.
//   --no-verdict N: the first N batches get no verdict() call (as a loop
//     that threw between recv and verdict would leave them).
//   A verdict() that throws is counted (verdictErrors) and the loop goes on.
//   --daemon: the daemon's own loop instead (host/daemon: Daemon, Engine,
//     NfqSource) with no rule table; its JSON log lines go to stdout too, and
//     STATS carries its stats() as "daemon". --refuse-batches N: the core
//     refuses its first N batches (classify answers -1).
import { parseArgs } from "node:util";
import * as ABI from "../../host/core/abi.js";
import { Core } from "../../host/core/core.js";
import { Daemon } from "../../host/daemon/daemon.js";
import { type PacketSource } from "../../host/daemon/engine.js";
import { JsonLogger } from "../../host/daemon/log.js";
import { NfqSource } from "../../host/daemon/nfq-source.js";
import { NfqQueue, type NfqError, type NfqFault, type NfqOptions } from "../../host/native/nfq.js";

const { values: a } = parseArgs({
  options: {
    queue: { type: "string", default: "0" },
    default: { type: "string", default: "drop" },
    "stall-ms": { type: "string", default: "0" },
    "max-len": { type: "string" },
    "copy-range": { type: "string" },
    rcvbuf: { type: "string" },
    "max-batch": { type: "string" },
    "data-cap": { type: "string" },
    "fail-open": { type: "boolean", default: false },
    gso: { type: "boolean", default: false },
    mark: { type: "string" },
    role: { type: "string", multiple: true, default: [] }, // IFINDEX=ROLE
    "try-open": { type: "boolean", default: false },
    fault: { type: "string", multiple: true, default: [] },
    pattern: { type: "string" },
    "no-verdict": { type: "string", default: "0" },
    daemon: { type: "boolean", default: false },
    "refuse-batches": { type: "string", default: "0" },
  },
});

const options: NfqOptions = { queue: Number(a.queue), failOpen: a["fail-open"], gso: a.gso };
if (a["max-len"] !== undefined) options.maxLen = Number(a["max-len"]);
if (a["copy-range"] !== undefined) options.copyRange = Number(a["copy-range"]);
if (a.rcvbuf !== undefined) options.rcvbuf = Number(a.rcvbuf);
const roles: Record<number, number> = {};
for (const r of a.role ?? []) {
  const [ifindex, role] = r.split("=").map(Number);
  roles[ifindex!] = role!;
}
options.roles = roles;

if (a["try-open"]) {
  try {
    NfqQueue.open(options).close();
    console.log(`OPEN ${JSON.stringify({ ok: true })}`);
  } catch (e) {
    const err = e as NfqError;
    console.log(`OPEN ${JSON.stringify({ ok: false, name: err.name, code: err.code, kernelCode: err.kernelCode, op: err.op, message: err.message })}`);
  }
  process.exit(0);
}

const daemon = a.daemon ? new Daemon({ policy: "(none: the default verdict)", mode: "host" }, new JsonLogger()) : null;
const core = daemon?.core ?? new Core("release");
core.setDefaultVerdict(a.default === "accept" ? ABI.VERDICT_ACCEPT : ABI.VERDICT_DROP);
const q = NfqQueue.open(options);
for (const f of a.fault ?? []) {
  const [kind, count, after, errno] = f.split(":");
  q.testHookFault(kind as NfqFault, Number(count), { after: Number(after ?? 0), ...(errno ? { errno: Number(errno) } : {}) });
}
let refuse = Number(a["refuse-batches"]);
if (refuse > 0) {
  const classify = core.classify.bind(core);
  core.classify = (n: number, now?: bigint): number => (refuse-- > 0 ? -1 : classify(n, now));
}
const pattern = a.pattern?.split(",").map((x) => (x === "a" ? ABI.VERDICT_ACCEPT : ABI.VERDICT_DROP));
let noVerdict = Number(a["no-verdict"]), received = 0, verdictErrors = 0;
const mark = a.mark === undefined ? 0 : Number(a.mark);
const marks = mark ? new Uint32Array(ABI.MAX_BATCH) : undefined;
const maxBatchArg = Number(a["max-batch"] ?? ABI.MAX_BATCH), dataCap = Number(a["data-cap"] ?? ABI.DATA_CAP);

const seen = new Set<number>();
let duplicates = 0, maxBatch = 0, recvCalls = 0, classifyErrors = 0;
let first: Record<string, number | string> | undefined;
const v = core.view;

function drain(err?: Error): void {
  if (err) throw err;
  for (;;) {
    const n = q.recv(core, maxBatchArg, dataCap);
    recvCalls++;
    if (n === 0) break;
    const r = core.classify(n, BigInt(Date.now()) * 1_000_000n);
    if (r !== n) classifyErrors++;
    for (let i = 0; i < n; i++) {
      const d = core.descsPtr + i * ABI.DESC_SIZE;
      const id = v.getUint32(d + ABI.D_PACKET_ID, true);
      if (seen.has(id)) duplicates++;
      else seen.add(id);
      if (marks) marks[i] = core.verdict(i) === ABI.VERDICT_ACCEPT ? mark : 0;
      if (!first) {
        first = {
          capLen: v.getUint32(d + ABI.D_CAP_LEN, true),
          wireLen: v.getUint32(d + ABI.D_WIRE_LEN, true),
          tsNs: v.getBigUint64(d + ABI.D_TS, true).toString(),
          hwProto: v.getUint16(d + ABI.D_HW_PROTO, true),
          inRole: v.getUint8(d + ABI.D_IN_ROLE),
          outRole: v.getUint8(d + ABI.D_OUT_ROLE),
          hook: v.getUint8(d + ABI.D_HOOK),
          queue: v.getUint16(d + ABI.D_QUEUE, true),
          version: core.u8[core.dataPtr + v.getUint32(d + ABI.D_DATA_OFF, true)]! >> 4,
        };
      }
    }
    if (pattern) {
      for (let i = 0; i < n; i++) core.u8[core.verdictsPtr + i * ABI.VERDICT_SIZE + ABI.V_VERDICT] = pattern[(received + i) % pattern.length]!;
    }
    received += n;
    if (n > maxBatch) maxBatch = n;
    if (noVerdict > 0) { noVerdict--; continue; }
    try {
      q.verdict(core, n, marks);
    } catch {
      verdictErrors++;
    }
  }
  report();
}

function report(): void {
  const s = q.stats();
  process.stdout.write(`P ${s.packets} ${s.accepted} ${s.dropped}\n`);
}

// --daemon: the queue as the daemon's source, reporting after each batch.
class Reporting implements PacketSource {
  readonly name: string;
  constructor(private readonly src: NfqSource) { this.name = src.name; }
  recv(c: Core, max: number): number {
    const n = this.src.recv(c, max);
    if (n > 0) report();
    return n;
  }
  verdict(c: Core, count: number): void { this.src.verdict(c, count); report(); }
  onReadable(cb: (err?: Error) => void): void { this.src.onReadable(cb); }
  stats(): Record<string, number> { return this.src.stats(); }
  close(): void { this.src.close(); }
}

process.on("SIGTERM", () => {
  q.close(); // first: a batch still awaiting verdicts is dropped and counted by it
  const s = q.stats();
  const d = daemon?.stats();
  const c = core.counters();
  console.log(`STATS ${JSON.stringify({
    ...s, unique: seen.size, duplicates, maxBatch, recvCalls, classifyErrors, verdictErrors, first,
    core: { packets: Number(c.packets), batches: Number(c.batches), accept: Number(c.accept.packets), drop: Number(c.drop.packets) },
    ...(d ? { daemon: d } : {}),
  }, (_, v: unknown) => (typeof v === "bigint" ? Number(v) : v))}`);
  process.exit(0);
});

console.log(`READY ${JSON.stringify({ queue: options.queue, fd: q.fd, pid: process.pid })}`);
// --stall-ms: do not read for that long (SIGUSR2 ends the stall early), so
// that packets pile up in the kernel queue and the socket.
const stall = Number(a["stall-ms"]);
if (stall > 0) {
  let started = false;
  const start = (): void => {
    if (started) return;
    started = true;
    clearTimeout(timer);
    run();
  };
  const timer = setTimeout(start, stall);
  process.once("SIGUSR2", start);
} else {
  run();
}

function run(): void {
  if (daemon) daemon.addSource(new Reporting(new NfqSource(q)));
  else q.onReadable(drain);
}
