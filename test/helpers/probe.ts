/** Traffic probes for end-to-end tests, run with Bun inside a namespace (`ip netns exec NS bun
 * probe.ts MODE ...`); each prints one JSON line.
 *   serve PORT[,PORT...]    TCP and UDP echo on each PORT (all addresses) until killed
 *   tcp HOST PORT [OPTS]    connect, send a line, wait for the echo: {ok} or {error}
 *   udp HOST PORT [OPTS]    send a datagram, wait for the echo: {ok} or {error}
 *   stream HOST PORT MS     one connection for MS milliseconds, a line every 20 ms:
 *                           {sent, echoed, error?} (error: the connection broke)
 * OPTS: --sport N (source port), --from IP (source address), --timeout MS (default 2000 TCP,
 * 1000 UDP). */

import { createSocket } from "node:dgram";
import { connect, createServer } from "node:net";

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
const sport = opt("--sport");
const from = opt("--from");
const timeoutOpt = opt("--timeout");
const [mode, a, b, c] = argv;
const out = (o: unknown) => console.log(JSON.stringify(o));

if (mode === "serve") {
  for (const p of (a as string).split(",")) {
    const port = Number(p);
    createServer((s) => s.on("data", (d) => s.write(d)).on("error", () => {})).listen(port, "::");
    const u = createSocket({ type: "udp6" });
    u.on("message", (m, r) => u.send(m, r.port, r.address));
    u.bind(port, "::");
  }
  out({ listening: a });
} else if (mode === "tcp") {
  const s = connect({
    host: a as string,
    port: Number(b),
    timeout: Number(timeoutOpt ?? 2000),
    ...(sport ? { localPort: Number(sport) } : {}),
    ...(from ? { localAddress: from } : {}),
  });
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
  const t = setTimeout(
    () => {
      out({ error: "ETIMEDOUT" });
      process.exit(0);
    },
    Number(timeoutOpt ?? 1000),
  );
  u.on("message", () => {
    clearTimeout(t);
    out({ ok: true });
    process.exit(0);
  });
  u.on("error", (e: NodeJS.ErrnoException) => {
    out({ error: e.code ?? e.message });
    process.exit(0);
  });
  // Connected: an ICMP error in answer (a reject) is reported as an error, not a timeout.
  const send = () => u.connect(Number(b), a as string, () => u.send("ping"));
  if (sport || from) u.bind({ port: Number(sport ?? 0), ...(from ? { address: from } : {}) }, send);
  else send();
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
