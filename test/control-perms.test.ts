// The control socket refuses other users: a process running as nobody gets
// EACCES (from the 0700 directory, and from the 0600 socket alone when the
// directory is opened up), and the client's message for EACCES says why.
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { connectError, request } from "../host/daemon/control.js";
import { Daemon } from "../host/daemon/daemon.js";
import { JsonLogger } from "../host/daemon/log.js";

// The child imports nothing of the project (nobody may not read the checkout).
const CLIENT = `
const c = require("net").createConnection(process.argv[1]);
c.setTimeout(5000, () => { console.log("TIMEOUT"); c.destroy(); });
c.on("connect", () => c.write('{"cmd":"stats"}\\n'));
c.on("data", (d) => { console.log("ANSWERED " + String(d).slice(0, 40)); c.destroy(); });
c.on("error", (e) => console.log("uid " + process.getuid() + " " + e.code));
`;

// Async: the daemon answers from this process's event loop.
function asNobody(sock: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", CLIENT, sock],
      { cwd: "/", stdio: ["ignore", "pipe", "pipe"], timeout: 15_000 });
    let out = "", err = "";
    c.stdout.on("data", (d: Buffer) => { out += String(d); });
    c.stderr.on("data", (d: Buffer) => { err += String(d); });
    c.on("error", reject);
    c.on("close", () => resolve(out.trim() || `no output; stderr: ${err}`));
  });
}

// A directory every user can traverse (the machine's /tmp may be 0700, and
// then nobody is refused by /tmp already, which would prove nothing).
function traversable(): string {
  const ok = (p: string): boolean => {
    for (let d = p; ; d = dirname(d)) {
      try { if ((statSync(d).mode & 0o001) === 0) return false; } catch { return false; }
      if (d === "/") return true;
    }
  };
  const found = [tmpdir(), "/var/tmp", "/dev/shm", "/run"].find(ok);
  if (!found) throw new Error("no directory that other users can traverse, to put the test socket in");
  return found;
}

test("a process running as nobody cannot use the control socket; its owner can", async () => {
  if (process.getuid?.() !== 0) throw new Error("this test switches to nobody with setpriv and needs root (the test suite runs as root)");
  const dir = mkdtempSync(join(traversable(), "pc-perms-"));
  chmodSync(dir, 0o755); // only the daemon's own directory and socket stand in the way
  const sock = join(dir, "run", "control.sock");
  const d = new Daemon({ policy: "host/policy/default.yaml", mode: "host", control: sock }, new JsonLogger(() => {}));
  try {
    assert.ok((await d.reload()).ok);
    await d.listen();
    assert.is(statSync(join(dir, "run")).mode & 0o777, 0o700);
    assert.is(statSync(sock).mode & 0o777, 0o600);
    assert.is(await asNobody(sock), "uid 65534 EACCES", "the 0700 directory refuses");
    // With the directory opened up, the 0600 socket alone still refuses.
    chmodSync(join(dir, "run"), 0o755);
    assert.is(await asNobody(sock), "uid 65534 EACCES", "the 0600 socket refuses");
    // A world-writable socket would answer: the check above is not vacuous.
    chmodSync(sock, 0o666);
    const open = await asNobody(sock);
    assert.match(open, /^ANSWERED \{"ok":true/, open);
    chmodSync(sock, 0o600);
    chmodSync(join(dir, "run"), 0o700);
    // The owner still gets answers.
    assert.is((await request(sock, { cmd: "stats" })).ok, true);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the client's messages for connect errors", async () => {
  assert.match(connectError({ code: "EACCES", message: "connect EACCES /x" }), /^permission denied: the control socket is owner-only \(0600 in a 0700 directory\); run as the daemon's user \(root\)$/);
  assert.match(connectError({ code: "ENOENT", message: "" }), /no daemon is running/);
  assert.match(connectError({ code: "ECONNREFUSED", message: "" }), /stale control socket/);
  assert.is(connectError({ code: "EOTHER", message: "something else" }), "something else");
  await request("/nonexistent/dir/control.sock", { cmd: "stats" }).then(
    () => assert.unreachable(),
    (e: Error & { code?: string }) => {
      assert.is(e.code, "ENOENT");
      assert.is(e.message, "cannot reach the daemon at /nonexistent/dir/control.sock: no daemon is running (no control socket)");
    });
});

test.run();
