// The kernel queue rules as text (host/kernel/rules.ts), exact for both modes
// and both backends; the queue numbering; the board configuration parser's
// errors with their file:line:col; `portcullis rules` as a user runs it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError } from "../host/config/errors.js";
import { type BoardConfig, parseBoardText, readBoardFile } from "../host/kernel/board.js";
import { iptablesRestore, iptablesScript, nftRuleset, queueFlags, queuePlan } from "../host/kernel/rules.js";

const TMP = mkdtempSync(join(tmpdir(), "portcullis-rules-"));
const DEFAULT: BoardConfig = { mode: "host", external: { dev: "ext0" }, internal: { dev: "int0" } };
const GATEWAY: BoardConfig = {
  mode: "gateway", external: { dev: "eth0" }, internal: { dev: "eth1", failOpen: true, bypass: true }, queues: { first: 4, count: 2 },
};
const HEAD_DEFAULT = [
  "# portcullis queue rules, mode host: input, output and forwarded packets of the two NICs go to the daemon.",
  "#   external ext0: queue 0, no bypass (no daemon: packets dropped), fail closed (queue full: packets dropped)",
  "#   internal int0: queue 1, no bypass (no daemon: packets dropped), fail closed (queue full: packets dropped)",
];
const HEAD_GATEWAY = [
  "# portcullis queue rules, mode gateway: packets forwarded between the two NICs, and the appliance's own packets on them, go to the daemon.",
  "#   external eth0: queue 4-5, no bypass (no daemon: packets dropped), fail closed (queue full: packets dropped)",
  "#   internal eth1: queue 6-7, bypass (no daemon: packets pass), fail open (queue full: packets pass)",
];
const lines = (...l: string[]): string => `${l.join("\n")}\n`;

test("the board example is the reference topology's appliance, fail closed on both sides", () => {
  assert.equal(readBoardFile("board/portcullis.yaml"), {
    mode: "host", external: { dev: "ext0", failOpen: false, bypass: false },
    internal: { dev: "int0", failOpen: false, bypass: false }, queues: { first: 0, count: 1 },
  });
});

test("queue numbering: external first..first+count-1, internal the next count", () => {
  assert.equal(queuePlan(DEFAULT).map((s) => [s.side, s.dev, s.first, s.last, s.failOpen, s.bypass]),
    [["external", "ext0", 0, 0, false, false], ["internal", "int0", 1, 1, false, false]]);
  assert.equal(queueFlags(GATEWAY).map((q) => `${q.queue} ${q.side} ${q.dev} ${q.failOpen} ${q.bypass}`), [
    "4 external eth0 false false", "5 external eth0 false false", "6 internal eth1 true true", "7 internal eth1 true true",
  ]);
});

test("nftables, host mode, defaults: input, forward and output of both NICs, no bypass", () => {
  assert.is(nftRuleset(DEFAULT), lines(
    "#!/usr/sbin/nft -f", ...HEAD_DEFAULT,
    "table inet portcullis",
    "delete table inet portcullis",
    "table inet portcullis {",
    "\tchain input {",
    "\t\ttype filter hook input priority filter; policy accept;",
    "\t\tiifname \"ext0\" queue num 0",
    "\t\tiifname \"int0\" queue num 1",
    "\t}",
    "\tchain forward {",
    "\t\ttype filter hook forward priority filter; policy accept;",
    "\t\tiifname \"ext0\" queue num 0",
    "\t\tiifname \"int0\" queue num 1",
    "\t\toifname \"ext0\" queue num 0",
    "\t\toifname \"int0\" queue num 1",
    "\t}",
    "\tchain output {",
    "\t\ttype filter hook output priority filter; policy accept;",
    "\t\toifname \"ext0\" queue num 0",
    "\t\toifname \"int0\" queue num 1",
    "\t}",
    "}",
  ));
});

test("nftables, gateway mode: forwarded and the appliance's own packets, queue ranges, bypass on the internal side", () => {
  assert.is(nftRuleset(GATEWAY), lines(
    "#!/usr/sbin/nft -f", ...HEAD_GATEWAY,
    "table inet portcullis",
    "delete table inet portcullis",
    "table inet portcullis {",
    "\tchain input {",
    "\t\ttype filter hook input priority filter; policy accept;",
    "\t\tiifname \"eth0\" queue num 4-5",
    "\t\tiifname \"eth1\" queue num 6-7 bypass",
    "\t}",
    "\tchain forward {",
    "\t\ttype filter hook forward priority filter; policy accept;",
    "\t\tiifname \"eth0\" queue num 4-5",
    "\t\tiifname \"eth1\" queue num 6-7 bypass",
    "\t\toifname \"eth0\" queue num 4-5",
    "\t\toifname \"eth1\" queue num 6-7 bypass",
    "\t}",
    "\tchain output {",
    "\t\ttype filter hook output priority filter; policy accept;",
    "\t\toifname \"eth0\" queue num 4-5",
    "\t\toifname \"eth1\" queue num 6-7 bypass",
    "\t}",
    "}",
  ));
});

