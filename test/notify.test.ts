// systemd notification: READY, WATCHDOG and STOPPING datagrams reach
// $NOTIFY_SOCKET (a python3 receiver stands in for systemd), from the module
// and from the real daemon in a network namespace.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { sdNotify } from "../host/daemon/notify.js";

// The receiver runs until stopped and prints each datagram as it comes.
const RECEIVER = `
import socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + path[1:] if path.startswith("@") else path)
print("listening", flush=True)
while True:
    print(repr(s.recv(4096).decode()), flush=True)
`;

interface Receiver {
  got(): string[]; //                                   the datagrams so far, in order
  waitFor(what: string, pred: (got: string[]) => boolean, ms?: number): Promise<string[]>;
  stop(): Promise<void>;
}

// Starts the receiver; resolves once it listens. Waits are on events, not
// on time: a loaded machine only makes them slower.
function receiver(path: string): Promise<Receiver> {
  const child = spawn("python3", ["-c", RECEIVER, path], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  const got = (): string[] => out.split("\n").filter((l) => l.startsWith("'")).map((l) => l.slice(1, -1).replace(/\\n/g, "\n"));
  const waiters = new Set<() => void>();
  const r: Receiver = {
    got,
    waitFor: (what, pred, ms = 30_000) => new Promise((resolve, reject) => {
      const check = (): void => { if (pred(got())) { clearTimeout(t); waiters.delete(check); resolve(got()); } };
      const t = setTimeout(() => { waiters.delete(check); reject(new Error(`no ${what} in ${ms} ms; got: ${got().join(" | ")}`)); }, ms);
      waiters.add(check);
      check();
    }),
    stop: async () => { child.kill("SIGKILL"); await exited; },
  };
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening")) resolve(r);
      for (const w of [...waiters]) w();
    });
  });
}

const CHILD = `
const { sdNotify, startWatchdog } = await import(process.argv[1]);
sdNotify("READY=1");
process.stdout.write(String(startWatchdog((e) => { console.error(e.message); process.exit(3); })) + "\\n");
setTimeout(() => { sdNotify("STOPPING=1"); process.exit(0); }, 700);
`;

test("without NOTIFY_SOCKET nothing is sent", () => {
  const saved = process.env.NOTIFY_SOCKET;
  delete process.env.NOTIFY_SOCKET;
  try { assert.is(sdNotify("READY=1"), false); } finally { if (saved !== undefined) process.env.NOTIFY_SOCKET = saved; }
});

for (const abstract of [false, true]) {
  test(`READY, then WATCHDOG every half period, then STOPPING (${abstract ? "abstract socket" : "socket file"})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "pc-notify-"));
    const path = abstract ? `@portcullis-test-${process.pid}` : join(dir, "notify.sock");
    try {
      const r = await receiver(path);
      try {
        const c = spawnSync(process.execPath, ["--input-type=module", "-e", CHILD, join(process.cwd(), "dist/host/daemon/notify.js")], {
          env: { ...process.env, NOTIFY_SOCKET: path, WATCHDOG_USEC: "200000" }, encoding: "utf8",
        });
        assert.is(c.status, 0, c.stderr);
        assert.is(c.stdout, "100\n", "pings every half of WATCHDOG_USEC (200 ms)");
        const got = await r.waitFor("STOPPING=1", (g) => g.includes("STOPPING=1"));
        assert.is(got[0], "READY=1");
        assert.is(got[got.length - 1], "STOPPING=1");
        const middle = got.slice(1, -1);
        assert.ok(middle.length >= 1, "at least one ping in 700 ms at 100 ms");
        assert.equal(middle.filter((x) => x !== "WATCHDOG=1"), [], "only pings between READY and STOPPING");
      } finally {
        await r.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("a NOTIFY_SOCKET nobody listens on: an Error with the errno name", () => {
  const saved = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = join(tmpdir(), `pc-notify-none-${process.pid}`);
  try {
    assert.throws(() => sdNotify("READY=1"), (e: unknown) => (e as { code?: string }).code === "ENOENT" && /sd_notify to .* failed \(ENOENT\)/.test((e as Error).message));
  } finally {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET; else process.env.NOTIFY_SOCKET = saved;
  }
});

test("the daemon itself: READY with its status once bound, watchdog pings, STOPPING on SIGTERM", async () => {
  const ns = `pcn${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), "pc-notify-"));
  const path = join(dir, "notify.sock");
  spawnSync("ip", ["netns", "del", ns]);
  let daemon: ChildProcess | null = null;
  try {
    assert.is(spawnSync("ip", ["netns", "add", ns]).status, 0);
    const r = await receiver(path);
    try {
      daemon = spawn("ip", ["netns", "exec", ns, process.execPath, "dist/host/cli.js", "run", "--policy", "host/policy/default.yaml",
        "--queue", "7", "--control", join(dir, "c.sock"), "--state-dir", join(dir, "state"), "--no-watch"], {
        env: { ...process.env, NOTIFY_SOCKET: path, WATCHDOG_USEC: "400000" }, stdio: ["ignore", "ignore", "inherit"],
      });
      const exit = new Promise<number | null>((res) => daemon!.once("exit", (c) => res(c)));
      await r.waitFor("READY", (g) => g.length > 0);
      await r.waitFor("3 watchdog pings", (g) => g.filter((x) => x === "WATCHDOG=1").length >= 3);
      daemon.kill("SIGTERM");
      const code = await exit;
      daemon = null;
      assert.is(code, 0);
      const got = await r.waitFor("STOPPING=1", (g) => g.includes("STOPPING=1"));
      assert.match(got[0]!, /^READY=1\nSTATUS=filtering queues 7 with host\/policy\/default\.yaml\nMAINPID=\d+$/);
      assert.equal(got.slice(1, -1).filter((x) => x !== "WATCHDOG=1"), [], got.join(" | "));
      assert.is(got[got.length - 1], "STOPPING=1");
    } finally {
      await r.stop();
    }
  } finally {
    if (daemon) daemon.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
