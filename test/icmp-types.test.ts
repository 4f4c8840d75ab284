// Rules that match ICMP and ICMPv6 types and codes (issue 16): a policy with
// type lists, compiled for host and gateway mode, through the release core
// with the TypeScript reference beside it (every answer compared), with a
// real packet of every named type of both families: allowed, denied, left to
// the default, replies without a flow, errors related to a tracked flow and
// unrelated ones.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { type PacketMeta } from "../host/core/core.js";
import { describePacket } from "../host/packets/describe.js";
import { icmpTypeName } from "../host/packets/icmp-names.js";
import { compilePolicyText, type Mode } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";
import { TableView } from "../host/rules/inspect.js";
import { icmpEntries, kernelRules } from "../bench/e2e/kernel-filter.js";
import { icmpMessage, ping, udpPkt } from "./helpers/conn.js";
import { TwinHarness } from "./helpers/twin.js";

const POLICY = `version: 1
default: deny
groups:
  listener: [203.0.113.1, "2001:db8:1::1"]
  proxy_internal: [198.51.100.1, "2001:db8:2::1"]
rules:
  - { name: dns, action: allow, interface: external, direction: in, proto: udp, dst: listener, dport: 53 }
  - name: ping4
    action: allow
    interface: external
    direction: in
    proto: icmp
    dst: listener
    icmp_type: [echo-request, timestamp-request]
  - { name: pmtu4, action: allow, interface: external, direction: in, proto: icmp, icmp_type: ["destination-unreachable/frag-needed", time-exceeded] }
  - { name: refuse4, action: deny, interface: external, direction: in, proto: icmp, icmp_type: [redirect, router-advertisement, {type: 4}] }
  - { name: ping6, action: allow, interface: external, direction: in, proto: icmpv6, dst: listener, icmp_type: echo-request }
  - { name: pmtu6, action: allow, interface: external, direction: in, proto: icmpv6, icmp_type: [packet-too-big, 3, {type: destination-unreachable, code: port-unreachable}] }
  - { name: refuse6, action: deny, interface: external, direction: in, proto: icmpv6, icmp_type: [nd-router-advert, nd-redirect, mld-listener-query] }
  - { name: lan-ping, action: allow, interface: internal, direction: in, proto: icmp, dst: proxy_internal, icmp_type: echo-request }
`;
const RULE = { dns: 0, ping4: 1, pmtu4: 2, refuse4: 3, ping6: 4, pmtu6: 5, refuse6: 6, lanPing: 7 };

const CLIENT = { 4: "203.0.113.10", 6: "2001:db8:1::10" } as const;
const LISTENER = { 4: "203.0.113.1", 6: "2001:db8:1::1" } as const;
const ROUTER = { 4: "192.0.2.254", 6: "2001:db8:9::1" } as const;

// Where the core sees a packet arriving from outside, and the proxy's answer.
function places(mode: Mode): { inbound: PacketMeta; outbound: PacketMeta; lan: PacketMeta } {
  if (mode === "host") {
    return {
      inbound: { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE },
      outbound: { hook: ABI.HOOK_OUTPUT, inRole: ABI.ROLE_NONE, outRole: ABI.ROLE_EXTERNAL },
      lan: { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_NONE },
    };
  }
  return {
    inbound: { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_INTERNAL },
    outbound: { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_EXTERNAL },
    lan: { hook: ABI.HOOK_FORWARD, inRole: ABI.ROLE_INTERNAL, outRole: ABI.ROLE_EXTERNAL },
  };
}

const message = icmpMessage;

type Outcome = [string, number | null]; // reason, rule (null: none)

// What each named type, sent from a client to the listener from outside,
// gets under POLICY: written out by hand from the policy's rules.
const FROM_OUTSIDE: Record<4 | 6, Record<number, Outcome>> = {
  4: {
    0: ["no_flow", null], //            echo-reply: nobody asked
    3: ["icmp_unrelated", null], //     destination-unreachable/net-unreachable: no rule names it
    4: ["rule_deny", RULE.refuse4], //  source-quench
    5: ["rule_deny", RULE.refuse4], //  redirect
    8: ["rule_allow", RULE.ping4], //   echo-request
    9: ["rule_deny", RULE.refuse4], //  router-advertisement
    10: ["default_deny", null], //      router-solicitation
    11: ["rule_allow", RULE.pmtu4], // time-exceeded
    12: ["icmp_unrelated", null], //    parameter-problem
    13: ["rule_allow", RULE.ping4], //  timestamp-request
    14: ["no_flow", null], 15: ["default_deny", null], 16: ["no_flow", null], 17: ["default_deny", null], 18: ["no_flow", null],
  },
  6: {
    1: ["icmp_unrelated", null], //     destination-unreachable/no-route
    2: ["rule_allow", RULE.pmtu6], //   packet-too-big
    3: ["rule_allow", RULE.pmtu6], //   time-exceeded (as a number)
    4: ["icmp_unrelated", null], //     parameter-problem
    128: ["rule_allow", RULE.ping6], 129: ["no_flow", null],
    130: ["rule_deny", RULE.refuse6], 131: ["default_deny", null], 132: ["default_deny", null],
    // neighbour discovery with hop limit 64 (255 passes before the rules)
    133: ["default_deny", null], 134: ["rule_deny", RULE.refuse6], 135: ["default_deny", null], 136: ["default_deny", null],
    137: ["rule_deny", RULE.refuse6], 138: ["default_deny", null], 141: ["default_deny", null], 142: ["default_deny", null],
    143: ["default_deny", null],
  },
};

