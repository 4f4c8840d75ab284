// Run by bootcheck.sh as a copy of portcullis.service's sandbox (same user,
// capabilities, system call filter, address families, IP allow list, file
// system view), to show what the daemon can and cannot do in there beyond
// what the running daemon shows: a worker thread that compiles WebAssembly
// (a reload's compile runs in one), the loopback the metrics endpoint may
// use, an IP address outside the allow list, a write outside its
// directories. One line: "sandbox: ...".
import { Worker } from "node:worker_threads";
import { createServer, connect } from "node:net";
import { writeFileSync } from "node:fs";

const out = [];
// A worker thread (threads: clone3, futex, ...) compiling and running a wasm module.
const wasm = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 42, 11];
out.push(await new Promise((resolve) => {
  const w = new Worker(`const { parentPort, workerData } = require("node:worker_threads");
    const m = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(workerData)));
    parentPort.postMessage(m.exports.f());`, { eval: true, workerData: wasm });
  w.once("message", (v) => resolve(`worker thread ran WebAssembly: ${v}`));
  w.once("error", (e) => resolve(`worker thread FAILED: ${e.message}`));
}));
// Loopback: listen and connect (IPAddressAllow=localhost).
out.push(await new Promise((resolve) => {
  const srv = createServer((c) => c.end("x")).listen(0, "127.0.0.1", () => {
    const c = connect(srv.address().port, "127.0.0.1");
    c.on("data", () => { c.destroy(); srv.close(); resolve("127.0.0.1 listen and connect: ok"); });
    c.on("error", (e) => { srv.close(); resolve(`127.0.0.1 connect: ${e.code}`); });
  });
  srv.on("error", (e) => resolve(`127.0.0.1 listen: ${e.code}`));
}));
// Any other address, here a Front End on int0's network (a route exists):
// refused by the IP allow list (EPERM) before a packet leaves.
out.push(await new Promise((resolve) => {
  const c = connect(4443, "198.51.100.10");
  const t = setTimeout(() => { c.destroy(); resolve("connect 198.51.100.10:4443: no error in 5 s"); }, 5000);
  c.on("connect", () => { clearTimeout(t); c.destroy(); resolve("connect 198.51.100.10:4443: connected"); });
  c.on("error", (e) => { clearTimeout(t); resolve(`connect 198.51.100.10:4443: ${e.code}`); });
}));
// The file system: read-only outside its state and runtime directories.
for (const p of ["/etc/portcullis/sandbox-probe", "/var/lib/portcullis-probe"]) {
  try { writeFileSync(p, "x"); out.push(`write ${p}: written`); } catch (e) { out.push(`write ${p}: ${e.code}`); }
}
console.log(`sandbox: ${out.join("; ")}`);
