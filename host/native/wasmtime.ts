// The wasmtime engine (host/native/wasmtime.c, built by `npm run build:addon`
// into build/Release/wasmtime.node when host/setup/ensure.sh has installed
// the wasmtime C API library into .wasmtime/). It gives host/core the same
// shape V8's WebAssembly.Instance does: `memory.buffer` (an ArrayBuffer over
// the module's fixed-size memory, which wasmtime never moves) and the
// exports as functions. A compiled module is kept per distinct module
// bytes, so a second Core over the same build (a canary, a test) only
// instantiates.
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

export const WASMTIME_ADDON_PATH = fileURLToPath(new URL("../../../build/Release/wasmtime.node", import.meta.url));
export const WASMTIME_INSTALL_HINT = "run bash host/setup/ensure.sh test (it installs wasmtime==49.0.0 into .wasmtime/ with pip and builds build/Release/wasmtime.node)";

interface Addon {
  compile(bytes: Uint8Array): object;
  instantiate(module: object): { memory: ArrayBuffer | null; memoryName?: string; exports: Record<string, (...args: unknown[]) => unknown> };
}

// Thrown when the addon or the library is missing: code ENOWASMTIME.
export class WasmtimeMissing extends Error {
  readonly code = "ENOWASMTIME";
  constructor(detail: string) {
    super(`the wasmtime engine is not installed (${detail}): ${WASMTIME_INSTALL_HINT}`);
    this.name = "WasmtimeMissing";
  }
}

let addon: Addon | undefined;

function load(): Addon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(WASMTIME_ADDON_PATH) as Addon;
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0]!;
    const detail = (e as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" ? `no ${WASMTIME_ADDON_PATH}`
      : /_libwasmtime\.so/.test(msg) ? "the library _libwasmtime.so does not load" : msg;
    throw new WasmtimeMissing(detail);
  }
  return addon;
}

export function wasmtimeAvailable(): boolean {
  try { load(); return true; } catch { return false; }
}

// The module's memory as host/core reads it: fixed-size, so grow() only
// answers the size (delta 0) and refuses anything else, as V8 does for a
// memory at its maximum.
export class FixedMemory {
  constructor(readonly buffer: ArrayBuffer) {}
  grow(delta: number): number {
    if (delta === 0) return this.buffer.byteLength / 65536;
    throw new RangeError("WebAssembly.Memory.grow(): the memory is fixed-size (initial == maximum) and cannot grow");
  }
}

const modules = new Map<string, object>();

// Compiles (once per distinct bytes) and instantiates with no imports.
// Returns the exports with `memory` as V8's instance would have it.
export function instantiateWasmtime(bytes: Uint8Array): Record<string, unknown> {
  const a = load();
  const key = createHash("sha256").update(bytes).digest("hex");
  let mod = modules.get(key);
  if (!mod) {
    mod = a.compile(bytes);
    if (modules.size >= 8) modules.delete(modules.keys().next().value!);
    modules.set(key, mod);
  }
  const inst = a.instantiate(mod);
  if (!inst.memory || inst.memoryName !== "memory") {
    throw Object.assign(new Error("the module exports no memory named \"memory\""), { code: "EMEMORY" });
  }
  return { ...inst.exports, memory: new FixedMemory(inst.memory) };
}
