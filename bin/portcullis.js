#!/usr/bin/env node
// The package's command: the compiled CLI (npm run build writes dist/).
try {
  await import("../dist/host/cli.js");
} catch (e) {
  if (e?.code === "ERR_MODULE_NOT_FOUND" && String(e.message).includes("dist/host/cli.js")) {
    console.error("portcullis: the CLI is not built yet (run npm run build)");
    process.exit(1);
  }
  throw e;
}
