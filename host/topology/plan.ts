// The reference topology (DESIGN.md §5) as data: namespaces, veth links,
// addresses, routes and services, for each deployment mode. Only
// documentation addresses (RFC 5737, RFC 3849), and only routes between the
// namespaces built here.
//
// host mode: the appliance is the proxy (nginx runs in it).
//
//   inet                      appliance                         lan
//   eth0 203.0.113.50/24 ---- ext0 203.0.113.1/24                eth0 198.51.100.10/24 (FE pool VIP)
//        2001:db8:1::50/64         2001:db8:1::1/64                   198.51.100.11 (Director)
//                                 int0 198.51.100.1/24 --------       198.51.100.30 (Office Web Apps)
//                                      2001:db8:2::1/64               2001:db8:2::10, ::11, ::30 /64
//
// gateway mode: the appliance routes between the Internet and an existing
// proxy (namespace "proxy"), which has the listener address and reaches the
// pool itself. The appliance's own addresses are transit addresses.
//
//   inet                      appliance                proxy                         lan
//   eth0 203.0.113.50/24 ---- ext0 203.0.113.2/24      eth0 192.0.2.2/24             (as in host mode)
//        2001:db8:1::50/64         2001:db8:1::2/64         2001:db8:ff::2/64
//   203.0.113.1 via .2        int0 192.0.2.1/24 -----       203.0.113.1/32, 2001:db8:1::1/128 (listener)
//   2001:db8:1::1 via ::2          2001:db8:ff::1/64   eth1 198.51.100.1/24 -------- eth0
//                             203.0.113.1 via 192.0.2.2     2001:db8:2::1/64
//                             forwarding on            203.0.113.0/24 via 192.0.2.1
//
// pair (gateway mode with two appliances, issue 17): the single appliance's
// transit addresses become virtual addresses (VRRP, keepalived) that the
// master of two appliances holds; each appliance has real addresses of its
// own on the same segments, and a crossover link (sync0) for conntrackd.
// The segments are Linux bridges in a namespace of their own ("seg"), so
// that a test can cut one appliance off (its ports down) as a dead box would
// be. IPv4 only: the listener's IPv6 address has no virtual gateway.
//
//   inet              seg                         appliance-a    appliance-b     proxy           lan
//   eth0 .50/24 ----- br-ext: inet a-ext b-ext -- ext0 .3/24     ext0 .4/24
//   203.0.113.1 via        (203.0.113.2: the virtual gateway of the master)
//   203.0.113.2       br-int: proxy a-int b-int - int0 192.0.2.3  int0 192.0.2.4  eth0 192.0.2.2/24 (as in gateway mode)
//                          (192.0.2.1: the virtual gateway of the master)
//                                                 sync0 192.0.2.253/30 -- sync0 192.0.2.254/30 (veth, no bridge)
//   proxy: 203.0.113.0/24 via 192.0.2.1 (the virtual address), as in gateway mode
import { type Mode } from "../policy/compile.js";

export type NsRole = "inet" | "appliance" | "proxy" | "lan" | "seg" | "appliance-a" | "appliance-b";
export const NS_ROLES: readonly NsRole[] = ["inet", "appliance", "proxy", "lan", "seg", "appliance-a", "appliance-b"];

// A veth pair; bDev joins bridge `bBridge` (in b's namespace) when given.
export interface Link { a: NsRole; aDev: string; b: NsRole; bDev: string; bBridge?: string }
export interface Bridge { ns: NsRole; dev: string }
export interface Addr { ns: NsRole; dev: string; cidr: string }
export interface Route { ns: NsRole; to: string; via: string }

// A listener in lan: it answers any request with the body `${name} ${port} ${addr}`.
export interface Service { name: string; addr: string; port: number }

export interface Plan {
  mode: Mode;
  namespaces: NsRole[];
  links: Link[];
  addrs: Addr[];
  routes: Route[];
  bridges: Bridge[];
  forwarding: NsRole[];
  proxyNs: NsRole; // where nginx runs
  services: Service[];
}

