// `portcullis demo --ha`: the pair topology (host/topology/pair.ts) in
// network namespaces: inet, seg (the two segments' bridges), appliance-a
// and appliance-b (each with the kernel queue rules, the daemon with the
// default policy and pickup on, and keepalived), proxy (an echo server on
// the listener's 80 and 443) and lan. 50 long-lived streams (a message
// every 100 ms, echoed) and new connections run from inet through the
// virtual gateway; the master dies (its links down, kill -9 of its daemon
// and keepalived); the demo prints how long the virtual addresses took to
// move, the largest gap of the streams and whether they all survived, then
// tears everything down.
import { type Vrrp, Pair } from "../topology/pair.js";
import { LISTENER, VIRTUAL } from "../topology/plan.js";
import { clearLeftovers } from "../topology/topology.js";

export interface PairDemoOptions { write?: (s: string) => void; prefix?: string; vrrp?: Vrrp }
export interface PairDemoResult { moveMs: number; gapMs: number; streams: number; survived: number; newOk: number; newFail: number }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function pairDemo(o: PairDemoOptions = {}): Promise<PairDemoResult> {
  const w = o.write ?? ((s: string) => process.stdout.write(s));
  const prefix = o.prefix ?? "";
  const vrrp = o.vrrp ?? { version: 3, advertMs: 100 };
  const removed = await clearLeftovers(prefix);
  if (removed.length) w(`removed leftovers of an earlier run: ${removed.join(", ")}\n`);
  w(`bringing up two appliances on shared segments (gateway mode), VRRPv${vrrp.version} with ${vrrp.advertMs / 1000} s adverts: ` +
    `namespaces ${["inet", "seg", "appliance-a", "appliance-b", "proxy", "lan"].map((n) => prefix + n).join(", ")}\n`);
  const p = await Pair.up({ prefix, vrrp, preempt: true, pickup: true });
  try {
    w(`${p.ns("a")} is the master: it holds ${VIRTUAL.external} (inet's gateway to the listener ${LISTENER.v4}) and ${VIRTUAL.internal} (the proxy's gateway back); ` +
      `${p.ns("b")} is a hot standby (daemon running, queues bound, pickup on)\n`);
    const load = await p.startLoad({ streams: 50, paceMs: 100, newMs: 100 });
    w(`50 streams from inet to ${LISTENER.v4}:443 through the virtual gateway, a 64-byte message every 100 ms on each, echoed by the proxy; ` +
      `a new connection to port 80 every 100 ms\n`);
    await sleep(2000);
    w(`killing ${p.ns("a")}: its ports on both segments down, kill -9 of its daemon and keepalived\n`);
    const at = await p.fail("a");
    const moveMs = await p.waitForVirtual("b", 30_000, at);
    w(`${p.ns("b")} holds the virtual addresses ${moveMs} ms after the cut\n`);
    await sleep(Math.max(3000, 3 * moveMs));
    const r = await load.stop();
    const st = await p.stats("b");
    const picked = Number((st.tcp as { pickedUp: number }).pickedUp);
    const alive = r.streams.filter((s) => s.error === "" && s.echoed === s.sent && s.lastEchoMs > r.stoppedMs - 1000).length;
    const gapMs = Math.max(...r.streams.map((s) => s.maxGapMs));
    w(`largest gap between echoes: ${gapMs} ms; ${alive} of ${r.streams.length} streams survived ` +
      `(${p.ns("b")} picked up ${picked} flows it had not seen open)\n`);
    w(`new connections: ${r.newOk} worked, ${r.newFail} failed (while the addresses moved)\n`);
    return { moveMs, gapMs, streams: r.streams.length, survived: alive, newOk: r.newOk, newFail: r.newFail };
  } finally {
    await p.down();
    w("topology removed\n");
  }
}
