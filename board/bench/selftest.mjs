// The installed appliance's self-test (board/bench/selftest.sh runs it; see
// there for the options). Each check passes or fails with a detail line; the
// report goes to OUT/selftest-<host>-<date>.json; exit status 1 if any
// check failed, 2 on bad usage.
//
//   installed        the installed tree matches its .MANIFEST.sha256 (a bundle's), or
//                    dpkg's md5sums of the package (a Debian package's tree)
//   board-config     the board config parses (mode, devices, queues)
//   kernel-rules     the kernel's queue rules are the ones the board config
//                    generates (nftables table, or the iptables-legacy and
//                    ip6tables-legacy chains and their jumps), no more, no less
//   daemon           the daemon answers on its control socket
//   queues-bound     every queue of the board config is bound: reported by
//                    the daemon and listed by the kernel with a peer
//   counters-moving  the daemon decided traffic while we watched: packets a
//                    rule or a tracked flow decided, not background noise
//   policy-enforced  the reference topology in throwaway namespaces, with its
//                    own daemon from this tree and the shipped default policy:
//                    every probe allowed or filtered as the policy says
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const USAGE = "usage: selftest.sh [--out DIR] [--app DIR] [--config BOARD.yaml] [--control SOCK] [--netns NS] [--wait SECONDS] [--prefix P] [--checks NAME,...]";
const o = { out: "/var/tmp/portcullis-bench", app: "/opt/portcullis/current", config: "/etc/portcullis/board.yaml",
  control: "/run/portcullis/control.sock", netns: "", wait: 10, prefix: "pcst-", checks: "" };
