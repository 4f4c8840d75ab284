// nginx from Debian as the reverse proxy of the reference topology, with the
// seed's publishing rules: external 443 -> the pool's 4443, external 80 ->
// the pool's 8080, on IPv4 and IPv6 (the IPv6 listener publishes to the
// pool's IPv6 address, so both families cross the internal side too).
// Plain TCP (stream module) when Debian's libnginx-mod-stream is installed,
// else HTTP proxying; there is no TLS either way: 443 and 4443 carry plain
// HTTP, which is all a packet filter needs to see.
//
// One process (daemon off, master_process off), its own config, pid file,
// logs and temp paths in the topology's state directory.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { findTool } from "../kernel/detect.js";
import { FRONT_END, LISTENER, PUBLISH } from "./plan.js";

export const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

export function nginxBinary(): string {
  const p = findTool("nginx");
  if (p === null) throw new Error("nginx is not installed (Debian: nginx; bash host/setup/ensure.sh test installs it)");
  return p;
}

export function hasStream(): boolean {
  return existsSync(STREAM_MODULE);
}

export function nginxConfig(dir: string, stream = hasStream()): string {
  const servers: string[] = [];
  for (const { listen, pool } of PUBLISH) {
    for (const [lis, up] of [[LISTENER.v4, FRONT_END.v4], [`[${LISTENER.v6}]`, `[${FRONT_END.v6}]`]] as const) {
      if (stream) {
        servers.push(`    server { listen ${lis}:${listen}; proxy_pass ${up}:${pool}; proxy_connect_timeout 2s; }`);
      } else {
        servers.push(`    server { listen ${lis}:${listen}; location / { proxy_pass http://${up}:${pool}; proxy_connect_timeout 2s; } }`);
      }
    }
  }
  const head = [
    stream ? `load_module ${STREAM_MODULE};` : null,
    "daemon off;",
    "master_process off;",
    "worker_processes 1;",
    `pid ${join(dir, "nginx.pid")};`,
    `error_log ${join(dir, "nginx-error.log")} notice;`,
    "events { worker_connections 256; }",
  ].filter((l): l is string => l !== null);
  const body = stream
    ? ["stream {", ...servers, "}"]
    : [
      "http {",
      "    access_log off;",
      ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `    ${t}_temp_path ${join(dir, `${t}_temp`)};`),
      ...servers,
      "}",
    ];
  return `${[...head, ...body].join("\n")}\n`;
}
