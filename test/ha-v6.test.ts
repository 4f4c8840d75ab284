// IPv6 VRRP of an HA pair with the real keepalived (issue 17, "IPv6 VRRP
// is unproven"). Three pairs, one after the other: dual-stack with
// multicast (namespaces pcv6<pid>-dm-*), dual-stack with `unicast: true`
// (-du-*), IPv6 only with multicast (-om-*). Each: two appliance namespaces
// (a, b) whose ext0 and int0 are on two bridges in a namespace of their own
// (sw: the shared segments, snooping MLD with a querier as managed switches
// do), a client namespace (inet) on the external segment, each appliance
// with the kernel rules of its board (apply() of host/kernel/rules.ts, by
// HaLab.bringUp: everything but what ha: lets through queued to the
// daemon), `portcullis run` (host mode, the default policy) and keepalived
// with the files `portcullis ha --apply` wrote: VRRPv3, 0.1 s adverts, the
// IPv6 (and IPv4) virtual addresses on both sides in one sync group, the
// IPv6 adverts from the NICs' link-local addresses. In each appliance a TCP
// listener on 443 (the proxy) answers with the appliance's name. Asserted:
//   - one master (the higher priority) and one backup in both daemons'
//     stats, stable past the segments' MLD membership interval; the virtual
//     addresses, the virtual router's link-local one included, on the master
//     only (`ip -6 addr`: usable, not tentative), none on the backup;
//     keepalived complains about nothing (nor that the first IPv6 address
//     should be link local)
//   - the IPv6 adverts pass the queue rules: the ip6tables counters of the
//     VRRP rules (out on the master, in on the backup, both sides) are > 0
//     (were they queued, the daemon would drop them and both would be master);
//     with multicast so does MLD: the segments snoop it with a querier, as
//     managed switches do, and forward ff02::12 only to the appliances that
//     reported it and answer the queries (both do: the bridges' group tables
//     say so; with unicast neither joins it)
//   - TCP over IPv6 (and IPv4) from the client to the virtual listener
//     address reaches the master's listener through its daemon
//   - kill -9 of the master's keepalived: the other becomes master within a
//     bound, with every virtual address (the sync group moves both
//     families), and TCP over IPv6 (and IPv4) to the virtual address reaches it
// Every process is ended by its pid and the namespaces deleted, even on
// failure; leftovers of dead runs (pcv6<pid>- of a gone pid) are cleared first.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { sleep } from "./helpers/appliance.js";
import { HaLab, type HaNode } from "./helpers/ha-lab.js";

const BOUND_MS = 3000; // kill -9 of the master's keepalived -> the other daemon says master
const PORT = 443; //      the default policy's listener port (ext-https-443)
// The default policy's listener (external) and proxy_internal addresses, as virtual addresses.
const VIPS = {
  ext0: { v4: "203.0.113.1", v6: "2001:db8:1::1" },
  int0: { v4: "198.51.100.1", v6: "2001:db8:2::1" },
} as const;
// The virtual router's link-local address keepalived.conf lists first (VRID 51: virtual MAC 00-00-5e-00-02-33).
const LINK_LOCAL = "fe80::200:5eff:fe00:233";
const DEVS = ["ext0", "int0"] as const;
const MEMBERSHIP_MS = 3000; // the segments' MLD membership interval
const CLIENT = { v4: "203.0.113.100", v6: "2001:db8:1::100" };

type Mode = "multicast" | "unicast";