export const INET = { v4: "203.0.113.50", v6: "2001:db8:1::50" };
export const LISTENER = { v4: "203.0.113.1", v6: "2001:db8:1::1" };
export const PROXY_INTERNAL = { v4: "198.51.100.1", v6: "2001:db8:2::1" };
export const FRONT_END = { v4: "198.51.100.10", v6: "2001:db8:2::10" };
export const DIRECTOR = { v4: "198.51.100.11", v6: "2001:db8:2::11" };
export const OWA = { v4: "198.51.100.30", v6: "2001:db8:2::30" };
export const DECOY_PORTS: readonly number[] = [22, 445, 3389, 5061];

// The proxy's publishing rules (seed): external port -> the pool's port.
export const PUBLISH: ReadonlyArray<{ listen: number; pool: number }> = [{ listen: 443, pool: 4443 }, { listen: 80, pool: 8080 }];

function services(): Service[] {
  const out: Service[] = [];
  for (const fam of ["v4", "v6"] as const) {
    for (const port of [8080, 4443]) {
      out.push({ name: "pool", addr: FRONT_END[fam], port }, { name: "director", addr: DIRECTOR[fam], port });
    }
    out.push({ name: "owa", addr: OWA[fam], port: 443 });
    for (const port of DECOY_PORTS) out.push({ name: "decoy", addr: FRONT_END[fam], port });
  }
  return out;
}

const LAN_ADDRS = (dev: string): Addr[] => [FRONT_END, DIRECTOR, OWA].flatMap((a) => [
  { ns: "lan" as const, dev, cidr: `${a.v4}/24` }, { ns: "lan" as const, dev, cidr: `${a.v6}/64` },
]);
const INET_ADDRS: Addr[] = [{ ns: "inet", dev: "eth0", cidr: `${INET.v4}/24` }, { ns: "inet", dev: "eth0", cidr: `${INET.v6}/64` }];

export function plan(mode: Mode): Plan {
  if (mode === "host") {
    return {
      mode, namespaces: ["inet", "appliance", "lan"],
      links: [{ a: "appliance", aDev: "ext0", b: "inet", bDev: "eth0" }, { a: "appliance", aDev: "int0", b: "lan", bDev: "eth0" }],
      addrs: [
        ...INET_ADDRS,
        { ns: "appliance", dev: "ext0", cidr: `${LISTENER.v4}/24` }, { ns: "appliance", dev: "ext0", cidr: `${LISTENER.v6}/64` },
        { ns: "appliance", dev: "int0", cidr: `${PROXY_INTERNAL.v4}/24` }, { ns: "appliance", dev: "int0", cidr: `${PROXY_INTERNAL.v6}/64` },
        ...LAN_ADDRS("eth0"),
      ],
      routes: [], bridges: [], forwarding: [], proxyNs: "appliance", services: services(),
    };
  }
  return {
    mode, namespaces: ["inet", "appliance", "proxy", "lan"],
    links: [
      { a: "appliance", aDev: "ext0", b: "inet", bDev: "eth0" },
      { a: "appliance", aDev: "int0", b: "proxy", bDev: "eth0" },
      { a: "proxy", aDev: "eth1", b: "lan", bDev: "eth0" },
    ],
    addrs: [
      ...INET_ADDRS,
      { ns: "appliance", dev: "ext0", cidr: "203.0.113.2/24" }, { ns: "appliance", dev: "ext0", cidr: "2001:db8:1::2/64" },
      { ns: "appliance", dev: "int0", cidr: "192.0.2.1/24" }, { ns: "appliance", dev: "int0", cidr: "2001:db8:ff::1/64" },
      { ns: "proxy", dev: "eth0", cidr: "192.0.2.2/24" }, { ns: "proxy", dev: "eth0", cidr: "2001:db8:ff::2/64" },
      { ns: "proxy", dev: "eth0", cidr: `${LISTENER.v4}/32` }, { ns: "proxy", dev: "eth0", cidr: `${LISTENER.v6}/128` },
      { ns: "proxy", dev: "eth1", cidr: `${PROXY_INTERNAL.v4}/24` }, { ns: "proxy", dev: "eth1", cidr: `${PROXY_INTERNAL.v6}/64` },
      ...LAN_ADDRS("eth0"),
    ],
    routes: [
      { ns: "inet", to: `${LISTENER.v4}/32`, via: "203.0.113.2" }, { ns: "inet", to: `${LISTENER.v6}/128`, via: "2001:db8:1::2" },
      { ns: "appliance", to: `${LISTENER.v4}/32`, via: "192.0.2.2" }, { ns: "appliance", to: `${LISTENER.v6}/128`, via: "2001:db8:ff::2" },
      { ns: "proxy", to: "203.0.113.0/24", via: "192.0.2.1" }, { ns: "proxy", to: "2001:db8:1::/64", via: "2001:db8:ff::1" },
    ],
    bridges: [], forwarding: ["appliance"], proxyNs: "proxy", services: services(),
  };
}

