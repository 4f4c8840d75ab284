// `portcullis rules --config BOARD.yaml [--backend auto|nft|iptables]
// [--print|--apply|--remove] [--netns NS]`: the kernel's queue rules for a
// board (host/kernel/rules.ts). --print (the default) writes the nftables
// ruleset and/or the iptables-legacy script; --apply loads them (auto: nft
// when the kernel can queue from it, else iptables-legacy); --remove deletes
// every rule and chain of ours from both.
import { Command, Option } from "commander";
import { ConfigError, reportConfigError } from "../config/errors.js";
import { readBoardFile } from "../kernel/board.js";
import { apply, iptablesScript, nftRuleset, remove } from "../kernel/rules.js";

interface RulesOpts { config: string; backend: "auto" | "nft" | "iptables"; print?: boolean; apply?: boolean; remove?: boolean; netns?: string }

export function rulesCommand(): Command {
  return new Command("rules")
    .description("print, apply or remove the kernel rules that queue the two NICs' packets to the daemon")
    .requiredOption("--config <board.yaml>", "board configuration (see board/portcullis.yaml)")
    .addOption(new Option("--backend <backend>", "nft, iptables (iptables-legacy), or auto: nft when the kernel has nft_queue")
      .choices(["auto", "nft", "iptables"]).default("auto"))
    .addOption(new Option("--print", "print the rules (the default; auto prints both backends)").conflicts(["apply", "remove"]))
    .addOption(new Option("--apply", "load the rules into the kernel (replacing ours, atomically per table)").conflicts(["remove"]))
    .option("--remove", "delete every rule and chain of ours (both backends)")
    .option("--netns <name>", "work inside this network namespace (ip netns exec)")
    .action((o: RulesOpts) => {
      if (o.remove) {
        const any = remove({ netns: o.netns });
        process.stdout.write(`portcullis rules: ${any ? "removed" : "nothing to remove"}${o.netns ? ` in netns ${o.netns}` : ""}\n`);
        return;
      }
      let config;
      try {
        config = readBoardFile(o.config);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        reportConfigError(e, o.config);
        return;
      }
      if (o.apply) {
        const r = apply(config, { backend: o.backend, netns: o.netns });
        const out = [`portcullis rules: applied with ${r.backend === "nft" ? "nftables" : "iptables-legacy"}${r.netns ? ` in netns ${r.netns}` : ""}`];
        if (r.detection && r.backend !== "nft") out.push(`  (nftables: ${r.detection.nftQueue.why})`);
        for (const q of r.queues) {
          out.push(`  queue ${q.queue}: ${q.side} ${q.dev}, ${q.failOpen ? "fail open" : "fail closed"}, ${q.bypass ? "bypass" : "no bypass"}`);
        }
        process.stdout.write(`${out.join("\n")}\n`);
        return;
      }
      const parts: string[] = [];
      if (o.backend !== "iptables") parts.push(nftRuleset(config));
      if (o.backend !== "nft") parts.push(iptablesScript(config));
      process.stdout.write(parts.join("\n"));
    });
}