// The checks in order, each with the checks whose findings it uses.
const CHECKS = { "installed": [], "board-config": [], "kernel-rules": ["board-config"], "daemon": [], "queues-bound": ["board-config", "daemon"],
  "counters-moving": ["board-config", "daemon"], "policy-enforced": [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = argv[i].replace(/^--/, "");
  const v = argv[i + 1];
  if (!argv[i].startsWith("--") || !(k in o) || v === undefined) {
    process.stderr.write(`selftest: ${!(k in o) || !argv[i].startsWith("--") ? `unknown argument ${argv[i]}` : `${argv[i]} needs a value`}\n${USAGE}\n`);
    process.exit(2);
  }
  o[k] = k === "wait" ? Number(v) : v;
  i++;
}
if (!Number.isFinite(o.wait) || o.wait <= 0) { process.stderr.write(`selftest: --wait must be a number of seconds\n`); process.exit(2); }
if (!/^[A-Za-z0-9_.-]{1,10}$/.test(o.prefix)) { process.stderr.write(`selftest: --prefix: 1 to 10 of A-Z a-z 0-9 _ . -\n`); process.exit(2); }
const selected = new Set(o.checks ? o.checks.split(",") : Object.keys(CHECKS));
for (const c of selected) {
  if (!(c in CHECKS)) { process.stderr.write(`selftest: --checks: no check ${c}; the checks are ${Object.keys(CHECKS).join(", ")}\n`); process.exit(2); }
  const need = CHECKS[c].filter((d) => !selected.has(d));
  if (need.length) { process.stderr.write(`selftest: --checks: ${c} needs ${need.join(", ")}\n`); process.exit(2); }
}
const app = resolve(o.app);
const cli = join(app, "dist", "host", "cli.js");
if (!existsSync(cli)) { process.stderr.write(`selftest: no ${cli}: --app is not an installed Portcullis tree\n`); process.exit(2); }
const mod = (p) => import(pathToFileURL(join(app, "dist", "host", p)).href);
const { readBoardFile } = await mod("kernel/board.js");
const { queueFlags, nftRuleset, iptablesRestore, iptablesScript, NFT_TABLE } = await mod("kernel/rules.js");
const { request } = await mod("daemon/control.js");
const { parseKernelQueues } = await mod("daemon/kernel-queue.js");

const inNs = (args) => (o.netns ? ["ip", "netns", "exec", o.netns, ...args] : args);
function sh(args, opts = {}) {
  const r = spawnSync(args[0], args.slice(1), { encoding: "utf8", timeout: opts.timeout ?? 30_000, maxBuffer: 16 << 20 });
  if (r.error) return { status: 127, stdout: "", stderr: r.error.message };
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}
const have = (tool) => sh(["sh", "-c", `command -v ${tool}`]).status === 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const checks = [];
async function check(name, fn) {
  if (!selected.has(name)) return;
  let ok = false, detail;
  try {
    detail = await fn();
    ok = true;
  } catch (e) {
    detail = e instanceof Error ? e.message : String(e);
  }
  checks.push({ name, ok, detail });
  process.stdout.write(`${ok ? "ok  " : "FAIL"} ${name}: ${detail}\n`);
}

const version = JSON.parse(readFileSync(join(app, "package.json"), "utf8")).version;
let config = null;

await check("installed", () => {
  const manifest = join(app, ".MANIFEST.sha256");
  // The Debian package's tree (board/deb.sh): dpkg's md5sums of its files.
  const md5sums = "/var/lib/dpkg/info/portcullis.md5sums";
  if (!existsSync(manifest) && app.startsWith("/usr/lib/portcullis/") && existsSync(md5sums)) {
    let n = 0;
    const bad = [];
    for (const line of readFileSync(md5sums, "utf8").split("\n")) {
      const m = /^([0-9a-f]{32}) {2}(.+)$/.exec(line);
      if (!m) continue;
      n++;
      const f = `/${m[2]}`;
      if (!existsSync(f) || createHash("md5").update(readFileSync(f)).digest("hex") !== m[1]) bad.push(f);
    }
    if (n === 0) throw new Error(`${md5sums} lists no files`);
    if (bad.length) throw new Error(`${bad.length} of ${n} files differ from ${md5sums}: ${bad.slice(0, 5).join(", ")}${bad.length > 5 ? ", ..." : ""}`);
    return `portcullis ${version} in ${app}: ${n} files match the package's md5sums`;
  }
  if (!existsSync(manifest)) throw new Error(`no ${manifest}: not a tree that install.sh installed`);
  let n = 0;
  const bad = [];
  for (const line of readFileSync(manifest, "utf8").split("\n")) {
    const m = /^([0-9a-f]{64}) {2}app\/(.+)$/.exec(line);
    if (!m) continue;
    n++;
    const f = join(app, m[2]);
    if (!existsSync(f) || createHash("sha256").update(readFileSync(f)).digest("hex") !== m[1]) bad.push(m[2]);
  }
  if (n === 0) throw new Error(`${manifest} lists no app/ files`);
  if (bad.length) throw new Error(`${bad.length} of ${n} files differ from ${manifest}: ${bad.slice(0, 5).join(", ")}${bad.length > 5 ? ", ..." : ""}`);
  return `portcullis ${version} in ${app}: ${n} files match .MANIFEST.sha256`;
});

await check("board-config", () => {
  config = readBoardFile(o.config);
  const qs = queueFlags(config);
  const side = (s) => `${s} ${qs.find((q) => q.side === s).dev} (queue ${qs.filter((q) => q.side === s).map((q) => q.queue).join(",")})`;
  return `${o.config}: mode ${config.mode}, ${side("external")}, ${side("internal")}`;
});

// nftables: the rules of `nft -j list table` against the generated ruleset,
// as "chain iifname|oifname dev queue-numbers [bypass]".
function nftExpected(cfg) {
  const out = [];
  let chain = "";
  for (const line of nftRuleset(cfg).split("\n")) {
    const c = /^\tchain (\w+) \{$/.exec(line);
    if (c) { chain = c[1]; continue; }
    const r = /^\t\t(iifname|oifname) "([^"]+)" queue num (\d+(?:-\d+)?)( bypass)?$/.exec(line);
    if (r) out.push(`${chain} ${r[1]} ${r[2]} ${r[3]}${r[4] ? " bypass" : ""}`);
  }
  return out.sort();
}
function nftActual(doc) {
  const out = [], problems = [];
  for (const item of doc.nftables ?? []) {
    if (item.chain && item.chain.hook !== item.chain.name) problems.push(`chain ${item.chain.name} hooks ${item.chain.hook}`);
    if (item.chain && item.chain.policy !== "accept") problems.push(`chain ${item.chain.name} policy ${item.chain.policy}`);
    if (!item.rule) continue;
    const ex = item.rule.expr ?? [];
    const match = ex.find((e) => e.match)?.match;
    const queue = ex.find((e) => e.queue)?.queue;
    if (ex.length !== 2 || !match || !queue) { problems.push(`chain ${item.rule.chain}: a rule that is not ours: ${JSON.stringify(ex)}`); continue; }
    const num = typeof queue.num === "object" && queue.num !== null ? (queue.num.range ?? []).join("-") : String(queue.num ?? 0);
    const flags = [queue.flags ?? []].flat();
    out.push(`${item.rule.chain} ${match.left?.meta?.key ?? "?"} ${match.right} ${num}${flags.includes("bypass") ? " bypass" : ""}`);
  }
  return { rules: out.sort(), problems };
}
// iptables-legacy: the -A lines of our chains, and the jumps to them.
function iptExpected(cfg) {
  const rules = iptablesRestore(cfg, []).split("\n").filter((l) => l.startsWith("-A PORTCULLIS-")).sort();
  const jumps = [...iptablesScript(cfg).matchAll(/-C (\w+) -j (PORTCULLIS-\w+)/g)].map((m) => `-A ${m[1]} -j ${m[2]}`);
  return { rules, jumps: [...new Set(jumps)].sort() };
}
const diff = (want, got) => {
  const missing = want.filter((l) => !got.includes(l)), extra = got.filter((l) => !want.includes(l));
  return [...missing.map((l) => `missing "${l}"`), ...extra.map((l) => `unexpected "${l}"`)];
};