// The pair's two appliances and their addresses; VIRTUAL are the addresses
// the master holds (gateway mode's transit addresses of the appliance).
export type PairNode = "a" | "b";
export const PAIR_NODES: readonly PairNode[] = ["a", "b"];
export const PAIR_ROLE: Record<PairNode, NsRole> = { a: "appliance-a", b: "appliance-b" };
export const VIRTUAL = { external: "203.0.113.2", internal: "192.0.2.1", prefix: 24 };
export const PAIR_ADDRS: Record<PairNode, { external: string; internal: string; sync: string }> = {
  a: { external: "203.0.113.3", internal: "192.0.2.3", sync: "192.0.2.253" },
  b: { external: "203.0.113.4", internal: "192.0.2.4", sync: "192.0.2.254" },
};
export const SYNC_PREFIX = 30;

export function pairPlan(): Plan {
  const g = plan("gateway");
  const links: Link[] = [
    { a: "inet", aDev: "eth0", b: "seg", bDev: "inet", bBridge: "br-ext" },
    { a: "proxy", aDev: "eth0", b: "seg", bDev: "proxy", bBridge: "br-int" },
    ...PAIR_NODES.flatMap((n): Link[] => [
      { a: PAIR_ROLE[n], aDev: "ext0", b: "seg", bDev: `${n}-ext`, bBridge: "br-ext" },
      { a: PAIR_ROLE[n], aDev: "int0", b: "seg", bDev: `${n}-int`, bBridge: "br-int" },
    ]),
    { a: "appliance-a", aDev: "sync0", b: "appliance-b", bDev: "sync0" },
    { a: "proxy", aDev: "eth1", b: "lan", bDev: "eth0" },
  ];
  const v4 = (a: Addr): boolean => !a.cidr.includes(":");
  return {
    mode: "gateway", namespaces: ["inet", "seg", "appliance-a", "appliance-b", "proxy", "lan"],
    links,
    addrs: [
      ...INET_ADDRS.filter(v4),
      ...PAIR_NODES.flatMap((n): Addr[] => [
        { ns: PAIR_ROLE[n], dev: "ext0", cidr: `${PAIR_ADDRS[n].external}/${VIRTUAL.prefix}` },
        { ns: PAIR_ROLE[n], dev: "int0", cidr: `${PAIR_ADDRS[n].internal}/${VIRTUAL.prefix}` },
        { ns: PAIR_ROLE[n], dev: "sync0", cidr: `${PAIR_ADDRS[n].sync}/${SYNC_PREFIX}` },
      ]),
      ...g.addrs.filter((a) => (a.ns === "proxy" || a.ns === "lan")),
    ],
    routes: [
      ...g.routes.filter((r) => !r.to.includes(":") && r.ns !== "appliance"),
      ...PAIR_NODES.map((n): Route => ({ ns: PAIR_ROLE[n], to: `${LISTENER.v4}/32`, via: "192.0.2.2" })),
    ],
    bridges: [{ ns: "seg", dev: "br-ext" }, { ns: "seg", dev: "br-int" }],
    forwarding: ["appliance-a", "appliance-b"], proxyNs: "proxy", services: services(),
  };
}
