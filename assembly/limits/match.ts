// Rules that refer to a block list (`from: NAME`, `from: not NAME`): first
// match (rules/lookup.ts) asks here whether such a rule's condition holds
// for the source being decided. The caller names that source first
// (setCondSource): the packet's for a new flow, the flow's originator for a
// reload's re-check.
import * as A from "../rules/active";
import * as F from "../rules/format";
import { blockListed } from "./blocklist";

let condFamily: u32 = 0;
let condSrc: usize = 0;
let condNow: u64 = 0;
// A rule was passed over because its source is listed (`from: not NAME`):
// a drop that follows is the block list's (source_blocked).
export let condSkipped: bool = false;

export function setCondSource(family: u32, src: usize, now: u64): void {
  condFamily = family; condSrc = src; condNow = now; condSkipped = false;
}

// Whether live rule r's block-list condition (if any) holds.
export function condPasses(r: u32): bool {
  const x = A.ruleExt(r);
  if (x == 0) return true;
  const fl = load<u8>(x + F.X_FLAGS);
  if (!(fl & F.XF_FROM_LIST) || condSrc == 0) return true;
  const listed = blockListed(A.listKey(<u32>load<u16>(x + F.X_FROM_LIST)), condFamily, condSrc, condNow);
  if (fl & F.XF_NOT) {
    if (listed) condSkipped = true;
    return !listed;
  }
  return listed;
}

// Whether live rule r matches only listed sources (a deny rule `from: NAME`
// that matched: its drop is the list's).
export function condIsList(r: u32): bool {
  const x = A.ruleExt(r);
  return x != 0 && (load<u8>(x + F.X_FLAGS) & (F.XF_FROM_LIST | F.XF_NOT)) == F.XF_FROM_LIST;
}
