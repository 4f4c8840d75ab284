// `--engine v8|wasmtime`, the same option for run, replay, classbench and
// demo: which engine runs the core (host/core/load.ts, ENGINES).
import { Option } from "commander";
import { DEFAULT_ENGINE, ENGINES } from "../core/load.js";

export function engineOption(what = "the core"): Option {
  return new Option("--engine <engine>", `what runs ${what}: V8 (this Node's WebAssembly) or wasmtime (Cranelift, the addon build/Release/wasmtime.node); default ${DEFAULT_ENGINE}`)
    .choices(ENGINES);
}
