// The reference topology (DESIGN.md §5) built by host/topology with real
// namespaces, veths, nginx and servers, driven by curl: reachability with no
// filter, then the kernel queue rules of host/kernel with no daemon bound
// (fail closed: nothing passes; with bypass on a side, that side passes),
// and their removal. Needs root; every test tears down in a finally (the
// suite's after hook, and up() itself when it fails half-way).
import { spawnSync } from "node:child_process";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { detect } from "../host/kernel/detect.js";
import { apply, nftRuleset, remove } from "../host/kernel/rules.js";
import { DECOY_PORTS, DIRECTOR, FRONT_END, LISTENER, OWA } from "../host/topology/plan.js";
import { type Topology, up } from "../host/topology/topology.js";
import { clearStaleTestTopologies, get, TEST_PREFIX, TIMED_OUT } from "./helpers/topology.js";

const FAMILIES = ["v4", "v6"] as const;

// From inet to the listener: 80 reaches the pool's 8080, 443 its 4443.
function published(t: Topology, timeoutMs = 2000): string[] {
  return FAMILIES.flatMap((f) => [80, 443].map((port) => get(t, "inet", LISTENER[f], port, timeoutMs)));
}
const PUBLISHED = [
  `pool 8080 ${FRONT_END.v4}`, `pool 4443 ${FRONT_END.v4}`,
  `pool 8080 ${FRONT_END.v6}`, `pool 4443 ${FRONT_END.v6}`,
];

// ---- host mode ---------------------------------------------------------------

const host = suite("topology, host mode");
let h: Topology | null = null;
const H = (): Topology => h!;

host.before(async () => {
  await clearStaleTestTopologies();
  h = await up({ mode: "host", prefix: TEST_PREFIX });
});
host.after(async () => {
  if (h) await h.down();
  h = null;
});

host("the namespaces are the prefix's and the appliance has ext0 and int0", () => {
  assert.equal(H().plan.namespaces.map((r) => H().ns(r)), [`${TEST_PREFIX}inet`, `${TEST_PREFIX}appliance`, `${TEST_PREFIX}lan`]);
  const links = H().exec("appliance", ["ip", "-br", "link"]).stdout;
  assert.match(links, /^ext0@/m);
  assert.match(links, /^int0@/m);
});

host("no filter: inet reaches the pool through nginx, 80 -> 8080 and 443 -> 4443, IPv4 and IPv6", () => {
  assert.equal(published(H()), PUBLISHED);
});

host("no filter: from the appliance, the pools, Office Web Apps and the decoys connect", () => {
  for (const f of FAMILIES) {
    for (const port of [8080, 4443]) {
      assert.is(get(H(), "appliance", FRONT_END[f], port), `pool ${port} ${FRONT_END[f]}`);
      assert.is(get(H(), "appliance", DIRECTOR[f], port), `director ${port} ${DIRECTOR[f]}`);
    }
    assert.is(get(H(), "appliance", OWA[f], 443), `owa 443 ${OWA[f]}`);
    for (const port of DECOY_PORTS) assert.is(get(H(), "appliance", FRONT_END[f], port), `decoy ${port} ${FRONT_END[f]}`);
  }
});

host("inet has no route to the lan", () => {
  assert.is(get(H(), "inet", FRONT_END.v4, 4443, 1000), "curl exit 7");
});

host("iptables-legacy rules, no daemon, no bypass: nothing passes either NIC; loopback is left alone", () => {
  const ns = H().ns("appliance");
  try {
    assert.is(apply(H().board, { backend: "iptables", netns: ns }).backend, "iptables");
    assert.is(get(H(), "inet", LISTENER.v4, 443, 1000), TIMED_OUT);
    assert.is(get(H(), "inet", LISTENER.v6, 80, 1000), TIMED_OUT);
    assert.is(get(H(), "appliance", FRONT_END.v4, 4443, 1000), TIMED_OUT);
    assert.is(get(H(), "appliance", "127.0.0.1", 9, 1000), "curl exit 7", "loopback: refused at once, not queued");
  } finally {
    remove({ netns: ns });
  }
});

host("bypass on the internal side only: the appliance reaches the lan, the Internet stays out", () => {
  const ns = H().ns("appliance");
  try {
    apply({ ...H().board, internal: { dev: "int0", bypass: true } }, { backend: "iptables", netns: ns });
    assert.is(get(H(), "appliance", FRONT_END.v4, 4443, 1000), `pool 4443 ${FRONT_END.v4}`);
    assert.is(get(H(), "appliance", OWA.v6, 443, 1000), `owa 443 ${OWA.v6}`);
    assert.is(get(H(), "inet", LISTENER.v4, 443, 1000), TIMED_OUT);
  } finally {
    remove({ netns: ns });
  }
});