const twin = (mode: Mode): TwinHarness => new TwinHarness(compilePolicyText(POLICY, "icmp.yaml", { mode }).spec);
const ruleOf = (h: TwinHarness): number | null => (h.core.rule(0) === ABI.RULE_NONE ? null : h.core.rule(0));
function agrees(h: TwinHarness): void {
  if (h.cmp.mismatches.length) assert.unreachable(`core and reference disagree:\n${h.cmp.report()}`);
}

for (const mode of ["host", "gateway"] as const) {
  const at = places(mode);
  for (const fam of [4, 6] as const) {
    test(`${mode} mode, IPv${fam}: every named type from outside gets what the type lists say`, () => {
      const h = twin(mode);
      const names = Object.keys(FROM_OUTSIDE[fam]).map(Number);
      // Every type nftables names in this family is in the table above.
      for (let t = 0; t < 256; t++) if (icmpTypeName(fam, t) !== undefined) assert.ok(names.includes(t), `type ${t} (${icmpTypeName(fam, t)}) has an expected outcome`);
      let clock = 0;
      for (const t of names) {
        const [reason, rule] = FROM_OUTSIDE[fam][t]!;
        const got = h.send(message(fam, CLIENT[fam], LISTENER[fam], t), at.inbound, clock++ * 100);
        assert.equal([got, ruleOf(h)], [reason, rule], `${icmpTypeName(fam, t)} (${t})`);
        assert.is(h.verdict(), reason === "rule_allow" ? ABI.VERDICT_ACCEPT : ABI.VERDICT_DROP, `${icmpTypeName(fam, t)} verdict`);
      }
      agrees(h);
    });

    test(`${mode} mode, IPv${fam}: codes are matched exactly, and a type alone covers all its codes`, () => {
      const h = twin(mode);
      const [unreach, allowedCode] = fam === 4 ? [3, 4] : [1, 4]; // frag-needed / port-unreachable are listed
      for (let code = 0; code < 16; code++) {
        const want: Outcome = code === allowedCode ? ["rule_allow", fam === 4 ? RULE.pmtu4 : RULE.pmtu6] : ["icmp_unrelated", null];
        assert.equal([h.send(message(fam, ROUTER[fam], LISTENER[fam], unreach, code), at.inbound, code), ruleOf(h)], want, `code ${code}`);
      }
      const exceeded = fam === 4 ? 11 : 3;
      for (const code of [0, 1, 255]) {
        assert.equal([h.send(message(fam, ROUTER[fam], LISTENER[fam], exceeded, code), at.inbound, 20), ruleOf(h)],
          ["rule_allow", fam === 4 ? RULE.pmtu4 : RULE.pmtu6], `time-exceeded code ${code}`);
      }
      agrees(h);
    });

    test(`${mode} mode, IPv${fam}: an echo request opens a pseudo-flow, its reply passes on state`, () => {
      const h = twin(mode);
      const [req, rep] = fam === 4 ? [8, 0] : [128, 129];
      assert.is(h.send(ping(fam, CLIENT[fam], LISTENER[fam], req, 77), at.inbound, 0), "rule_allow");
      assert.is(h.send(ping(fam, LISTENER[fam], CLIENT[fam], rep, 77), at.outbound, 1), "state_match");
      assert.is(ruleOf(h), fam === 4 ? RULE.ping4 : RULE.ping6, "the flow carries the rule that opened it");
      assert.equal(h.states(), ["icmp_replied"]);
      // The echo request to the listener from outside is the only one: to the inside address it is not allowed.
      assert.is(h.send(message(fam, CLIENT[fam], fam === 4 ? "198.51.100.1" : "2001:db8:2::1", req), at.inbound, 2), "default_deny");
      agrees(h);
    });

    test(`${mode} mode, IPv${fam}: every error type about a tracked flow passes as related, whatever the rules say of its type`, () => {
      const h = twin(mode);
      const q = udpPkt(fam, CLIENT[fam], 5353, LISTENER[fam], 53);
      assert.is(h.send(q, at.inbound, 0), "rule_allow");
      const reply = udpPkt(fam, LISTENER[fam], 53, CLIENT[fam], 5353);
      assert.is(h.send(reply, at.outbound, 0), "state_match");
      const errors = fam === 4 ? [3, 4, 5, 11, 12] : [1, 2, 3, 4];
      for (const t of errors) {
        // From a router on the way, about the proxy's reply, back to the proxy.
        assert.equal([h.send(message(fam, ROUTER[fam], LISTENER[fam], t, 1, reply), at.inbound, 1), ruleOf(h)], ["state_related", RULE.dns],
          `${icmpTypeName(fam, t)} about the tracked flow`);
        // The same error about a datagram no flow owns meets the rules.
        const stranger = udpPkt(fam, LISTENER[fam], 53, CLIENT[fam], 7777);
        const [reason] = FROM_OUTSIDE[fam][t]!;
        const got = h.send(message(fam, ROUTER[fam], LISTENER[fam], t, 1, stranger), at.inbound, 1);
        assert.is(got, t === (fam === 4 ? 3 : 1) ? "icmp_unrelated" : reason, `${icmpTypeName(fam, t)} about no flow`);
      }
      agrees(h);
    });
  }

  test(`${mode} mode: echo requests from the LAN to the proxy's internal address pass, from outside they do not`, () => {
    const h = twin(mode);
    assert.is(h.send(message(4, "198.51.100.20", "198.51.100.1", 8), at.lan, 0), "rule_allow");
    assert.is(ruleOf(h), RULE.lanPing);
    assert.is(h.send(message(4, "198.51.100.20", "198.51.100.1", 13), at.lan, 0), "default_deny", "a timestamp request is not listed for the LAN");
    assert.is(h.send(message(4, CLIENT[4], "198.51.100.1", 8), at.inbound, 0), "default_deny");
    agrees(h);
  });
}

