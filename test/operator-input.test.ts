// Files an operator names (policies, set files, tables) that are not what
// they should be: a FIFO, a device, a 2 GB sparse file, a symlink loop, a
// file that is not a policy at all (its content must not be quoted back), a
// policy whose table is larger than the core takes, a corrupt table given to
// explain. Each is refused with one line, at once, in bounded memory.
import { spawnSync } from "node:child_process";
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as ABI from "../host/core/abi.js";
import { Core, TableError } from "../host/core/core.js";
import { explainFlow } from "../host/commands/explain.js";
import { MAX_OPERATOR_FILE, OperatorFileError, readOperatorFile } from "../host/io/operator-file.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";
import { buildPolicyTable, type CompiledPolicy, compilePolicyFile, MAX_POLICY_TEXT, type PolicySummary } from "../host/policy/compile.js";
import { ConfigError } from "../host/config/errors.js";
import { buildTable } from "../host/rules/build.js";
import { TableView } from "../host/rules/inspect.js";
import { type RuleSpec } from "../host/rules/model.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "bin", "portcullis.js");
const DEFAULT_POLICY = join(ROOT, "host", "policy", "default.yaml");
const TMP = mkdtempSync(join(tmpdir(), "portcullis-input-"));

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: TMP, encoding: "utf8", timeout: 20_000 });
const mkfifo = (path: string): string => {
  const r = spawnSync("mkfifo", [path]);
  assert.is(r.status, 0, String(r.stderr));
  return path;
};
const sparse = (path: string, size: number): string => {
  const fd = openSync(path, "w");
  ftruncateSync(fd, size);
  closeSync(fd);
  return path;
};
function errorOf(fn: () => unknown): ConfigError {
  try { fn(); } catch (e) { if (e instanceof ConfigError) return e; throw e; }
  throw new Error("expected a ConfigError");
}
const POLICY_WITH_SET = (file: string): string => `version: 1
default: deny
sets:
  bl: { file: ${JSON.stringify(file)} }
rules:
  - { action: deny, interface: external, direction: in, src: bl }
`;

test("readOperatorFile: a FIFO, a device, a directory, a sparse 2 GB file, a symlink loop: refused before a byte is read", () => {
  const fifo = mkfifo(join(TMP, "fifo"));
  const big = sparse(join(TMP, "big"), 2 * 1024 ** 3);
  const loop = join(TMP, "loop");
  symlinkSync(loop, loop);
  const cases: Array<[string, string, RegExp]> = [
    [fifo, "not_regular", /must be a regular file, not a FIFO$/],
    ["/dev/zero", "not_regular", /not a character device$/],
    [TMP, "not_regular", /not a directory$/],
    [big, "too_large", new RegExp(`is ${2 * 1024 ** 3} bytes, over the ${MAX_OPERATOR_FILE}-byte limit$`)],
    [loop, "unreadable", /too many levels of symbolic links \(ELOOP\)$/],
    [join(TMP, "none"), "missing", /no such policy file$/],
  ];
  const rss0 = process.memoryUsage().rss;
  const t0 = Date.now();
  for (const [path, kind, re] of cases) {
    try {
      readOperatorFile(path, "policy");
      assert.unreachable(path);
    } catch (e) {
      assert.instance(e, OperatorFileError, String(e));
      const oe = e as OperatorFileError;
      assert.is(oe.kind, kind, oe.message);
      assert.match(oe.message, re);
      assert.ok(oe.message.startsWith(`${path}: `), oe.message);
    }
  }
  assert.ok(Date.now() - t0 < 2000, "nothing waited for a writer");
  assert.ok(process.memoryUsage().rss - rss0 < 64 << 20, "the sparse file was not read");
  assert.equal(readOperatorFile(DEFAULT_POLICY, "policy"), readFileSync(DEFAULT_POLICY));
});

