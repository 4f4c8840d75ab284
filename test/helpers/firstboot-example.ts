// The shipped first-boot example (board/firstboot.example.yaml), as is and
// as one card of an HA pair: its commented ha: block uncommented. One
// place for both, for the first-boot tests and the image's.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const EXAMPLE = readFileSync(fileURLToPath(new URL("../../../board/firstboot.example.yaml", import.meta.url)), "utf8");
export const EXAMPLE_HA = EXAMPLE.replace(/^# ha:\n(?:# {3}.*\n)+/m, (b) => b.replace(/^# /gm, ""));
