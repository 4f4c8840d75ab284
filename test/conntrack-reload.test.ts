// The state table outlives rule tables: a commit keeps every flow, and the
// re-check ends exactly the flows the new table no longer allows.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { buildTable } from "../host/rules/build.js";
import { type TableSpec } from "../host/rules/model.js";
import { A, Harness, P, PROXY_SPEC, Tcp, udpPkt, CLIENT4, PROXY4, IN_EXT } from "./helpers/conn.js";

// PROXY_SPEC without its "dns" rule (rule 1): only web and ping remain.
const NO_DNS: TableSpec = { ...PROXY_SPEC, rules: PROXY_SPEC.rules.filter((r) => r.info !== "dns") };

test("a new table keeps every flow: established connections go on passing", () => {
  const h = new Harness();
  const t = new Tcp(h);
  t.handshake(0);
  h.send(udpPkt(4, CLIENT4, 5000, PROXY4, 53), IN_EXT, 0);
  h.core.loadTable(buildTable(NO_DNS).bytes);
  assert.is(t.c(A | P, 1, 100), "state_match");
  assert.is(h.send(udpPkt(4, CLIENT4, 5000, PROXY4, 53), IN_EXT, 1), "state_match", "not re-checked: still tracked");
  assert.is(h.send(udpPkt(4, CLIENT4, 5001, PROXY4, 53), IN_EXT, 1), "default_deny", "new flows meet the new table");
});

test("re-check ends exactly the flows whose rule is gone, and counts them", () => {
  const h = new Harness();
  const web = [new Tcp(h, 4, 41000), new Tcp(h, 4, 41001, 80), new Tcp(h, 6, 41002)];
  web.forEach((t) => t.handshake(0));
  for (let i = 0; i < 5; i++) h.send(udpPkt(4, CLIENT4, 6000 + i, PROXY4, 53), IN_EXT, 0);
  assert.is(h.core.counters().flows.live, 8n);
  h.core.loadTable(buildTable(NO_DNS).bytes);
  assert.is(h.core.recheckFlows(1_000_000_000n), 5);
  const f = h.core.counters().flows;
  assert.is(f.live, 3n);
  assert.is(f.ended, 5n);
  assert.equal(h.states(), ["established", "established", "established"]);
  for (const t of web) assert.is(t.c(A | P, 2, 10), "state_match");
  assert.is(h.send(udpPkt(4, CLIENT4, 6000, PROXY4, 53), IN_EXT, 2), "default_deny");
  // The web flows now point at the new table's rule numbers.
  assert.equal(h.core.flows().map((x) => x.rule), [0, 0, 0]);
});

test.run();
