// The control socket refuses other users: a process running as nobody gets
// EACCES (from the 0700 directory, and from the 0600 socket alone when the
// directory is opened up), and the client's message for EACCES says why.
// Its directory: created 0700 when missing, never chmodded when it exists,
// refused when it or a directory above it could be written by others; what
// sits at the socket's path must be a stale socket of the daemon's own user.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { connectError, ControlServer, request } from "../host/daemon/control.js";
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

const mode = (p: string): string => (statSync(p).mode & 0o7777).toString(8).padStart(4, "0");
// Every server a test starts is closed at its end, failed or not (one left open would keep the run alive).
const started: ControlServer[] = [];
const serve = (path: string): ControlServer => { const c = new ControlServer(path, () => ({ ok: true, pong: 1 })); started.push(c); return c; };
const closeAll = async (): Promise<void> => { for (const c of started.splice(0)) await c.close(); };
async function refused(path: string, why: RegExp): Promise<void> {
  const c = serve(path);
  const e = await c.listen().then(() => null, (x: Error) => x);
  assert.ok(e, `${path} was accepted`);
  assert.match(e!.message, why);
  assert.not.match(e!.message, /\n/, "one line");
}
// A test in a fresh directory (prefix), removed at its end with every server it started.
const inTempDir = (prefix: string, fn: (base: string) => Promise<void>) => async (): Promise<void> => {
  const base = mkdtempSync(join(tmpdir(), prefix));
  try {
    await fn(base);
  } finally {
    await closeAll();
    rmSync(base, { recursive: true, force: true });
  }
};
// A socket file no daemon listens on (a daemon killed with SIGKILL leaves one).
function staleSocket(path: string): void {
  const r = spawnSync("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]);
  assert.is(r.status, 0, String(r.stderr));
  assert.ok(lstatSync(path).isSocket());
}

test("an existing directory keeps its mode (a /tmp-like 1777 one too); a missing one is created 0700", inTempDir("pc-ctldir-", async (base) => {
  chmodSync(base, 0o755);
  // Like /tmp: world-writable with the sticky bit, owned by root.
  const sticky = join(base, "tmp");
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  for (const [dir, want] of [[base, "0755"], [sticky, "1777"]] as const) {
    const c = serve(join(dir, "x.sock"));
    await c.listen();
    assert.is(mode(dir), want, `${dir} keeps its mode`);
    assert.is(mode(join(dir, "x.sock")), "0600");
    assert.is((await request(join(dir, "x.sock"), { cmd: "ping" })).pong, 1);
    await c.close();
  }
  const c = serve(join(base, "a", "b", "x.sock"));
  await c.listen();
  assert.equal([mode(join(base, "a")), mode(join(base, "a", "b")), mode(base)], ["0700", "0700", "0755"]);
  await c.close();
}));

test("a directory others can write (or an ancestor), or one of another user, is refused with one line, and left as it was", inTempDir("pc-ctldir-", async (base) => {
  chmodSync(base, 0o755);
  const world = join(base, "world"), group = join(base, "group"), theirs = join(base, "theirs"), inner = join(world, "inner");
  for (const d of [world, group, theirs]) mkdirSync(d);
  chmodSync(world, 0o777);
  chmodSync(group, 0o770);
  chownSync(theirs, 65534, 65534);
  mkdirSync(inner, { mode: 0o700 });
  await refused(join(world, "x.sock"), new RegExp(`^control socket ${world}/x\\.sock: ${world} is writable by every user \\(mode 0777\\) without the sticky bit; give a --control path`));
  await refused(join(group, "x.sock"), new RegExp(`${group} is writable by its group \\(mode 0770\\) without the sticky bit`));
  await refused(join(theirs, "x.sock"), new RegExp(`${theirs} belongs to uid 65534, not to root or the daemon's user \\(uid 0\\)$`));
  await refused(join(inner, "x.sock"), new RegExp(`: ${world} is writable by every user`), );
  // A missing directory under an unsafe one is not created.
  await refused(join(world, "new", "x.sock"), new RegExp(`: ${world} is writable by every user`));
  assert.equal([mode(world), mode(group), mode(theirs), mode(inner)], ["0777", "0770", "0755", "0700"], "modes unchanged");
  // A symbolic link in the path: followed, but it must be ours (or root's), and so must its target.
  const link = join(base, "link");
  symlinkSync(inner, link);
  await refused(join(link, "x.sock"), new RegExp(`: ${world} is writable by every user`));
  const good = join(base, "good");
  mkdirSync(good, { mode: 0o700 });
  const link2 = join(base, "link2");
  symlinkSync(good, link2);
  const c = serve(join(link2, "x.sock"));
  await c.listen();
  await c.close();
  lchownSync(link2, 65534, 65534);
  await refused(join(link2, "x.sock"), new RegExp(`${link2} belongs to uid 65534`));
}));

test("at the socket's path: a file, a symbolic link, another user's socket are refused and left; our stale socket is replaced", inTempDir("pc-ctlpath-", async (base) => {
  const file = join(base, "file.sock");
  writeFileSync(file, "keep me");
  await refused(file, /file\.sock: the path exists and is not a socket; remove it or give another --control$/);
  assert.is(readFileSync(file, "utf8"), "keep me");
  const target = join(base, "target");
  writeFileSync(target, "keep me too");
  const link = join(base, "link.sock");
  symlinkSync(target, link);
  await refused(link, /link\.sock: a symbolic link is in its place; remove it$/);
  assert.ok(lstatSync(link).isSymbolicLink());
  const theirs = join(base, "theirs.sock");
  staleSocket(theirs);
  lchownSync(theirs, 65534, 65534);
  await refused(theirs, /theirs\.sock: a socket of uid 65534 is in its place \(the daemon runs as uid 0\); remove it or give another --control$/);
  assert.is(lstatSync(theirs).uid, 65534, "left in place");
  const ours = join(base, "ours.sock");
  staleSocket(ours);
  const c = serve(ours);
  await c.listen();
  assert.is((await request(ours, { cmd: "ping" })).pong, 1);
  // A second server on the same path: another daemon answers there.
  await refused(ours, /^another daemon answers on /);
  await c.close();
}));

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
