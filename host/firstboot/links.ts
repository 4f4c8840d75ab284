// The MACs of the NIC templates (board/rootfs_overlay/etc/systemd/network/
// *.link.in, and the *.network.in that firstboot fills further, plan.ts):
// %EXT_MAC% and %INT_MAC% replaced by the two NICs' MACs. The one filler of
// them: `portcullis firstboot` imports it, and board/bundle.sh and
// board/install.sh run this file with node (`node links.js TEMPLATE EXT INT`
// prints the filled template), so a MAC is data, never part of a sed or shell
// program, and is checked the same way everywhere.
import { pathToFileURL } from "node:url";
import { printable } from "../config/yaml.js";
import { OperatorFileError, readOperatorFile } from "../io/operator-file.js";

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

// Why `text` is not the MAC of a NIC, or null. Case is ignored (the files get
// it in lower case).
export function macProblem(text: string): string | null {
  const mac = text.toLowerCase();
  if (!MAC_RE.test(mac)) return `"${printable(text)}" is not a MAC address like dc:a6:32:12:34:56`;
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) return `"${mac}" is a multicast address, not a NIC's`;
  if (mac === "00:00:00:00:00:00") return `"${mac}" is the all-zero address, not a NIC's`;
  return null;
}

// A template (.link.in, .network.in) with both MACs put in for %EXT_MAC% and
// %INT_MAC% (split/join: no $-patterns of replace).
export function fillMacs(text: string, extMac: string, intMac: string): string {
  for (const m of [extMac, intMac]) {
    const p = macProblem(m);
    if (p) throw new Error(p);
  }
  return text.split("%EXT_MAC%").join(extMac.toLowerCase()).split("%INT_MAC%").join(intMac.toLowerCase());
}

// What is wrong with the MACs given to bundle.sh or install.sh as --ext-mac
// and --int-mac ("" for one not given): both or neither, each a NIC's, not
// the same one. Null if nothing.
export function macArgsProblem(ext: string, int: string): string | null {
  if (ext === "" && int === "") return null;
  if (ext === "" || int === "") return "give both --ext-mac and --int-mac, or neither";
  for (const [flag, m] of [["--ext-mac", ext], ["--int-mac", int]] as const) {
    const p = macProblem(m);
    if (p) return `${flag} ${p}`;
  }
  if (ext.toLowerCase() === int.toLowerCase()) return `--ext-mac and --int-mac are the same MAC ${ext.toLowerCase()}`;
  return null;
}

// node links.js --check EXT INT: exit 2 with the problem on stderr.
// node links.js TEMPLATE EXT INT: the filled template on stdout.
function main(argv: string[]): number {
  if (argv.length !== 3) {
    process.stderr.write("usage: node links.js TEMPLATE.link.in|--check EXT_MAC INT_MAC\n");
    return 2;
  }
  const [template, ext, int] = argv as [string, string, string];
  const p = macArgsProblem(ext, int);
  if (p) {
    process.stderr.write(`${p}\n`);
    return 2;
  }
  if (template === "--check") return 0;
  try {
    process.stdout.write(fillMacs(readOperatorFile(template, ".link template", 1 << 20).toString("utf8"), ext, int));
  } catch (e) {
    if (!(e instanceof OperatorFileError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = main(process.argv.slice(2));
