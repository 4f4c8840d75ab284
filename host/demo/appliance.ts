// The demo: the reference topology in network namespaces (inet, appliance,
// lan), nginx publishing 80 -> 8080 and 443 -> 4443 as the seed says, the
// kernel's queue rules, the daemon with the default policy in `appliance`,
// then real traffic allowed and forbidden, IPv4 and IPv6, each probe shown
// with the verdicts and rule counters it moved (read from the daemon's
// control socket). Torn down at the end unless --keep.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { DEFAULT_CONTROL, request } from "../daemon/control.js";
import { apply } from "../kernel/rules.js";
import { type Mode } from "../policy/compile.js";
import { type EngineName } from "../core/load.js";
import { clearLeftovers, type Topology, up } from "../topology/topology.js";
import { type NsRole } from "../topology/plan.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const DEMO_POLICY = join(ROOT, "host", "policy", "default.yaml");
const CLI = join(ROOT, "dist", "host", "cli.js");

interface Probe { from: NsRole; host: string; port: number; allowed: boolean; what: string }

export function probes(mode: Mode): Probe[] {
  const out: Probe[] = [];
  for (const [listener, fe, owa] of [["203.0.113.1", "198.51.100.10", "198.51.100.30"], ["2001:db8:1::1", "2001:db8:2::10", "2001:db8:2::30"]] as const) {
    out.push(
      { from: "inet", host: listener, port: 80, allowed: true, what: "HTTP to the listener, published to the pool on 8080" },
      { from: "inet", host: listener, port: 443, allowed: true, what: "HTTPS port to the listener, published to the pool on 4443" },
      { from: "inet", host: listener, port: 22, allowed: false, what: "SSH on the proxy" },
      { from: "inet", host: listener, port: 8080, allowed: false, what: "an internal port on the external side" },
    );
    if (mode === "host") {
      out.push(
        { from: "appliance", host: fe, port: 4443, allowed: true, what: "proxy to the Front End pool on 4443" },
        { from: "appliance", host: fe, port: 8080, allowed: true, what: "proxy to the Front End pool on 8080" },
        { from: "appliance", host: owa, port: 443, allowed: true, what: "proxy to Office Web Apps on 443" },
        { from: "appliance", host: fe, port: 3389, allowed: false, what: "a decoy (RDP) in the LAN" },
        { from: "appliance", host: owa, port: 4443, allowed: false, what: "4443 toward Office Web Apps" },
      );
    }
  }
  return out;
}

type Stats = { verdicts: { accept: { packets: number }; drop: { packets: number } }; rules: Array<{ rule: number; info: string; packets: number }>; reasons: Array<{ reason: string; packets: number }>; flows: { live: number } };

async function stats(sock: string): Promise<Stats> {
  const r = await request(sock, { cmd: "stats" });
  if (r.ok !== true) throw new Error(`stats: ${String(r.error)}`);
  return r.stats as Stats;
}

function delta(a: Stats, b: Stats): string {
  const parts: string[] = [];
  const acc = b.verdicts.accept.packets - a.verdicts.accept.packets, drop = b.verdicts.drop.packets - a.verdicts.drop.packets;
  parts.push(`accept +${acc}, drop +${drop}`);
  for (const r of b.reasons) {
    const before = a.reasons.find((x) => x.reason === r.reason)?.packets ?? 0;
    if (r.packets > before) parts.push(`${r.reason} +${r.packets - before}`);
  }
  for (const r of b.rules) {
    const before = a.rules.find((x) => x.rule === r.rule)?.packets ?? 0;
    const name = /^\S+ ([^:]+):/.exec(r.info)?.[1] ?? "";
    if (r.packets > before) parts.push(`rule [${r.rule}] ${name} +${r.packets - before}`);
  }
  return parts.join(", ");
}

