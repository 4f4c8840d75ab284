// The C tools of the end-to-end benchmark, compiled with gcc -O2 into
// build/e2e/ when missing or older than their sources (as
// test/wasm2c/harness.ts builds its driver): pcb-udp (small-packet load and
// sink), pcb-tcp (connection rate, round trips, bulk) and pcb-nfq-accept
// (contender (c), the accept-all queue consumer; needs
// libnetfilter-queue-dev, which host/setup/ensure.sh installs).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SRC = join(ROOT, "bench", "e2e");
export const TOOL_DIR = join(ROOT, "build", "e2e");

export interface Tools { udp: string; tcp: string; nfqAccept: string }

const BUILDS: ReadonlyArray<{ key: keyof Tools; out: string; src: string; libs: string[] }> = [
  { key: "udp", out: "pcb-udp", src: "udp.c", libs: [] },
  { key: "tcp", out: "pcb-tcp", src: "tcp.c", libs: [] },
  { key: "nfqAccept", out: "pcb-nfq-accept", src: "nfq-accept.c", libs: ["-lnetfilter_queue", "-lnfnetlink"] },
];

function newer(a: string, b: string): boolean {
  return statSync(a).mtimeMs > statSync(b).mtimeMs;
}

// Builds what is stale; returns the paths. Throws with gcc's message.
export function buildTools(): Tools {
  mkdirSync(TOOL_DIR, { recursive: true });
  const out: Partial<Tools> = {};
  const header = join(SRC, "common.h");
  for (const b of BUILDS) {
    const bin = join(TOOL_DIR, b.out), src = join(SRC, b.src);
    if (!existsSync(src)) throw new Error(`${src} is missing (run from a checkout of the repository)`);
    if (!existsSync(bin) || newer(src, bin) || newer(header, bin)) {
      const tmp = `${bin}.tmp${process.pid}`;
      const r = spawnSync("gcc", ["-O2", "-Wall", "-Wextra", "-o", tmp, src, ...b.libs], { encoding: "utf8" });
      if (r.error) throw new Error(`cannot run gcc (Debian: gcc; bash host/setup/ensure.sh test): ${r.error.message}`);
      if (r.status !== 0) {
        const hint = b.libs.length ? " (libnetfilter-queue-dev installed? bash host/setup/ensure.sh test)" : "";
        throw new Error(`gcc could not build ${b.src}${hint}:\n${r.stderr.trim()}`);
      }
      renameSync(tmp, bin);
    }
    out[b.key] = bin;
  }
  return out as Tools;
}
