// The conntrack addon inside a network namespace, for test/ct.test.ts
// (`ip netns exec NS node dist/test/helpers/ct-child.js`): a handle opened
// with events, driven by JSON lines on stdin.
//
//   stdin:  {"id": N, "op": "dump" | "create" | "createMany" | "setMark" | "remove" |
//            "removeMarked" | "onDestroy" | "stats" | "close" | "reopen" | "badCallback",
//            "args": [...]}
//   stdout: "READY" once open ({"openFailed": {name, code, message}} and exit
//           when open() throws; --no-events: opened without events); {"id": N, "ok": true, "value": ...} or
//           {"id": N, "ok": false, "error": {name, code, message, removed}};
//           {"event": [entries], "overflowed": bool} once per destroy callback.
// "onDestroy" with args [filter] installs a callback that prints the events;
// [filter, null] stops. "badCallback" passes a non-function callback.
import { createInterface } from "node:readline";
import { Conntrack, type CtError } from "../../host/native/ct.js";

const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + "\n");
let ct: Conntrack;
try {
  ct = Conntrack.open({ events: !process.argv.includes("--no-events") });
} catch (e) {
  const err = e as CtError;
  out({ openFailed: { name: err.name, code: err.code, message: err.message } });
  process.exit(0);
}
const printEvents = (ended: unknown[], overflowed: boolean): void => out({ event: ended, overflowed });

type Req = { id: number; op: string; args: unknown[] };
function call(r: Req): unknown {
  const a = r.args ?? [];
  const c = ct as unknown as Record<string, (...x: unknown[]) => unknown>;
  switch (r.op) {
    case "onDestroy":
      return ct.onDestroy(a[0] as never, a.length > 1 && a[1] === null ? null : printEvents);
    case "badCallback":
      return ct.onDestroy(a[0] as never, a[1] as never);
    case "reopen": // closes this handle, opens another with options a[0]
      ct.close();
      ct = Conntrack.open(a[0] as never);
      return null;
    default:
      if (typeof c[r.op] !== "function") throw new Error(`no op ${r.op}`);
      return c[r.op]!.apply(ct, a);
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const r = JSON.parse(line) as Req;
  try {
    out({ id: r.id, ok: true, value: call(r) ?? null });
  } catch (e) {
    const err = e as CtError;
    out({ id: r.id, ok: false, error: { name: err.name, code: err.code, message: err.message, removed: err.removed } });
  }
}).on("close", () => process.exit(0));
process.stdout.write("READY\n");