async function waitForControl(sock: string, t: Topology): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (existsSync(sock)) {
      try { await request(sock, { cmd: "stats" }, 1000); return; } catch { /* not yet */ }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the daemon did not come up; its log: ${join(t.dir, "daemon.log")}`);
}

// prefix: namespace names (and the topology's state directory), "" by
// default; control: the daemon's control socket, DEFAULT_CONTROL by default
// (a board's self-test gives both, so as not to meet the live daemon's).
export interface DemoOptions { keep?: boolean; mode?: Mode; write?: (s: string) => void; prefix?: string; control?: string; engine?: EngineName }

export interface ProbeResult { from: NsRole; dest: string; what: string; allowed: boolean; answered: boolean; ok: boolean; counters: string }
export interface DemoResult { mode: Mode; backend: string; passed: number; failed: number; probes: ProbeResult[] }

export async function applianceDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const w = o.write ?? ((s: string) => process.stdout.write(s));
  const mode = o.mode ?? "host";
  const prefix = o.prefix ?? "";
  const removed = await clearLeftovers(prefix);
  if (removed.length) w(`removed leftovers of an earlier run: ${removed.join(", ")}\n`);
  w(`bringing up the reference topology (${mode} mode): namespaces ${["inet", "appliance", "lan", ...(mode === "gateway" ? ["proxy"] : [])].map((n) => prefix + n).join(", ")}\n`);
  const t = await up({ mode, prefix, detach: o.keep ?? false });
  let passed = 0, failed = 0, backend = "";
  const results: ProbeResult[] = [];
  try {
    const board = join(t.dir, "board.yaml");
    writeFileSync(board, stringify({ version: 1, mode, external: { dev: "ext0", fail_open: false, bypass: false }, internal: { dev: "int0", fail_open: false, bypass: false }, queues: { first: 0, count: 1 } }));
    const applied = apply(t.board, { backend: "auto", netns: t.ns("appliance") });
    backend = applied.backend === "nft" ? "nftables" : "iptables-legacy";
    w(`kernel queue rules loaded in ${t.ns("appliance")} with ${applied.backend === "nft" ? "nftables" : "iptables-legacy (this kernel has no nftables queue)"}: ` +
      `ext0 -> queue 0, int0 -> queue 1, fail closed\n`);
    // The default control socket unless told otherwise, so `portcullis stats` and `reload` find it.
    const sock = o.control ?? DEFAULT_CONTROL;
    t.spawn("appliance", [process.execPath, CLI, "run", "--policy", DEMO_POLICY, "--board", board, "--control", sock, "--state-dir", join(t.dir, "state"),
      ...(o.engine ? ["--engine", o.engine] : [])], { name: "daemon" });
    await waitForControl(sock, t);
    w(`daemon running in ${t.ns("appliance")} with ${DEMO_POLICY}\n\n`);
    let before = await stats(sock);
    for (const p of probes(mode)) {
      const r = t.curl(p.from, p.host, p.port, p.allowed ? 3000 : 1000);
      const after = await stats(sock);
      const good = r.ok === p.allowed;
      if (good) passed++; else failed++;
      const dest = p.host.includes(":") ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`;
      const outcome = r.ok ? `answered "${r.body}"` : "no answer (filtered)";
      const counters = delta(before, after);
      results.push({ from: p.from, dest, what: p.what, allowed: p.allowed, answered: r.ok, ok: good, counters });
      w(`${good ? "ok  " : "FAIL"} ${p.from.padEnd(9)} -> ${dest.padEnd(22)} ${p.what}: ${outcome}\n       ${counters}\n`);
      before = after;
    }
    const s = await stats(sock);
    w(`\nper-rule counters:\n${s.rules.map((r) => `  [${r.rule}] ${String(r.packets).padStart(6)} flows opened  ${r.info}`).join("\n")}\n`);
    w(`verdicts: accept ${s.verdicts.accept.packets}, drop ${s.verdicts.drop.packets}; flows tracked now: ${s.flows.live}\n`);
    w(`${passed} probes as expected, ${failed} not\n`);
    if (o.keep) {
      w(`\nThe topology stays up. Try:\n` +
        `  ip netns exec inet curl http://203.0.113.1/            # allowed: the pool answers\n` +
        `  ip netns exec inet curl -m 2 http://203.0.113.1:22/     # filtered\n` +
        `  ip netns exec appliance npx portcullis stats --json    # counters of the running daemon\n` +
        `  ip netns exec appliance npx portcullis reload          # reload the policy\n` +
        `  daemon log: ${join(t.dir, "daemon.log")}\n` +
        `Remove everything with: npm run demo -- --down\n`);
    }
  } finally {
    if (!o.keep) {
      await t.down();
      w("topology removed\n");
    }
  }
  return { mode, backend, passed, failed, probes: results };
}

export async function demoDown(write: (s: string) => void = (s) => process.stdout.write(s), prefix = ""): Promise<void> {
  const removed = await clearLeftovers(prefix);
  write(removed.length ? `removed: ${removed.join(", ")}\n` : "nothing to remove\n");
}
