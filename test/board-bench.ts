// The on-device checks and benchmarks (board/bench/), run here against the
// x64 bundle installed into a temporary root: `npm run test:board`, not part
// of `npm test` (it builds a bundle and namespaces, about a minute).
//
// The "device" is a network namespace pcs<pid>-dev with ext0 and int0, each a
// veth to a namespace of its own (pcs<pid>-ext, pcs<pid>-int) that sends
// UDP datagrams: the installed tree's `rules --apply` and daemon run there as the
// board's units would. Then board/bench/selftest.sh checks it all (and runs
// the reference topology under the prefix pcs<pid>-), once healthy and once
// with a changed file, a missing rule and no traffic; core.sh writes the
// core benchmark's JSON from the installed tree (no vega there), and
// `run.js --compare` renders it beside another machine's.
import { type ChildProcess, spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const TMP = mkdtempSync(join("/var/tmp", "portcullis-board-bench-"));
const P = `pcs${process.pid}-`;
const NS = { dev: `${P}dev`, ext: `${P}ext`, int: `${P}int` };
const procs: ChildProcess[] = []; //  the daemon and the senders
const senders: ChildProcess[] = [];

function sh(cmd: string, args: string[], o: { cwd?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: o.cwd ?? ROOT, encoding: "utf8", maxBuffer: 64 << 20, timeout: 600_000 });
}
function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
function killAll(list: ChildProcess[] = procs): void {
  for (const c of list.splice(0)) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) { try { process.kill(c.pid, "SIGTERM"); } catch { /* gone */ } }
}
function clearNamespaces(prefixRe: RegExp): void {
  for (const line of sh("ip", ["netns", "list"]).stdout.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    if (!prefixRe.test(name)) continue;
    // Processes left in it by an interrupted run, then the namespace.
    for (const pid of sh("ip", ["netns", "pids", name]).stdout.split("\n").filter(Boolean)) { try { process.kill(Number(pid), "SIGKILL"); } catch { /* gone */ } }
    sh("ip", ["netns", "del", name]);
  }
}
// Leftovers of an interrupted earlier run of this test (any pid), then ours.
clearNamespaces(/^pcs\d+-(dev|ext|int|inet|appliance|lan|proxy)$/);
for (const d of readdirSync("/var/tmp")) if (/^portcullis-board-bench-/.test(d) && join("/var/tmp", d) !== TMP) rmSync(join("/var/tmp", d), { recursive: true, force: true });
process.on("exit", () => { killAll(); clearNamespaces(new RegExp(`^${P}`)); });
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(1));