test("iptables-legacy restore input, host mode: own chains, jumps inserted first only where missing", () => {
  const chains = [
    "*filter",
    ":PORTCULLIS-IN - [0:0]",
    ":PORTCULLIS-FWD - [0:0]",
    ":PORTCULLIS-OUT - [0:0]",
    "-A PORTCULLIS-IN -i ext0 -j NFQUEUE --queue-num 0",
    "-A PORTCULLIS-IN -i int0 -j NFQUEUE --queue-num 1",
    "-A PORTCULLIS-FWD -i ext0 -j NFQUEUE --queue-num 0",
    "-A PORTCULLIS-FWD -i int0 -j NFQUEUE --queue-num 1",
    "-A PORTCULLIS-FWD -o ext0 -j NFQUEUE --queue-num 0",
    "-A PORTCULLIS-FWD -o int0 -j NFQUEUE --queue-num 1",
    "-A PORTCULLIS-OUT -o ext0 -j NFQUEUE --queue-num 0",
    "-A PORTCULLIS-OUT -o int0 -j NFQUEUE --queue-num 1",
  ];
  assert.is(iptablesRestore(DEFAULT), lines(...chains,
    "-I INPUT 1 -j PORTCULLIS-IN", "-I FORWARD 1 -j PORTCULLIS-FWD", "-I OUTPUT 1 -j PORTCULLIS-OUT", "COMMIT"));
  assert.is(iptablesRestore(DEFAULT, ["output"]), lines(...chains, "-I OUTPUT 1 -j PORTCULLIS-OUT", "COMMIT"));
});

test("iptables-legacy script, gateway mode: --queue-balance, --queue-bypass, both families", () => {
  assert.is(iptablesScript(GATEWAY), lines(
    "#!/bin/sh", ...HEAD_GATEWAY,
    "# For kernels without nft_queue: iptables-legacy and ip6tables-legacy.",
    "set -eu",
    "for ipt in iptables-legacy ip6tables-legacy; do",
    "\t\"$ipt-restore\" -w --noflush <<'EOF'",
    "*filter",
    ":PORTCULLIS-IN - [0:0]",
    ":PORTCULLIS-FWD - [0:0]",
    ":PORTCULLIS-OUT - [0:0]",
    "-A PORTCULLIS-IN -i eth0 -j NFQUEUE --queue-balance 4:5",
    "-A PORTCULLIS-IN -i eth1 -j NFQUEUE --queue-balance 6:7 --queue-bypass",
    "-A PORTCULLIS-FWD -i eth0 -j NFQUEUE --queue-balance 4:5",
    "-A PORTCULLIS-FWD -i eth1 -j NFQUEUE --queue-balance 6:7 --queue-bypass",
    "-A PORTCULLIS-FWD -o eth0 -j NFQUEUE --queue-balance 4:5",
    "-A PORTCULLIS-FWD -o eth1 -j NFQUEUE --queue-balance 6:7 --queue-bypass",
    "-A PORTCULLIS-OUT -o eth0 -j NFQUEUE --queue-balance 4:5",
    "-A PORTCULLIS-OUT -o eth1 -j NFQUEUE --queue-balance 6:7 --queue-bypass",
    "COMMIT",
    "EOF",
    "\t\"$ipt\" -w -C INPUT -j PORTCULLIS-IN 2>/dev/null || \"$ipt\" -w -I INPUT 1 -j PORTCULLIS-IN",
    "\t\"$ipt\" -w -C FORWARD -j PORTCULLIS-FWD 2>/dev/null || \"$ipt\" -w -I FORWARD 1 -j PORTCULLIS-FWD",
    "\t\"$ipt\" -w -C OUTPUT -j PORTCULLIS-OUT 2>/dev/null || \"$ipt\" -w -I OUTPUT 1 -j PORTCULLIS-OUT",
    "done",
  ));
});

