// The `portcullis` command line. Each subcommand lives in host/commands/ and
// exports a factory returning its commander Command; add it to COMMANDS.
// Commander rejects unknown options, unknown subcommands and excess arguments
// with a message and exit status 1; an error thrown by a command is printed as
// "portcullis: error: ..." with exit status 1. A closed stdout (`| head`)
// ends the command quietly (host/io/output.ts).
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { checkCommand } from "./commands/check.js";
import { classbenchCommand } from "./commands/classbench.js";
import { compileCommand } from "./commands/compile.js";
import { blockCommand, offloadCommand, reloadCommand, statsCommand } from "./commands/ctl.js";
import { demoCommand } from "./commands/demo.js";
import { explainCommand } from "./commands/explain.js";
import { haCommand } from "./commands/ha.js";
import { firstbootCommand } from "./commands/firstboot.js";
import { replayCommand } from "./commands/replay.js";
import { runCommand } from "./commands/run.js";
import { rulesCommand } from "./commands/rules.js";
import { guardStdout } from "./io/output.js";

const COMMANDS: ReadonlyArray<() => Command> = [demoCommand, classbenchCommand, checkCommand, compileCommand, explainCommand, statsCommand, blockCommand, reloadCommand, offloadCommand, haCommand, replayCommand, runCommand, rulesCommand, firstbootCommand];

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

export function buildProgram(): Command {
  const program = new Command("portcullis")
    .description("Packet filter for the two interfaces of a reverse proxy (WebAssembly core, NFQUEUE host)")
    .version(packageVersion())
    .showHelpAfterError("(add --help for usage)")
    .showSuggestionAfterError();
  for (const make of COMMANDS) {
    program.addCommand(make().showHelpAfterError("(add --help for usage)"));
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  guardStdout();
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`portcullis: error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}

await main(process.argv);
