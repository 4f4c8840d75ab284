// The default policy (host/policy/default.yaml, DESIGN.md §1) compiled and
// loaded into the release core, then probed with real TCP SYNs (and UDP),
// IPv4 and IPv6: every row of the Lync 2013 reverse-proxy port tables passes
// by its own rule, and the nearest forbidden neighbours fall to the default.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { classifyAll } from "../host/core/batch.js";
import { Core, type PacketMeta } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { ipv4, ipv6, PROTO_TCP, PROTO_UDP, TCP_SYN, tcp, udp } from "../host/packets/build.js";
import { compilePolicyFile, type Mode } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";

const POLICY = join(fileURLToPath(new URL("../../", import.meta.url)), "host", "policy", "default.yaml");

// The reference topology (DESIGN.md §5), per family.
const A = {
  4: {
    client: "203.0.113.50", listener: "203.0.113.1", otherExt: "203.0.113.2",
    proxyInt: "198.51.100.1", fe: "198.51.100.10", director: "198.51.100.11", owa: "198.51.100.30",
    decoy: "198.51.100.50", lanHost: "198.51.100.99",
  },
  6: {
    client: "2001:db8:1::50", listener: "2001:db8:1::1", otherExt: "2001:db8:1::2",
    proxyInt: "2001:db8:2::1", fe: "2001:db8:2::10", director: "2001:db8:2::11", owa: "2001:db8:2::30",
    decoy: "2001:db8:2::50", lanHost: "2001:db8:2::99",
  },
} as const;
type Who = keyof (typeof A)[4];

// Where a packet is seen, host mode: the proxy's own traffic.
const EXT_IN: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };
const EXT_OUT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL };
const INT_IN: PacketMeta = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_NONE };
const INT_OUT: PacketMeta = { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_INTERNAL };
const FWD_EXT_INT: PacketMeta = { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_INTERNAL };
const FWD_INT_EXT: PacketMeta = { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_EXTERNAL };

// label, where, from, to, protocol, destination port, expected ("rule N" or "deny").
type Probe = [string, PacketMeta, Who, Who, "tcp" | "udp", number, string];

let sport = 30000;
function packet(fam: 4 | 6, p: Probe): Uint8Array {
  const [, , from, to, proto, dport] = p;
  // A new source port per probe: every SYN is a new connection.
  const l4 = proto === "tcp" ? tcp({ sport: ++sport, dport, flags: TCP_SYN, seq: 1000 + sport }) : udp({ sport: ++sport, dport, payload: new Uint8Array(8) });
  const o = { src: A[fam][from], dst: A[fam][to], proto: proto === "tcp" ? PROTO_TCP : PROTO_UDP, payload: l4 };
  return fam === 4 ? ipv4(o) : ipv6(o);
}

function run(mode: Mode, switches: Record<string, boolean>, probes: Probe[]): void {
  const { spec } = compilePolicyFile(POLICY, { mode, switches });
  for (const fam of [4, 6] as const) {
    const core = new Core("release");
    core.loadTable(buildTable(spec).bytes);
    for (const p of probes) {
      const [label, meta, , , , , want] = p;
      const [d] = classifyAll(core, [packet(fam, p)], meta);
      assert.ok(d);
      const got = reasonName(d.reason);
      const expected = want === "deny"
        ? { reason: "default_deny", verdict: ABI.VERDICT_DROP, rule: ABI.RULE_NONE }
        : { reason: "rule_allow", verdict: ABI.VERDICT_ACCEPT, rule: Number(want.slice(5)) };
      assert.equal({ reason: got, verdict: d.verdict, rule: d.rule }, expected, `IPv${fam} ${mode} ${label}`);
    }
  }
}

// The rows of the seed's two tables, in order: rule 0..4 with both switches on.
const ROWS: Probe[] = [
  ["ext HTTP/TCP/80 any -> listener", EXT_IN, "client", "listener", "tcp", 80, "rule 0"],
  ["ext HTTPS/TCP/443 any -> listener", EXT_IN, "client", "listener", "tcp", 443, "rule 1"],
  ["int HTTP/TCP/8080 proxy -> Front End pool", INT_OUT, "proxyInt", "fe", "tcp", 8080, "rule 2"],
  ["int HTTP/TCP/8080 proxy -> Director pool", INT_OUT, "proxyInt", "director", "tcp", 8080, "rule 2"],
  ["int HTTPS/TCP/4443 proxy -> Front End pool", INT_OUT, "proxyInt", "fe", "tcp", 4443, "rule 3"],
  ["int HTTPS/TCP/4443 proxy -> Director pool", INT_OUT, "proxyInt", "director", "tcp", 4443, "rule 3"],
  ["int HTTPS/TCP/443 proxy -> Office Web Apps", INT_OUT, "proxyInt", "owa", "tcp", 443, "rule 4"],
];