// An HA pair (the board's ha:, host/kernel/rules-ha.ts): VRRP in and out on
// the sides it runs on, per family, and conntrackd's sync on a guarded NIC;
// before the queue rules, nothing else.
const HA_BOARD = parseBoardText(`version: 1
mode: gateway
external: { dev: ext0 }
internal: { dev: int0 }
ha:
  vrid: 51
  priority: 150
  external: { virtual: [203.0.113.10/24, "2001:db8:1::10/64"], peer: 203.0.113.3 }
  internal: { virtual: [198.51.100.1/24] }
  sync: { side: internal, address: 198.51.100.2, peer: 198.51.100.3, port: 3781 }
`, "ha.yaml");
const HA_HEAD = [
  "# portcullis queue rules, mode gateway: packets forwarded between the two NICs, and the appliance's own packets on them, go to the daemon.",
  "#   ha: VRRP (IP protocol 112, to 224.0.0.18 / ff02::12) passes on external ext0, internal int0",
  "#   ha: MLD for ff02::12 (queries in, reports out, hop limit 1) passes on ext0",
  "#   ha: conntrackd's sync (UDP 3781 with 198.51.100.3) passes on int0",
  "#   external ext0: queue 0, no bypass (no daemon: packets dropped), fail closed (queue full: packets dropped)",
  "#   internal int0: queue 1, no bypass (no daemon: packets dropped), fail closed (queue full: packets dropped)",
];

test("nftables with ha: VRRP to 224.0.0.18 (from the peer) and ff02::12 (from link-local), MLD of the IPv6 side, the sync with its peer, before the queue", () => {
  assert.is(nftRuleset(HA_BOARD), lines(
    "#!/usr/sbin/nft -f", ...HA_HEAD,
    "table inet portcullis",
    "delete table inet portcullis",
    "table inet portcullis {",
    "\tchain input {",
    "\t\ttype filter hook input priority filter; policy accept;",
    "\t\tiifname \"ext0\" ip saddr 203.0.113.3 ip daddr 224.0.0.18 meta l4proto 112 accept",
    "\t\tiifname \"ext0\" ip6 saddr fe80::/10 ip6 daddr ff02::12 meta l4proto 112 accept",
    "\t\tiifname \"ext0\" ip6 saddr fe80::/10 ip6 daddr ff02::/16 ip6 hoplimit 1 icmpv6 type mld-listener-query accept",
    "\t\tiifname \"int0\" ip daddr 224.0.0.18 meta l4proto 112 accept",
    "\t\tiifname \"int0\" ip saddr 198.51.100.3 udp dport 3781 accept",
    "\t\tiifname \"ext0\" queue num 0",
    "\t\tiifname \"int0\" queue num 1",
    "\t}",
    "\tchain forward {",
    "\t\ttype filter hook forward priority filter; policy accept;",
    "\t\tiifname \"ext0\" queue num 0",
    "\t\tiifname \"int0\" queue num 1",
    "\t\toifname \"ext0\" queue num 0",
    "\t\toifname \"int0\" queue num 1",
    "\t}",
    "\tchain output {",
    "\t\ttype filter hook output priority filter; policy accept;",
    "\t\toifname \"ext0\" ip daddr 224.0.0.18 meta l4proto 112 accept",
    "\t\toifname \"ext0\" ip6 daddr ff02::12 meta l4proto 112 accept",
    "\t\toifname \"ext0\" ip6 daddr ff02::/16 ip6 hoplimit 1 icmpv6 type mld-listener-report accept",
    "\t\toifname \"ext0\" ip6 daddr ff02::/16 ip6 hoplimit 1 icmpv6 type mld-listener-done accept",
    "\t\toifname \"ext0\" ip6 daddr ff02::/16 ip6 hoplimit 1 icmpv6 type mld2-listener-report accept",
    "\t\toifname \"int0\" ip daddr 224.0.0.18 meta l4proto 112 accept",
    "\t\toifname \"int0\" ip daddr 198.51.100.3 udp dport 3781 accept",
    "\t\toifname \"ext0\" queue num 0",
    "\t\toifname \"int0\" queue num 1",
    "\t}",
    "}",
  ));
});