test("IPv6 neighbour discovery with hop limit 255 passes before the rules, even a type a rule denies", () => {
  const h = twin("host");
  const { inbound } = places("host");
  assert.is(h.send(message(6, "fe80::1", "ff02::1", 134, 0, undefined, 255), inbound, 0), "icmp6_ndp");
  assert.is(h.send(message(6, "fe80::1", "ff02::1", 134, 0, undefined, 64), inbound, 0), "rule_deny");
  agrees(h);
});

test("without a rule naming its type, an unrelated error is dropped as icmp_unrelated even under default: allow", () => {
  const policy = `version: 1\ndefault: allow\nrules:\n  - { action: allow, interface: any, direction: in, proto: icmp }\n`;
  const h = new TwinHarness(compilePolicyText(policy, "allow.yaml").spec);
  const { inbound } = places("host");
  assert.is(h.send(message(4, ROUTER[4], LISTENER[4], 3, 4), inbound, 0), "icmp_unrelated", "a type-less ICMP rule does not match errors");
  assert.is(h.verdict(), ABI.VERDICT_DROP);
  assert.is(h.send(message(4, CLIENT[4], LISTENER[4], 8), inbound, 0), "rule_allow", "it matches queries");
  assert.is(h.send(message(4, CLIENT[4], LISTENER[4], 10), inbound, 0), "rule_allow", "and other informational types");
  agrees(h);
});

test("the table: a type list costs intervals of the icmp field; a type alone is [type<<8, type<<8|0xff]", () => {
  const c = compilePolicyText(POLICY, "icmp.yaml");
  const r = c.spec.rules;
  assert.equal(r[RULE.ping4]!.icmp, [[8 << 8, (8 << 8) | 0xff], [13 << 8, (13 << 8) | 0xff]]);
  assert.equal(r[RULE.pmtu4]!.icmp, [[(3 << 8) | 4, (3 << 8) | 4], [11 << 8, (11 << 8) | 0xff]]);
  assert.equal(r[RULE.pmtu6]!.icmp, [[(1 << 8) | 4, (1 << 8) | 4], [2 << 8, (3 << 8) | 0xff]]);
  assert.is(r[RULE.dns]!.icmp, null);
  assert.match(c.summary.rules[RULE.pmtu6]!.info, / icmp_type packet-too-big,time-exceeded,destination-unreachable\/port-unreachable$/);
  assert.match(c.summary.rules[RULE.refuse4]!.info, / icmp_type redirect,router-advertisement,source-quench$/);
  // The table reader sees the same: the icmp field's bitmap for 3/4 holds the
  // type-less rules, pmtu4 (frag-needed) and pmtu6 (its type 3, all codes).
  const view = new TableView(buildTable(c.spec).bytes);
  const key = { ctx: 0, family: 4 as const, src: 0n, dst: 0n, proto: 1, sport: 0, dport: 0, tcpFlags: 0 };
  const b = view.bitmaps({ ...key, icmp: (3 << 8) | 4 }).icmp_type;
  assert.equal(r.flatMap((_, i) => (view.hasRule(b, i) ? [i] : [])), [RULE.dns, RULE.pmtu4, RULE.pmtu6]);
});

