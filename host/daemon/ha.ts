// The daemon's role in an HA pair, as keepalived's notify hook tells it
// (`portcullis ha notify ROLE` -> {"cmd":"ha","role":ROLE} on the control
// socket; host/ha/hook.ts). Both appliances run the same policy with their
// queues bound (a hot standby); the role changes only what happens to the
// kernel's offloaded flows (host/daemon/offload.ts):
//   backup, fault  marked conntrack entries the core does not track are
//                  left alone: they are the master's, replicated by
//                  conntrackd, and the kernel carries nothing here while the
//                  virtual addresses are on the other appliance
//   master         the kernel's marked entries (those conntrackd's commit
//                  just put there, marks as the old master set them) are
//                  adopted: decided again by the live table, kept and
//                  re-marked to this daemon's generation when allowed,
//                  removed when not (Offload.adoptMarked); then the
//                  untracked-entry sweep is on again (fail closed)
// The record: the role, when it last changed, how many times it changed,
// and what the last adoption did.
import { type AdoptCounts } from "./offload.js";

export const HA_ROLES = ["master", "backup", "fault"] as const;
export type HaRole = (typeof HA_ROLES)[number];

export interface HaStats {
  role: HaRole | "unknown"; //  unknown: configured, not told yet (and nothing inferred)
  inferred: boolean; //          the role was guessed at start from the virtual addresses, keepalived has not said yet
  since: string | null; //       the last transition (ISO time), null before the first
  transitions: number; //        role changes since the daemon started
  notifies: number; //           notifies received (a repeated role is no transition)
  adopted: number; //            offloaded flows adopted at transitions to master
  adoptRefused: number; //       ... refused by the live table and removed
  lastAdoption: (AdoptCounts & { at: string }) | null;
}

export class HaState {
  private st: HaStats = { role: "unknown", inferred: false, since: null, transitions: 0, notifies: 0, adopted: 0, adoptRefused: 0, lastAdoption: null };

  // A daemon that starts (or restarts) while keepalived runs hears nothing
  // until the next transition: until then its role is what the appliance's
  // addresses say (the virtual addresses here: master; else backup).
  // keepalived's first notify replaces it, a transition only if it differs.
  constructor(initial?: "master" | "backup") {
    if (initial) { this.st.role = initial; this.st.inferred = true; }
  }

  get role(): HaRole | "unknown" { return this.st.role; }

  // Standing by: the replicated entries are not ours to remove.
  get standby(): boolean { return this.st.role === "backup" || this.st.role === "fault"; }

  // Records ROLE (now); `adopt` runs on master and its counts are kept.
  notify(role: HaRole, adopt: (() => AdoptCounts) | null): { changed: boolean; adopted: AdoptCounts | null } {
    this.st.notifies++;
    const changed = role !== this.st.role;
    this.st.inferred = false;
    if (changed) {
      this.st.role = role;
      this.st.since = new Date().toISOString();
      this.st.transitions++;
    }
    let adopted: AdoptCounts | null = null;
    if (role === "master" && adopt) {
      adopted = adopt();
      this.st.adopted += adopted.adopted;
      this.st.adoptRefused += adopted.refused;
      this.st.lastAdoption = { ...adopted, at: new Date().toISOString() };
    }
    return { changed, adopted };
  }

  stats(): HaStats { return { ...this.st }; }
}

// The control request's role, or an error line.
export function haRequestRole(req: Record<string, unknown>): HaRole | string {
  const r = req.role;
  return typeof r === "string" && (HA_ROLES as readonly string[]).includes(r) ? r as HaRole : `ha: "role" must be ${HA_ROLES.join(", ")}`;
}