test("iptables-legacy with ha: each family its own rules, the script a block per family", () => {
  const queues = [
    "-A PORTCULLIS-IN -i ext0 -j NFQUEUE --queue-num 0", "-A PORTCULLIS-IN -i int0 -j NFQUEUE --queue-num 1",
    "-A PORTCULLIS-FWD -i ext0 -j NFQUEUE --queue-num 0", "-A PORTCULLIS-FWD -i int0 -j NFQUEUE --queue-num 1",
    "-A PORTCULLIS-FWD -o ext0 -j NFQUEUE --queue-num 0", "-A PORTCULLIS-FWD -o int0 -j NFQUEUE --queue-num 1",
  ];
  const out = ["-A PORTCULLIS-OUT -o ext0 -j NFQUEUE --queue-num 0", "-A PORTCULLIS-OUT -o int0 -j NFQUEUE --queue-num 1"];
  const chains = ["*filter", ":PORTCULLIS-IN - [0:0]", ":PORTCULLIS-FWD - [0:0]", ":PORTCULLIS-OUT - [0:0]"];
  const v4 = [...chains,
    "-A PORTCULLIS-IN -i ext0 -s 203.0.113.3/32 -d 224.0.0.18/32 -p 112 -j ACCEPT",
    "-A PORTCULLIS-IN -i int0 -d 224.0.0.18/32 -p 112 -j ACCEPT",
    "-A PORTCULLIS-IN -i int0 -s 198.51.100.3/32 -p udp -m udp --dport 3781 -j ACCEPT",
    ...queues,
    "-A PORTCULLIS-OUT -o ext0 -d 224.0.0.18/32 -p 112 -j ACCEPT",
    "-A PORTCULLIS-OUT -o int0 -d 224.0.0.18/32 -p 112 -j ACCEPT",
    "-A PORTCULLIS-OUT -o int0 -d 198.51.100.3/32 -p udp -m udp --dport 3781 -j ACCEPT",
    ...out, "COMMIT"];
  const v6 = [...chains,
    "-A PORTCULLIS-IN -i ext0 -s fe80::/10 -d ff02::12/128 -p 112 -j ACCEPT",
    "-A PORTCULLIS-IN -i ext0 -s fe80::/10 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type 130 -m hl --hl-eq 1 -j ACCEPT",
    ...queues,
    "-A PORTCULLIS-OUT -o ext0 -d ff02::12/128 -p 112 -j ACCEPT",
    "-A PORTCULLIS-OUT -o ext0 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type 131 -m hl --hl-eq 1 -j ACCEPT",
    "-A PORTCULLIS-OUT -o ext0 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type 132 -m hl --hl-eq 1 -j ACCEPT",
    "-A PORTCULLIS-OUT -o ext0 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type 143 -m hl --hl-eq 1 -j ACCEPT",
    ...out, "COMMIT"];
  assert.is(iptablesRestore(HA_BOARD, [], 0, 4), lines(...v4));
  assert.is(iptablesRestore(HA_BOARD, [], 0, 6), lines(...v6));
  const jumps = (ipt: string): string[] => [["INPUT", "PORTCULLIS-IN"], ["FORWARD", "PORTCULLIS-FWD"], ["OUTPUT", "PORTCULLIS-OUT"]]
    .map(([b, c]) => `${ipt} -w -C ${b} -j ${c} 2>/dev/null || ${ipt} -w -I ${b} 1 -j ${c}`);
  assert.is(iptablesScript(HA_BOARD), lines(
    "#!/bin/sh", ...HA_HEAD, "# For kernels without nft_queue: iptables-legacy and ip6tables-legacy.", "set -eu",
    "iptables-legacy-restore -w --noflush <<'EOF'", ...v4, "EOF", ...jumps("iptables-legacy"),
    "ip6tables-legacy-restore -w --noflush <<'EOF'", ...v6, "EOF", ...jumps("ip6tables-legacy"),
  ));
});

test("ha with unicast and a sync link of its own: VRRP only with the peer (IPv6: from link-local to it), no MLD (no multicast), no sync rule (that link is not queued)", () => {
  const b = parseBoardText("version: 1\nmode: host\nexternal: { dev: ext0 }\ninternal: { dev: int0 }\nha:\n  vrid: 9\n  priority: 90\n  unicast: true\n" +
    "  internal: { virtual: [198.51.100.1/24, \"2001:db8:2::1/64\"], peer: [198.51.100.3, \"2001:db8:2::3\"] }\n" +
    "  sync: { dev: sync0, address: 192.0.2.1, peer: 192.0.2.2 }\n", "u.yaml");
  const ha = nftRuleset(b).split("\n").filter((l) => l.includes(" 112 ") || l.includes("udp") || l.includes("ha:") || l.includes("icmpv6"));
  assert.equal(ha, [
    "#   ha: VRRP (IP protocol 112, unicast with the peer) passes on internal int0",
    "\t\tiifname \"int0\" ip saddr 198.51.100.3 meta l4proto 112 accept",
    "\t\tiifname \"int0\" ip6 saddr fe80::/10 meta l4proto 112 accept",
    "\t\toifname \"int0\" ip daddr 198.51.100.3 meta l4proto 112 accept",
    "\t\toifname \"int0\" ip6 daddr 2001:db8:2::3 meta l4proto 112 accept",
  ]);
});

