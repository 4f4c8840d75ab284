// The reference topology from a shell (root):
//   node dist/host/topology/main.js up [host|gateway] [--prefix P]
//   node dist/host/topology/main.js down [--prefix P]
// `up` leaves the namespaces and servers running and exits; `down` ends the
// servers and deletes the namespaces (also after an interrupted run).
import { clearLeftovers, up } from "./topology.js";
import { type Mode } from "../policy/compile.js";

async function main(argv: string[]): Promise<void> {
  const i = argv.indexOf("--prefix");
  const prefix = i >= 0 ? argv[i + 1] ?? "" : "";
  const rest = argv.filter((_, k) => k !== i && k !== i + 1);
  const [cmd, modeArg] = rest;
  if (cmd === "up") {
    const mode = (modeArg ?? "host") as Mode;
    if (mode !== "host" && mode !== "gateway") throw new Error(`mode must be host or gateway, not "${mode}"`);
    const t = await up({ mode, prefix, detach: true });
    const names = t.plan.namespaces.map((r) => t.ns(r)).join(", ");
    process.stdout.write(`topology up (${mode}): namespaces ${names}; state in ${t.dir}\n` +
      `try: ip netns exec ${t.ns("inet")} curl -s http://203.0.113.1/\n`);
  } else if (cmd === "down") {
    const removed = await clearLeftovers(prefix);
    process.stdout.write(removed.length ? `removed: ${removed.join(", ")}\n` : "nothing to remove\n");
  } else {
    throw new Error("usage: main.js up [host|gateway] [--prefix P] | down [--prefix P]");
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`topology: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