await check("kernel-rules", () => {
  if (!config) throw new Error("no board config (see board-config)");
  const where = o.netns ? ` in netns ${o.netns}` : "";
  const nft = have("nft") ? sh(inNs(["nft", "-j", "list", "table", "inet", NFT_TABLE])) : { status: 1 };
  if (nft.status === 0) {
    const want = nftExpected(config);
    const got = nftActual(JSON.parse(nft.stdout));
    const d = [...got.problems, ...diff(want, got.rules)];
    if (d.length) throw new Error(`nftables table inet ${NFT_TABLE}${where} is not what ${o.config} generates: ${d.join("; ")}`);
    return `nftables table inet ${NFT_TABLE}${where}: ${want.length} queue rules as ${o.config} generates`;
  }
  const families = [];
  for (const ipt of ["iptables-legacy", "ip6tables-legacy"]) {
    if (!have(`${ipt}-save`)) throw new Error(`no nftables table inet ${NFT_TABLE}${where}, and ${ipt}-save is not installed: are the rules loaded? (portcullis rules --config ${o.config} --apply)`);
    const save = sh(inNs([`${ipt}-save`, "-t", "filter"]));
    if (save.status !== 0) throw new Error(`${ipt}-save${where} failed: ${save.stderr.trim()}`);
    const lines = save.stdout.split("\n");
    const want = iptExpected(config);
    const rules = lines.filter((l) => l.startsWith("-A PORTCULLIS-")).sort();
    const jumps = lines.filter((l) => /^-A (INPUT|OUTPUT|FORWARD) -j PORTCULLIS-/.test(l)).sort();
    if (rules.length === 0 && jumps.length === 0) {
      throw new Error(`no portcullis rules loaded${where} (neither nftables table inet ${NFT_TABLE} nor ${ipt} chains): ` +
        `portcullis rules --config ${o.config} --apply, or systemctl status portcullis-rules`);
    }
    const d = [...diff(want.rules, rules), ...diff(want.jumps, jumps)];
    if (d.length) throw new Error(`${ipt}${where} rules are not what ${o.config} generates: ${d.join("; ")}`);
    families.push(`${ipt} ${rules.length} rules + ${jumps.length} jumps`);
  }
  return `iptables-legacy backend${where}: ${families.join(", ")}, as ${o.config} generates`;
});

