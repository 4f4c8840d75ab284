// Long-lived TCP streams and new connections, run inside a namespace (the
// reload-under-load test, the pair's failover test, demo and bench):
//   node stream-load.js server HOST PORT...       an echo server on each PORT
//   node stream-load.js client HOST PORT STREAMS SECONDS [PACE_MS [NEW_PORT [NEW_MS]]]
// The client keeps STREAMS long-lived connections to PORT, each sending 64
// bytes every PACE_MS (default 20) and checking the echo, and opens a new
// connection to NEW_PORT (default PORT) every NEW_MS (default 25) that must
// answer what it sends within 3 s (the last of them 3.5 s after the end).
// When every stream is connected it says
// "connected N" on stderr; it ends after SECONDS, or at once on SIGUSR1,
// and prints one JSON line (LoadResult): per stream bytes, the longest wait
// for an echo and when that wait ended, when the last echo came (ms since
// the start), errors; the new connections that worked or failed and when
// each failure was attempted (ms since the start, the first 500); the start
// (epoch ms) and when it stopped.
import { createConnection, createServer, type Socket } from "node:net";

const [mode, host, portText, streamsText, secondsText, paceText, newPortText, newMsText] = process.argv.slice(2);
const port = Number(portText);

export interface StreamStat { sent: number; echoed: number; maxGapMs: number; maxGapEndMs: number; lastEchoMs: number; error: string }
export interface LoadResult { startedAt: number; stoppedMs: number; streams: StreamStat[]; newOk: number; newFail: number; failures: string[]; newFailAtMs: number[] }

if (mode === "server") {
  let pending = process.argv.slice(4).length;
  for (const p of process.argv.slice(4)) {
    const srv = createServer((s) => { s.on("data", (d) => s.write(d)); s.on("error", () => s.destroy()); });
    srv.on("error", (e) => { process.stderr.write(`stream-load server ${host}:${p}: ${e.message}\n`); process.exit(1); });
    srv.listen(Number(p), host, () => { if (--pending === 0) process.stdout.write("listening\n"); });
  }
} else if (mode === "client") {
  const streams = Number(streamsText), seconds = Number(secondsText);
  const pace = Number(paceText ?? 20), newPort = Number(newPortText ?? port), newMs = Number(newMsText ?? 25);
  const started = Date.now();
  const stats = Array.from({ length: streams }, () => ({ sent: 0, echoed: 0, maxGapMs: 0, maxGapEndMs: 0, error: "" as string, lastEcho: Date.now() }));
  const socks: Socket[] = [];
  const payload = Buffer.alloc(64, 0x61);
  let connected = 0;
  const gap = (st: (typeof stats)[number], now: number): void => {
    if (now - st.lastEcho > st.maxGapMs) { st.maxGapMs = now - st.lastEcho; st.maxGapEndMs = now - started; }
  };
  stats.forEach((st, i) => {
    const s = createConnection({ host, port });
    socks.push(s);
    s.setNoDelay(true);
    s.on("connect", () => {
      st.lastEcho = Date.now();
      if (++connected === streams) process.stderr.write(`connected ${streams}\n`);
    });
    s.on("data", (d) => {
      const now = Date.now();
      gap(st, now);
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
  }, pace);
  let newOk = 0, newFail = 0;
  const failures: string[] = [];
  const newFailAtMs: number[] = [];
  const opener = setInterval(() => {
    const at = Date.now() - started;
    const c = createConnection({ host, port: newPort });
    let done = false;
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      newFail++;
      if (failures.length < 5) failures.push(why);
      if (newFailAtMs.length < 500) newFailAtMs.push(at);
      c.destroy();
    };
    const timer = setTimeout(() => fail("timeout"), 3000);
    c.on("connect", () => c.write("hello"));
    c.on("data", () => { if (done) return; done = true; clearTimeout(timer); newOk++; c.end(); });
    c.on("error", (e) => { clearTimeout(timer); fail(e.message); });
  }, newMs);
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearInterval(tick);
    clearInterval(opener);
    const stopped = Date.now();
    // Let the last echoes and connections come back; a stream still
    // waiting then has waited (at least) since its last echo to the stop.
    setTimeout(() => {
      for (const st of stats) if (st.lastEcho < stopped) gap(st, stopped);
      const result: LoadResult = {
        startedAt: started, stoppedMs: stopped - started,
        streams: stats.map(({ lastEcho, ...x }) => ({ ...x, lastEchoMs: lastEcho - started })), newOk, newFail, failures, newFailAtMs,
      };
      process.stdout.write(`${JSON.stringify(result)}\n`);
      for (const s of socks) s.destroy();
      process.exit(0);
    }, 3500);
  };
  setTimeout(finish, seconds * 1000);
  process.on("SIGUSR1", finish);
} else {
  process.stderr.write("usage: stream-load.js server HOST PORT... | client HOST PORT STREAMS SECONDS [PACE_MS [NEW_PORT [NEW_MS]]]\n");
  process.exit(2);
}