// V4: IPv4 virtual addresses beside the IPv6 ones (a dual-stack sync group), or IPv6 only.
function pairSuite(mode: Mode, v4: boolean): void {
  const s = suite(`an HA pair with keepalived over IPv6, ${v4 ? "dual-stack" : "IPv6 only"}, ${mode}`);
  const lab = new HaLab(`${v4 ? "d" : "o"}${mode[0]}`, "pcv6");
  let setupError: unknown = null;
  let aMasterMs = 0;
  let inet = "";
  let sw = "";
  const nodes: HaNode[] = [];
  const peerHost = (n: HaNode): number => (n.name === "a" ? 3 : 2);

  function boardText(n: HaNode): string {
    const peer = (net4: string, net6: string): string =>
      (mode === "unicast" ? `, peer: [${v4 ? `${net4}${peerHost(n)}, ` : ""}"${net6}${peerHost(n)}"]` : "");
    const virtual = (d: (typeof DEVS)[number]): string => `[${v4 ? `${VIPS[d].v4}/24, ` : ""}"${VIPS[d].v6}/64"]`;
    return [
      "version: 1", "mode: host", "external: { dev: ext0 }", "internal: { dev: int0 }", "queues: { first: 0, count: 1 }",
      "ha:", "  vrid: 51", `  priority: ${n.priority}`, "  version: 3", "  advert: 0.1", ...(mode === "unicast" ? ["  unicast: true"] : []),
      `  external: { virtual: ${virtual("ext0")}${peer("203.0.113.", "2001:db8:1::")} }`,
      `  internal: { virtual: ${virtual("int0")}${peer("198.51.100.", "2001:db8:2::")} }`, "",
    ].join("\n");
  }

  // The IPv6 address ADDR on DEV in NS: "usable", "tentative" / "dadfailed", or "absent".
  function v6State(ns: string, dev: string, addr: string): string {
    const line = lab.run(ns, ["ip", "-6", "-o", "addr", "show", "dev", dev], false).stdout.split("\n").find((l) => l.includes(` ${addr}/`));
    if (line === undefined) return "absent";
    return /\bdadfailed\b/.test(line) ? "dadfailed" : /\btentative\b/.test(line) ? "tentative" : "usable";
  }
  // Which of the virtual addresses NS holds (usable ones for IPv6).
  const vipsHeld = (ns: string): string[] => DEVS.flatMap((d) => [
    ...(lab.hasAddr(ns, d, VIPS[d].v4) ? [`${d} ${VIPS[d].v4}`] : []),
    ...[LINK_LOCAL, VIPS[d].v6].filter((a) => v6State(ns, d, a) === "usable").map((a) => `${d} ${a}`),
  ]);
  const ALL_VIPS = DEVS.flatMap((d) => [...(v4 ? [`${d} ${VIPS[d].v4}`] : []), `${d} ${LINK_LOCAL}`, `${d} ${VIPS[d].v6}`]);

  // The ports of bridge BR the segment forwards ff02::12 (VRRP's group) to: those whose host is a listener (MLD).
  const vrrpListeners = (br: string): string[] => lab.run(sw, ["bridge", "mdb", "show", "dev", br]).stdout.split("\n")
    .map((l) => /\bport (\S+) grp ff02::12\b/.exec(l)?.[1]).filter((p): p is string => p !== undefined).sort();

  // The packet counters of the IPv6 rules of ha: in our chain CHAIN (PORTCULLIS-IN/-OUT) in NS:
  // "DEV vrrp SRC -> DST" and "DEV mld TYPE" (the ICMPv6 type).
  function haCounters6(ns: string, chain: "PORTCULLIS-IN" | "PORTCULLIS-OUT"): Record<string, number> {
    const out: Record<string, number> = {};
    for (const line of lab.run(ns, ["ip6tables-legacy", "-w", "-n", "-v", "-x", "-L", chain]).stdout.split("\n")) {
      // pkts bytes target prot opt in out source destination [match]
      const f = line.trim().split(/\s+/);
      if (f.length < 9 || f[2] !== "ACCEPT") continue;
      const dev = chain === "PORTCULLIS-IN" ? f[5]! : f[6]!;
      const type = /\bipv6-icmptype (\d+)/.exec(line)?.[1];
      if (type !== undefined) out[`${dev} mld ${type}`] = Number(f[0]);
      else if (f[3] === "112") out[`${dev} vrrp ${f[7]} -> ${f[8]}`] = Number(f[0]);
    }
    return out;
  }

  // A TCP connection from the client to HOST:PORT: what the listener answered, or the error.
  function connect(host: string): string {
    const code = "const s=require('net').connect({host:process.argv[1],port:+process.argv[2]});let d='';" +
      "const t=setTimeout(()=>{console.log('timeout');process.exit(2)},3000);s.on('connect',()=>s.write('hello\\n'));" +
      "s.on('data',(x)=>d+=x);s.on('end',()=>{clearTimeout(t);process.stdout.write(d.trim());process.exit(0)});" +
      "s.on('error',(e)=>{clearTimeout(t);console.log(e.code||e.message);process.exit(1)})";
    const r = lab.run(inet, [process.execPath, "-e", code, host, String(PORT)], false);
    return r.stdout.trim() || r.stderr.trim();
  }

  // The proxy: a listener on [::]:443 (both families) that answers "NAME LINE" to the first line.
  async function startListener(n: HaNode): Promise<void> {
    const code = "require('net').createServer((s)=>{s.once('data',(x)=>s.end(process.argv[1]+' '+String(x).trim()+'\\n'));s.on('error',()=>{})})" +
      ".listen(+process.argv[2],'::',()=>console.log('listening'))";
    lab.spawn(n.ns, [process.execPath, "-e", code, n.name, String(PORT)], `listener-${n.name}`);
    await lab.until(`${n.name}'s listener`, () => lab.log(`listener-${n.name}`).includes("listening"), 5000);
  }

  s.before(async () => {
    try {
      await lab.clearStale();
      sw = lab.namespace("sw");
      inet = lab.namespace("inet");
      lab.veth(inet, "eth0", sw, "c-ext");
      lab.run(inet, ["ip", "addr", "add", `${CLIENT.v4}/24`, "dev", "eth0"]);
      lab.run(inet, ["ip", "addr", "add", `${CLIENT.v6}/64`, "dev", "eth0", "nodad"]);
      for (const [name, priority, host] of [["a", 150, 2], ["b", 100, 3]] as const) {
        const n = lab.node(name, priority);
        nodes.push(n);
        lab.veth(n.ns, "ext0", sw, `${name}-ext`);
        lab.veth(n.ns, "int0", sw, `${name}-int`);
        lab.run(n.ns, ["ip", "addr", "add", `203.0.113.${host}/24`, "dev", "ext0"]);
        lab.run(n.ns, ["ip", "addr", "add", `2001:db8:1::${host}/64`, "dev", "ext0", "nodad"]);
        lab.run(n.ns, ["ip", "addr", "add", `198.51.100.${host}/24`, "dev", "int0"]);
        lab.run(n.ns, ["ip", "addr", "add", `2001:db8:2::${host}/64`, "dev", "int0", "nodad"]);
      }
      lab.bridge(sw, "br-ext", ["a-ext", "b-ext", "c-ext"]);
      lab.bridge(sw, "br-int", ["a-int", "b-int"]);
      // The segments snoop MLD as managed switches do, with a querier: ff02::12 reaches only the ports whose
      // host reported it (RFC 4541 3: only ff02::1 is flooded), and a membership lasts 3 s unless a report
      // answers the querier's queries (every 1 s).
      for (const br of ["br-ext", "br-int"]) {
        lab.run(sw, ["ip", "link", "set", br, "type", "bridge", "mcast_snooping", "1", "mcast_querier", "1", "mcast_query_interval", "100",
          "mcast_query_response_interval", "50", "mcast_membership_interval", String(MEMBERSHIP_MS / 10), "mcast_startup_query_interval", "50"]);
      }
      for (const n of nodes) {
        const out = await lab.bringUp(n, boardText(n));
        assert.ok(out.includes("keepalived.conf"), out);
        await startListener(n);
      }
      // keepalived sends IPv6 adverts from the NIC's link-local address: wait until DAD is done with them.
      for (const ns of [inet, ...nodes.map((n) => n.ns)]) {
        await lab.until(`no tentative address in ${ns}`, () => lab.run(ns, ["ip", "-6", "-o", "addr", "show", "tentative"]).stdout.trim() === "", 10_000);
      }
      // a first, b once a is master: b must join as the backup and never announce itself (were the adverts
      // or b's MLD report at the join lost, b would become master 0.36 s later). Started together, either
      // may be master for a moment, as VRRP allows.
      const [a, b] = nodes as [HaNode, HaNode];
      lab.startKeepalived(a);
      aMasterMs = await lab.until("a master alone", async () => (await lab.role(a)).role === "master", 5000);
      lab.startKeepalived(b);
    } catch (e) {
      setupError = e;
    }
  });

  s.after(async () => {
    await lab.down();
  });

  s("one master and one backup: the higher priority holds the IPv6 (and IPv4) virtual addresses, both daemons know their role", async () => {
    if (setupError) throw setupError;
    const [a, b] = nodes as [HaNode, HaNode];
    await lab.untilRoles(15_000);
    process.stdout.write(`    a master ${aMasterMs} ms after its keepalived started, alone; b joined as the backup\n`);
    // a: backup (from the addresses at its start), then master; b: backup all along.
    assert.equal([await lab.role(a), await lab.role(b)].map((x) => [x.role, x.transitions]), [["master", 1], ["backup", 0]]);
    await lab.until(`a holds the ${ALL_VIPS.length} virtual addresses`, () => vipsHeld(a.ns).length === ALL_VIPS.length, 2000);
    assert.equal(vipsHeld(a.ns), ALL_VIPS);
    assert.equal(vipsHeld(b.ns), []);
    for (const d of DEVS) for (const v of [LINK_LOCAL, VIPS[d].v6]) assert.is(v6State(b.ns, d, v), "absent", `b has no ${v} on ${d}, not even tentative`);
    // Stable: past the segments' membership interval nothing changed (no flapping from adverts lost in the
    // queue, or from the segments no longer forwarding ff02::12 because MLD did not pass); with multicast
    // both appliances are still listeners of ff02::12 on both segments (their reports answered the queries).
    const before = await Promise.all([lab.role(a), lab.role(b)]);
    await sleep(MEMBERSHIP_MS + 1000);
    const after = await Promise.all([lab.role(a), lab.role(b)]);
    assert.equal(after.map((x) => [x.role, x.transitions]), before.map((x) => [x.role, x.transitions]));
    assert.equal(vipsHeld(b.ns), []);
    assert.equal([vrrpListeners("br-ext"), vrrpListeners("br-int")], mode === "multicast" ? [["a-ext", "b-ext"], ["a-int", "b-int"]] : [[], []]);
    for (const n of nodes) {
      assert.equal(lab.keepalivedComplaints(n), [], `keepalived ${n.name} complains`);
    }
  });

  s(`the IPv6 adverts${mode === "multicast" ? " and MLD" : ""} pass the queue rules: the counters of the ip6tables rules of ha:, on both sides`, async () => {
    if (setupError) throw setupError;
    const [a, b] = nodes as [HaNode, HaNode];
    const out = [haCounters6(a.ns, "PORTCULLIS-OUT"), haCounters6(b.ns, "PORTCULLIS-OUT")];
    const inb = haCounters6(b.ns, "PORTCULLIS-IN");
    // The VRRP rules' keys: out to the group (or the peer), in from a link-local address to the group (or anywhere: to b's own).
    const net = (d: string): string => (d === "ext0" ? "2001:db8:1::" : "2001:db8:2::");
    const vrrpOut = (n: HaNode, d: string): string => `${d} vrrp ::/0 -> ${mode === "multicast" ? "ff02::12" : `${net(d)}${peerHost(n)}`}`;
    const vrrpIn = (d: string): string => `${d} vrrp fe80::/10 -> ${mode === "multicast" ? "ff02::12" : "::/0"}`;
    const mld = (dir: "in" | "out", d: string): string[] => mode === "unicast" ? [] : dir === "in" ? [`${d} mld 130`] : [131, 132, 143].map((t) => `${d} mld ${t}`);
    assert.equal(Object.keys(out[0]!), DEVS.flatMap((d) => [vrrpOut(a, d), ...mld("out", d)]));
    assert.equal(Object.keys(inb), DEVS.flatMap((d) => [vrrpIn(d), ...mld("in", d)]));
    for (const d of DEVS) {
      // 0.1 s adverts for more than a second: at least 10 per instance, from a to b.
      assert.ok(out[0]![vrrpOut(a, d)]! >= 10 && inb[vrrpIn(d)]! >= 10, JSON.stringify([out[0], inb]));
      if (mode === "unicast") continue;
      // The segment's queries reached b, and both appliances reported ff02::12 (MLDv2 at the join, MLDv1 to the querier).
      assert.ok(inb[`${d} mld 130`]! > 0, `${d}: queries in on b: ${JSON.stringify(inb)}`);
      for (const o of out) assert.ok(o[`${d} mld 131`]! + o[`${d} mld 143`]! > 0, `${d}: reports out: ${JSON.stringify(out)}`);
    }
    // The backup never sent an advert (it only listens).
    assert.equal(DEVS.map((d) => out[1]![vrrpOut(b, d)]), [0, 0]);
    process.stdout.write(`    through the rules: a out ${JSON.stringify(out[0])}, b in ${JSON.stringify(inb)}\n`);
  });

  s("TCP over IPv6 (and IPv4) from the client to the virtual listener address reaches the master's listener", async () => {
    if (setupError) throw setupError;
    assert.is(connect(VIPS.ext0.v6), "a hello");
    if (v4) assert.is(connect(VIPS.ext0.v4), "a hello");
  });

  s("kill -9 of the master's keepalived: the backup becomes master within the bound with the virtual addresses of both families; TCP over IPv6 reaches it", async () => {
    if (setupError) throw setupError;
    const [a, b] = nodes as [HaNode, HaNode];
    const vrrpPid = Number(readFileSync(join(a.dir, "vrrp.pid"), "utf8").trim());
    const t0 = Date.now();
    for (const pid of [a.keepalived!.pid!, vrrpPid]) process.kill(pid, "SIGKILL");
    const ms = await lab.until("b master", async () => (await lab.role(b)).role === "master", BOUND_MS);
    const vms = await lab.until(`b holds the ${ALL_VIPS.length} virtual addresses`, () => vipsHeld(b.ns).length === ALL_VIPS.length, 2000) + ms;
    process.stdout.write(`    b told master ${ms} ms, all ${ALL_VIPS.length} virtual addresses usable ${vms} ms after kill -9 of a's keepalived\n`);
    assert.equal(vipsHeld(b.ns), ALL_VIPS);
    const st = await lab.role(b);
    assert.is(st.role, "master");
    assert.is(st.transitions, 1, "backup (from the addresses at its start, repeated by keepalived: no transition), then master");
    assert.ok(Date.parse(st.since!) >= t0, `${st.since} is after the kill`);
    // b announced its addresses (unsolicited neighbour advertisements): the client's next connection goes to b.
    let answer = "";
    await lab.until("the IPv6 connection answered by b", () => (answer = connect(VIPS.ext0.v6)) === "b hello", 3000).catch((e: Error) => {
      throw new Error(`${e.message}; last answer: ${answer}`);
    });
    assert.is(connect(VIPS.ext0.v6), "b hello");
    if (v4) assert.is(connect(VIPS.ext0.v4), "b hello");
  });

  s.run();
}

pairSuite("multicast", true);
pairSuite("unicast", true);
// Without IPv4 instances in the group, IPv6 VRRP alone holds the roles: keepalived moves a sync group
// only when all its instances would move, so in the dual-stack group the IPv4 adverts alone would keep
// the backup a backup were the IPv6 ones dropped (the counters above catch that; here the roles do).
pairSuite("multicast", false);
