// The control socket: a Unix stream socket, owner-only (the socket is 0600,
// and a directory the daemon creates for it is 0700, so only its owner —
// root, or the service user — can connect). One JSON request per line, one
// JSON answer per line:
//   {"cmd":"stats"}                      -> {"ok":true,"stats":{...}}
//   {"cmd":"reload","path":"FILE"}       -> {"ok":true,...} | {"ok":false,"error":"..."}
// Anything else gets {"ok":false,"error":...}; a malformed line never
// disturbs the daemon.
//
// The directory: created (0700) only when missing; an existing one keeps its
// mode, and it and every directory above it must be safe (trustedDir below),
// or the daemon refuses to start. Whatever sits at the socket's path must be
// a socket of the daemon's own user that no daemon answers on, or nothing.
//
// A client cannot make the daemon grow or stall: the requests of one
// connection are answered one at a time, and while an answer waits to be
// written (the client does not read) nothing more is read from it, so
// pipelined requests stay in the client's socket buffer, not in the daemon;
// between two requests the event loop runs (the packet batches go first).
// At most `maxConnections` at once (more are told so and closed), and a
// connection that neither sends a request nor reads its answer for `idleMs`
// is closed.
import { chmodSync, constants, lstatSync, mkdirSync, realpathSync, rmSync, type Stats } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname, join, resolve, sep } from "node:path";

export const DEFAULT_CONTROL = "/run/portcullis/control.sock";
const MAX_LINE = 64 * 1024;
export const CONTROL_MAX_CONNECTIONS = 16;
export const CONTROL_IDLE_MS = 30_000;

export interface ControlLimits {
  maxConnections?: number; // default CONTROL_MAX_CONNECTIONS
  idleMs?: number; //         default CONTROL_IDLE_MS
}

export type Handler = (req: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

const line = (a: Record<string, unknown>): string => `${JSON.stringify(a, big)}\n`;

export class ControlServer {
  private server: Server | null = null;
  private readonly conns = new Set<Socket>();
  private readonly maxConnections: number;
  private readonly idleMs: number;
  refused = 0; //   connections over the cap
  timedOut = 0; //  connections closed for idleness

  constructor(readonly path: string, private readonly handler: Handler, limits: ControlLimits = {}) {
    this.maxConnections = limits.maxConnections ?? CONTROL_MAX_CONNECTIONS;
    this.idleMs = limits.idleMs ?? CONTROL_IDLE_MS;
  }

  async listen(): Promise<void> {
    const path = resolve(this.path);
    const dir = dirname(path);
    let st: Stats | null = null;
    try { st = lstatSync(dir); } catch (e) { if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e; }
    if (!st) {
      // Missing: made here, owner-only (directories above it that are missing too get the same mode).
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    }
    const why = trustedDir(dir);
    if (why) throw new Error(`control socket ${path}: ${why}`);
    await this.clearPath(path);
    const server = createServer((sock) => this.accept(sock));
    // The socket is created 0600 (no moment at which others could connect), then made so explicitly.
    const mask = process.umask(0o177);
    try {
      await new Promise<void>((res, rej) => {
        server.once("error", rej);
        server.listen(path, () => { server.off("error", rej); res(); });
        process.umask(mask);
      });
    } finally {
      process.umask(mask);
    }
    chmodSync(path, 0o600);
    this.server = server;
  }

  // What may sit at the socket's path: nothing, or a socket of ours that no daemon answers on (removed).
  private async clearPath(path: string): Promise<void> {
    let st: Stats;
    try { st = lstatSync(path); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    if (st.isSymbolicLink()) throw new Error(`control socket ${path}: a symbolic link is in its place; remove it`);
    if (!st.isSocket()) throw new Error(`control socket ${path}: the path exists and is not a socket; remove it or give another --control`);
    if (st.uid !== uid()) throw new Error(`control socket ${path}: a socket of uid ${st.uid} is in its place (the daemon runs as uid ${uid()}); remove it or give another --control`);
    // A socket left by a daemon that died: refuse if one still answers.
    if (await answers(path)) throw new Error(`another daemon answers on ${path}`);
    rmSync(path);
  }

  private accept(sock: Socket): void {
    sock.on("error", () => sock.destroy());
    if (this.conns.size >= this.maxConnections) {
      this.refused++;
      sock.end(line({ ok: false, error: `too many connections to the control socket (at most ${this.maxConnections}); try again later` }));
      sock.setTimeout(1000, () => sock.destroy());
      return;
    }
    this.conns.add(sock);
    sock.once("close", () => this.conns.delete(sock));
    this.serve(sock);
  }

  private serve(sock: Socket): void {
    let buf = "";
    let busy = false; //  a request is being answered (or its answer is being written)
    let timer: NodeJS.Timeout | null = null;
    const idle = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        this.timedOut++;
        if (sock.writableNeedDrain) sock.destroy(); // it does not read: nothing more can be said
        else sock.end(line({ ok: false, error: `idle for ${this.idleMs} ms: the control socket closes this connection` }));
      }, this.idleMs);
    };
    const quiet = (): void => { if (timer) clearTimeout(timer); timer = null; };
    sock.once("close", quiet);
    sock.setEncoding("utf8");
    idle();
    const pump = async (): Promise<void> => {
      busy = true;
      sock.pause();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const req = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        quiet();
        const a = await this.answer(req);
        if (sock.destroyed) return;
        const more = sock.write(line(a));
        idle();
        // The client does not read its answers: wait (idle timer running) until it does.
        if (!more) {
          await new Promise<void>((r) => {
            const done = (): void => { sock.off("drain", done); sock.off("close", done); r(); };
            sock.once("drain", done);
            sock.once("close", done);
          });
        }
        if (sock.destroyed) return;
        idle();
        // The packet batches and the other clients before the next request.
        await new Promise<void>((r) => setImmediate(r));
        if (sock.destroyed) return;
      }
      if (buf.length > MAX_LINE) {
        quiet();
        sock.end(line({ ok: false, error: "request line too long" }));
        return;
      }
      busy = false;
      sock.resume();
    };
    sock.on("data", (chunk: string) => {
      buf += chunk;
      idle();
      if (!busy) void pump();
    });
  }

  private async answer(line: string): Promise<Record<string, unknown>> {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return { ok: false, error: "not JSON: send one JSON object per line" };
    }
    if (typeof req !== "object" || req === null || Array.isArray(req) || typeof (req as { cmd?: unknown }).cmd !== "string") {
      return { ok: false, error: 'a request is an object with a string "cmd"' };
    }
    try {
      return await this.handler(req as Record<string, unknown>);
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  get connections(): number { return this.conns.size; }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    for (const c of this.conns) c.destroy();
    if (!s) return; // never listened: what is at the path is not ours
    await new Promise<void>((r) => s.close(() => r()));
    rmSync(this.path, { force: true });
  }
}