host("rules removed: traffic passes again, and removing again finds nothing", () => {
  const ns = H().ns("appliance");
  apply(H().board, { backend: "iptables", netns: ns });
  assert.ok(remove({ netns: ns }));
  assert.not.ok(remove({ netns: ns }));
  assert.equal(published(H()), PUBLISHED);
  const saved = H().exec("appliance", ["iptables-legacy-save"]).stdout + H().exec("appliance", ["ip6tables-legacy-save"]).stdout;
  assert.not.match(saved, /PORTCULLIS/);
});

host("an operator's ruleset of 30,000 rules (a 1.5 MB save) stays, and the queue rules go in first", () => {
  const ns = H().ns("appliance");
  const rules = Array.from({ length: 30_000 }, (_, i) => `-A OPERATOR -s 192.0.2.${i % 256}/32 -d 198.51.100.${i >> 8}/32 -p tcp --dport ${1024 + i} -j ACCEPT`);
  const restore = `*filter\n:OPERATOR - [0:0]\n${rules.join("\n")}\n-A FORWARD -j OPERATOR\nCOMMIT\n`;
  try {
    const r = H().exec("appliance", ["iptables-legacy-restore", "--noflush"], restore);
    assert.is(r.status, 0, r.stderr);
    assert.is(apply(H().board, { backend: "iptables", netns: ns }).backend, "iptables");
    const saveAll = (): string => spawnSync("ip", ["netns", "exec", ns, "iptables-legacy-save"], { encoding: "utf8", maxBuffer: 64 << 20 }).stdout;
    const save = saveAll();
    assert.ok(save.length > 1 << 20, `the save is ${save.length} bytes`);
    assert.is(save.split("\n").filter((l) => l.startsWith("-A OPERATOR ")).length, 30_000);
    const forward = save.split("\n").filter((l) => l.startsWith("-A FORWARD "));
    assert.equal(forward, ["-A FORWARD -j PORTCULLIS-FWD", "-A FORWARD -j OPERATOR"]);
    assert.ok(remove({ netns: ns }));
    assert.is(saveAll().split("\n").filter((l) => l.startsWith("-A OPERATOR ")).length, 30_000);
  } finally {
    remove({ netns: ns });
    H().exec("appliance", ["iptables-legacy", "-F"]);
    H().exec("appliance", ["iptables-legacy", "-X", "OPERATOR"]);
  }
});

host("nftables: auto picks nft exactly when the kernel can queue from it; the ruleset parses either way", () => {
  const ns = H().ns("appliance");
  const d = detect(ns);
  assert.ok(d.iptablesLegacy.ok, d.iptablesLegacy.why);
  try {
    assert.is(apply(H().board, { netns: ns }).backend, d.nftQueue.ok ? "nft" : "iptables");
    assert.is(get(H(), "inet", LISTENER.v4, 80, 1000), TIMED_OUT);
  } finally {
    remove({ netns: ns });
  }
  const text = nftRuleset(H().board);
  const r = H().exec("appliance", ["nft", "-f", "-"], text);
  if (d.nftQueue.ok) {
    assert.is(r.status, 0, r.stderr);
  } else {
    // Refused by the kernel at each queue statement, and nowhere else.
    const lines = text.split("\n");
    const errs = [...r.stderr.matchAll(/^\/dev\/stdin:(\d+):(\d+)-(\d+): Error: (.*)$/gm)];
    assert.ok(errs.length > 0, r.stderr);
    for (const [, line, c0, c1, what] of errs) {
      assert.is(what, "Could not process rule: No such file or directory");
      assert.is(lines[Number(line) - 1]!.slice(Number(c0) - 1, Number(c1)), "queue");
    }
  }
  remove({ netns: ns });
  assert.is(H().exec("appliance", ["nft", "list", "table", "inet", "portcullis"]).status, 1);
});

host.run();

// ---- gateway mode -------------------------------------------------------------

const gw = suite("topology, gateway mode");
let g: Topology | null = null;
const G = (): Topology => g!;

gw.before(async () => {
  g = await up({ mode: "gateway", prefix: TEST_PREFIX });
});
gw.after(async () => {
  if (g) await g.down();
  g = null;
});

gw("no filter: inet reaches the proxy through the appliance's forwarding, and the pool behind it", () => {
  assert.equal(published(G()), PUBLISHED);
  assert.is(get(G(), "inet", FRONT_END.v4, 4443, 1000), "curl exit 7", "the lan is not routed from inet");
});

gw("FORWARD rules, no daemon: nothing crosses; removed: everything crosses again", () => {
  const ns = G().ns("appliance");
  try {
    apply(G().board, { backend: "iptables", netns: ns });
    assert.is(get(G(), "inet", LISTENER.v4, 443, 1000), TIMED_OUT);
    assert.is(get(G(), "inet", LISTENER.v6, 80, 1000), TIMED_OUT);
  } finally {
    remove({ netns: ns });
  }
  assert.equal(published(G()), PUBLISHED);
});

gw.run();
