// The control socket: a Unix stream socket, owner-only (the directory is
// 0700 and the socket 0600, so only its owner — root, or the service user —
// can connect). One JSON request per line, one JSON answer per line:
//   {"cmd":"stats"}                      -> {"ok":true,"stats":{...}}
//   {"cmd":"reload","path":"FILE"}       -> {"ok":true,...} | {"ok":false,"error":"..."}
// Anything else gets {"ok":false,"error":...}; a malformed line never
// disturbs the daemon.
import { chmodSync, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";

export const DEFAULT_CONTROL = "/run/portcullis/control.sock";
const MAX_LINE = 64 * 1024;

export type Handler = (req: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

export class ControlServer {
  private server: Server | null = null;
  constructor(readonly path: string, private readonly handler: Handler) {}

  async listen(): Promise<void> {
    const dir = dirname(this.path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    if (existsSync(this.path)) {
      // A socket left by a daemon that died: refuse if one still answers.
      if (await answers(this.path)) throw new Error(`another daemon answers on ${this.path}`);
      if (!statSync(this.path).isSocket()) throw new Error(`${this.path} exists and is not a socket`);
      rmSync(this.path);
    }
    const server = createServer((sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => { server.off("error", reject); resolve(); });
    });
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  private serve(sock: Socket): void {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("error", () => sock.destroy());
    sock.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && !buf.includes("\n")) {
        sock.end(`${JSON.stringify({ ok: false, error: "request line too long" })}\n`);
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.answer(line).then((a) => { if (!sock.destroyed) sock.write(`${JSON.stringify(a, big)}\n`); });
      }
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

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
    rmSync(this.path, { force: true });
  }
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
