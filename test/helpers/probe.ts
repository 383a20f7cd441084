/** Traffic probes for end-to-end tests, run with Bun inside a namespace (`ip netns exec NS bun
 * probe.ts MODE ...`); each prints one JSON line.
 *   serve PORT              TCP and UDP echo on PORT (all addresses) until killed
 *   tcp HOST PORT           connect, send a line, wait for the echo: {ok} or {error}
 *   udp HOST PORT           send a datagram, wait 1 s for the echo: {ok} or {error}
 *   stream HOST PORT MS     one connection for MS milliseconds, a line every 20 ms:
 *                           {sent, echoed, error?} (error: the connection broke) */

import { createSocket } from "node:dgram";
import { connect, createServer } from "node:net";

const [mode, a, b, c] = process.argv.slice(2);
const out = (o: unknown) => console.log(JSON.stringify(o));

if (mode === "serve") {
  const port = Number(a);
  createServer((s) => s.on("data", (d) => s.write(d)).on("error", () => {})).listen(port, "::");
  const u = createSocket({ type: "udp6" });
  u.on("message", (m, r) => u.send(m, r.port, r.address));
  u.bind(port, "::");
  out({ listening: port });
} else if (mode === "tcp") {
  const s = connect({ host: a as string, port: Number(b), timeout: 2000 });
  const done = (o: unknown) => {
    out(o);
    s.destroy();
    process.exit(0);
  };
  s.on("connect", () => s.write("ping\n"));
  s.on("data", () => done({ ok: true }));
  s.on("timeout", () => done({ error: "ETIMEDOUT" }));
  s.on("error", (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
} else if (mode === "udp") {
  const u = createSocket({ type: (a as string).includes(":") ? "udp6" : "udp4" });
  const t = setTimeout(() => {
    out({ error: "ETIMEDOUT" });
    process.exit(0);
  }, 1000);
  u.on("message", () => {
    clearTimeout(t);
    out({ ok: true });
    process.exit(0);
  });
  u.on("error", (e: NodeJS.ErrnoException) => {
    out({ error: e.code ?? e.message });
    process.exit(0);
  });
  u.send("ping", Number(b), a as string);
} else if (mode === "stream") {
  let sent = 0;
  let echoed = 0;
  let error: string | undefined;
  const s = connect({ host: a as string, port: Number(b) });
  s.on("data", (d) => {
    echoed += d.toString().split("\n").length - 1;
  });
  s.on("error", (e: NodeJS.ErrnoException) => {
    error = e.code ?? e.message;
  });
  s.on("close", () => {
    error ??= "closed";
  });
  const tick = setInterval(() => {
    if (!error && s.writable) {
      s.write(`${sent++}\n`);
    }
  }, 20);
  setTimeout(() => {
    clearInterval(tick);
    setTimeout(() => {
      out({ sent, echoed, ...(error ? { error } : {}) });
      s.destroy();
      process.exit(0);
    }, 300);
  }, Number(c));
} else {
  out({ error: `unknown mode ${mode}` });
  process.exit(2);
}
