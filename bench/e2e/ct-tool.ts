// node dist/bench/e2e/ct-tool.js create N MARK SRC DST DPORT | remove-marked MARK:
// the revocation benchmark's conntrack entries, run inside the filter
// namespace (`ip netns exec`; the ct addon talks to the caller's namespace).
// create: N established TCP entries SRC:(10000+i) -> DST:DPORT with the
// connmark MARK (as a daemon's offload verdict leaves them); remove-marked:
// what ctnetlink deletion of every entry with MARK takes (the alternative
// to a generation switch). Prints one JSON line.
import { Conntrack } from "../../host/native/ct.js";

const [cmd, ...a] = process.argv.slice(2);
const ct = Conntrack.open();
try {
  if (cmd === "create") {
    const [n, mark, src, dst, dport] = a;
    const t0 = performance.now();
    const all = Array.from({ length: Number(n) }, (_, i) => ({
      family: 4 as const, proto: 6, src: src!, dst: dst!, sport: 10000 + i, dport: Number(dport), timeout: 3600, tcpState: "ESTABLISHED", mark: Number(mark),
    }));
    let made = 0;
    const failed: Record<string, number[]> = {};
    try {
      made = ct.createMany(all);
    } catch {
      // One by one, to say which tuples the kernel refused and why.
      made = 0;
      for (const e of all) {
        try { ct.create(e); made++; } catch (x) { const c = (x as { code?: string }).code ?? "error"; (failed[c] ??= []).push(e.sport); }
      }
    }
    console.log(JSON.stringify({ created: made, ms: performance.now() - t0, failed: Object.fromEntries(Object.entries(failed).map(([k, v]) => [k, `${v.length}: ${v.slice(0, 5).join(",")}`])) }));
  } else if (cmd === "remove-marked") {
    // The offload bit and generation of MARK (the daemon's revocation filter).
    const r = ct.removeMarked({ mark: (Number(a[0]) & 0xff000000) >>> 0, mask: 0xff000000 });
    console.log(JSON.stringify(r));
  } else {
    console.error("usage: ct-tool.js create N MARK SRC DST DPORT | remove-marked MARK");
    process.exitCode = 2;
  }
} catch (e) {
  const err = e as Error & { code?: string };
  console.log(JSON.stringify({ error: `${err.code ?? "error"}: ${err.message}` }));
  process.exitCode = 1;
} finally {
  ct.close();
}
