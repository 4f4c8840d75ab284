// `portcullis ha --config BOARD [--conntrackd|--hook] [--apply [--dir DIR]]`:
// the keepalived configuration (and conntrackd's, and the notify hook)
// generated from the board's `ha:` (host/ha/). Without --apply it prints one
// of them, exactly as --apply would write it; --apply writes all of them
// (host/ha/files.ts: never over a file it did not write).
// `portcullis ha notify master|backup|fault [--control SOCK]`: what the hook
// runs: tells the daemon its role (host/daemon/ha.ts).
import { resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { ConfigError, reportConfigError } from "../config/errors.js";
import { DEFAULT_CONTROL, request } from "../daemon/control.js";
import { HA_ROLES, type HaRole } from "../daemon/ha.js";
import { applyHaFiles, CONNTRACKD_FILE, haFiles, HOOK_FILE, installedHaOptions, KEEPALIVED_FILE } from "../ha/files.js";
import { readBoardFile } from "../kernel/board.js";

interface HaOpts { config?: string; conntrackd?: boolean; hook?: boolean; apply?: boolean; dir: string; runDir: string; control: string; portcullis: string }

// What the hook may run: a command and its arguments, nothing for the shell.
const COMMAND_RE = /^[A-Za-z0-9_./+-]+( [A-Za-z0-9_./+-]+)*$/;

export function haCommand(): Command {
  // The defaults: an installed appliance's (what `portcullis firstboot` writes too).
  const d = installedHaOptions();
  const cmd = new Command("ha")
    .description("the keepalived (VRRP) and conntrackd configuration of an HA pair, from the board config's ha:; print it, or --apply it")
    .option("--config <board.yaml>", "board configuration with an ha: section")
    .addOption(new Option("--conntrackd", `print conntrackd's configuration (${CONNTRACKD_FILE}) instead`).conflicts(["hook"]))
    .option("--hook", `print the notify hook (${HOOK_FILE}) instead`)
    .option("--apply", `write ${KEEPALIVED_FILE}, ${HOOK_FILE} and (with ha.sync) ${CONNTRACKD_FILE} into --dir`)
    .option("--dir <dir>", "where the files go (and where keepalived.conf names the others)", d.dir)
    .option("--run-dir <dir>", "conntrackd's lock file and control socket", d.runDir)
    .option("--control <path>", "the daemon's control socket, for the hook", d.control)
    .option("--portcullis <command>", "the command the hook runs", (v) => {
      if (!COMMAND_RE.test(v)) throw new InvalidArgumentError("a command and its arguments: letters, digits, _ . / + - and single spaces");
      return v;
    }, d.portcullis)
    .action((o: HaOpts) => {
      if (!o.config) throw new Error("give --config BOARD (or: portcullis ha notify ROLE)");
      let board;
      try {
        board = readBoardFile(o.config);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        reportConfigError(e, o.config);
        return;
      }
      if (!board.ha) throw new Error(`${o.config} has no ha: section (see board/portcullis.yaml)`);
      if (o.conntrackd && !board.ha.sync?.enabled) throw new Error(`${o.config}: ha.sync is not enabled, so there is no conntrackd configuration`);
      const files = haFiles(board, { board: resolve(o.config), dir: resolve(o.dir), runDir: resolve(o.runDir), control: resolve(o.control), portcullis: o.portcullis });
      if (o.apply) {
        for (const f of applyHaFiles(files)) process.stdout.write(`portcullis ha: ${f.wrote ? "wrote" : "unchanged"} ${f.path}\n`);
        return;
      }
      const want = o.conntrackd ? CONNTRACKD_FILE : o.hook ? HOOK_FILE : KEEPALIVED_FILE;
      process.stdout.write(files.find((f) => f.path.endsWith(`/${want}`))!.text);
    });
  cmd.command("notify")
    .description("tell the running daemon its VRRP role (what keepalived's notify hook runs)")
    .argument("<role>", HA_ROLES.join(", "), (v) => {
      if (!(HA_ROLES as readonly string[]).includes(v)) throw new InvalidArgumentError(`the role is ${HA_ROLES.join(", ")}`);
      return v;
    })
    .option("--control <path>", "control socket of the daemon", DEFAULT_CONTROL)
    .action(async (role: HaRole, _o: unknown, self: Command) => {
      // `ha` has a --control of its own (for the hook it writes): either names the socket.
      const control = (self.optsWithGlobals() as { control: string }).control;
      const r = await request(control, { cmd: "ha", role }, 30_000);
      if (r.ok !== true) throw new Error(String(r.error));
      const a = r.ha as { role: string; transitions: number; adopted?: { adopted: number; refused: number } | null };
      process.stdout.write(`portcullis ha: the daemon is ${a.role} (transition ${a.transitions})` +
        `${a.adopted ? `; offloaded flows adopted ${a.adopted.adopted}, refused ${a.adopted.refused}` : ""}\n`);
    });
  return cmd;
}