const NEIGHBOURS: Probe[] = [
  ["ext TCP 81 -> listener", EXT_IN, "client", "listener", "tcp", 81, "deny"],
  ["ext TCP 79 -> listener", EXT_IN, "client", "listener", "tcp", 79, "deny"],
  ["ext TCP 442 -> listener", EXT_IN, "client", "listener", "tcp", 442, "deny"],
  ["ext TCP 444 -> listener", EXT_IN, "client", "listener", "tcp", 444, "deny"],
  ["ext UDP 443 -> listener (QUIC)", EXT_IN, "client", "listener", "udp", 443, "deny"],
  ["ext UDP 80 -> listener", EXT_IN, "client", "listener", "udp", 80, "deny"],
  ["ext TCP 8080 -> listener (internal port, external side)", EXT_IN, "client", "listener", "tcp", 8080, "deny"],
  ["ext TCP 4443 -> listener (internal port, external side)", EXT_IN, "client", "listener", "tcp", 4443, "deny"],
  ["ext TCP 22 -> listener", EXT_IN, "client", "listener", "tcp", 22, "deny"],
  ["ext TCP 443 -> another external address", EXT_IN, "client", "otherExt", "tcp", 443, "deny"],
  ["TCP 443 to the listener arriving on the internal interface", INT_IN, "lanHost", "listener", "tcp", 443, "deny"],
  ["TCP 443 to the proxy's internal address, from the LAN", INT_IN, "lanHost", "proxyInt", "tcp", 443, "deny"],
  ["TCP 80 to the proxy's internal address, from the LAN", INT_IN, "lanHost", "proxyInt", "tcp", 80, "deny"],
  ["the proxy opening 443 toward the Internet", EXT_OUT, "listener", "client", "tcp", 443, "deny"],
  ["a client routed through the proxy to the Front End 4443", FWD_EXT_INT, "client", "fe", "tcp", 4443, "deny"],
  ["a LAN host routed out through the proxy on 443", FWD_INT_EXT, "lanHost", "client", "tcp", 443, "deny"],
  ["int TCP 8081 -> Front End", INT_OUT, "proxyInt", "fe", "tcp", 8081, "deny"],
  ["int TCP 8079 -> Front End", INT_OUT, "proxyInt", "fe", "tcp", 8079, "deny"],
  ["int TCP 4444 -> Front End", INT_OUT, "proxyInt", "fe", "tcp", 4444, "deny"],
  ["int TCP 4442 -> Director", INT_OUT, "proxyInt", "director", "tcp", 4442, "deny"],
  ["int UDP 4443 -> Front End", INT_OUT, "proxyInt", "fe", "udp", 4443, "deny"],
  ["int TCP 443 -> Front End (443 is only for Office Web Apps)", INT_OUT, "proxyInt", "fe", "tcp", 443, "deny"],
  ["int TCP 442 -> Office Web Apps", INT_OUT, "proxyInt", "owa", "tcp", 442, "deny"],
  ["int TCP 444 -> Office Web Apps", INT_OUT, "proxyInt", "owa", "tcp", 444, "deny"],
  ["int TCP 4443 -> Office Web Apps", INT_OUT, "proxyInt", "owa", "tcp", 4443, "deny"],
  ["int TCP 8080 -> Office Web Apps", INT_OUT, "proxyInt", "owa", "tcp", 8080, "deny"],
  ["int UDP 443 -> Office Web Apps", INT_OUT, "proxyInt", "owa", "udp", 443, "deny"],
  ["int TCP 4443 -> a decoy in the LAN", INT_OUT, "proxyInt", "decoy", "tcp", 4443, "deny"],
  ["int TCP 22 -> Front End (decoy service)", INT_OUT, "proxyInt", "fe", "tcp", 22, "deny"],
  ["int TCP 445 -> Front End (decoy service)", INT_OUT, "proxyInt", "fe", "tcp", 445, "deny"],
  ["int TCP 3389 -> Front End (decoy service)", INT_OUT, "proxyInt", "fe", "tcp", 3389, "deny"],
  ["int TCP 5061 -> Director (decoy service)", INT_OUT, "proxyInt", "director", "tcp", 5061, "deny"],
  ["int 4443 -> Front End from the wrong source (a LAN host's address)", INT_OUT, "lanHost", "fe", "tcp", 4443, "deny"],
  ["int 4443 -> Front End from the wrong source (the listener address)", INT_OUT, "listener", "fe", "tcp", 4443, "deny"],
  ["int 443 -> Office Web Apps from the wrong source", INT_OUT, "decoy", "owa", "tcp", 443, "deny"],
  ["4443 toward the Front End leaving by the external interface", EXT_OUT, "proxyInt", "fe", "tcp", 4443, "deny"],
  ["a LAN host connecting to the Front End 4443 through the proxy's input", INT_IN, "lanHost", "fe", "tcp", 4443, "deny"],
];

