// The one atomic write (host/io/atomic-write.ts), sync and async: the file
// is replaced whole, no temporary file stays, a leftover temporary file (even
// a link) is replaced without being followed, and a missing directory, a
// directory where the file belongs or a directory that refuses new files give
// one clear line and leave what was there as it was.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { AtomicWriteError, temporaryFile, writeFileAtomic, writeFileAtomicAsync } from "../host/io/atomic-write.js";

// /var/tmp: a disk file system, where chattr works (tmpfs has no immutable flag).
const TMP = mkdtempSync(join("/var/tmp", "portcullis-atomic-test-"));
let n = 0;
const fresh = (): string => { const d = join(TMP, `t${n++}`); mkdirSync(d); return d; };

type Write = (path: string, data: Uint8Array | string, o?: { mode?: number; tmp?: string }) => Promise<void>;
const FORMS: Array<[string, Write]> = [
  ["sync", async (p, d, o) => writeFileAtomic(p, d, o)],
  ["async", writeFileAtomicAsync],
];

async function failure(w: () => Promise<void>): Promise<AtomicWriteError> {
  const e = await w().then(() => null, (x: unknown) => x);
  if (e instanceof AtomicWriteError) return e;
  throw new Error(`expected an AtomicWriteError, got ${String(e)}`);
}

for (const [form, write] of FORMS) {
  test(`${form}: writes and replaces the file whole, with its mode, leaving no temporary file`, async () => {
    const d = fresh();
    const f = join(d, "table.bin");
    await write(f, new Uint8Array([1, 2, 3]), { mode: 0o640 });
    assert.equal([...readFileSync(f)], [1, 2, 3]);
    assert.is(statSync(f).mode & 0o777, 0o640 & ~process.umask());
    const ino = statSync(f).ino;
    await write(f, "second\n");
    assert.is(readFileSync(f, "utf8"), "second\n");
    assert.is.not(statSync(f).ino, ino, "a new file renamed over the old one, not rewritten in place");
    assert.is(statSync(f).mode & 0o777, 0o600 & ~process.umask(), "the default mode is 0600");
    assert.equal(readdirSync(d), ["table.bin"]);
  });

  test(`${form}: a temporary file left behind (here a link) is replaced, never followed`, async () => {
    const d = fresh();
    const f = join(d, "note.json");
    const outside = join(d, "outside");
    writeFileSync(outside, "keep me\n");
    symlinkSync(outside, temporaryFile(f));
    await write(f, "{}\n");
    assert.is(readFileSync(f, "utf8"), "{}\n");
    assert.is(readFileSync(outside, "utf8"), "keep me\n");
    assert.equal(readdirSync(d).sort(), ["note.json", "outside"]);
  });

  test(`${form}: a missing directory is one clear error, and nothing is created`, async () => {
    const d = fresh();
    const f = join(d, "no", "such", "t.bin");
    const e = await failure(() => write(f, "x"));
    assert.is(e.message, `cannot write ${f}: its directory does not exist (ENOENT)`);
    assert.is(e.code, "ENOENT");
    assert.equal(readdirSync(d), []);
  });

  test(`${form}: a directory where the file belongs is an error; the directory and its contents stay, no temporary file`, async () => {
    const d = fresh();
    const f = join(d, "t.bin");
    mkdirSync(f);
    writeFileSync(join(f, "inside"), "old\n");
    const e = await failure(() => write(f, "x"));
    assert.is(e.message, `cannot write ${f}: a directory is where the file belongs (EISDIR)`);
    assert.equal(readdirSync(d), ["t.bin"]);
    assert.is(readFileSync(join(f, "inside"), "utf8"), "old\n");
  });

  test(`${form}: a directory that refuses new files (immutable) is an error; the old file stays as it was`, async () => {
    const d = fresh();
    const f = join(d, "t.bin");
    writeFileSync(f, "old\n");
    assert.is(spawnSync("chattr", ["+i", d]).status, 0, "chattr +i");
    try {
      const e = await failure(() => write(f, "new\n"));
      assert.is(e.message, `cannot write ${f}: permission denied (EPERM)`);
    } finally {
      spawnSync("chattr", ["-i", d]);
    }
    assert.is(readFileSync(f, "utf8"), "old\n");
    assert.equal(readdirSync(d), ["t.bin"]);
  });
}

test.after(() => { if (existsSync(TMP)) rmSync(TMP, { recursive: true, force: true }); });

test.run();
