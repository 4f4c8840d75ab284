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
import { parseArgs } from "node:util";
import * as ABI from "../../host/core/abi.js";
import { Core } from "../../host/core/core.js";
import { NfqQueue, type NfqError, type NfqOptions } from "../../host/native/nfq.js";

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

const core = new Core("release");
core.setDefaultVerdict(a.default === "accept" ? ABI.VERDICT_ACCEPT : ABI.VERDICT_DROP);
const q = NfqQueue.open(options);
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
    q.verdict(core, n, marks);
    if (n > maxBatch) maxBatch = n;
  }
  const s = q.stats();
  process.stdout.write(`P ${s.packets} ${s.accepted} ${s.dropped}\n`);
}

process.on("SIGTERM", () => {
  const s = q.stats();
  q.close();
  const c = core.counters();
  console.log(`STATS ${JSON.stringify({
    ...s, unique: seen.size, duplicates, maxBatch, recvCalls, classifyErrors, first,
    core: { packets: Number(c.packets), batches: Number(c.batches), accept: Number(c.accept.packets), drop: Number(c.drop.packets) },
  })}`);
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
    q.onReadable(drain);
  };
  const timer = setTimeout(start, stall);
  process.once("SIGUSR2", start);
} else {
  q.onReadable(drain);
}
