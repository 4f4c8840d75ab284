// Run by bootcheck.sh as a copy of portcullis.service's sandbox (same user,
// capabilities, system call filter, address families, IP allow list, file
// system view), to show what the daemon can and cannot do in there beyond
// what the running daemon shows: a worker thread that compiles WebAssembly
// (a reload's compile runs in one), the loopback the metrics endpoint may
// use, an IP address outside the allow list, a write outside its
// directories. With --net-only (bootcheck.sh's control run, as root
// outside any sandbox) only the network probes. One line: "sandbox: ...".
import { Worker } from "node:worker_threads";
import { createServer, connect } from "node:net";
import { writeFileSync } from "node:fs";
import { createSocket } from "node:dgram";

const netOnly = process.argv.includes("--net-only");

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
// An address outside the allow list: the appliance's own int0 address.
// IPAddressDeny= is a BPF program at the cgroup's egress, which runs after
// netfilter: a packet to int0's network is queued to the daemon first and
// dropped silently afterwards (a TCP connect just waits), so that shows
// nothing. The own address is routed over lo, which is not queued: there
// the program's drop reaches the sender, a UDP send fails with EPERM and a
// TCP connect gets no answer. Outside the sandbox (--net-only, the control
// run) the same send goes and the connect is refused (ECONNREFUSED).
// The own address is the source the kernel picks toward a Front End
// (198.51.100.10, int0's network): a UDP connect only looks the route up,
// it sends nothing (and works with int0 down, which os.networkInterfaces()
// would leave out).
const self = await new Promise((resolve) => {
  const u = createSocket("udp4");
  u.once("error", () => { u.close(); resolve(null); });
  u.connect(9, "198.51.100.10", () => { const a = u.address().address; u.close(); resolve(a); });
});
if (!self) out.push("no route toward int0's network");
else {
  out.push(await new Promise((resolve) => {
    const u = createSocket("udp4");
    u.send(Buffer.from("x"), 9, self, (e) => { u.close(); resolve(`udp ${self}:9: ${e ? e.code : "sent"}`); });
  }));
  out.push(await new Promise((resolve) => {
    const c = connect(9, self);
    const t = setTimeout(() => { c.destroy(); resolve(`connect ${self}:9: no answer in 3 s`); }, 3000);
    c.on("connect", () => { clearTimeout(t); c.destroy(); resolve(`connect ${self}:9: connected`); });
    c.on("error", (e) => { clearTimeout(t); resolve(`connect ${self}:9: ${e.code}`); });
  }));
}
// The file system: read-only outside its state and runtime directories.
for (const p of netOnly ? [] : ["/etc/portcullis/sandbox-probe", "/var/lib/portcullis-probe"]) {
  try { writeFileSync(p, "x"); out.push(`write ${p}: written`); } catch (e) { out.push(`write ${p}: ${e.code}`); }
}
console.log(`sandbox: ${out.join("; ")}`);
