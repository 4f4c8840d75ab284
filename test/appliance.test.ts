// The appliance end to end through the real kernel (issue 5), in host mode
// and in gateway mode: the reference topology (namespaces inet, appliance,
// lan, and proxy in gateway mode), the board YAML, the kernel's queue rules,
// and `portcullis run` with the default policy in the appliance namespace,
// started as systemd would start it. Then real clients, a real port scanner
// (Debian's nmap) and a capture (tcpdump) on the Internet side:
//
//   published   HTTP to :80 and :443 reaches the pool through the proxy
//   scan        nmap -sS -p-: exactly 80 and 443 open, every other TCP port
//               filtered; nmap -sU: no UDP port answers; the capture holds
//               no RST, no SYN-ACK but from 80/443, no ICMP error
//   internal    host: the proxy reaches the pool (8080, 4443) and Office Web
//               Apps (443), not the decoys nor 4443 toward OWA; gateway:
//               the proxy opens nothing toward the Internet across the
//               appliance, and its lan traffic never crosses it
//   ping        ICMP types: ping from inet to the listener is unanswered
//               under the default policy; host: with echo requests allowed
//               from lan (icmp_type), lan gets answers and inet still none
//   PMTU        real "fragmentation needed" / "packet too big" errors pass:
//               a far client behind a router with a 1280-byte link downloads
//               through the appliance (the router's ICMP errors cross the
//               daemon as related); gateway also: int0 at MTU 1280, an upload
//               from inet completes by the appliance's own ICMP errors
//   fail policy kill -9 under traffic: external fails closed, internal per
//               its bypass; a restart brings service back by itself
//   pressure    a queue of 32 and a daemon stopped by SIGSTOP: fail closed
//               drops (and the kernel counts) the excess, fail open passes it
//
// The whole suite runs once per engine of the core (`run --engine v8` and
// `--engine wasmtime`), each mode under each.
//
// Every process is tracked and ended by its pid; namespaces carry this
// process's prefix and are deleted in the suite's after hook, and leftovers
// of an interrupted run (prefix of a dead pid) are cleared first.
import { type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readBoardFile } from "../host/kernel/board.js";
import { DEFAULT_COPY_RANGE } from "../host/kernel/copy-range.js";
import { ENGINES, type EngineName } from "../host/core/load.js";
import { request } from "../host/daemon/control.js";
import { apply, remove } from "../host/kernel/rules.js";
import { type Mode } from "../host/policy/compile.js";
import { DECOY_PORTS, DIRECTOR, FRONT_END, INET, LISTENER, OWA, PROXY_INTERNAL } from "../host/topology/plan.js";
import { type Topology, up } from "../host/topology/topology.js";
import {
  addFarClient, alive, BULK_PORT, clearStaleFar, type Daemon, DEFAULT_POLICY, endProcess, FAR, farExec, firstAnswer,
  flushRouteCache, getAsync, kernelQueues, learnedMtu, nmap, pingFrom, readSeen, reason, reload, removeFarClient, settledCount,
  sleep, startCapture, startDaemon, startServe, startTool, startUdpSink, stats, stopCapture, type Server, udpSend,
  UDP_SINK_PORT, type UdpSink, writeBoard, writePingPolicy, writeTestPolicy,
} from "./helpers/appliance.js";
import { clearStaleTestTopologies, TEST_PREFIX, TIMED_OUT } from "./helpers/topology.js";

const FAMILIES = ["v4", "v6"] as const;
const PUBLISHED = [
  `pool 8080 ${FRONT_END.v4}`, `pool 4443 ${FRONT_END.v4}`,
  `pool 8080 ${FRONT_END.v6}`, `pool 4443 ${FRONT_END.v6}`,
];
const INET_UDP_PORT = 9998; // gateway: a sink in inet for what the proxy side sends out
// The proxy's connections toward the Internet leave from its public
// (listener) address: inet has a route back to that one only.
const fromListener = (f: "v4" | "v6"): string[] => ["--interface", LISTENER[f]];
const QUEUE_MAXLEN = 32;
const BURST = 5000;