const uid = (): number => process.geteuid?.() ?? 0;

// Why a directory may not hold the control socket, or null when it may. It
// and every directory above it (symbolic links followed, each link owned by
// root or the daemon's user) must be owned by root or by the daemon's user,
// and writable by no one else unless the sticky bit is set: then others may
// add names but not remove or rename ours (/tmp, 1777 root, is allowed; the
// socket's own mode and the checks of clearPath do the rest). Anyone who
// could write such a directory could move the socket away and put their own
// in its place.
export function trustedDir(dir: string): string | null {
  const me = uid();
  const check = (p: string, st: Stats): string | null => {
    if (st.uid !== 0 && st.uid !== me) return `${p} belongs to uid ${st.uid}, not to root or the daemon's user (uid ${me})`;
    const open = st.mode & (constants.S_IWGRP | constants.S_IWOTH);
    if (open && !(st.mode & 0o1000) && !st.isSymbolicLink()) {
      return `${p} is writable by ${st.mode & constants.S_IWOTH ? "every user" : "its group"} (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}) ` +
        "without the sticky bit; give a --control path in a directory only the daemon's user can write";
    }
    return null;
  };
  const walk = (abs: string, depth: number): string | null => {
    if (depth > 40) return `${abs}: too many levels of symbolic links`;
    let cur: string = sep;
    const top = lstatSync(cur);
    const w = check(cur, top);
    if (w) return w;
    for (const part of abs.split(sep).filter(Boolean)) {
      const next = join(cur, part);
      let st: Stats;
      try { st = lstatSync(next); } catch (e) { return `${next}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`; }
      const bad = check(next, st);
      if (bad) return bad;
      if (st.isSymbolicLink()) {
        let real: string;
        try { real = realpathSync(next); } catch (e) { return `${next}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`; }
        const r = walk(real, depth + 1);
        if (r) return r;
        cur = real;
        continue;
      }
      if (!st.isDirectory()) return `${next} is not a directory`;
      cur = next;
    }
    return null;
  };
  return walk(resolve(dir), 0);
}

const big = (_: string, v: unknown): unknown => (typeof v === "bigint" ? Number(v) : v);

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => { c.destroy(); resolve(true); });
    c.once("error", () => resolve(false));
  });
}
// One request to a running daemon.
export function request(path: string, req: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let buf = "";
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`no answer from ${path} within ${timeoutMs} ms`)); }, timeoutMs);
    c.setEncoding("utf8");
    c.once("connect", () => c.write(`${JSON.stringify(req)}\n`));
    c.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        c.end();
        try { resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>); } catch (e) { reject(e as Error); }
      }
    });
    c.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`cannot reach the daemon at ${path}: ${connectError(e)}`), { code: e.code }));
    });
  });
}

// What a failed connect to the control socket means, for people.
export function connectError(e: { code?: string | undefined; message: string }): string {
  return e.code === "ENOENT" ? "no daemon is running (no control socket)"
    : e.code === "EACCES" || e.code === "EPERM" ? "permission denied: the control socket is owner-only (0600 in a 0700 directory); run as the daemon's user (root)"
    : e.code === "ECONNREFUSED" ? "the daemon is not answering (stale control socket)" : e.message;
}