test("a configuration built in code is checked too", () => {
  assert.throws(() => nftRuleset({ ...DEFAULT, internal: { dev: "ext0" } }), /same device "ext0"/);
  assert.throws(() => nftRuleset({ ...DEFAULT, external: { dev: "eth0; reboot" } }), /external\.dev must be a network device name/);
  assert.throws(() => queuePlan({ ...DEFAULT, queues: { first: 65535, count: 1 } }), /need queues up to 65536/);
});

// Each case: the file, then every error as "code line:col".
const BAD: Array<[string, string, string[]]> = [
  ["unknown keys, at the key", "version: 1\nmode: host\nexternal:\n  dev: ext0\n  failopen: true\ninternal: { dev: int0 }\nqueue: 3\n",
    ["unknown_key 5:3", "unknown_key 7:1"]],
  ["a bad mode and a bad version", "version: 2\nmode: router\nexternal: { dev: a }\ninternal: { dev: b }\n",
    ["bad_version 1:10", "bad_mode 2:7"]],
  ["missing keys", "version: 1\nexternal:\n  bypass: true\n", ["missing_key 1:1", "missing_key 1:1", "missing_key 3:3"]],
  ["not a boolean; a device name that is not one", "version: 1\nmode: gateway\nexternal: { dev: \"eth 0\" }\ninternal: { dev: int0, bypass: yes }\n",
    ["bad_dev 3:18", "bad_type 4:32"]],
  ["the same device twice", "version: 1\nmode: host\nexternal: { dev: eth0 }\ninternal: { dev: eth0 }\n", ["same_dev 4:1"]],
  ["queues out of range", "version: 1\nmode: host\nexternal: { dev: a }\ninternal: { dev: b }\nqueues:\n  first: 65535\n  count: 0\n",
    ["bad_queues 5:1", "bad_number 7:10"]],
  ["a copy range the kernel does not take", "version: 1\nmode: host\nexternal: { dev: a }\ninternal: { dev: b }\ncopy_range: 40\n", ["bad_number 5:13"]],
  ["a duplicate key", "version: 1\nmode: host\nmode: gateway\n", ["duplicate_key 3:1"]],
  ["broken YAML", "version: 1\nmode: [host\n", ["yaml_syntax 3:1"]],
  ["an empty file", "", ["empty_board 1:1"]],
];

for (const [what, text, want] of BAD) {
  test(`board configuration errors: ${what}`, () => {
    try {
      parseBoardText(text, "board.yaml");
      assert.unreachable("should have failed");
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      assert.equal(e.all.map((x) => `${x.code} ${x.line}:${x.col}`), want, e.all.map((x) => x.message).join("\n"));
      assert.ok(e.message.startsWith(`board.yaml:${e.line}:${e.col}: `), e.message);
    }
  });
}

test("an unknown key is named, with the keys that are allowed", () => {
  try {
    parseBoardText("version: 1\nmode: host\nexternal: { dev: a, failopen: true }\ninternal: { dev: b }\n", "b.yaml");
    assert.unreachable("should have failed");
  } catch (e) {
    assert.is((e as Error).message, 'b.yaml:3:21: unknown key "failopen" in external (did you mean "fail_open"?); allowed: dev, fail_open, bypass');
  }
});

const cli = (...args: string[]) => spawnSync(process.execPath, ["bin/portcullis.js", "rules", ...args], { encoding: "utf8" });

test("portcullis rules --print: nft, iptables, or both", () => {
  const nft = cli("--config", "board/portcullis.yaml", "--backend", "nft");
  assert.is(nft.status, 0, nft.stderr);
  assert.is(nft.stdout, nftRuleset(readBoardFile("board/portcullis.yaml")));
  const ipt = cli("--config", "board/portcullis.yaml", "--backend", "iptables", "--print");
  assert.is(ipt.stdout, iptablesScript(readBoardFile("board/portcullis.yaml")));
  const both = cli("--config", "board/portcullis.yaml");
  assert.is(both.stdout, `${nft.stdout}\n${ipt.stdout}`);
});

test("portcullis rules: a broken board file exits 1 with every error as file:line:col", () => {
  const path = join(TMP, "bad.yaml");
  writeFileSync(path, "version: 1\nmode: hots\nexternal: { dev: a }\ninternal: { dev: b, fail_open: 1 }\n");
  const r = cli("--config", path);
  assert.is(r.status, 1);
  assert.is(r.stdout, "");
  assert.is(r.stderr, `${path}:2:7: mode must be host or gateway, not "hots"\n` +
    `${path}:4:32: internal.fail_open must be true or false\nportcullis: 2 errors in ${path}\n`);
  assert.is(cli("--config", path, "--apply", "--remove").status, 1, "--apply and --remove conflict");
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));

test.run();
