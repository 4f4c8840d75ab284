// `portcullis check POLICY`: compile a policy without writing anything and
// print what it holds (rules per interface and direction, groups, sets,
// switches, the default), or every error as FILE:LINE:COL: what. Exit status
// 0 when the policy is good, 1 when it is not.
import { Command, InvalidArgumentError, Option } from "commander";
import {
  buildPolicyTable, type CompiledPolicy, compilePolicyFile, compilePolicyText, type Mode, MODES, type PolicySummary, readPolicyFile,
} from "../policy/compile.js";
import { type BuiltTable } from "../rules/build.js";
import { ConfigError } from "../config/errors.js";

export interface PolicyCliOptions { mode: Mode; set: Record<string, boolean> }

const ON = new Set(["on", "true", "yes", "1"]);
const OFF = new Set(["off", "false", "no", "0"]);

// "--set name=on|off", repeatable: collects the overrides in one object.
export function parseSwitchOverride(value: string, previous: Record<string, boolean> = {}): Record<string, boolean> {
  const m = /^([^=\s]+)=([^=\s]+)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected switch=on or switch=off, got "${value}"`);
  const [, name, state] = m as unknown as [string, string, string];
  const v = state.toLowerCase();
  if (!ON.has(v) && !OFF.has(v)) throw new InvalidArgumentError(`"${state}" is not on or off (in "${value}")`);
  if (name in previous && previous[name] !== ON.has(v)) throw new InvalidArgumentError(`switch "${name}" is set both on and off`);
  return { ...previous, [name]: ON.has(v) };
}

// The options check and compile share.
export function addPolicyOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--mode <mode>", "deployment mode: host (the appliance is the proxy) or gateway (it forwards)")
      .choices(MODES).default("host"))
    .addOption(new Option("--set <switch=on|off>", "turn a switch of the policy on or off (repeatable)")
      .argParser(parseSwitchOverride).default({}, "the policy's own values"));
}

function report(e: ConfigError, policy: string, what: string): null {
  for (const err of e.all) process.stderr.write(`${err.message}\n`);
  const n = e.all.filter((x) => x.code !== "too_many_errors").length;
  process.stderr.write(`portcullis: ${n} error${n === 1 ? "" : "s"} in ${policy}; ${what}\n`);
  process.exitCode = 1;
  return null;
}

// Reads a policy or table file once (readPolicyFile), or reports why it
// cannot be read and sets exit status 1 (returns null).
export function readPolicyOrReport(policy: string, what = "nothing done"): Buffer | null {
  try {
    return readPolicyFile(policy);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return report(e, policy, what);
  }
}

export interface CheckedPolicy { compiled: CompiledPolicy; table: BuiltTable }

// Compiles and builds the table (held to the core's limits), or prints every
// error and sets exit status 1 (returns null). `bytes`: the policy file as
// already read, so it is not read a second time.
export function compileOrReport(policy: string, opts: PolicyCliOptions, what: string, bytes?: Uint8Array): CheckedPolicy | null {
  try {
    const o = { mode: opts.mode, switches: opts.set };
    const c = bytes ? compilePolicyText(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"), policy, o)
      : compilePolicyFile(policy, o);
    for (const w of c.summary.warnings) process.stderr.write(`${w.message}\n`);
    return { compiled: c, table: buildPolicyTable(c) };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return report(e, policy, what);
  }
}

function bigCount(n: bigint): string {
  if (n < 1000000n) return n.toString();
  return `2^${n.toString(2).length - 1}${n & (n - 1n) ? "+" : ""}`;
}

function plural(n: number | bigint, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 || n === 1n ? one : many}`;
}

export function formatSummary(s: PolicySummary): string {
  const out: string[] = [];
  const off = s.rules.filter((r) => r.table === null).length;
  out.push(`${s.file}: ok (mode ${s.mode}, default ${s.defaultAction})`);
  out.push(`rules: ${s.tableRules} in the table${off ? `, ${off} switched off` : ""} (${s.rules.length} in the policy)`);
  for (const p of s.byPlace) out.push(`  ${`${p.iface} ${p.direction}`.padEnd(18)} ${plural(p.rules, "rule")}`);
  for (const r of s.rules) {
    const where = (r.table === null ? "off" : `[${r.table}]`).padEnd(Math.max(3, String(s.tableRules).length + 2));
    out.push(`  ${where} ${r.info}`);
  }
  out.push(`switches:${s.switches.length ? "" : " none"}`);
  const sw = Math.max(0, ...s.switches.map((x) => x.name.length));
  for (const x of s.switches) {
    const why = x.overridden ? `set on the command line; the policy says ${x.policyValue ? "on" : "off"}` : "as in the policy";
    out.push(`  ${x.name.padEnd(sw)}  ${x.value ? "on " : "off"}  (${why}; line ${x.line}; ${plural(x.usedBy, "rule")})`);
  }
  out.push(`groups:${s.groups.length ? "" : " none"}`);
  const gw = Math.max(0, ...s.groups.map((x) => x.name.length));
  for (const g of s.groups) {
    out.push(`  ${g.name.padEnd(gw)}  ${plural(g.entries, "entry", "entries")}: ${plural(g.v4Addresses, "IPv4 address", "IPv4 addresses")}, ` +
      `${bigCount(g.v6Addresses)} IPv6 address${g.v6Addresses === 1n ? "" : "es"} (line ${g.line}; used by ${plural(g.usedBy, "rule")})`);
  }
  out.push(`sets:${s.sets.length ? "" : " none"}`);
  const sw2 = Math.max(0, ...s.sets.map((x) => x.name.length));
  for (const x of s.sets) {
    out.push(`  ${x.name.padEnd(sw2)}  ${x.path}: ${plural(x.includes, "prefix", "prefixes")}, ${plural(x.exceptions, "exception")} -> ` +
      `${plural(x.v4Ranges, "IPv4 range")}, ${plural(x.v6Ranges, "IPv6 range")} in ${x.ms.toFixed(1)} ms (used by ${plural(x.usedBy, "rule")})`);
  }
  out.push(`default: ${s.defaultAction} (packets no rule matches)`);
  if (s.warnings.length) out.push(`${plural(s.warnings.length, "warning")} (above)`);
  return out.join("\n");
}

export function checkCommand(): Command {
  return addPolicyOptions(new Command("check")
    .description("check a policy file: print a summary and exit 0, or print every error as file:line:col and exit 1")
    .argument("<policy>", "policy file (YAML; see host/policy/README.md)"))
    .action((policy: string, opts: PolicyCliOptions) => {
      const c = compileOrReport(policy, opts, "not valid");
      if (c) process.stdout.write(`${formatSummary(c.compiled.summary)}\n`);
    });
}