// The bundle, installed into a fresh root (what board-install.ts checks in depth).
const R = join(TMP, "root");
mkdirSync(join(R, "etc"), { recursive: true });
writeFileSync(join(R, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
writeFileSync(join(R, "etc/group"), "root:x:0:\n");
writeFileSync(join(R, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o600 });
writeFileSync(join(R, "etc/gshadow"), "root:*::\n", { mode: 0o600 });
const APP = join(R, "opt/portcullis/current");
const CLI = join(APP, "dist/host/cli.js");
const BOARD = join(R, "etc/portcullis/board.yaml");
const SOCK = join(TMP, "control.sock");
const OUT = join(TMP, "out");

test("the x64 bundle carries the benchmarks and board/bench, without vega, and installs", () => {
  const tarball = ok(sh("bash", ["board/bundle.sh", "--arch", "x64", "--no-build", "--out", join(TMP, "dist")]), "bundle").trim().split("\n").pop()!;
  ok(sh("tar", ["-C", TMP, "-xzf", tarball]), "tar x");
  const b = join(TMP, `portcullis-${VERSION}-x64`);
  const manifest = readFileSync(join(b, "MANIFEST.sha256"), "utf8");
  for (const f of ["app/dist/bench/run.js", "app/dist/bench/report.js", "app/dist/bench/core.js", "app/dist/bench/memory.js", "app/dist/test/fuzz/gen.js",
    "app/dist/test/wasm2c/harness.js", "app/test/wasm2c/driver.c", "app/board/bench/selftest.sh", "app/board/bench/selftest.mjs", "app/board/bench/core.sh", "app/board/bench/e2e.sh"]) {
    assert.ok(manifest.includes(`  ${f}\n`), `manifest lists ${f}`);
  }
  assert.not.match(manifest, /node_modules\/vega|\.map\n|dist\/test\/(?!fuzz\/|wasm2c\/harness\.js)|bundle-files\.mjs/);
  ok(sh(join(b, "install.sh"), ["--root", R]), "install");
  assert.ok(existsSync(join(APP, "board/bench/selftest.sh")));
});

test("selftest.sh on a healthy appliance: 7 checks pass, each with its exact detail", async () => {
  ok(sh("ip", ["netns", "add", NS.dev]), "netns dev");
  for (const side of ["ext", "int"] as const) {
    ok(sh("ip", ["netns", "add", NS[side]]), `netns ${side}`);
    ok(sh("ip", ["-n", NS.dev, "link", "add", `${side}0`, "type", "veth", "peer", "name", "peer", "netns", NS[side]]), `veth ${side}`);
    const [mine, theirs] = side === "ext" ? ["192.0.2.1", "192.0.2.2"] : ["198.51.100.1", "198.51.100.2"];
    ok(sh("ip", ["-n", NS.dev, "addr", "add", `${mine}/24`, "dev", `${side}0`]), "addr");
    ok(sh("ip", ["-n", NS[side], "addr", "add", `${theirs}/24`, "dev", "peer"]), "addr peer");
    for (const [ns, dev] of [[NS.dev, `${side}0`], [NS[side], "peer"], [NS[side], "lo"]] as const) ok(sh("ip", ["-n", ns, "link", "set", dev, "up"]), "up");
  }
  ok(sh("ip", ["-n", NS.dev, "link", "set", "lo", "up"]), "lo up");
  const rules = ok(sh("node", [CLI, "rules", "--config", BOARD, "--apply", "--netns", NS.dev]), "rules --apply");
  assert.match(rules, /^portcullis rules: applied with iptables-legacy in netns /m);
  const daemon = spawn("ip", ["netns", "exec", NS.dev, process.execPath, CLI, "run", "--policy", join(R, "etc/portcullis/policy.yaml"), "--board", BOARD,
    "--control", SOCK, "--state-dir", join(TMP, "state"), "--no-watch"], { stdio: ["ignore", "ignore", "pipe"] });
  procs.push(daemon);
  for (let i = 0; i < 100 && !existsSync(SOCK); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(existsSync(SOCK), "the daemon made its control socket");
  // Traffic the policy handles: an HTTPS connection to the listener (203.0.113.1, on ext0) every 100 ms,
  // each let in by the rule ext-https-443, its later packets passed as its flow's; and a UDP datagram to
  // port 9 of int0 every 100 ms, which no rule matches (default deny): not counted as traffic.
  ok(sh("ip", ["-n", NS.dev, "addr", "add", "203.0.113.1/32", "dev", "ext0"]), "listener addr");
  ok(sh("ip", ["-n", NS.ext, "route", "add", "203.0.113.1/32", "dev", "peer"]), "listener route");
  const SERVE = "require('node:net').createServer((c) => c.end('x')).listen(443, '203.0.113.1');";
  procs.push(spawn("ip", ["netns", "exec", NS.dev, process.execPath, "-e", SERVE], { stdio: "ignore" }));
  const CONNECT = "setInterval(() => require('node:net').connect(443, process.argv[1]).on('error', () => {}).resume(), 100);";
  const UDP = "const s = require('node:dgram').createSocket('udp4'); setInterval(() => s.send('x', 9, process.argv[1]), 100);";
  for (const [side, code, to] of [["ext", CONNECT, "203.0.113.1"], ["int", UDP, "198.51.100.1"]] as const) {
    const sender = spawn("ip", ["netns", "exec", NS[side], process.execPath, "-e", code, to], { stdio: "ignore" });
    procs.push(sender);
    senders.push(sender);
  }
  const r = sh("bash", [join(APP, "board/bench/selftest.sh"), "--app", APP, "--config", BOARD, "--control", SOCK, "--netns", NS.dev, "--out", OUT, "--prefix", P]);
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const file = join(OUT, `selftest-${hostname()}-${new Date().toISOString().slice(0, 10)}.json`);
  assert.is(r.stdout.trim().split("\n").pop(), `selftest: 7 passed, 0 failed; report ${file}`);
  const doc = JSON.parse(readFileSync(file, "utf8")) as { schema: string; version: number; portcullis: string; passed: number; failed: number; checks: Array<{ name: string; ok: boolean; detail: string }> };
  assert.is(doc.schema, "portcullis-selftest");
  assert.is(doc.portcullis, VERSION);
  assert.equal([doc.passed, doc.failed], [7, 0]);
  assert.equal(doc.checks.map((c) => [c.name, c.ok]), [["installed", true], ["board-config", true], ["kernel-rules", true], ["daemon", true],
    ["queues-bound", true], ["counters-moving", true], ["policy-enforced", true]]);
  const files = readFileSync(join(APP, ".MANIFEST.sha256"), "utf8").split("\n").filter((l) => /^[0-9a-f]{64} {2}app\//.test(l)).length;
  const d = Object.fromEntries(doc.checks.map((c) => [c.name, c.detail]));
  assert.is(d.installed, `portcullis ${VERSION} in ${APP}: ${files} files match .MANIFEST.sha256`);
  assert.is(d["board-config"], `${BOARD}: mode host, external ext0 (queue 0), internal int0 (queue 1)`);
  assert.is(d["kernel-rules"], `iptables-legacy backend in netns ${NS.dev}: iptables-legacy 8 rules + 3 jumps, ip6tables-legacy 8 rules + 3 jumps, as ${BOARD} generates`);
  assert.match(d.daemon!, new RegExp(`^answers on ${SOCK}: policy ${join(R, "etc/portcullis/policy.yaml")} \\(mode host\\), running since \\d{4}-`));
  assert.match(d["queues-bound"]!, /^queues 0, 1: reported by the daemon and bound in the kernel \(queue 0 peer \d+, queue 1 peer \d+\)$/);
  console.log(`  counters-moving: ${d["counters-moving"]}`);
  assert.match(d["counters-moving"]!, /^\d+ packets? of traffic in \d+\.\d s, decided by a rule or a tracked flow \(rule_allow \+\d+, state_match \+\d+; rules ext-https-443 \+\d+\); (\d+ others? not counted \(.*\bdefault_deny \+\d+.*\)|no others)$/, d["counters-moving"]);
  assert.is(d["policy-enforced"], `18 probes as expected, 0 not (10 allowed, 8 filtered; namespaces ${P}inet/${P}appliance/${P}lan, iptables-legacy, host mode, the shipped default policy)`);
  // The throwaway topology is gone again.
  assert.not.match(sh("ip", ["netns", "list"]).stdout, new RegExp(`^${P}(inet|appliance|lan)\\b`, "m"));
});

// This kernel cannot queue from nftables, so the nftables side of the
// kernel-rules check reads a stand-in `nft` that prints what `nft -j list
// table inet portcullis` prints for these rules (libnftables-json(5)).
test("selftest.sh --checks board-config,kernel-rules: the nftables listing (a stand-in nft) against the generated ruleset", () => {
  const rule = (chain: string, key: string, dev: string, num: number, flags?: string) =>
    ({ rule: { family: "inet", table: "portcullis", chain, handle: 4, expr: [{ match: { op: "==", left: { meta: { key } }, right: dev } }, { queue: { num, ...(flags ? { flags } : {}) } }] } });
  const chain = (name: string) => ({ chain: { family: "inet", table: "portcullis", name, handle: 1, type: "filter", hook: name, prio: 0, policy: "accept" } });
  const listing = (firstFlags?: string) => ({ nftables: [{ metainfo: { version: "1.0.6", json_schema_version: 1 } }, { table: { family: "inet", name: "portcullis", handle: 1 } },
    chain("input"), rule("input", "iifname", "ext0", 0, firstFlags), rule("input", "iifname", "int0", 1),
    chain("forward"), rule("forward", "iifname", "ext0", 0), rule("forward", "iifname", "int0", 1), rule("forward", "oifname", "ext0", 0), rule("forward", "oifname", "int0", 1),
    chain("output"), rule("output", "oifname", "ext0", 0), rule("output", "oifname", "int0", 1)] });
  const bin = join(TMP, "fake-nft");
  mkdirSync(bin, { recursive: true });
  const run = (doc: object) => {
    writeFileSync(join(bin, "listing.json"), JSON.stringify(doc));
    writeFileSync(join(bin, "nft"), `#!/bin/sh\n[ "$*" = "-j list table inet portcullis" ] && exec cat ${join(bin, "listing.json")}\nexit 1\n`, { mode: 0o755 });
    return spawnSync("bash", [join(APP, "board/bench/selftest.sh"), "--app", APP, "--config", BOARD, "--netns", NS.dev, "--out", join(TMP, "nft-out"), "--checks", "board-config,kernel-rules"],
      { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  };
  const good = run(listing());
  assert.is(good.status, 0, `${good.stdout}\n${good.stderr}`);
  assert.ok(good.stdout.split("\n").includes(`ok   kernel-rules: nftables table inet portcullis in netns ${NS.dev}: 8 queue rules as ${BOARD} generates`), good.stdout);
  assert.match(good.stdout, /^selftest: 2 passed, 0 failed; report /m);
  const bypass = run(listing("bypass"));
  assert.is(bypass.status, 1);
  assert.ok(bypass.stdout.split("\n").includes(`FAIL kernel-rules: nftables table inet portcullis in netns ${NS.dev} is not what ${BOARD} generates: ` +
    `missing "input iifname ext0 0"; unexpected "input iifname ext0 0 bypass"`), bypass.stdout);
  const usage = spawnSync("bash", [join(APP, "board/bench/selftest.sh"), "--app", APP, "--checks", "kernel-rules"], { encoding: "utf8" });
  assert.is(usage.status, 2);
  assert.is(usage.stderr, "selftest: --checks: kernel-rules needs board-config\n");
});

test("selftest.sh on a broken appliance: a changed file, a missing rule and no traffic (only background) fail with exact reasons; exit status 1", () => {
  // No more traffic (the daemon stays), only background of the kind every LAN has: a NetBIOS-like broadcast
  // and a UDP datagram to all IPv6 nodes (ff02::1) every 100 ms from the external side, and the kernels' own neighbour
  // discovery and MLD. Then a changed file, a rule gone.
  killAll(senders);
  const NOISE = "const d = require('node:dgram'); const b = d.createSocket('udp4'); b.bind(() => b.setBroadcast(true)); const m = d.createSocket('udp6');" +
    "setInterval(() => { b.send('x', 137, '192.0.2.255'); m.send('x', 5353, 'ff02::1%peer'); }, 100);";
  procs.push(spawn("ip", ["netns", "exec", NS.ext, process.execPath, "-e", NOISE], { stdio: "ignore" }));
  spawnSync("sleep", ["0.5"]);
  appendFileSync(join(APP, "README.md"), "changed on the device\n");
  ok(sh("ip", ["netns", "exec", NS.dev, "iptables-legacy", "-D", "PORTCULLIS-IN", "-i", "int0", "-j", "NFQUEUE", "--queue-num", "1"]), "delete a rule");
  const r = sh("bash", [join(APP, "board/bench/selftest.sh"), "--app", APP, "--config", BOARD, "--control", SOCK, "--netns", NS.dev, "--out", OUT, "--prefix", P, "--wait", "2"]);
  assert.is(r.status, 1, `${r.stdout}\n${r.stderr}`);
  const lines = r.stdout.trim().split("\n");
  const files = readFileSync(join(APP, ".MANIFEST.sha256"), "utf8").split("\n").filter((l) => /^[0-9a-f]{64} {2}app\//.test(l)).length;
  assert.ok(lines.includes(`FAIL installed: 1 of ${files} files differ from ${join(APP, ".MANIFEST.sha256")}: README.md`), r.stdout);
  assert.ok(lines.includes(`FAIL kernel-rules: iptables-legacy in netns ${NS.dev} rules are not what ${BOARD} generates: missing "-A PORTCULLIS-IN -i int0 -j NFQUEUE --queue-num 1"`), r.stdout);
  const moving = lines.find((l) => l.startsWith("FAIL counters-moving: ")) ?? r.stdout;
  console.log(`  ${moving}`);
  assert.match(moving, /^FAIL counters-moving: no traffic in 2 s: no packet was decided by a rule of the policy or a tracked flow \((\d+) others were decided without one: (default_deny|icmp6_ndp) \+\d+(, (default_deny|icmp6_ndp) \+\d+)?; background such as neighbour discovery and multicast looks like that\)\. Is traffic reaching ext0\/int0\? \(--wait SECONDS\)$/);
  assert.ok(Number(/\((\d+) others/.exec(moving)![1]) >= 20, `the background was seen: ${moving}`);
  assert.ok(lines.some((l) => l.startsWith("ok   policy-enforced: 18 probes as expected, 0 not")), r.stdout);
  assert.match(lines.pop()!, /^selftest: 4 passed, 3 failed; report /);
});

// The same bundle's units under a real systemd: board/nspawn-check.sh boots a Debian 12 root with it
// installed (systemd-nspawn, this kernel: iptables-legacy) and runs the image's boot check in it.
test("nspawn-check.sh: the units in their sandboxes under a real systemd: rules loaded, queues bound, traffic decided, a reload, no SIGSYS", () => {
  const base = "/var/tmp/portcullis-debian12";
  const tarball = readdirSync(join(TMP, "dist")).find((f) => f.endsWith("-x64.tar.gz"))!;
  if (!existsSync(join(base, "usr/lib/systemd/systemd"))) ok(sh("bash", ["board/chroot-check.sh", join(TMP, "dist", tarball), base]), "chroot-check (makes the Debian root)");
  const r = sh("bash", ["board/nspawn-check.sh", join(TMP, "dist", tarball), base, "300"]);
  assert.is(r.status, 0, `${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
  const check = [...r.stdout.matchAll(/^bootcheck: (.*)$/gm)].map((m) => m[1]!);
  const line = (prefix: string): string => check.find((l) => l.startsWith(prefix)) ?? `(no "${prefix}" line)`;
  assert.is(line("unit portcullis-rules:"), "unit portcullis-rules: ActiveState=active NRestarts=0 Result=success SubState=exited");
  assert.is(line("unit portcullis:"), "unit portcullis: ActiveState=active NRestarts=0 Result=success SubState=running");
  for (const u of ["portcullis.service", "portcullis-rules.service", "portcullis-firstboot.service"]) {
    const m = new RegExp(`^exposure ${u.replace(/\./g, "\\.")} (\\d+\\.\\d)$`).exec(line(`exposure ${u} `));
    assert.ok(m, line(`exposure ${u} `));
    console.log(`  ${u}: exposure ${m![1]} (systemd in the container)`);
    assert.ok(Number(m![1]) <= (u === "portcullis.service" ? 2.0 : 5.0), `${u}: ${m![1]}`);
  }
  assert.is(line("selftest: ok   kernel-rules:"), "selftest: ok   kernel-rules: iptables-legacy backend: iptables-legacy 8 rules + 3 jumps, ip6tables-legacy 8 rules + 3 jumps, as /etc/portcullis/board.yaml generates");
  assert.match(line("selftest: ok   queues-bound:"), /^selftest: ok {3}queues-bound: queues 0, 1: reported by the daemon and bound in the kernel/);
  assert.match(line("selftest: ok   counters-moving:"), /^selftest: ok {3}counters-moving: \d+ packets? of traffic in \d+\.\d s, decided by a rule or a tracked flow \(rule_allow \+\d+.*; rules int-https-4443 \+\d+\)/);
  assert.not.ok(check.some((l) => l.startsWith("selftest: FAIL")), check.join("\n"));
  const reload = /^reload: control ok; the daemon pid (\d+) -> (\d+), active, restarts 0$/.exec(line("reload:"));
  assert.ok(reload && reload[1] === reload[2], line("reload:"));
  assert.match(line("sandbox: result"), /^sandbox: result ExecMainCode=[01] ExecMainStatus=0 Result=success$/);
  // This machine's containers have cgroup v1, where systemd runs without IPAddressDeny= (a cgroup v2 BPF program):
  // the probes of the own int0 address get what they get outside the sandbox. The image boot (cgroup v2) is refused.
  const v2 = line("cgroup:") === "cgroup: v2";
  const outside = "udp 198.51.100.1:9: sent; connect 198.51.100.1:9: ECONNREFUSED";
  assert.is(line("unsandboxed output:"), `unsandboxed output: worker thread ran WebAssembly: 42; 127.0.0.1 listen and connect: ok; ${outside}`);
  assert.is(line("sandbox output:"), "sandbox output: worker thread ran WebAssembly: 42; 127.0.0.1 listen and connect: ok; " +
    `${v2 ? "udp 198.51.100.1:9: EPERM; connect 198.51.100.1:9: no answer in 3 s" : outside}; write /etc/portcullis/sandbox-probe: EROFS; write /var/lib/portcullis-probe: EROFS`);
  console.log(`  ${line("cgroup:")}; ${line("mdwe: result")}`);
  assert.match(line("mdwe: result"), /^mdwe: result ExecMainCode=[23] ExecMainStatus=\d+ Result=(signal|core-dump)$/);
  assert.is(line("sigsys:"), "sigsys: 0");
});

test("selftest.sh refuses bad usage and a tree that is not installed", () => {
  const bad = sh("bash", [join(APP, "board/bench/selftest.sh"), "--bogus", "1"]);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /^selftest: unknown argument --bogus\nusage: selftest\.sh /);
  const none = sh("bash", [join(APP, "board/bench/selftest.sh"), "--app", TMP]);
  assert.is(none.status, 2);
  assert.is(none.stderr, `selftest: no ${join(TMP, "dist/host/cli.js")}: --app is not an installed Portcullis tree\n`);
  // A tree from before bench/e2e: e2e.sh says what is missing.
  const old = join(TMP, "old-tree");
  mkdirSync(join(old, "dist/host"), { recursive: true });
  writeFileSync(join(old, "dist/host/cli.js"), "");
  const e2e = sh("bash", [join(APP, "board/bench/e2e.sh"), "--app", old, "--out", OUT]);
  assert.is(e2e.status, 3);
  assert.is(e2e.stderr, `e2e: this installed tree has no end-to-end benchmarks (${join(old, "dist/bench/e2e/main.js")} is missing):\n` +
    "e2e: its bundle was built before bench/e2e existed; build a new bundle (npm run board:bundle) and install it\n");
});

test("core.sh --quick writes the core JSON from the installed tree (no vega, no ClassBench data), and --compare puts it beside another machine's", () => {
  const out = join(TMP, "core-out");
  const r = sh("bash", [join(APP, "board/bench/core.sh"), "--app", APP, "--out", out, "--quick", "--only", "established,memory,core"]);
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const date = new Date().toISOString().slice(0, 10);
  const file = join(out, `${hostname()}-${date}.json`);
  assert.is(r.stdout.trim().split("\n").pop(), `Report: ${file}`);
  assert.equal(readdirSync(out), [`${hostname()}-${date}.json`]);
  const doc = JSON.parse(readFileSync(file, "utf8")) as { schema: string; version: number; quick: boolean; reps: number; parts: string[]; skipped: string[];
    sections: Array<{ id: string; table: { head: string[]; rows: string[][] }; chart: { kind: string } | null }> };
  assert.is(doc.schema, "portcullis-bench");
  assert.is(doc.version, 2);
  assert.equal([doc.quick, doc.reps], [true, 3]);
  assert.equal(doc.parts, ["established", "memory", "core"]);
  assert.equal(doc.skipped, [`ClassBench sets: not in ${join(R, "opt/portcullis/shared/classbench/hypersplit")} (pass --classbench DIR, a copy of the repository's ../shared/classbench/hypersplit): left out the ClassBench workloads of the core part`]);
  assert.equal(doc.sections.map((s) => s.id), ["established", "memory", "core"]);
  const core = doc.sections[2]!;
  assert.equal(core.table.rows.map((row) => [row[0], row[3]]), ["mix", "mix-limited"].flatMap((w) => ["1", "32", "256"].map((b) => [w, b])));
  assert.is(core.chart?.kind, "bar");
  // Beside "another machine": the same file under another host name.
  const other = join(TMP, "other.json");
  writeFileSync(other, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), host: "pi5" }));
  const cmp = sh("node", [join(ROOT, "dist/bench/run.js"), "--compare", file, other, "--out", join(TMP, "cmp"), "--name", "side"]);
  assert.is(cmp.status, 0, cmp.stderr);
  assert.is(cmp.stdout, `Side by side: ${join(TMP, "cmp", "side.md")}, 2 SVG charts; sections compared: established, memory, core\n`);
  const md = readFileSync(join(TMP, "cmp", "side.md"), "utf8");
  assert.match(md, new RegExp(`^# Portcullis benchmarks side by side: ${hostname()}, pi5$`, "m"));
  assert.match(md, /^\| machine \| workload \| rules \| rules% \| batch \| V8 Mpps \| wasmtime Mpps \| reference Mpps \| wasm2c Mpps \| V8\/wasm2c \| wt\/V8 \| wt\/wasm2c \| V8\/ref \| agree \|$/m);
  const rows = md.split("\n").filter((l) => /^\| \S+ \| mix \| 5 \|/.test(l)).map((l) => l.split(" | ").slice(0, 5).join(" | "));
  assert.equal(rows, ["1", "32", "256"].flatMap((batch) => [`| ${hostname()} | mix | 5 | 5% | ${batch}`, `| pi5 | mix | 5 | 5% | ${batch}`]));
  assert.match(md, /^\| machine \| engine \| state table \| flows live \| RSS idle MiB \| RSS full MiB \| target < 100 MiB \|$/m);
  assert.equal(readdirSync(join(TMP, "cmp")).sort(), ["side-core.svg", "side-established.svg", "side.md"]);
});

test.after(() => {
  killAll();
  clearNamespaces(new RegExp(`^${P}`));
  rmSync(TMP, { recursive: true, force: true });
});
test.run();
