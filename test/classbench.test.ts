// ClassBench (../shared/classbench/hypersplit): every trace line classified
// by the core's first-match classifier must name the rule the trace's last
// column names. All twelve sets, 100 to 10K rules; and the command itself.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runClassBench } from "../host/commands/classbench.js";
import { MAX_OPERATOR_FILE } from "../host/io/operator-file.js";
import { ClassBenchError, parseFilter, parseTrace } from "../host/rules/classbench.js";

const DIR = join(process.cwd(), "..", "shared", "classbench", "hypersplit");
const SETS = ["acl1_100", "fw1_100", "ipc1_100", "acl1_1K", "fw1_1K", "ipc1_1K", "acl1", "fw1", "ipc1", "acl1_10K", "fw1_10K", "ipc1_10K"];
const tracePath = (name: string): string => join(DIR, existsSync(join(DIR, `${name}.trace`)) ? `${name}.trace` : `${name}.trace.gz`);

test("the ClassBench data is beside the checkout", () => {
  assert.ok(existsSync(DIR), `${DIR} is missing: CI runs with ../shared beside the clone`);
});

for (const name of SETS) {
  test(`${name}: 0 mismatches over the whole trace`, () => {
    const run = runClassBench(join(DIR, `${name}.rules`), tracePath(name));
    assert.ok(run.checked > 900, `checked ${run.checked}`);
    assert.is(run.mismatched, 0, `first mismatch at line ${run.firstMismatch}`);
    if (name.endsWith("10K")) {
      assert.ok(run.tableBytes < 64 * 1024 * 1024, `table ${run.tableBytes} bytes`);
    }
  });
}

test("both filter forms: 9 tokens, and tabs with a flags field", () => {
  const a = parseFilter("@192.0.2.0/24 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF", 0);
  const b = parseFilter("@192.0.2.0/24\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0200/0x0200", 1);
  assert.equal(a.src, { v4: [[0xc0000200, 0xc00002ff]], v6: [] });
  assert.equal(a.dport, [[80, 80]]);
  assert.equal(a.protos, [6]);
  assert.is(a.tcpFlags, null);
  assert.equal(b.src, a.src);
  assert.equal(b.dport, a.dport);
  assert.is(b.tcpFlags, null, "0x0200 is outside the TCP flag byte");
  const c = parseFilter("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00 0x0012/0x00ff", 2);
  assert.is(c.protos, null);
  assert.equal(c.tcpFlags, { value: 0x12, mask: 0xff });
  // Host bits below the prefix are masked.
  assert.equal(parseFilter("@10.1.2.3/8 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00", 3).src, { v4: [[0x0a000000, 0x0affffff]], v6: [] });
});

test("malformed filters and traces are refused with file:line", () => {
  const bad = [
    "192.0.2.0/24 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF",
    "@192.0.2.0/33 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF",
    "@192.0.2.300/24 0.0.0.0/0 0 : 65535 80 : 80 0x06/0xFF",
    "@192.0.2.0/24 0.0.0.0/0 0 : 70000 80 : 80 0x06/0xFF",
    "@192.0.2.0/24 0.0.0.0/0 9 : 1 80 : 80 0x06/0xFF",
    "@192.0.2.0/24 0.0.0.0/0 0 : 65535 80 : 80 tcp",
    "@192.0.2.0/24 0.0.0.0/0 0 : 65535",
  ];
  for (const line of bad) {
    assert.throws(() => parseFilter(line, 4, "f.rules"), (e: unknown) => e instanceof ClassBenchError && e.code === "EBADRULE" && /^f\.rules:5: /.test(e.message), line);
  }
  assert.throws(() => parseTrace("1 2 3 4 6 1\n1 2 3\n", "t"), (e: unknown) => e instanceof ClassBenchError && /^t:2: /.test(e.message));
  assert.throws(() => parseTrace("1 2 3 4 256 1\n", "t"), /out of range/);
});

test("the command: indices per line, --check summary, errors", () => {
  const tmp = mkdtempSync(join(tmpdir(), "pc-cb-"));
  try {
    const rules = join(tmp, "r");
    writeFileSync(rules, "@10.0.0.0/8 0.0.0.0/0 0 : 65535 22 : 22 0x06/0xFF\n@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00\n");
    const trace = join(tmp, "t");
    // 10.0.0.1 -> any:22 tcp matches rule 1; udp to 22 matches rule 2; the third line claims rule 1 wrongly.
    writeFileSync(trace, "167772161 1 1000 22 6 1\n167772161 1 1000 22 17 2\n167772161 1 1000 23 6 1\n");
    const run = (...args: string[]) => spawnSync(process.execPath, ["bin/portcullis.js", "classbench", ...args], { encoding: "utf8" });
    const plain = run(rules, trace);
    assert.is(plain.status, 0, plain.stderr);
    assert.is(plain.stdout, "1\n2\n2\n");
    const check = run(rules, trace, "--check");
    assert.is(check.status, 1);
    assert.match(check.stdout, /^checked 3, mismatched 1$/m);
    assert.match(check.stdout, /first mismatch at trace line 3/);
    const missing = run(join(tmp, "nope"), trace);
    assert.is(missing.status, 1);
    assert.match(missing.stderr, /nope: no such filter set file/);
    // A trace that is a FIFO is refused without waiting for a writer; a gzip
    // that expands past the file limit is refused, not decompressed whole.
    const fifo = join(tmp, "fifo");
    assert.is(spawnSync("mkfifo", [fifo]).status, 0);
    const f = spawnSync(process.execPath, ["bin/portcullis.js", "classbench", rules, fifo], { encoding: "utf8", timeout: 20_000 });
    assert.is(f.status, 1);
    assert.match(f.stderr, /^portcullis: error: .*fifo: the trace must be a regular file, not a FIFO\n$/);
    const bomb = join(tmp, "bomb.gz");
    writeFileSync(bomb, gzipSync(Buffer.alloc(MAX_OPERATOR_FILE + 1, 0x31)));
    const b = run(rules, bomb);
    assert.is(b.status, 1);
    assert.match(b.stderr, new RegExp(`^portcullis: error: cannot decompress trace .*bomb\\.gz: it decompresses to more than ${MAX_OPERATOR_FILE} bytes\n$`));
    const flag = run(rules, trace, "--bogus");
    assert.is(flag.status, 1);
    assert.match(flag.stderr, /unknown option/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
