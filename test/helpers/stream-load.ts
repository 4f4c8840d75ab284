// Traffic for the reload-under-load test, run inside a namespace:
//   node stream-load.js server HOST PORT        an echo server
//   node stream-load.js client HOST PORT STREAMS SECONDS
// The client keeps STREAMS long-lived connections sending 64 bytes every
// 20 ms and checking the echo, and opens a new connection every 25 ms; at
// the end it prints one JSON line: per stream bytes and the longest wait for
// an echo, errors, and the new connections that worked or failed.
import { createConnection, createServer, type Socket } from "node:net";

const [mode, host, portText, streamsText, secondsText] = process.argv.slice(2);
const port = Number(portText);

if (mode === "server") {
  const srv = createServer((s) => { s.on("data", (d) => s.write(d)); s.on("error", () => s.destroy()); });
  srv.listen(port, host, () => process.stdout.write("listening\n"));
} else if (mode === "client") {
  const streams = Number(streamsText), seconds = Number(secondsText);
  const started = Date.now();
  const stats = Array.from({ length: streams }, () => ({ sent: 0, echoed: 0, maxGapMs: 0, error: "" as string, lastEcho: Date.now() }));
  const socks: Socket[] = [];
  const payload = Buffer.alloc(64, 0x61);
  stats.forEach((st, i) => {
    const s = createConnection({ host, port });
    socks.push(s);
    s.on("connect", () => { st.lastEcho = Date.now(); });
    s.on("data", (d) => {
      const now = Date.now();
      st.maxGapMs = Math.max(st.maxGapMs, now - st.lastEcho);
      st.lastEcho = now;
      st.echoed += d.length;
    });
    s.on("error", (e) => { st.error = `${i}: ${e.message}`; });
    s.on("close", () => { if (!st.error && Date.now() - started < seconds * 1000) st.error = `${i}: closed early`; });
  });
  const tick = setInterval(() => {
    for (let i = 0; i < socks.length; i++) {
      const s = socks[i]!;
      if (s.readyState === "open") { s.write(payload); stats[i]!.sent += payload.length; }
    }
  }, 20);
  let newOk = 0, newFail = 0;
  const failures: string[] = [];
  const opener = setInterval(() => {
    const c = createConnection({ host, port });
    const timer = setTimeout(() => { newFail++; failures.push("timeout"); c.destroy(); }, 3000);
    c.on("connect", () => c.write("hello"));
    c.on("data", () => { clearTimeout(timer); newOk++; c.end(); });
    c.on("error", (e) => { clearTimeout(timer); newFail++; failures.push(e.message); });
  }, 25);
  setTimeout(() => {
    clearInterval(tick);
    clearInterval(opener);
    // Let the last echoes and connections come back.
    setTimeout(() => {
      const now = Date.now();
      for (const st of stats) st.maxGapMs = Math.max(st.maxGapMs, now - st.lastEcho - 1500);
      process.stdout.write(`${JSON.stringify({ streams: stats.map(({ lastEcho, ...x }) => x), newOk, newFail, failures: failures.slice(0, 5) })}\n`);
      for (const s of socks) s.destroy();
      process.exit(0);
    }, 1500);
  }, seconds * 1000);
} else {
  process.stderr.write("usage: stream-load.js server HOST PORT | client HOST PORT STREAMS SECONDS\n");
  process.exit(2);
}
