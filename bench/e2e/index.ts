// The end-to-end benchmarks of issue 8 in the reference topology (gateway
// mode, network namespaces): small-packet rates (UDP 64-byte datagrams, new
// TCP connections), bulk TCP and round-trip latency through (a) plain
// forwarding, (b) the kernel's stateful filter with the same policy
// (iptables-legacy, nftables), (c) a C accept-all queue consumer and (d) the
// Portcullis daemon (GSO off and on; 1 and 2 queues per side); then UDP
// through the ClassBench fw1_10K table in the kernel and in Portcullis.
//
// Each round visits every contender once, in the same order (a, b, c, d,
// a, b, c, d, ...), and runs each of its loads; a figure is the median of
// the rounds with min and max. Contenders are switched by rules only (all
// consumers stay bound), see contenders.ts. The network is torn down at the
// end, on error, and on SIGINT/SIGTERM.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { compilePolicyFile } from "../../host/policy/compile.js";
import { type Section } from "../report.js";
import { board, type Contender, Contenders, writeBenchPolicy, writeOffloadPolicy } from "./contenders.js";
import { revocationRun } from "./revoke.js";
import { FW1_10K, fw1Tables } from "./fw1.js";
import { bulkRun, connRun, rrRun, startServers, udpRun } from "./loads.js";
import { BenchNet, withCleanup } from "./net.js";
import { buildSections, type Fw1Info, type Results } from "./sections.js";
import { buildTools } from "./tools.js";

export interface E2eOptions {
  quick: boolean;
  reps: number;
  classbench?: string; // the directory of fw1_10K.rules (default: ../shared/classbench/hypersplit beside the checkout)
  log?: (line: string) => void;
}

