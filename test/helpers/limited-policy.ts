// The default policy with the per-source limit of host/policy/README.md on
// its 443 rule (the example there), for the daemon and kernel tests.
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const HTTPS_COMMENT = '    comment: "HTTPS to the listener: all published web services"\n';

export function limitedDefaultPolicy(limit: string[] = [
  "rate: 5/s", "burst: 5", "flows: 20", "overload: abusers for 10m", "flush: true",
]): string {
  const text = readFileSync(join(process.cwd(), "host", "policy", "default.yaml"), "utf8");
  if (!text.includes(HTTPS_COMMENT)) throw new Error("the default policy's 443 rule has changed: update test/helpers/limited-policy.ts");
  return text.replace(HTTPS_COMMENT, `${HTTPS_COMMENT}    from: not abusers\n    limit:\n${limit.map((l) => `      ${l}\n`).join("")}`);
}
