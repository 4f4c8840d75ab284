// Offload in the kernel rules: the flows the core has handed over pass
// before the queue, by their connmark. The mark (32 bits) of an offloaded
// flow:
//   bits 24..31  0x80 | generation (0..127): OFFLOAD_BIT set, and the
//                generation the rules accept now
//   bits 16..23  the flow's interface context (ctx < 128, the core's), so a
//                restarted daemon can decide the flow again (adoption)
//   bits 0..15   zero
// Portcullis owns the mark of the packets it offloads and the connmark of
// their flows (the verdict sets the whole packet mark; --save-mark copies it).
//
// The core's offload verdict is NF_REPEAT with the mark (Suricata's repeat
// mode): the packet goes through the hook's filter table again, and at the
// top of each of our chains (PORTCULLIS-IN/-OUT/-FWD, or the nft base
// chains) a jump to the offload chain meets it:
//   1. a packet conntrack finds INVALID (out of its window with
//      nf_conntrack_tcp_be_liberal=0, a flag combination TCP never sends, ...):
//      DROP. Such a packet has no conntrack entry attached, so the rule
//      cannot ask for the connmark: with offload on, every INVALID packet is
//      dropped here, counted by the rule's counters, not the core's reasons.
//   2. connmark this generation's: ACCEPT (the fast path: never queued)
//   3. packet mark this generation's (the verdict's): CONNMARK --save-mark,
//      ACCEPT
// and, after the jump, any other packet carrying OFFLOAD_BIT is dropped: an
// offload verdict of a generation the rules no longer hold (or with the
// chain emptied by hand) must neither be queued again (a loop) nor pass.
// Revocation replaces the offload chain with the next generation: every
// offloaded flow's packets go to the queue again and the core decides them
// (a flow it still allows is offloaded again at its next packet). One
// rule-set commit per family, whatever the number of flows.
import { KernelError, findTool, run, runOk } from "./detect.js";

export const OFFLOAD_BIT = 0x80000000;
export const OFFLOAD_MASK = 0xff000000; // offload bit + generation
export const GENERATIONS = 128;
export const CHAIN = "PORTCULLIS-OFF"; // iptables-legacy
export const NFT_CHAIN = "offloaded"; // in table inet portcullis ("offload" is an nft keyword)

const hex = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;

export function generationMark(gen: number): number {
  if (!Number.isInteger(gen) || gen < 0 || gen >= GENERATIONS) throw new RangeError(`offload generation must be 0-${GENERATIONS - 1}, not ${gen}`);
  return ((0x80 | gen) << 24) >>> 0;
}

// The mark of an offload verdict for a flow of interface context ctx.
export function offloadMark(gen: number, ctx: number): number {
  return (generationMark(gen) | ((ctx & 0x7f) << 16)) >>> 0;
}

export function markGeneration(mark: number): number | null {
  return (mark & OFFLOAD_BIT) !== 0 ? (mark >>> 24) & 0x7f : null;
}
export function markCtx(mark: number): number { return (mark >>> 16) & 0x7f; }

// The offload chain's rules for iptables-legacy-restore (one family; the
// chain declaration empties it, so loading replaces it in one commit).
export function iptablesOffloadChain(gen: number): string[] {
  const m = `${hex(generationMark(gen))}/${hex(OFFLOAD_MASK)}`;
  return [
    `-A ${CHAIN} -m conntrack --ctstate INVALID -j DROP`,
    `-A ${CHAIN} -m connmark --mark ${m} -j ACCEPT`,
    `-A ${CHAIN} -m mark --mark ${m} -j CONNMARK --save-mark`,
    `-A ${CHAIN} -m mark --mark ${m} -j ACCEPT`,
  ];
}

// What each of our chains starts with when offload is on.
export function iptablesOffloadEntry(chain: string): string[] {
  return [`-A ${chain} -j ${CHAIN}`, `-A ${chain} -m mark --mark ${hex(OFFLOAD_BIT)}/${hex(OFFLOAD_BIT)} -j DROP`];
}

export function nftOffloadChain(gen: number): string[] {
  const v = hex(generationMark(gen)), m = hex(OFFLOAD_MASK);
  return [
    "ct state invalid drop",
    `ct mark & ${m} == ${v} accept`,
    `meta mark & ${m} == ${v} ct mark set meta mark accept`,
  ];
}

export function nftOffloadEntry(): string[] {
  return [`jump ${NFT_CHAIN}`, `meta mark & ${hex(OFFLOAD_BIT)} == ${hex(OFFLOAD_BIT)} drop`];
}

const IPT = [
  { save: "iptables-legacy-save", restore: "iptables-legacy-restore" },
  { save: "ip6tables-legacy-save", restore: "ip6tables-legacy-restore" },
] as const;

// The generation the kernel's offload chain accepts now, and in which
// backend; null when no offload chain is loaded.
export function readGeneration(netns?: string): { backend: "nft" | "iptables"; gen: number } | null {
  if (findTool("nft") !== null) {
    const r = run(["nft", "list", "chain", "inet", "portcullis", NFT_CHAIN], { netns });
    if (r.status === 0) {
      // nft lists `ct mark & 0xff000000 == V` as `ct mark V/8`.
      const g = /ct mark (?:& 0xff000000 == )?0x([0-9a-f]{8})(?:\/8)? accept/.exec(r.stdout);
      return { backend: "nft", gen: g ? markGeneration(parseInt(g[1]!, 16)) ?? 0 : 0 };
    }
  }
  if (findTool(IPT[0].save) === null) return null;
  const r = run([IPT[0].save, "-t", "filter"], { netns });
  if (r.status !== 0 || !new RegExp(`^:${CHAIN} `, "m").test(r.stdout)) return null;
  const g = new RegExp(`^-A ${CHAIN} -m connmark --mark (0x[0-9a-f]+)/0xff000000 -j ACCEPT$`, "m").exec(r.stdout);
  return { backend: "iptables", gen: g ? markGeneration(parseInt(g[1]!, 16)) ?? 0 : 0 };
}

// Loads generation `gen` into the offload chain of `backend`. Returns the
// milliseconds it took. Throws a KernelError when the kernel refuses.
export function setGeneration(backend: "nft" | "iptables", gen: number, netns?: string): number {
  const t0 = performance.now();
  if (backend === "nft") {
    const text = [`flush chain inet portcullis ${NFT_CHAIN}`, ...nftOffloadChain(gen).map((r) => `add rule inet portcullis ${NFT_CHAIN} ${r}`)].join("\n");
    const r = run(["nft", "-f", "-"], { netns, input: `${text}\n` });
    if (r.status !== 0) throw new KernelError("offload_failed", `nft refused the offload chain: ${r.stderr.trim()}`);
  } else {
    for (const f of IPT) runOk([f.restore, "-w", "--noflush"], { netns, input: `*filter\n:${CHAIN} - [0:0]\n${iptablesOffloadChain(gen).join("\n")}\nCOMMIT\n` });
  }
  return performance.now() - t0;
}
