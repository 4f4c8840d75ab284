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
//   stream-sink FILE PORT ADDR...     takes TCP connections on ADDR:PORT and
//                                     counts what they carry; writes
//                                     {bytes, conns, open, fin, reset} to FILE
//                                     (atomically, every 20 ms when it moved)
//   stream-send HOST PORT MS FILE END [SRC]  one TCP connection, writing as
//                                     fast as it drains for MS ms, then END:
//                                     fin (close), rst (reset) or hold (stay
//                                     open, idle, until killed); writes
//                                     {state, bytes, error} to FILE likewise
// The servers write FILE.ready (their pid) once every address is bound.
import { createSocket } from "node:dgram";
import { renameSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";

const [tool, ...args] = process.argv.slice(2);

function ready(file: string): void {
  writeFileSync(`${file}.ready`, `${process.pid}\n`);
}

function bindAll(addrs: string[], bind: (addr: string, done: () => void) => void, file: string): void {
  let pending = addrs.length;
  for (const a of addrs) bind(a, () => { if (--pending === 0) ready(file); });
}

// FILE holds what(): JSON, written atomically every 20 ms when it changed.
function statusFile(file: string, what: () => object): void {
  let written = "";
  const flush = (): void => {
    const text = JSON.stringify(what());
    if (text === written) return;
    written = text;
    writeFileSync(`${file}.tmp`, `${text}\n`);
    renameSync(`${file}.tmp`, file);
  };
  flush();
  setInterval(flush, 20);
  process.on("exit", flush);
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
} else if (tool === "stream-sink") {
  const [file, port, ...addrs] = args;
  const st = { bytes: 0, conns: 0, open: 0, fin: 0, reset: 0 };
  statusFile(file!, () => st);
  bindAll(addrs, (a, done) => {
    const server = createServer((sock) => {
      st.conns++; st.open++;
      let ended = false;
      const end = (how: "fin" | "reset"): void => { if (!ended) { ended = true; st.open--; st[how]++; } };
      sock.on("data", (d: Buffer) => { st.bytes += d.length; });
      sock.on("end", () => { end("fin"); sock.end(); });
      sock.on("error", () => { end("reset"); sock.destroy(); });
      sock.on("close", () => end("reset"));
    });
    server.on("error", (e) => { process.stderr.write(`stream-sink ${a}:${port}: ${e.message}\n`); process.exit(1); });
    server.listen({ host: a, port: Number(port), ipv6Only: a.includes(":") }, done);
  }, file!);
} else if (tool === "stream-send") {
  const [host, port, ms, file, end, src] = args;
  const st: { state: string; bytes: number; error: string | null } = { state: "connecting", bytes: 0, error: null };
  statusFile(file!, () => st);
  const chunk = Buffer.alloc(65536, 0x62);
  const sock = connect({ host: host!, port: Number(port), ...(src ? { localAddress: src } : {}) });
  sock.setNoDelay(true);
  sock.on("error", (e) => { st.state = "error"; st.error = e.message; });
  sock.on("close", () => { if (st.state !== "error") st.state = "closed"; });
  sock.on("connect", () => {
    st.state = "sending";
    const until = Date.now() + Number(ms);
    const pump = (): void => {
      while (Date.now() < until) {
        st.bytes += chunk.length;
        if (!sock.write(chunk)) { sock.once("drain", pump); return; }
      }
      st.state = end === "hold" ? "holding" : "done";
      if (end === "rst") sock.resetAndDestroy(); else if (end === "fin") sock.end();
    };
    pump();
  });
} else {
  process.stderr.write("usage: appliance-tools.js udp-sink FILE PORT ADDR... | udp-send HOST PORT COUNT [SIZE [SRC]] | bulk-server FILE PORT BYTES ADDR... | " +
    "stream-sink FILE PORT ADDR... | stream-send HOST PORT MS FILE fin|rst|hold [SRC]\n");
  process.exit(2);
}
