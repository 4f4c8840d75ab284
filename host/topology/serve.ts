// The servers of the reference topology's lan, in one process run inside the
// lan namespace: node serve.js STATE_DIR JSON_SERVICES. Each listener answers
// any request (or a connection that sends nothing for 300 ms) with a plain
// HTTP response whose body names it, "pool 4443 198.51.100.10", and closes.
// When every listener is bound it writes STATE_DIR/serve.ready.
import { writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { type Service } from "./plan.js";

const [dir, json] = process.argv.slice(2);
if (!dir || !json) {
  process.stderr.write("usage: node serve.js STATE_DIR JSON_SERVICES\n");
  process.exit(2);
}
const services = JSON.parse(json) as Service[];

function answer(sock: Socket, body: string): void {
  let head = "";
  let done = false;
  const reply = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length + 1}\r\nConnection: close\r\n\r\n${body}\n`);
  };
  const timer = setTimeout(reply, 300);
  sock.on("data", (d) => {
    head += d.toString("latin1");
    if (head.includes("\r\n\r\n") || head.length > 16384) reply();
  });
  sock.on("error", () => sock.destroy());
  sock.setTimeout(10_000, () => sock.destroy());
}

let pending = services.length;
for (const s of services) {
  const body = `${s.name} ${s.port} ${s.addr}`;
  const server = createServer((sock) => answer(sock, body));
  server.on("error", (e) => {
    process.stderr.write(`serve: ${s.addr} port ${s.port}: ${e.message}\n`);
    process.exit(1);
  });
  server.listen({ host: s.addr, port: s.port, ipv6Only: s.addr.includes(":") }, () => {
    if (--pending === 0) writeFileSync(join(dir, "serve.ready"), `${process.pid}\n`);
  });
}
for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => process.exit(0));