const stats = async () => {
  const r = await request(o.control, { cmd: "stats" }, 5000);
  if (r.ok !== true) throw new Error(`stats over ${o.control}: ${String(r.error)}`);
  return r.stats;
};
let first = null;
await check("daemon", async () => {
  first = await stats();
  let unit = "";
  if (existsSync("/run/systemd/system") && have("systemctl")) {
    const a = sh(["systemctl", "is-active", "portcullis.service"]).stdout.trim();
    unit = `; portcullis.service ${a}`;
  }
  return `answers on ${o.control}: policy ${first.policy} (mode ${first.mode}), running since ${first.started}${unit}`;
});

await check("queues-bound", () => {
  if (!config || !first) throw new Error("needs board-config and daemon");
  const want = queueFlags(config).map((q) => q.queue);
  const named = new Set(first.queues.map((q) => String(q.name)));
  const notDaemon = want.filter((q) => !named.has(`queue${q}`));
  const proc = sh(inNs(["cat", "/proc/net/netfilter/nfnetlink_queue"]));
  const bound = parseKernelQueues(proc.stdout);
  const notKernel = want.filter((q) => !(bound.get(q)?.portid > 0));
  if (notDaemon.length || notKernel.length) {
    throw new Error([notDaemon.length ? `the daemon does not report queue ${notDaemon.join(", ")}` : "",
      notKernel.length ? `the kernel${o.netns ? ` (netns ${o.netns})` : ""} has no listener on queue ${notKernel.join(", ")}` : ""].filter(Boolean).join("; "));
  }
  return `queues ${want.join(", ")}: reported by the daemon and bound in the kernel (${want.map((q) => `queue ${q} peer ${bound.get(q).portid}`).join(", ")})`;
});

// Traffic, as opposed to the background every link carries: a packet a rule
// of the policy decided, or one the state table passed as part of a flow
// (the reasons that carry a rule or flow; host/replay/engine.ts's VIA reads
// them the same way). Background never gets one of these under a policy
// that does not match it: neighbour discovery passes as icmp6_ndp before the
// rules, and router discovery, MLD and the like are stateless in the core
// (they never open a flow), so MLD, IGMP, mDNS, SSDP or DHCP broadcasts that
// no rule names end as default_deny (default_allow) without a flow.
const TRAFFIC = ["rule_allow", "rule_deny", "state_match", "state_related", "frag_follows"];
// Packets per name from one stats reply to the next (a counter that went
// back, as rule counters do at a reload, counts from zero).
const deltas = (from, to, key, name) => {
  const before = new Map(from.map((x) => [x[key], x.packets]));
  return to.map((x) => {
    const b = before.get(x[key]) ?? 0;
    return { name: name(x), n: x.packets >= b ? x.packets - b : x.packets };
  }).filter((x) => x.n > 0);
};
const list = (xs) => xs.map((x) => `${x.name} +${x.n}`).join(", ");
const sum = (xs) => xs.reduce((a, x) => a + x.n, 0);
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
await check("counters-moving", async () => {
  if (!first) throw new Error("needs daemon");
  const t0 = Date.now();
  const start = await stats();
  const devs = config ? queueFlags(config).map((q) => q.dev).filter((d, i, a) => a.indexOf(d) === i).join("/") : "the NICs";
  for (;;) {
    await sleep(500);
    const now = await stats();
    const byReason = deltas(start.reasons, now.reasons, "reason", (r) => r.reason);
    const traffic = byReason.filter((r) => TRAFFIC.includes(r.name)), other = byReason.filter((r) => !TRAFFIC.includes(r.name));
    if (traffic.length) {
      // A reload starts the rule counters again: counted from there.
      const rules = deltas(start.rules, now.rules, "info", (r) => /^\S+:\d+ (\S+):/.exec(r.info)?.[1] ?? `#${r.rule}`);
      return `${count(sum(traffic), "packet", "packets")} of traffic in ${((Date.now() - t0) / 1000).toFixed(1)} s, decided by a rule or a tracked flow (${list(traffic)}` +
        `${rules.length ? `; rules ${list(rules)}` : ""}); ${other.length ? `${count(sum(other), "other", "others")} not counted (${list(other)})` : "no others"}`;
    }
    if (Date.now() - t0 >= o.wait * 1000) {
      throw new Error(`no traffic in ${o.wait} s: no packet was decided by a rule of the policy or a tracked flow (` +
        `${other.length ? `${count(sum(other), "other was", "others were")} decided without one: ${list(other)}; background such as neighbour discovery and multicast looks like that` : "nor any other packet"}). ` +
        `Is traffic reaching ${devs}? (--wait SECONDS)`);
    }
  }
});

