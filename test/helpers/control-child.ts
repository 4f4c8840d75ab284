// A daemon with its control socket and no packet sources, in a process of
// its own, so that a test can read its memory from /proc:
//   node dist/test/helpers/control-child.js SOCK
// Prints "ready" once it answers; SIGTERM stops it.
import { Daemon } from "../../host/daemon/daemon.js";
import { JsonLogger } from "../../host/daemon/log.js";

const d = new Daemon({ policy: "host/policy/default.yaml", mode: "host", control: process.argv[2]! }, new JsonLogger(() => {}));
if (!(await d.reload()).ok) throw new Error("the default policy did not load");
await d.listen();
process.on("SIGTERM", () => { void d.stop().then(() => process.exit(0)); });
process.stdout.write("ready\n");