test("describe (replay, demo) prints ICMP and ICMPv6 types and codes by their nftables names", () => {
  const d = (fam: 4 | 6, t: number, c = 0): string => describePacket(message(fam, CLIENT[fam], LISTENER[fam], t, c));
  assert.is(d(4, 8), "203.0.113.10 > 203.0.113.1 ICMP echo-request id 16904 seq 1");
  assert.is(d(4, 9), "203.0.113.10 > 203.0.113.1 ICMP router-advertisement");
  assert.is(d(4, 3, 13), "203.0.113.10 > 203.0.113.1 ICMP 3/13 destination-unreachable/admin-prohibited about UDP 203.0.113.1:33333 > 203.0.113.10:53");
  assert.is(d(4, 11, 7), "203.0.113.10 > 203.0.113.1 ICMP 11/7 time-exceeded about UDP 203.0.113.1:33333 > 203.0.113.10:53");
  assert.is(d(4, 200), "203.0.113.10 > 203.0.113.1 ICMP 200/0");
  assert.is(d(6, 134), "2001:db8:1::10 > 2001:db8:1::1 ICMPv6 nd-router-advert");
  assert.is(d(6, 130), "2001:db8:1::10 > 2001:db8:1::1 ICMPv6 mld-listener-query");
  assert.is(d(6, 1, 4), "2001:db8:1::10 > 2001:db8:1::1 ICMPv6 1/4 destination-unreachable/port-unreachable about UDP [2001:db8:1::1]:33333 > [2001:db8:1::10]:53");
  assert.is(d(6, 2), "2001:db8:1::10 > 2001:db8:1::1 ICMPv6 2/0 packet-too-big (mtu 1280) about UDP [2001:db8:1::1]:33333 > [2001:db8:1::10]:53");
});

test("the kernel contender says the same types as --icmp-type / --icmpv6-type and icmp type / icmpv6 type", () => {
  const pol = `version: 1
default: deny
rules:
  - { name: p, action: allow, interface: external, direction: in, proto: icmp, dst: 203.0.113.1, icmp_type: [echo-request, "3/4", 11] }
  - { name: q, action: deny, interface: external, direction: in, proto: icmpv6, icmp_type: [packet-too-big, 3, nd-router-advert] }
`;
  const k = kernelRules(compilePolicyText(pol, "k.yaml", { mode: "gateway" }).spec, { stateful: true, devs: { external: "ext0", internal: "int0" } });
  assert.equal(k.v4.slice(2), [
    "-i ext0 -d 203.0.113.1/32 -p 1 -m icmp --icmp-type 3/4 -j ACCEPT",
    "-i ext0 -d 203.0.113.1/32 -p 1 -m icmp --icmp-type 8 -j ACCEPT",
    "-i ext0 -d 203.0.113.1/32 -p 1 -m icmp --icmp-type 11 -j ACCEPT",
    "-j DROP",
  ]);
  assert.equal(k.v6.slice(2), [
    "-i ext0 -p 58 -m icmp6 --icmpv6-type 2 -j DROP", "-i ext0 -p 58 -m icmp6 --icmpv6-type 3 -j DROP",
    "-i ext0 -p 58 -m icmp6 --icmpv6-type 134 -j DROP", "-j DROP",
  ]);
  assert.equal(k.nft.slice(2), [
    `iifname "ext0" ip daddr 203.0.113.1/32 icmp type destination-unreachable icmp code 4 counter accept`,
    `iifname "ext0" ip daddr 203.0.113.1/32 icmp type echo-request counter accept`,
    `iifname "ext0" ip daddr 203.0.113.1/32 icmp type time-exceeded counter accept`,
    `iifname "ext0" icmpv6 type packet-too-big counter drop`, `iifname "ext0" icmpv6 type time-exceeded counter drop`,
    `iifname "ext0" icmpv6 type nd-router-advert counter drop`, "counter drop",
  ]);
  // Ranges that are not whole types become one entry per type/code.
  assert.equal(icmpEntries([[0x0300, 0x0301], [0x0b00, 0x0cff]]), [{ type: 3, code: 0 }, { type: 3, code: 1 }, { type: 11, code: null }, { type: 12, code: null }]);
});

test.run();