test("check, compile, explain, replay --policy/--table on a FIFO or /dev/zero: one line, exit 1, no stall", () => {
  const fifo = mkfifo(join(TMP, "policy-fifo"));
  const flow = ["--iface", "external", "--dir", "in", "--proto", "tcp", "--src", "192.0.2.7", "--dst", "203.0.113.1", "--dport", "443"];
  const runs: Array<[string[], RegExp]> = [
    [["check", fifo], /policy-fifo: the policy must be a regular file, not a FIFO$/m],
    [["compile", "/dev/zero", "-o", join(TMP, "t.bin")], /^\/dev\/zero: the policy must be a regular file, not a character device$/m],
    [["explain", fifo, ...flow], /policy-fifo: the policy must be a regular file, not a FIFO$/m],
    [["replay", join(ROOT, "test", "fixtures", "reference.pcap"), "--policy", fifo], /policy-fifo: the policy must be a regular file, not a FIFO$/],
    [["replay", join(ROOT, "test", "fixtures", "reference.pcap"), "--table", "/dev/zero"], /\/dev\/zero: the rule table must be a regular file, not a character device$/],
    [["replay", fifo, "--policy", DEFAULT_POLICY], /policy-fifo: the capture must be a regular file, not a FIFO$/],
    [["demo", "--pcap", "/dev/zero"], /\/dev\/zero: the capture must be a regular file, not a character device$/],
    [["rules", "--config", fifo], /policy-fifo: the board configuration must be a regular file, not a FIFO$/m],
  ];
  for (const [args, re] of runs) {
    const r = cli(...args);
    assert.is(r.status, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.is(r.stdout, "", args.join(" "));
    assert.match(r.stderr.trimEnd(), re);
    assert.not.match(r.stderr, /\n\s+at /, "no stack trace");
  }
});

test("set files: /dev/stdin, a FIFO, a symlink loop, a sparse file, and set files over the limit together: the set's own error", () => {
  const fifo = mkfifo(join(TMP, "set-fifo"));
  const loop = join(TMP, "set-loop");
  symlinkSync(loop, loop);
  const half = sparse(join(TMP, "set-half"), (MAX_OPERATOR_FILE >> 1) + 8);
  for (const [file, code, re] of [
    ["/dev/stdin", "set_not_regular", /set "bl": \/dev\/stdin: the set must be a regular file, not /],
    [fifo, "set_not_regular", /set "bl": .*set-fifo: the set must be a regular file, not a FIFO/],
    [loop, "set_unreadable", /ELOOP/],
    [sparse(join(TMP, "set-big"), 3 * 1024 ** 3), "set_too_large", /over the \d+-byte limit/],
  ] as const) {
    const path = join(TMP, `set-${code}.yaml`);
    writeFileSync(path, POLICY_WITH_SET(file));
    const e = errorOf(() => compilePolicyFile(path));
    assert.is(e.code, code, e.message);
    assert.is(e.line, 4);
    assert.match(e.message, re);
  }
  // Two sets of 32 MiB each: the second would pass the limit in all.
  const two = join(TMP, "two-sets.yaml");
  writeFileSync(two, `version: 1\ndefault: deny\nsets:\n  a: { file: ${half} }\n  b: { file: ${sparse(join(TMP, "set-half2"), (MAX_OPERATOR_FILE >> 1) + 8)} }\nrules: []\n`);
  const e = errorOf(() => compilePolicyFile(two));
  const codes = e.all.map((x) => `${x.code}@${x.line}`);
  assert.ok(codes.includes("set_too_large@5"), codes.join(" "));
  assert.match(e.all.find((x) => x.code === "set_too_large")!.message, new RegExp(`over ${MAX_OPERATOR_FILE} bytes in all`));
});

// Lines that look like secrets; none of them may come back in an error.
const SECRETS = [
  "root:$6$Qz9sEcReT$w1x2y3z4abcdefghij:19000:0:99999:7:::",
  "daemon:*:19000:0:99999:7:::",
  "api_token=sk-live-51HcorrectHorseBatteryStaple",
];
const SECRET_WORDS = ["Qz9sEcReT", "w1x2y3z4", "19000:0:99999", "sk-live", "HorseBattery", "api_token", "hunter2", "s3cr3t"];

test("a file that is not a policy is named, never quoted: check, compile, replay, and as a set file", () => {
  const files: Record<string, string> = {
    "shadow": `${SECRETS.join("\n")}\n`,
    "mapping.yaml": "password: hunter2\nuser: s3cr3t\n",
    "broken.yaml": "password: \"hunter2\n  s3cr3t: [\n",
    "list.yaml": "- hunter2\n- s3cr3t\n",
    "tagged.yaml": "password: !hunter2 s3cr3t\n",
  };
  for (const [name, body] of Object.entries(files)) {
    const path = join(TMP, name);
    writeFileSync(path, body);
    const e = errorOf(() => compilePolicyFile(path));
    for (const x of e.all) {
      assert.is(x.line, 0, `${name}: ${x.message}`);
      assert.match(x.message, new RegExp(`^${path.replace(/[.\\/]/g, "\\$&")}: not a policy: `));
    }
    const all = [["check", path], ["compile", path, "-o", join(TMP, "x.bin")], ["replay", join(ROOT, "test", "fixtures", "reference.pcap"), "--policy", path]];
    for (const args of name === "shadow" ? all : all.slice(0, 1)) {
      const r = cli(...args);
      assert.is(r.status, 1, `${args.join(" ")}: ${r.stderr}`);
      for (const w of SECRET_WORDS) assert.not.ok(r.stdout.includes(w) || r.stderr.includes(w), `${args.join(" ")} leaked ${w}: ${r.stderr}`);
    }
  }
  // As a set file: named with the count of bad lines, its lines not quoted.
  const pol = join(TMP, "with-shadow-set.yaml");
  writeFileSync(pol, POLICY_WITH_SET(join(TMP, "shadow")));
  const e = errorOf(() => compilePolicyFile(pol));
  assert.is(e.code, "not_a_set");
  assert.match(e.message, /shadow: not a set file: 3 of its lines are not addresses or prefixes and 0 are \(the first bad one is line 1\)$/);
  for (const w of SECRET_WORDS) assert.not.ok(e.all.some((x) => x.message.includes(w)), w);
  // A policy still gets its errors quoted: typos are worth showing.
  const typo = join(TMP, "typo.yaml");
  writeFileSync(typo, "version: 1\ndefualt: deny\nrules: []\n");
  assert.ok(errorOf(() => compilePolicyFile(typo)).all.some((x) => /^.*typo\.yaml:2:1: unknown key "defualt" in the policy \(did you mean "default"\?\)/.test(x.message)));
});

test("the daemon's reload of a file that is not a policy: the reply, the log and stats name it, and quote none of it", async () => {
  const secret = join(TMP, "reload-target");
  writeFileSync(secret, `${SECRETS.join("\n")}\n`);
  const logs: string[] = [];
  const d = new Daemon({ policy: DEFAULT_POLICY, mode: "host" }, new JsonLogger((l) => logs.push(l)));
  try {
    assert.ok((await d.reload()).ok);
    const rec = await d.reload(secret);
    assert.is(rec.ok, false);
    assert.match(rec.error!, /reload-target: not a policy: /);
    const said = [JSON.stringify(rec), ...logs, JSON.stringify(d.stats(), (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))].join("\n");
    for (const w of SECRET_WORDS) assert.not.ok(said.includes(w), `leaked ${w}`);
    assert.is(d.policy, DEFAULT_POLICY, "the live policy stays");
  } finally {
    await d.stop();
  }
});

test("aliases that expand without bound, and a YAML policy over its size limit: refused, in bounded time", () => {
  let yaml = "version: 1\ndefault: deny\ngroups:\n  a: &a\n";
  for (let i = 0; i < 5_000; i++) yaml += `    - 10.0.${i >> 8}.${i & 255}\n`;
  yaml += "rules:\n";
  for (let i = 0; i < 2_000; i++) yaml += "  - { action: allow, interface: external, direction: in, src: *a }\n";
  const path = join(TMP, "alias.yaml");
  writeFileSync(path, yaml);
  const t0 = Date.now();
  const e = errorOf(() => compilePolicyFile(path));
  assert.ok(e.all.some((x) => x.code === "alias_expansion" && /aliases expand to more than 100000 entries in all/.test(x.message)), e.message);
  assert.ok(Date.now() - t0 < 15_000, `${Date.now() - t0} ms`);
  // A few references are fine.
  writeFileSync(path, yaml.split("rules:\n")[0] + "rules:\n  - { action: allow, interface: external, direction: in, src: *a }\n");
  assert.is(compilePolicyFile(path).spec.rules.length, 1);
  // Over 4 MiB of YAML: refused before it is parsed.
  const big = join(TMP, "big.yaml");
  writeFileSync(big, `version: 1\ndefault: deny\nrules: []\n${"# padding\n".repeat((MAX_POLICY_TEXT / 10) + 1)}`);
  const b = errorOf(() => compilePolicyFile(big));
  assert.is(b.code, "policy_too_large");
  assert.match(b.message, new RegExp(`^.*big\\.yaml: the policy is \\d+ bytes, over the ${MAX_POLICY_TEXT}-byte limit of a YAML policy`));
});

const dportRule = (i: number): RuleSpec => ({
  action: "allow", log: false, ctx: null, src: null, dst: null, protos: [6], sport: null, dport: [[i + 1, i + 1]], tcpFlags: null, line: i + 1, info: `r${i}`,
});
const compiled = (rules: RuleSpec[]): CompiledPolicy => ({ spec: { rules, defaultAction: "deny" }, summary: { file: "big.yaml" } as PolicySummary });

test("a policy whose table is larger than the core takes is refused at check time, with its figures and the limits", () => {
  // 16,500 rules on distinct ports: as many bitmaps of 16,500 bits, over 32 MiB.
  const big = compiled(Array.from({ length: 16_500 }, (_, i) => dportRule(i)));
  const e = errorOf(() => buildPolicyTable(big));
  assert.is(e.code, "table_too_large");
  assert.is(e.line, 0);
  assert.match(e.message, new RegExp(`^big\\.yaml: the compiled table is \\d+ bytes with 16500 rules; the core takes at most ${ABI.DEFAULT_MAX_RULES} rules and ${ABI.DEFAULT_TABLE_CAP} bytes$`));
  const bytes = Number(/is (\d+) bytes/.exec(e.message)![1]);
  assert.ok(bytes > ABI.DEFAULT_TABLE_CAP && bytes < 64 << 20, String(bytes));
  // ... which is what the daemon's core would have said, later.
  const table = buildTable(big.spec).bytes;
  assert.is(table.length, bytes);
  assert.throws(() => new Core("release").loadTable(table), (x: unknown) => x instanceof TableError && x.code === "too_large");
  // More rules than the core counts: refused before anything is built.
  const many = errorOf(() => buildPolicyTable(compiled(Array.from({ length: ABI.DEFAULT_MAX_RULES + 1 }, () => dportRule(0)))));
  assert.is(many.code, "too_many_rules");
  assert.match(many.message, new RegExp(`^big\\.yaml: the policy puts ${ABI.DEFAULT_MAX_RULES + 1} rules in the table; the core takes at most`));
  // Just under the limits: built.
  assert.ok(buildPolicyTable(compiled(Array.from({ length: 2000 }, (_, i) => dportRule(i)))).bytes.length < ABI.DEFAULT_TABLE_CAP);
});

test("explain on a corrupt table: truncations and byte flips give one line (the core's refusal), never a RangeError", () => {
  const good = buildTable(compilePolicyFile(DEFAULT_POLICY, { mode: "host" }).spec).bytes;
  const flow = { iface: "external" as const, dir: "in" as const, proto: 6, src: "192.0.2.7", dst: "203.0.113.1", sport: 40000, dport: 443, flags: 2 };
  assert.is(explainFlow(good, flow, "host").rule, 1);
  let seed = 0x2545f491;
  const rand = (n: number): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) % n; };
  const cases: Uint8Array[] = [];
  for (const n of [0, 3, 4, 64, 127, 128, 129, 300, 4096, good.length >> 1, good.length - 1]) cases.push(good.slice(0, n));
  for (let i = 0; i < 150; i++) {
    const t = Uint8Array.from(good);
    const at = i < 60 ? rand(128) : rand(t.length); // the header most of all
    t[at] = t[at]! ^ (1 + rand(255));
    cases.push(t);
  }
  for (const t of cases) {
    try {
      explainFlow(t, flow, "host");
      assert.unreachable("a corrupt table was explained");
    } catch (e) {
      assert.instance(e, TableError, String(e));
      assert.match((e as Error).message, /^rule table refused: [a-z ]+( \(at byte \d+\))?(: it is format version \d+, this core reads version \d+; compile the policy again \(portcullis compile POLICY -o TABLE\))?$/);
    }
  }
  // The view itself never reads out of bounds, even without the core in front.
  for (const t of cases) {
    try { new TableView(t); } catch (e) { assert.instance(e, TableError, String(e)); }
  }
  // The command: one line, exit 1.
  const path = join(TMP, "cut.bin");
  writeFileSync(path, good.slice(0, 300));
  const r = cli("explain", path, "--iface", "external", "--dir", "in", "--proto", "tcp", "--src", "192.0.2.7", "--dst", "203.0.113.1", "--dport", "443");
  assert.is(r.status, 1);
  assert.is(r.stdout, "");
  assert.match(r.stderr, /^portcullis: error: .*cut\.bin: rule table refused: [a-z ]+( \(at byte \d+\))?\n$/);
});

test.after(() => rmSync(TMP, { recursive: true, force: true }));

test.run();
