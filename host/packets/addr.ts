// Textual IPv4/IPv6 addresses to bytes and back (control path only).
import { isIPv4, isIPv6 } from "node:net";

export function ip4(s: string): Uint8Array {
  if (!isIPv4(s)) throw new TypeError(`not an IPv4 address: ${s}`);
  return Uint8Array.from(s.split(".").map(Number));
}

export function ip6(s: string): Uint8Array {
  if (!isIPv6(s)) throw new TypeError(`not an IPv6 address: ${s}`);
  let text = s;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ip4(v4[1]!);
    tail.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
    text = text.slice(0, -v4[1]!.length) + "0:0";
  }
  const [head, rest] = text.includes("::") ? text.split("::") as [string, string] : [text, undefined];
  const words = (x: string): number[] => (x === "" ? [] : x.split(":").map((w) => parseInt(w, 16)));
  const h = words(head);
  const r = rest === undefined ? [] : words(rest);
  const all = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  if (tail.length) all.splice(6, 2, ...tail);
  const out = new Uint8Array(16);
  all.forEach((w, i) => { out[2 * i] = w >> 8; out[2 * i + 1] = w & 0xff; });
  return out;
}

export function addrBytes(s: string): Uint8Array {
  return s.includes(":") ? ip6(s) : ip4(s);
}

export function formatAddr(bytes: Uint8Array, family: 4 | 6): string {
  if (family === 4) return Array.from(bytes.subarray(0, 4)).join(".");
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Longest run of zero words becomes "::" (RFC 5952).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}