test("host mode, both switches on: every row of the seed passes by its own rule", () => {
  run("host", {}, ROWS);
});

test("host mode: the nearest forbidden neighbours fall to default_deny", () => {
  run("host", {}, NEIGHBOURS);
});

test("switches off (--set): 80 and 8080 fall to default_deny; the other rows keep passing, renumbered", () => {
  const off = { external_http_80: false, internal_http_8080: false };
  run("host", off, [
    ["ext TCP 80 with external_http_80 off", EXT_IN, "client", "listener", "tcp", 80, "deny"],
    ["ext TCP 443", EXT_IN, "client", "listener", "tcp", 443, "rule 0"],
    ["int TCP 8080 -> Front End with internal_http_8080 off", INT_OUT, "proxyInt", "fe", "tcp", 8080, "deny"],
    ["int TCP 8080 -> Director with internal_http_8080 off", INT_OUT, "proxyInt", "director", "tcp", 8080, "deny"],
    ["int TCP 4443 -> Front End", INT_OUT, "proxyInt", "fe", "tcp", 4443, "rule 1"],
    ["int TCP 443 -> Office Web Apps", INT_OUT, "proxyInt", "owa", "tcp", 443, "rule 2"],
  ]);
  // One at a time.
  run("host", { external_http_80: false }, [
    ["ext TCP 80 off", EXT_IN, "client", "listener", "tcp", 80, "deny"],
    ["int TCP 8080 still on", INT_OUT, "proxyInt", "fe", "tcp", 8080, "rule 1"],
  ]);
  run("host", { internal_http_8080: false }, [
    ["ext TCP 80 still on", EXT_IN, "client", "listener", "tcp", 80, "rule 0"],
    ["int TCP 8080 off", INT_OUT, "proxyInt", "fe", "tcp", 8080, "deny"],
    ["int TCP 4443", INT_OUT, "proxyInt", "fe", "tcp", 4443, "rule 2"],
  ]);
});

test("gateway mode: the same rows on FORWARD; nothing reaches the appliance itself", () => {
  run("gateway", {}, [
    ["ext 80 forwarded to the listener", FWD_EXT_INT, "client", "listener", "tcp", 80, "rule 0"],
    ["ext 443 forwarded to the listener", FWD_EXT_INT, "client", "listener", "tcp", 443, "rule 1"],
    ["proxy -> Front End 8080 leaving by the internal side", { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_INTERNAL }, "proxyInt", "fe", "tcp", 8080, "rule 2"],
    ["proxy -> Director 4443 leaving by the internal side", { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_INTERNAL }, "proxyInt", "director", "tcp", 4443, "rule 3"],
    ["proxy -> Office Web Apps 443 leaving by the internal side", FWD_EXT_INT, "proxyInt", "owa", "tcp", 443, "rule 4"],
    ["ext 443 to the appliance itself (INPUT)", EXT_IN, "client", "listener", "tcp", 443, "deny"],
    ["the appliance's own 4443 toward the Front End (OUTPUT)", INT_OUT, "proxyInt", "fe", "tcp", 4443, "deny"],
    ["ext 443 forwarded toward the external side (wrong way)", { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_EXTERNAL }, "client", "listener", "tcp", 443, "deny"],
    ["ext 81 forwarded to the listener", FWD_EXT_INT, "client", "listener", "tcp", 81, "deny"],
    ["proxy -> Front End 4444", FWD_EXT_INT, "proxyInt", "fe", "tcp", 4444, "deny"],
    ["LAN host -> Front End 4443 leaving by the internal side (wrong source)", FWD_EXT_INT, "lanHost", "fe", "tcp", 4443, "deny"],
  ]);
});

test("the compiled table says where each rule came from", () => {
  const { spec, summary } = compilePolicyFile(POLICY);
  assert.is(spec.defaultAction, "deny");
  assert.equal(summary.rules.map((r) => [r.table, r.name, r.iface, r.direction]), [
    [0, "ext-http-80", "external", "in"], [1, "ext-https-443", "external", "in"],
    [2, "int-http-8080", "internal", "out"], [3, "int-https-4443", "internal", "out"], [4, "int-https-443-owa", "internal", "out"],
  ]);
  for (const r of spec.rules) assert.match(r.info, /^default\.yaml:\d+ [a-z0-9-]+: allow tcp (external in any -> listener|internal out proxy_internal -> (front_end|office_web_apps)) dport \d+/);
  assert.equal(summary.switches.map((s) => [s.name, s.value]), [["external_http_80", true], ["internal_http_8080", true]]);
  assert.equal(summary.warnings, []);
});

test.run();
