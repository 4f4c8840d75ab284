// The compile worker (compiler.ts): one job per message, one answer each.
import { parentPort } from "node:worker_threads";
import { compileJob, type CompileJob } from "./compiler.js";

if (!parentPort) throw new Error("compile-worker.ts runs as a worker thread (compiler.ts starts it)");
const port = parentPort;
port.on("message", (job: CompileJob) => {
  const a = compileJob(job);
  port.postMessage(a, a.ok && a.bytes.byteOffset === 0 && a.bytes.byteLength === a.bytes.buffer.byteLength ? [a.bytes.buffer as ArrayBuffer] : []);
});