await check("policy-enforced", async () => {
  const missing = ["ip", "curl", "nginx"].filter((t) => !have(t) && !(t === "nginx" && existsSync("/usr/sbin/nginx")));
  if (missing.length) throw new Error(`needs ${missing.join(", ")} (Debian: apt-get install ${missing.map((t) => (t === "ip" ? "iproute2" : t === "nginx" ? "nginx-light" : t)).join(" ")})`);
  const dir = join(o.out, `.selftest-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const report = join(dir, "demo.json");
  const args = [cli, "demo", "--prefix", o.prefix, "--control", join(dir, "control.sock"), "--report", report];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const stop = () => { try { process.kill(child.pid, "SIGTERM"); } catch { /* gone */ } };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const status = await new Promise((r) => child.on("close", (code) => r(code)));
  try {
    if (!existsSync(report)) throw new Error(`portcullis demo --prefix ${o.prefix} exited ${status} without a report:\n${log.trim()}`);
    const r = JSON.parse(readFileSync(report, "utf8"));
    const bad = r.probes.filter((p) => !p.ok).map((p) => `${p.from} -> ${p.dest} ${p.allowed ? "should answer" : "should be filtered"}`);
    if (bad.length || r.passed === 0 || status !== 0) throw new Error(`${r.passed} probes as expected, ${r.failed} not${bad.length ? `: ${bad.join("; ")}` : ""}`);
    return `${r.passed} probes as expected, 0 not (${r.probes.filter((p) => p.allowed).length} allowed, ${r.probes.filter((p) => !p.allowed).length} filtered; ` +
      `namespaces ${o.prefix}inet/${o.prefix}appliance/${o.prefix}lan, ${r.backend}, ${r.mode} mode, the shipped default policy)`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const date = new Date().toISOString().slice(0, 10);
const passed = checks.filter((c) => c.ok).length, failed = checks.length - passed;
mkdirSync(o.out, { recursive: true });
const file = join(o.out, `selftest-${hostname()}-${date}.json`);
writeFileSync(file, `${JSON.stringify({
  schema: "portcullis-selftest", version: 1, host: hostname(), date, at: new Date().toISOString(), portcullis: version, app,
  config: o.config, control: o.control, netns: o.netns || null, checks, passed, failed,
}, null, 2)}\n`);
process.stdout.write(`selftest: ${passed} passed, ${failed} failed; report ${file}\n`);
process.exitCode = failed ? 1 : 0;
