// Small traffic tools the appliance tests run inside the topology's
// namespaces (`ip netns exec NS node appliance-tools.js TOOL ...`), each a
// plain Node process that the test starts, tracks and ends by its pid:
//
//   udp-sink FILE PORT ADDR...        counts the datagrams it receives on
//                                     ADDR:PORT; writes the count to FILE
//                                     (atomically, every 20 ms when it moved)
//   udp-send HOST PORT COUNT [SIZE [SRC]]  sends COUNT datagrams of SIZE
//                                     bytes (default 64) from address SRC
//                                     (default: the kernel's choice) as fast as it can, in
//                                     bursts of 250; prints how many the
//                                     socket took; bounded in count and time
//   bulk-server FILE PORT BYTES ADDR...  an HTTP server on ADDR:PORT: a GET
//                                     gets a body of BYTES bytes; a request
//                                     with a body (an upload) is answered
//                                     "received N" once all N bytes are in
// The servers write FILE.ready (their pid) once every address is bound.
import { createSocket } from "node:dgram";
import { renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";

const [tool, ...args] = process.argv.slice(2);

function ready(file: string): void {
  writeFileSync(`${file}.ready`, `${process.pid}\n`);
}

function bindAll(addrs: string[], bind: (addr: string, done: () => void) => void, file: string): void {
  let pending = addrs.length;
  for (const a of addrs) bind(a, () => { if (--pending === 0) ready(file); });
}

for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => process.exit(0));

if (tool === "udp-sink") {
  const [file, port, ...addrs] = args;
  let n = 0, written = -1;
  const flush = (): void => {
    if (n === written) return;
    written = n;
    writeFileSync(`${file}.tmp`, `${n}\n`);
    renameSync(`${file}.tmp`, file!);
  };
  flush();
  setInterval(flush, 20);
  bindAll(addrs, (a, done) => {
    const s = createSocket({ type: a.includes(":") ? "udp6" : "udp4", ipv6Only: a.includes(":") });
    s.on("message", () => { n++; });
    s.on("error", (e) => { process.stderr.write(`udp-sink ${a}:${port}: ${e.message}\n`); process.exit(1); });
    s.bind(Number(port), a, done);
  }, file!);
} else if (tool === "udp-send") {
  const [host, port, count, size, src] = args;
  const total = Number(count), payload = Buffer.alloc(Number(size ?? 64), 0x55);
  const s = createSocket(host!.includes(":") ? "udp6" : "udp4");
  let issued = 0, sent = 0, failed = 0;
  const deadline = Date.now() + 10_000;
  const burst = (): void => {
    let inFlight = 0;
    for (let i = 0; i < 250 && issued < total; i++) {
      inFlight++;
      issued++;
      s.send(payload, Number(port), host, (e) => {
        if (e) failed++; else sent++;
        if (--inFlight === 0) next();
      });
    }
  };
  const next = (): void => {
    if (issued >= total || Date.now() > deadline) {
      process.stdout.write(`${JSON.stringify({ sent, failed })}\n`);
      s.close();
      return;
    }
    setImmediate(burst);
  };
  if (src) s.bind(0, src, burst); else burst();
} else if (tool === "bulk-server") {
  const [file, port, bytes, ...addrs] = args;
  const body = Buffer.alloc(Number(bytes), 0x61);
  bindAll(addrs, (a, done) => {
    const server = createServer((sock) => {
      let buf = Buffer.alloc(0);
      let answered = false;
      sock.on("error", () => sock.destroy());
      sock.setTimeout(10_000, () => sock.destroy());
      sock.on("data", (d: Buffer) => {
        if (answered) return;
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.subarray(0, end).toString("latin1"))?.[1] ?? 0);
        const got = buf.length - end - 4;
        if (got < len) return; // an upload: answer once all of it is in
        answered = true;
        const out = len > 0 ? Buffer.from(`received ${got}\n`) : body;
        sock.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${out.length}\r\nConnection: close\r\n\r\n`), out]));
      });
    });
    server.on("error", (e) => { process.stderr.write(`bulk-server ${a}:${port}: ${e.message}\n`); process.exit(1); });
    server.listen({ host: a, port: Number(port), ipv6Only: a.includes(":") }, done);
  }, file!);
} else {
  process.stderr.write("usage: appliance-tools.js udp-sink FILE PORT ADDR... | udp-send HOST PORT COUNT [SIZE [SRC]] | bulk-server FILE PORT BYTES ADDR...\n");
  process.exit(2);
}
