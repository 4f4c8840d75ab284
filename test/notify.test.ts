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

const RECEIVER = `
import socket, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + path[1:] if path.startswith("@") else path)
print("listening", flush=True)
end = time.time() + secs
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        print(repr(s.recv(4096).decode()), flush=True)
    except socket.timeout:
        pass
`;

// Starts the receiver; resolves once it listens. `done` resolves with every
// datagram it received, in order.
function receiver(path: string, secs: number): Promise<{ child: ChildProcess; done: Promise<string[]> }> {
  const child = spawn("python3", ["-c", RECEIVER, path, String(secs)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const done = new Promise<string[]>((resolve) => child.on("exit", () => resolve(
    out.split("\n").filter((l) => l.startsWith("'")).map((l) => l.slice(1, -1).replace(/\\n/g, "\n")))));
  return new Promise((resolve) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening")) resolve({ child, done });
    });
  });
}

const CHILD = `
const { sdNotify, startWatchdog } = await import(process.argv[1]);
sdNotify("READY=1");
startWatchdog((e) => { console.error(e.message); process.exit(3); });
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
      const r = await receiver(path, 1.5);
      const c = spawnSync(process.execPath, ["--input-type=module", "-e", CHILD, join(process.cwd(), "dist/host/daemon/notify.js")], {
        env: { ...process.env, NOTIFY_SOCKET: path, WATCHDOG_USEC: "200000" }, encoding: "utf8",
      });
      assert.is(c.status, 0, c.stderr);
      const got = await r.done;
      assert.is(got[0], "READY=1");
      assert.is(got[got.length - 1], "STOPPING=1");
      const pings = got.filter((x) => x === "WATCHDOG=1").length;
      assert.ok(pings >= 4 && pings <= 8, `${pings} pings in 700 ms at 100 ms`);
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
    const r = await receiver(path, 4);
    daemon = spawn("ip", ["netns", "exec", ns, process.execPath, "dist/host/cli.js", "run", "--policy", "host/policy/default.yaml",
      "--queue", "7", "--control", join(dir, "c.sock"), "--state-dir", join(dir, "state"), "--no-watch"], {
      env: { ...process.env, NOTIFY_SOCKET: path, WATCHDOG_USEC: "400000" }, stdio: ["ignore", "ignore", "inherit"],
    });
    await new Promise((res) => setTimeout(res, 2500));
    daemon.kill("SIGTERM");
    const code = await new Promise<number | null>((res) => daemon!.on("exit", (c) => res(c)));
    daemon = null;
    assert.is(code, 0);
    const got = await r.done;
    assert.match(got[0]!, /^READY=1\nSTATUS=filtering queues 7 with host\/policy\/default\.yaml\nMAINPID=\d+$/);
    assert.ok(got.filter((x) => x === "WATCHDOG=1").length >= 3, got.join(" | "));
    assert.is(got[got.length - 1], "STOPPING=1");
  } finally {
    if (daemon) daemon.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