export async function e2eSections(o: E2eOptions): Promise<{ sections: Section[]; targets: string[] }> {
  const log = o.log ?? ((l: string) => console.error(l));
  const secs = o.quick ? 0.5 : 2;
  const rrCount = o.quick ? 2000 : 10_000;
  const tools = buildTools();
  const net = await BenchNet.up();
  return withCleanup(net, async () => {
    const C = new Contenders(net, tools);
    const policy = writeBenchPolicy(net.dir);
    const spec = compilePolicyFile(policy, { mode: "gateway" }).spec;
    const fw1File = o.classbench ? join(o.classbench, "fw1_10K.rules") : FW1_10K;
    const fw1 = existsSync(fw1File) ? fw1Tables(net.dir, fw1File) : null;
    log(`e2e: starting the consumers (fw1_10K: ${fw1 ? `${fw1.kept} of ${fw1.total} rules kept` : `no ${fw1File}, left out`})`);
    const [c, cGso, cWhole, d, dGso, dWhole, d2, dWt, dFw1] = await Promise.all([
      C.acceptAll("c", "(c) C accept-all, GSO off", board(10, 1), false),
      C.acceptAll("c-gso", "(c) C accept-all, GSO on", board(12, 1), true),
      C.acceptAll("c-whole-gso", "(c) C accept-all, whole packets, GSO on", board(16, 1), true, 65535),
      C.portcullis("d", "(d) Portcullis, GSO off", board(0, 1), policy, false),
      C.portcullis("d-gso", "(d) Portcullis, GSO on", board(2, 1), policy, true),
      C.portcullis("d-whole-gso", "(d) Portcullis, whole packets (copy range 65535), GSO on", board(18, 1), policy, true, "v8", 65535),
      C.portcullis("d-2q", "(d) Portcullis, 2 queues per side, GSO off", board(4, 2), policy, false),
      C.portcullis("d-wt", "(d) Portcullis, wasmtime engine, GSO off", board(14, 1), policy, false, "wasmtime"),
      fw1 ? C.portcullis("d-fw1", "(d) Portcullis, fw1_10K table", board(20, 1), fw1.tableFile, false) : null,
    ]);
    // Offload (issue 15 step 2): one at a time, each loads its rules to start.
    const offPolicy = writeOffloadPolicy(net.dir, policy);
    const offBoard = (first: number): ReturnType<typeof board> => ({ ...board(first, 1), offload: { enabled: true, onStart: "adopt" } });
    const dOff = await C.portcullis("d-off", "(d) Portcullis, offload after 10 packets, GSO off", offBoard(22), offPolicy, false);
    const dOffGso = await C.portcullis("d-off-gso", "(d) Portcullis, offload after 10 packets, GSO on", offBoard(24), offPolicy, true);
    const a = C.forward();
    const [bIpt, bNft] = C.kernel(spec, { stateful: true, chain: "PCB-POL", nftFamily: "inet", nftTable: "pcbpol", id: "b", label: "kernel stateful filter" });
    await startServers(net, tools);

    // The daemons' first packets compile and warm their code: not measured.
    for (const k of [d!, dGso!, dWhole!, d2!, dWt!, dOff, dOffGso, ...(dFw1 ? [dFw1] : [])]) {
      C.switchTo(k);
      await udpRun(net, tools, 0.3);
    }
    C.off();

    const main = [a, bIpt!, bNft!, c!, cGso!, cWhole!, d!, dWt!, dGso!, dWhole!, d2!, dOff, dOffGso];
    const res: Results = { contenders: main.map((k) => ({ id: k.id, kind: k.kind, label: k.label })), runs: {}, fw1: {}, fw1Contenders: [], queues: {} };
    for (const k of main) res.runs[k.id] = [];
    const t0 = Date.now();
    for (let r = 0; r < o.reps; r++) {
      for (const k of main) {
        C.switchTo(k);
        const s: Results["runs"][string][number] = { udp: await udpRun(net, tools, secs), conn: await connRun(net, tools, secs) };
        if (k.id !== "d-2q") s.bulk = await bulkRun(net, tools, secs);
        // Round trips for a, b and d as the issue asks, and for (c): what the
        // queue path costs on its own, so the daemon's share can be told apart.
        if (!["c-gso", "c-whole-gso", "d-gso", "d-whole-gso", "d-2q", "d-off-gso"].includes(k.id)) s.rr = await rrRun(net, tools, rrCount);
        res.runs[k.id]!.push(s);
      }
      log(`e2e: round ${r + 1}/${o.reps} done (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
    C.off();

    // fw1_10K: stateless kernel tables (every packet traverses them); the
    // full run adds the kernel with conntrack's ESTABLISHED accept first.
    if (fw1 && dFw1) {
      const fwK = C.kernel(fw1.spec, { stateful: false, chain: "PCB-FW1", nftFamily: "ip", nftTable: "pcbfw1", id: "b-fw1", label: "fw1_10K linear, stateless" });
      const fwList: Contender[] = [a, ...fwK, dFw1];
      if (!o.quick) {
        fwList.splice(3, 0, ...C.kernel(fw1.spec, { stateful: true, chain: "PCB-FW1CT", nftFamily: "ip", nftTable: "pcbfw1ct", id: "b-fw1ct", label: "fw1_10K, conntrack first" }));
      }
      res.fw1Contenders = fwList.map((k) => ({ id: k.id, kind: k.kind, label: k.label }));
      for (const k of fwList) res.fw1[k.id] = [];
      for (let r = 0; r < o.reps; r++) {
        for (const k of fwList) {
          C.switchTo(k);
          res.fw1[k.id]!.push(await udpRun(net, tools, secs));
        }
      }
      C.off();
      log(`e2e: fw1_10K done (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }

    // Revoking 10,000 offloaded flows (a reload with --recheck that refuses them).
    res.revoke = await revocationRun(net, C, offPolicy, o.quick ? 1 : 3, log);

    // What the consumers counted: queue drops by the kernel, the daemons' own.
    const drops = C.queueDrops();
    for (const [id, p] of C.consumers) res.queues[id] = { consumer: await p.stop() };
    for (const id of C.daemons.keys()) {
      const st = await C.daemonStats(id);
      res.queues[id] = { daemon: { packets: st.packets, verdicts: st.verdicts, flows: st.flows, queues: st.queues, engine: st.coreEngine, rssMiB: C.daemonRssMiB(id), offload: st.offload } };
    }
    res.queues.kernel = Object.fromEntries(drops);
    const info: Fw1Info = fw1 ? { total: fw1.total, kept: fw1.kept, excluded: fw1.excluded } : { missing: fw1File };
    return buildSections(res, info, { quick: o.quick, reps: o.reps, secs, rrCount });
  });
}
