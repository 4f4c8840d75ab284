// Scan resistance at the core: SYN, FIN, NULL, Xmas, ACK and UDP probes to
// every port 1-65535 of the listener under the default policy, IPv4 and
// IPv6. Only TCP SYNs to 80 and 443 pass; the rest learn nothing (each is
// dropped, with the reason that says why). Each kind of probe comes from its
// own source ports, as separate scans would.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Batch } from "../host/core/batch.js";
import { Core } from "../host/core/core.js";
import { reasonName } from "../host/core/reasons.js";
import { ipv4, ipv6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TCP_URG, tcp, udp } from "../host/packets/build.js";
import { compilePolicyFile } from "../host/policy/compile.js";
import { buildTable } from "../host/rules/build.js";

const POLICY = join(fileURLToPath(new URL("../../", import.meta.url)), "host", "policy", "default.yaml");
const IN_EXT = { hook: ABI.HOOK_INPUT, inRole: ABI.ROLE_EXTERNAL, outRole: ABI.ROLE_NONE };

const PROBES: Array<[string, number | "udp"]> = [
  ["SYN", TCP_SYN], ["FIN", TCP_FIN], ["NULL", 0], ["Xmas", TCP_FIN | TCP_PSH | TCP_URG], ["ACK", TCP_ACK], ["UDP", "udp"],
];

for (const fam of [4, 6] as const) {
  test(`IPv${fam}: six probe kinds to all 65,535 ports: only SYN to 80 and 443 pass`, () => {
    const core = new Core("release");
    core.loadTable(buildTable(compilePolicyFile(POLICY, { mode: "host" }).spec).bytes);
    const scanner = fam === 4 ? "192.0.2.66" : "2001:db8:66::66";
    const listener = fam === 4 ? "203.0.113.1" : "2001:db8:1::1";
    const batch = new Batch(core);
    const accepted: string[] = [];
    const byKind = new Map<string, Map<string, number>>();
    let sent = 0;
    for (const [ki, [kind, flags]] of PROBES.entries()) {
      const reasons = new Map<string, number>();
      byKind.set(kind, reasons);
      for (let port = 1; port <= 65535;) {
        batch.clear();
        const first = port;
        while (batch.count < 1024 && port <= 65535) {
          const l4 = flags === "udp"
            ? udp({ sport: 33000, dport: port, payload: new Uint8Array(8) })
            : tcp({ sport: 1024 + ki * 10000 + (port % 10000), dport: port, flags, seq: port });
          const o = { src: scanner, dst: listener, proto: flags === "udp" ? PROTO_UDP : PROTO_TCP, payload: l4 };
          batch.add(fam === 4 ? ipv4(o) : ipv6(o), IN_EXT);
          port++;
        }
        const n = batch.run(BigInt(sent));
        assert.is(n, batch.count);
        for (let k = 0; k < n; k++) {
          const r = reasonName(core.reason(k));
          reasons.set(r, (reasons.get(r) ?? 0) + 1);
          if (core.verdict(k) === ABI.VERDICT_ACCEPT) accepted.push(`${kind} ${first + k} ${r}`);
        }
        sent += n;
      }
    }
    assert.equal(accepted, ["SYN 80 rule_allow", "SYN 443 rule_allow"]);
    assert.is(sent, 6 * 65535);
    assert.equal(Object.fromEntries(byKind.get("SYN")!), { rule_allow: 2, default_deny: 65533 });
    assert.equal(Object.fromEntries(byKind.get("FIN")!), { tcp_bad_flags: 65535 });
    assert.equal(Object.fromEntries(byKind.get("NULL")!), { tcp_bad_flags: 65535 });
    assert.equal(Object.fromEntries(byKind.get("Xmas")!), { tcp_bad_flags: 65535 });
    assert.equal(Object.fromEntries(byKind.get("ACK")!), { no_flow: 65535 });
    assert.equal(Object.fromEntries(byKind.get("UDP")!), { default_deny: 65535 });
  });
}

test.run();
