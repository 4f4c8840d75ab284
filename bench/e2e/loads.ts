// One measurement of each end-to-end load through whatever contender is on,
// from the generator namespace (inet) to the sink (proxy), with the C tools
// of tools.ts. Each returns the figure and the raw counts behind it.
import { ECHO_PORT, BULK_PORT, UDP_PORT, UDP_SPORT } from "./contenders.js";
import { type BenchNet, DST, type Proc, SOURCES, sleep } from "./net.js";
import { type Tools } from "./tools.js";

export interface UdpRun { kpps: number; sent: number; delivered: number; failed: number }
export interface ConnRun { perSec: number; connections: number; failed: number }
export interface BulkRun { gbps: number; bytes: number }
export interface RrRun { p50us: number; p99us: number; n: number }

// UDP 64-byte payloads from the four sources (port UDP_SPORT) as fast as the kernel takes
// them, for `secs`; the figure is what reaches the sink per second, from its
// first datagram to its last (the queue's backlog drains after the sender
// stops; that time counts).
export async function udpRun(net: BenchNet, tools: Tools, secs: number, port = UDP_PORT): Promise<UdpRun> {
  const sink = net.start("proxy", [tools.udp, "sink", "--bind", DST, "--port", String(port)], "udp-sink");
  await sink.waitFor(/^ready$/m);
  const s = await net.runJson("inet", [tools.udp, "send", "--dst", DST, "--port", String(port), "--src", SOURCES.join(","), "--sport", String(UDP_SPORT), "--size", "64", "--secs", String(secs)], secs * 1000 + 10_000);
  await sleep(150);
  const r = await sink.stop();
  if (!r) throw new Error(`the UDP sink printed no count: ${sink.err.trim()}`);
  const ns = r.last_ns! - r.first_ns!;
  if (r.packets! < 2 || ns <= 0) throw new Error(`UDP: only ${r.packets} of ${s.sent} datagrams reached the sink (is the contender passing the bench flow?)`);
  return { kpps: (r.packets! - 1) / (ns / 1e9) / 1000, sent: s.sent!, delivered: r.packets!, failed: s.failed! };
}

// Exactly `count` datagrams, paced at `pps`; how many the sink got.
export async function udpCount(net: BenchNet, tools: Tools, count: number, pps: number, port: number): Promise<{ sent: number; delivered: number }> {
  const sink = net.start("proxy", [tools.udp, "sink", "--bind", DST, "--port", String(port)], "udp-sink");
  await sink.waitFor(/^ready$/m);
  const s = await net.runJson("inet", [tools.udp, "send", "--dst", DST, "--port", String(port), "--src", SOURCES.join(","), "--sport", String(UDP_SPORT), "--size", "64", "--count", String(count), "--pps", String(pps)], 60_000);
  await sleep(300);
  const r = await sink.stop();
  return { sent: s.sent!, delivered: r?.packets ?? 0 };
}

// New TCP connections to the echo server, 32 in flight, each reset once
// established; connections completed per second.
export async function connRun(net: BenchNet, tools: Tools, secs: number): Promise<ConnRun> {
  const r = await net.runJson("inet", [tools.tcp, "connect", "--dst", DST, "--port", String(ECHO_PORT), "--src", SOURCES.join(","), "--secs", String(secs), "--conc", "32"], secs * 1000 + 10_000);
  if (r.connections === 0) throw new Error(`TCP: no connection completed (${r.failed} failed)`);
  return { perSec: r.connections! / (r.ns! / 1e9), connections: r.connections!, failed: r.failed! };
}

// `count` connections one at a time: how many completed.
export async function connCount(net: BenchNet, tools: Tools, count: number, port = ECHO_PORT): Promise<{ connections: number; failed: number }> {
  const r = await net.runJson("inet", [tools.tcp, "connect", "--dst", DST, "--port", String(port), "--src", SOURCES.join(","), "--count", String(count), "--conc", "1"], 60_000);
  return { connections: r.connections!, failed: r.failed! };
}

// One TCP connection sending for `secs`; Gbit/s as the count server saw it.
export async function bulkRun(net: BenchNet, tools: Tools, secs: number): Promise<BulkRun> {
  const r = await net.runJson("inet", [tools.tcp, "bulk", "--dst", DST, "--port", String(BULK_PORT), "--src", SOURCES[0]!, "--secs", String(secs)], secs * 1000 + 15_000);
  if (!(r.ns! > 0)) throw new Error(`bulk TCP: nothing arrived (${r.bytes} bytes)`);
  return { gbps: (r.bytes! * 8) / r.ns!, bytes: r.bytes! };
}

// `count` round trips of 64 bytes on one TCP connection: p50 and p99 in µs.
export async function rrRun(net: BenchNet, tools: Tools, count: number): Promise<RrRun> {
  const r = await net.runJson("inet", [tools.tcp, "rr", "--dst", DST, "--port", String(ECHO_PORT), "--src", SOURCES[0]!, "--count", String(count), "--size", "64"], 60_000);
  return { p50us: r.p50_ns! / 1000, p99us: r.p99_ns! / 1000, n: r.n! };
}

// The persistent servers in the sink namespace: echo (443) and count (80).
export async function startServers(net: BenchNet, tools: Tools): Promise<Proc[]> {
  const echo = net.start("proxy", [tools.tcp, "serve", "--bind", DST, "--port", String(ECHO_PORT), "--mode", "echo"], "tcp-echo");
  const count = net.start("proxy", [tools.tcp, "serve", "--bind", DST, "--port", String(BULK_PORT), "--mode", "count"], "tcp-count");
  await echo.waitFor(/^ready$/m);
  await count.waitFor(/^ready$/m);
  return [echo, count];
}
