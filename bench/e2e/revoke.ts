// Revoking 10,000 offloaded flows (issue 15 step 2): what a reload with
// --recheck costs when the new table refuses every flow the kernel carries.
// Each round: 10,000 established TCP entries with an offload mark of this
// generation go into the filter namespace's conntrack table (ct-tool.js: as
// a daemon's verdicts leave them; one flow per source port from REVOKE_SRC,
// an Internet address the generator does not use, toward the listener's
// port 80), a daemon with offload on starts and adopts them
// (on_start: adopt, decided again by the bench policy, which allows them),
// then `reload --recheck` a policy that refuses them. The daemon's answer
// says how long the re-check took, how many offloaded flows it took back
// and how long the generation switch in the kernel rules took (one
// iptables-legacy-restore per family, whatever the number of flows). For
// comparison, the ctnetlink way: deleting the same 10,000 marked entries
// one by one (ct-tool.js remove-marked).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { offloadMark } from "../../host/kernel/offload.js";
import { board, type Contenders } from "./contenders.js";
import { type BenchNet, DST } from "./net.js";

export const REVOKE_FLOWS = 10_000;
const REVOKE_SRC = "203.0.113.100";
const CT_TOOL = fileURLToPath(new URL("./ct-tool.js", import.meta.url));
// ctx of a packet forwarded from the external NIC to the internal one (gateway mode).
const CTX_FWD_EXT_INT = 2 | (1 << 3) | (2 << 5);

export interface RevokeRun { flows: number; adopted: number; revoked: number; recheckMs: number; kernelMs: number; requestMs: number; ctnetlinkMs: number }

export async function revocationRun(net: BenchNet, C: Contenders, policy: string, reps: number, log: (l: string) => void): Promise<RevokeRun[]> {
  const refuse = join(net.dir, "bench-refuse-policy.yaml");
  writeFileSync(refuse, "version: 1\ndefault: deny\nrules: []\n");
  const mark = offloadMark(0, CTX_FWD_EXT_INT);
  const out: RevokeRun[] = [];
  for (let r = 0; r < reps; r++) {
    const made = await net.runJson("appliance", [process.execPath, CT_TOOL, "create", String(REVOKE_FLOWS), String(mark), REVOKE_SRC, DST, "80"], 60_000);
    if (made.created !== REVOKE_FLOWS) throw new Error(`revocation bench: created ${made.created} of ${REVOKE_FLOWS} conntrack entries`);
    const id = `d-rev${r}`;
    const k = await C.portcullis(id, "(d) Portcullis, offload, revocation", { ...board(26, 1), offload: { enabled: true, onStart: "adopt" } }, policy, false);
    C.switchTo(k);
    const st = await C.daemonStats(id) as { offload?: { adopted: number } };
    const t0 = performance.now();
    const rep = await C.control(id, { cmd: "reload", path: refuse, recheck: true }, 60_000);
    const requestMs = performance.now() - t0;
    if (rep.ok !== true) throw new Error(`revocation bench: reload refused: ${String(rep.error)}`);
    const rc = (rep.reload as { recheck: { ms: number; revoked: number; revokeMs: number } }).recheck;
    C.off();
    await C.stopDaemon(id);
    // The ctnetlink way, on a fresh set of the same entries (the daemon's
    // poll may have removed some of the first set as no longer its own).
    await net.runJson("appliance", [process.execPath, CT_TOOL, "remove-marked", String(mark)], 60_000);
    const again = await net.runJson("appliance", [process.execPath, CT_TOOL, "create", String(REVOKE_FLOWS), String(mark), REVOKE_SRC, DST, "80"], 60_000);
    if (again.created !== REVOKE_FLOWS) throw new Error(`revocation bench: created ${again.created} of ${REVOKE_FLOWS} conntrack entries for the ctnetlink run: ${JSON.stringify(again.failed)}`);
    const rm = await net.runJson("appliance", [process.execPath, CT_TOOL, "remove-marked", String(mark)], 60_000);
    if (rm.removed !== REVOKE_FLOWS) throw new Error(`revocation bench: ctnetlink removed ${rm.removed} of ${REVOKE_FLOWS} entries`);
    out.push({ flows: REVOKE_FLOWS, adopted: st.offload?.adopted ?? 0, revoked: rc.revoked, recheckMs: rc.ms, kernelMs: rc.revokeMs, requestMs, ctnetlinkMs: rm.ms! });
    log(`e2e: revocation round ${r + 1}/${reps}: ${st.offload?.adopted} adopted, ${rc.revoked} offloaded flows revoked in ${rc.ms.toFixed(1)} ms (kernel rules ${rc.revokeMs.toFixed(1)} ms); ctnetlink deletes ${rm.removed} in ${rm.ms!.toFixed(1)} ms`);
  }
  return out;
}
