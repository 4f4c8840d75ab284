// Per-source limits through the real kernel (issue 19): the reference
// topology in host mode, `portcullis run` in the appliance namespace with the
// default policy and a limit on its 443 rule (test/helpers/limited-policy.ts,
// the example of host/policy/README.md). One inet client (203.0.113.50)
// opens connections in a loop and is first limited, then blocked, while a
// second inet client (203.0.113.60, an address added for the test) keeps
// being served; `portcullis block del` releases the first.
//
// Namespaces carry the prefix plim<pid>- (leftovers of dead runs are
// cleared first); every process is ended by its pid in the after hook.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readBoardFile } from "../host/kernel/board.js";
import { apply, remove } from "../host/kernel/rules.js";
import { INET, LISTENER } from "../host/topology/plan.js";
import { clearStaleRuns, type Topology, up } from "../host/topology/topology.js";
import { CLI, curlAsync, type Daemon, endProcess, reason, sleep, startDaemon, stats, writeBoard } from "./helpers/appliance.js";
import { limitedDefaultPolicy } from "./helpers/limited-policy.js";

const SECOND = "203.0.113.60";
const s = suite("per-source limits through the kernel: one client limited then blocked, another served, block del releases");
let t: Topology | null = null;
let daemon: Daemon | null = null;
let setupError: unknown = null;
const T = (): Topology => { if (setupError !== null) throw setupError; if (!t) throw new Error("no topology"); return t; };

const cli = (...args: string[]): Promise<{ code: number; out: string; err: string }> => new Promise((res) => {
  execFile(process.execPath, [CLI, ...args], { encoding: "utf8" }, (e, out, err) => res({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }));
});

s.before(async () => {
  try {
    await clearStaleRuns("plim");
    t = await up({ mode: "host", prefix: `plim${process.pid}-` });
    const r = t.exec("inet", ["ip", "addr", "add", `${SECOND}/24`, "dev", "eth0"]);
    if (r.status !== 0) throw new Error(`ip addr add ${SECOND}: ${r.stderr}`);
    const board = writeBoard(t, "board.yaml", { intBypass: true });
    const policy = join(t.dir, "limited-policy.yaml");
    writeFileSync(policy, limitedDefaultPolicy(["rate: 2/s", "burst: 3", "flows: 50", "overload: abusers for 10m", "flush: true"]));
    apply(readBoardFile(board), { backend: "auto", netns: t.ns("appliance") });
    daemon = await startDaemon(t, { policy, board });
  } catch (e) {
    setupError = e;
  }
});

s.after(async () => {
  if (daemon !== null) await endProcess(daemon.child);
  daemon = null;
  if (t !== null) {
    try { remove({ netns: t.ns("appliance") }); } catch { /* the namespace goes anyway */ }
    await t.down();
  }
  t = null;
});

s("a client opening connections in a loop is limited, then blocked; another is served; block del releases it", async () => {
  T();
  const sock = daemon!.sock;
  const get = async (from?: string): Promise<boolean> =>
    (await curlAsync(T(), "inet", LISTENER.v4, 443, 1000, from ? ["--interface", from] : [])).ok;
  // The loop: ten connections one after another from 203.0.113.50; between
  // them the second client connects too.
  const first: boolean[] = [], second: boolean[] = [];
  for (let i = 0; i < 10; i++) {
    first.push(await get(INET.v4));
    if (i % 3 === 0) second.push(await get(SECOND));
  }
  // The burst of three passes, then the bucket is empty: the fourth SYN is
  // over the rate, the source goes on the list, and nothing passes after.
  assert.equal(first.slice(0, 3), [true, true, true], JSON.stringify(first));
  assert.equal(first.slice(4), [false, false, false, false, false, false], JSON.stringify(first));
  assert.equal(second, [true, true, true, true], "the other client is served throughout");
  const st = await stats(sock);
  assert.ok(reason(st, "rate_limited") >= 1, JSON.stringify(st.reasons));
  assert.ok(reason(st, "source_blocked") >= 5, JSON.stringify(st.reasons));
  let c = await cli("block", "list", "--control", sock);
  assert.is(c.code, 0, c.err);
  assert.match(c.out, /^abusers\s+203\.0\.113\.50\/32\s+\d+ s left\n$/);
  // Released: after a second and a half its bucket holds a token again and it is served.
  c = await cli("block", "del", INET.v4, "--control", sock);
  assert.is(c.code, 0, c.err);
  assert.is(c.out, `released ${INET.v4} from abusers\n`);
  await sleep(1500);
  assert.is(await get(INET.v4), true, "released");
  assert.is(await get(SECOND), true);
});

s.run();