function applianceSuite(mode: Mode, engine: EngineName): void {
  const s = suite(`appliance end to end, ${mode} mode, engine ${engine}`);
  let t: Topology | null = null;
  let setupError: unknown = null;
  let daemon: Daemon | null = null;
  let boardBypass = "", boardNoBypass = "", testPolicy = "";
  let inetUdp: UdpSink | null = null; // gateway: datagrams the proxy sends toward the Internet
  let sink: UdpSink | null = null; //    behind the appliance: the queue-pressure sink
  let bulk: Server | null = null;

  // The topology, or the error of the setup (uvu's before hook swallows it).
  const T = (): Topology => {
    if (setupError !== null) throw setupError;
    if (t === null) throw new Error("the topology is not up");
    return t;
  };
  const D = (): Daemon => {
    T();
    if (daemon === null) throw new Error("no daemon");
    return daemon;
  };
  const ns = (): string => T().ns("appliance");
  const proxyNs = (): "appliance" | "proxy" => T().plan.proxyNs as "appliance" | "proxy";

  // (Re)starts the daemon with the default policy and a board, as systemd would.
  const restart = async (board: string, policy = DEFAULT_POLICY, extra: string[] = []): Promise<Daemon> => {
    if (daemon !== null) await endProcess(daemon.child);
    daemon = null;
    daemon = await startDaemon(T(), { policy, board, extra: ["--engine", engine, ...extra] });
    const st = await request(daemon.sock, { cmd: "stats" });
    if ((st.stats as { coreEngine?: string }).coreEngine !== engine) throw new Error(`the daemon runs ${JSON.stringify((st.stats as { coreEngine?: string }).coreEngine)}, not ${engine}`);
    return daemon;
  };

  s.before(async () => {
    try {
      await clearStaleTestTopologies();
      clearStaleFar();
      t = await up({ mode, prefix: TEST_PREFIX });
      if (mode === "gateway") {
        // Servers in inet, for the proxy side's probes toward the Internet.
        await startServe(t, "inet", "inet-web", FAMILIES.flatMap((f) => [80, 443].map((port) => ({ name: "inet", addr: INET[f], port }))));
        inetUdp = await startUdpSink(t, "inet", "inet-udp", INET_UDP_PORT, [INET.v4, INET.v6]);
        // Without a filter the proxy reaches them: what the filter must stop.
        const base = await getAsync(t, "proxy", INET.v4, 443, 2000, fromListener("v4"));
        if (base !== `inet 443 ${INET.v4}`) throw new Error(`no filter yet, proxy -> inet 443: ${base}`);
      }
      boardBypass = writeBoard(t, "board.yaml", { intBypass: true });
      boardNoBypass = writeBoard(t, "board-no-bypass.yaml", { intBypass: false });
      testPolicy = writeTestPolicy(t);
      apply(readBoardFile(boardBypass), { backend: "auto", netns: t.ns("appliance") });
      await restart(boardBypass);
    } catch (e) {
      setupError = e;
    }
  });

  s.after(async () => {
    const errors: string[] = [];
    try {
      if (daemon !== null) await endProcess(daemon.child);
      daemon = null;
      if (t !== null) {
        try { remove({ netns: t.ns("appliance") }); } catch (e) { errors.push(String(e)); }
        removeFarClient(t);
        await t.down();
      }
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
    t = null;
    if (errors.length) {
      // A failing teardown fails the run (run.ts reads the exit status).
      process.stderr.write(`appliance ${mode}: teardown: ${errors.join("; ")}\n`);
      process.exitCode = 1;
    }
  });

  // ---- 1. the external side ------------------------------------------------------

  s("inet -> :80 and :443 through the proxy reaches the pool, IPv4 and IPv6; the daemon opened those flows", async () => {
    const before = await stats(D().sock);
    const got = await Promise.all(FAMILIES.flatMap((f) => [80, 443].map((p) => getAsync(T(), "inet", LISTENER[f], p, 3000))));
    assert.equal(got, PUBLISHED);
    // The daemon's queues copy headers only (the default copy range), and whole connections pass.
    assert.equal([...kernelQueues(T()).values()].map((q) => [q.queue, q.copyMode, q.copyRange]), [[0, 2, DEFAULT_COPY_RANGE], [1, 2, DEFAULT_COPY_RANGE]]);
    const after = await stats(D().sock);
    for (const name of ["ext-http-80", "ext-https-443"]) {
      const hits = (x: typeof after): number => x.rules.find((r) => r.info.includes(` ${name}:`))?.packets ?? 0;
      assert.ok(hits(after) - hits(before) >= 2, `rule ${name} opened ${hits(after) - hits(before)} flows, want 2 (one per family)`);
    }
  });

  s("nmap -sS -p- from inet, IPv4 and IPv6: 80 and 443 open, the other 65,533 ports filtered; no RST, no stray SYN-ACK, no ICMP error on the wire", async () => {
    const before = await stats(D().sock);
    const cap = await startCapture(T(), "inet", "eth0", "capture-tcp");
    const scans = [];
    try {
      for (const f of FAMILIES) scans.push(nmap(T(), "inet", LISTENER[f], ["-sS", "-p-"]));
    } finally {
      await stopCapture(cap);
    }
    for (const sc of scans) {
      assert.equal([...sc.ports].sort((a, b) => a[0] - b[0]), [[80, "open"], [443, "open"]], `${sc.argv.join(" ")}: ${sc.raw}`);
      assert.equal(sc.ignored, { state: "filtered", count: 65533 }, `${sc.argv.join(" ")}: ${sc.raw}`);
    }
    const seen = readSeen(cap.file, [80, 443]);
    assert.equal(seen.leaks.slice(0, 10), [], `${seen.leaks.length} packets leaked`);
    assert.equal([...seen.synAcks].sort(), ["v4 443", "v4 80", "v6 443", "v6 80"], "the capture saw the open ports answer");
    const after = await stats(D().sock);
    const denied = reason(after, "default_deny") - reason(before, "default_deny");
    assert.ok(denied >= 2 * 65533, `the daemon denied ${denied} probes; every closed port of both scans is at least one`);
  });

  s("nmap -sU from inet, IPv4 and IPv6: no UDP port answers (all open|filtered); no ICMP error on the wire", async () => {
    const random = new Set<number>();
    while (random.size < 3) random.add(1024 + Math.floor(Math.random() * 64000));
    const ports = [53, 123, 161, 443, 500, 4443, 5061, ...random].filter((p, i, a) => a.indexOf(p) === i);
    const before = await stats(D().sock);
    const cap = await startCapture(T(), "inet", "eth0", "capture-udp");
    const scans = [];
    let control: string[] = [];
    try {
      for (const f of FAMILIES) scans.push(nmap(T(), "inet", LISTENER[f], ["-sU", "-p", ports.join(",")]));
      // A connection that is allowed: the capture must see its SYN-ACK.
      control = await Promise.all(FAMILIES.map((f) => getAsync(T(), "inet", LISTENER[f], 80, 3000)));
    } finally {
      await stopCapture(cap);
    }
    assert.equal(control, [`pool 8080 ${FRONT_END.v4}`, `pool 8080 ${FRONT_END.v6}`]);
    for (const sc of scans) {
      const states = ports.map((p) => `${p} ${sc.ports.get(p) ?? (sc.ignored ? sc.ignored.state : "missing")}`);
      assert.equal(states, ports.map((p) => `${p} open|filtered`), sc.raw);
    }
    const seen = readSeen(cap.file, [80]);
    assert.equal([...seen.synAcks].sort(), ["v4 80", "v6 80"], "the capture works: it saw the allowed connections' SYN-ACKs");
    assert.equal(seen.icmpErrors, []);
    assert.equal(seen.leaks, []);
    const after = await stats(D().sock);
    const denied = reason(after, "default_deny") - reason(before, "default_deny");
    assert.ok(denied >= 2 * ports.length, `the daemon denied ${denied} UDP probes, want at least ${2 * ports.length}`);
  });

  // ---- 2. the internal side ------------------------------------------------------

  if (mode === "host") {
    s("appliance -> lan: 8080 and 4443 to the pool and the Director, 443 to OWA connect; the decoys and 4443 toward OWA time out, IPv4 and IPv6", async () => {
      const allowed = FAMILIES.flatMap((f) => [
        [FRONT_END[f], 8080, "pool"], [FRONT_END[f], 4443, "pool"], [DIRECTOR[f], 8080, "director"], [DIRECTOR[f], 4443, "director"], [OWA[f], 443, "owa"],
      ] as const);
      const denied = FAMILIES.flatMap((f) => [...DECOY_PORTS.map((p) => [FRONT_END[f], p] as const), [OWA[f], 4443] as const]);
      const [ok, no] = await Promise.all([
        Promise.all(allowed.map(([h, p]) => getAsync(T(), "appliance", h, p, 3000))),
        Promise.all(denied.map(([h, p]) => getAsync(T(), "appliance", h, p, 1500))),
      ]);
      assert.equal(ok, allowed.map(([h, p, n]) => `${n} ${p} ${h}`));
      assert.equal(no.map((r, i) => `${denied[i]![0]}:${denied[i]![1]} ${r}`), denied.map(([h, p]) => `${h}:${p} ${TIMED_OUT}`));
    });
  } else {
    s("proxy -> inet across the appliance (what crosses its internal NIC inward): TCP 80/443 and UDP time out / arrive nowhere, IPv4 and IPv6", async () => {
      const base = inetUdp!.count();
      const got = await Promise.all(FAMILIES.flatMap((f) => [80, 443].map((p) => getAsync(T(), "proxy", INET[f], p, 1500, fromListener(f)))));
      assert.equal(got, [TIMED_OUT, TIMED_OUT, TIMED_OUT, TIMED_OUT]);
      for (const f of FAMILIES) udpSend(T(), "proxy", INET[f], INET_UDP_PORT, 20, LISTENER[f]);
      assert.is(await settledCount(inetUdp!) - base, 0, "datagrams from the proxy side reached the Internet");
    });

    s("proxy -> lan (pool, OWA, a decoy) does not cross the appliance: it works and the daemon sees none of it", async () => {
      const before = await stats(D().sock);
      const got = await Promise.all(FAMILIES.flatMap((f) => [
        getAsync(T(), "proxy", FRONT_END[f], 8080), getAsync(T(), "proxy", FRONT_END[f], 4443), getAsync(T(), "proxy", OWA[f], 443),
        getAsync(T(), "proxy", FRONT_END[f], 3389),
      ]));
      assert.equal(got, FAMILIES.flatMap((f) => [`pool 8080 ${FRONT_END[f]}`, `pool 4443 ${FRONT_END[f]}`, `owa 443 ${OWA[f]}`, `decoy 3389 ${FRONT_END[f]}`]));
      const after = await stats(D().sock);
      const moved = after.reasons.map((r) => `${r.reason} +${r.packets - (before.reasons.find((b) => b.reason === r.reason)?.packets ?? 0)}`).filter((x) => !x.endsWith(" +0"));
      // Neighbour discovery between the proxy and the appliance itself (the
      // proxy's router: reachability probes come when they will) is link
      // traffic, not proxy <-> lan: only it may reach the daemon meanwhile.
      const ndp = reason(after, "icmp6_ndp") - reason(before, "icmp6_ndp");
      assert.is(after.packets - before.packets - ndp, 0, `packets of proxy <-> lan reached the daemon (${moved.join(", ")})`);
    });
  }

  // ---- ICMP types (issue 16): ping -----------------------------------------------------

  s("ping from inet to the listener stays unanswered under the default policy, IPv4 and IPv6 (default_deny)", async () => {
    const before = await stats(D().sock);
    for (const f of FAMILIES) assert.is(pingFrom(T(), "inet", LISTENER[f]), 0, `ping ${LISTENER[f]}`);
    const after = await stats(D().sock);
    assert.ok(reason(after, "default_deny") - reason(before, "default_deny") >= 6, "the daemon denied the six echo requests");
  });

  if (mode === "host") {
    s("a policy allowing echo requests from lan to the proxy's internal address: lan gets answers, inet still none, IPv4 and IPv6", async () => {
      const policy = writePingPolicy(T());
      await reload(D().sock, policy);
      try {
        const before = await stats(D().sock);
        for (const f of FAMILIES) {
          assert.is(pingFrom(T(), "lan", PROXY_INTERNAL[f]), 3, `lan ping ${PROXY_INTERNAL[f]}`);
          assert.is(pingFrom(T(), "inet", LISTENER[f]), 0, `inet ping ${LISTENER[f]}`);
        }
        const after = await stats(D().sock);
        for (const name of ["lan-ping-icmp", "lan-ping-icmpv6"]) {
          const hits = (x: typeof after): number => x.rules.find((r) => r.info.includes(` ${name}:`))?.packets ?? 0;
          assert.ok(hits(after) - hits(before) >= 1, `rule ${name} opened the echo flow`);
        }
        assert.ok(reason(after, "state_match") - reason(before, "state_match") >= 6, "the replies (and later requests) passed on state");
      } finally {
        await reload(D().sock, DEFAULT_POLICY);
      }
    });
  }

  // ---- 3. related ICMP: path MTU discovery ---------------------------------------------

  const withTestPolicy = async (body: () => Promise<void>): Promise<void> => {
    await reload(D().sock, testPolicy);
    try {
      if (bulk === null) {
        const f = join(T().dir, "bulk");
        bulk = await startTool(T(), proxyNs(), "bulk", ["bulk-server", f, String(BULK_PORT), "100000", LISTENER.v4, LISTENER.v6], f);
      }
      await body();
    } finally {
      await reload(D().sock, DEFAULT_POLICY);
    }
  };

  if (mode === "gateway") {
    s("PMTU, gateway: int0 (toward the proxy) at MTU 1280: a 20 KB upload from inet completes, because the appliance's frag-needed / packet-too-big reaches the client", async () => {
      await withTestPolicy(async () => {
        const body = join(T().dir, "upload.bin");
        writeFileSync(body, Buffer.alloc(20_000, 0x62));
        flushRouteCache(T(), "inet");
        const r = T().exec("appliance", ["ip", "link", "set", "int0", "mtu", "1280"]);
        assert.is(r.status, 0, r.stderr);
        try {
          const got = await Promise.all(FAMILIES.map((f) => getAsync(T(), "inet", LISTENER[f], BULK_PORT, 5000, ["-H", "Expect:", "--data-binary", `@${body}`])));
          assert.equal(got, ["received 20000", "received 20000"]);
          assert.equal(FAMILIES.map((f) => learnedMtu(T(), "inet", LISTENER[f])), [1280, 1280], "the client learned the path MTU");
        } finally {
          T().exec("appliance", ["ip", "link", "set", "int0", "mtu", "1500"]);
        }
      });
    });
  }

  s(`PMTU, ${mode}: a far client behind a router with a 1280-byte link downloads 100 KB; the router's ICMP errors cross the appliance as related (state_related > 0)`, async () => {
    await withTestPolicy(async () => {
      const sender = proxyNs();
      flushRouteCache(T(), sender);
      addFarClient(T());
      try {
        const before = await stats(D().sock);
        const results = FAMILIES.map((f) => farExec(T(), ["curl", "-sS", "-g", "-m", "5", "-o", "/dev/null", "-w", "%{size_download}",
          `http://${LISTENER[f].includes(":") ? `[${LISTENER[f]}]` : LISTENER[f]}:${BULK_PORT}/`]));
        assert.equal(results.map((r) => r.stdout.trim()), ["100000", "100000"], results.map((r) => r.stderr).join("; "));
        assert.equal(FAMILIES.map((f) => learnedMtu(T(), sender, FAR[f])), [1280, 1280], "the sender learned the path MTU from the router's ICMP");
        const after = await stats(D().sock);
        const related = reason(after, "state_related") - reason(before, "state_related");
        assert.ok(related >= 2, `state_related moved by ${related}; want one ICMP error per family at least`);
      } finally {
        removeFarClient(T());
      }
    });
  });

  // ---- 4. fail policy --------------------------------------------------------------

  // A bounded loop of curls from inet (400 x at most 1 s), ended by its pid;
  // each line "ok|fail <ms since epoch>".
  const curlLoop = (): { child: ChildProcess; log: string; lines: () => Array<{ ok: boolean; at: number }> } => {
    const log = join(T().dir, "curl-loop.log");
    const script = `i=0; while [ $i -lt 400 ]; do if curl -s -o /dev/null -m 1 http://${LISTENER.v4}/; then echo "ok $(date +%s%3N)"; ` +
      `else echo "fail $(date +%s%3N)"; fi; i=$((i+1)); sleep 0.05; done`;
    const child = T().spawn("inet", ["sh", "-c", script], { name: "curl-loop", log });
    const lines = (): Array<{ ok: boolean; at: number }> => readFileSync(log, "utf8").split("\n").filter(Boolean)
      .map((l) => ({ ok: l.startsWith("ok "), at: Number(l.split(" ")[1]) }));
    return { child, log, lines };
  };

  // kill -9 under traffic, the checks of the outage, a restart.
  const failPolicy = async (board: string, bypass: boolean): Promise<void> => {
    T();
    apply(readBoardFile(board), { backend: "auto", netns: ns() });
    await restart(board);
    const loop = curlLoop();
    try {
      const t0 = Date.now();
      while (!loop.lines().some((l) => l.ok) && Date.now() - t0 < 5000) await sleep(50);
      assert.ok(loop.lines().some((l) => l.ok), "the curl loop gets answers before the kill");

      const pid = D().pid;
      const exited = new Promise<void>((r) => D().child.once("exit", () => r()));
      process.kill(pid, "SIGKILL");
      await exited;
      const killedAt = Date.now();
      assert.not.ok(alive(pid));
      const q = kernelQueues(T());
      assert.not.ok(q.has(0) || q.has(1), "the kernel unbound the dead daemon's queues");

      // External side: fails closed, for both families.
      const ext = await Promise.all([getAsync(T(), "inet", LISTENER.v4, 443, 1500), getAsync(T(), "inet", LISTENER.v6, 443, 1500)]);
      assert.equal(ext, [TIMED_OUT, TIMED_OUT], "new connections from inet while no daemon is bound");

      // Internal side: per its bypass.
      if (mode === "host") {
        const int = await Promise.all([getAsync(T(), "appliance", FRONT_END.v4, 4443, 1500), getAsync(T(), "appliance", OWA.v6, 443, 1500)]);
        assert.equal(int, bypass ? [`pool 4443 ${FRONT_END.v4}`, `owa 443 ${OWA.v6}`] : [TIMED_OUT, TIMED_OUT],
          `appliance -> lan with internal bypass ${bypass}`);
      } else {
        // What enters int0 goes to the internal queue: with bypass it passes
        // uninspected (one way: the answers enter ext0, which fails closed).
        const base = inetUdp!.count();
        for (const f of FAMILIES) udpSend(T(), "proxy", INET[f], INET_UDP_PORT, 20, LISTENER[f]);
        const n = await settledCount(inetUdp!) - base;
        if (bypass) assert.ok(n >= 30, `internal bypass: ${n} of 40 datagrams proxy -> inet passed uninspected`);
        else assert.is(n, 0, "internal without bypass: datagrams proxy -> inet passed");
        assert.is(await getAsync(T(), "proxy", INET.v4, 443, 1500, fromListener("v4")), TIMED_OUT, "the answer of a bypassed SYN enters ext0: dropped");
      }

      // (A line is written just after its curl ends: one that ended at the
      // kill may be stamped a little after it.)
      const outage = loop.lines().filter((l) => l.at > killedAt + 300);
      assert.ok(outage.length > 0, "the curl loop kept trying during the outage");
      assert.ok(outage.every((l) => !l.ok), "no curl of the loop is answered while no daemon is bound");

      // Restarted as systemd would (Restart=always): the same command line.
      const r0 = Date.now();
      await restart(board);
      const back = await firstAnswer(T(), "inet", LISTENER.v4, 443, 10_000);
      const took = Date.now() - r0;
      assert.ok(back !== null, `inet gets no answer within 10 s of the restart: ${readFileSync(D().log, "utf8").split("\n").slice(-3).join(" | ")}`);
      assert.ok(took < 5000, `service came back ${took} ms after the restart began; want a few seconds`);
      assert.is(await getAsync(T(), "inet", LISTENER.v6, 80, 2000), `pool 8080 ${FRONT_END.v6}`);
      const restartedAt = Date.now();
      while (!loop.lines().some((l) => l.ok && l.at > restartedAt) && Date.now() - restartedAt < 5000) await sleep(50);
      assert.ok(loop.lines().some((l) => l.ok && l.at > restartedAt), "the curl loop gets answers again");
    } finally {
      await endProcess(loop.child);
    }
  };

  s("fail policy, internal bypass: kill -9 under traffic: inet fails closed, the internal side passes uninspected; a restart brings service back within seconds", async () => {
    await failPolicy(boardBypass, true);
  });

  s("fail policy, internal without bypass: kill -9 under traffic: both sides fail closed; a restart brings service back within seconds", async () => {
    await failPolicy(boardNoBypass, false);
  });

  // ---- 5. queue pressure -----------------------------------------------------------------

  const pressure = async (failOpen: boolean): Promise<void> => {
    T();
    const board = writeBoard(T(), `board-pressure-${failOpen ? "open" : "closed"}.yaml`, { extFailOpen: failOpen });
    apply(readBoardFile(board), { backend: "auto", netns: ns() });
    await restart(board, testPolicy, ["--queue-maxlen", String(QUEUE_MAXLEN)]);
    if (sink === null) sink = await startUdpSink(T(), proxyNs(), "sink", UDP_SINK_PORT, [LISTENER.v4, LISTENER.v6]);
    const base = await settledCount(sink);
    udpSend(T(), "inet", LISTENER.v4, UDP_SINK_PORT, 5);
    assert.is(await settledCount(sink) - base, 5, "with the daemon running, a few datagrams pass");

    const k0 = kernelQueues(T()).get(0)!;
    assert.ok(k0, "queue 0 is bound");
    const s0 = sink.count();
    const pid = D().pid;
    process.kill(pid, "SIGSTOP");
    let k1 = k0, passedWhileStopped = -1, sent = 0;
    try {
      sent = udpSend(T(), "inet", LISTENER.v4, UDP_SINK_PORT, BURST).sent;
      passedWhileStopped = await settledCount(sink) - s0;
      k1 = kernelQueues(T()).get(0)!;
    } finally {
      process.kill(pid, "SIGCONT");
    }
    assert.is(sent, BURST);
    assert.ok(k1.waiting >= 1 && k1.waiting <= QUEUE_MAXLEN, `packets waiting in the queue: ${k1.waiting}, limit ${QUEUE_MAXLEN}`);
    const dropped = k1.queueDropped - k0.queueDropped;
    if (failOpen) {
      assert.ok(passedWhileStopped >= 1000, `fail open: ${passedWhileStopped} of ${BURST} passed uninspected while the daemon was stopped; want far more than the queue's ${QUEUE_MAXLEN}`);
      assert.is(dropped, 0, "fail open: the kernel dropped none for a full queue");
    } else {
      assert.is(passedWhileStopped, 0, "fail closed: nothing passes while the daemon is stopped");
      assert.ok(dropped >= 1000, `fail closed: the kernel counted ${dropped} queue drops for ${BURST} sent, queue ${QUEUE_MAXLEN}`);
    }
    // Resumed: the queued packets get their verdicts, the daemon answers.
    const resumed = await settledCount(sink) - s0 - Math.max(passedWhileStopped, 0);
    assert.ok(resumed >= 1 && resumed <= QUEUE_MAXLEN, `after SIGCONT, ${resumed} queued datagrams passed; want 1-${QUEUE_MAXLEN}`);
    const st = await stats(D().sock);
    const q0 = st.queues.find((q) => q.name === "queue0")!;
    assert.ok(q0.accepted >= 5 + resumed, `the daemon's queue0 accepted ${q0.accepted}`);
    assert.is(kernelQueues(T()).get(0)!.waiting, 0, "nothing is left waiting in the queue");
    assert.is(await getAsync(T(), "inet", LISTENER.v4, 443, 3000), `pool 4443 ${FRONT_END.v4}`, "and it serves again");
  };

  s(`queue pressure, external fail closed: queue of ${QUEUE_MAXLEN}, daemon stopped, ${BURST} datagrams: none pass, the kernel counts the drops`, async () => {
    await pressure(false);
  });

  s(`queue pressure, external fail open: queue of ${QUEUE_MAXLEN}, daemon stopped, ${BURST} datagrams: the excess passes uninspected`, async () => {
    await pressure(true);
  });

  s.run();
}

for (const engine of ENGINES) {
  applianceSuite("host", engine);
  applianceSuite("gateway", engine);
}
