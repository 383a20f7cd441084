/** Traffic probes for end-to-end tests, run with Bun inside a namespace (`ip netns exec NS bun
 * probe.ts MODE ...`); each prints one JSON line.
 *   serve PORT[,PORT...]    TCP and UDP echo on each PORT (all addresses) until killed
 *   tcp HOST PORT [OPTS]    connect, send a line, wait for the echo: {ok} or {error}
 *   udp HOST PORT [OPTS]    send a datagram, wait for the echo: {ok} or {error}
 *   stream HOST PORT MS     one connection for MS milliseconds (or until SIGTERM), a line
 *                           every 20 ms: {sent, echoed, error?} (error: the connection broke)
 *   send TAG@HOST:PORT[,...] MS  a datagram "TAG SEQ" to every target every MS milliseconds,
 *                           SEQ counting from 0 per target, until killed (--from binds the source)
 *   count PORT[,...] FILE   counts those datagrams by TAG: {TAG: {n, first, last}}, rewritten
 *                           to FILE (atomically) every 50 ms and at SIGTERM
 * OPTS: --sport N (source port), --from IP (source address), --timeout MS (default 2000 TCP,
 * 1000 UDP). */

import { createSocket } from "node:dgram";
import { renameSync, writeFileSync } from "node:fs";
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
  let errorAt: number | undefined; // when it broke, ms since the epoch
  s.on("error", (e: NodeJS.ErrnoException) => {
    error = e.code ?? e.message;
    errorAt ??= Date.now();
  });
  s.on("close", () => {
    error ??= "closed";
  });
  const tick = setInterval(() => {
    if (!error && s.writable) {
      s.write(`${sent++}\n`);
    }
  }, 20);
  const finish = () => {
    clearInterval(tick);
    setTimeout(() => {
      out({ sent, echoed, ...(error ? { error, errorAt } : {}) });
      s.destroy();
      process.exit(0);
    }, 300);
  };
  setTimeout(finish, Number(c));
  process.on("SIGTERM", finish); // ends early, with the same report
} else if (mode === "send") {
  const targets = (a as string).split(",").map((t) => {
    const m = t.match(/^([^@]+)@(.+):(\d+)$/);
    if (!m) throw new Error(`bad target ${t}`);
    return { tag: m[1] as string, host: m[2] as string, port: Number(m[3]), seq: 0 };
  });
  const u = createSocket({ type: targets[0]?.host.includes(":") ? "udp6" : "udp4" });
  u.on("error", () => {}); // an ICMP error for one datagram must not stop the stream
  const tick = () => {
    for (const t of targets) u.send(`${t.tag} ${t.seq++}`, t.port, t.host, () => {});
  };
  u.bind({ port: 0, ...(from ? { address: from } : {}) }, () => setInterval(tick, Number(b)));
} else if (mode === "count") {
  const seen: Record<string, { n: number; first: number; last: number }> = {};
  const file = b as string;
  const flush = () => {
    writeFileSync(`${file}.tmp`, JSON.stringify(seen));
    renameSync(`${file}.tmp`, file);
  };
  for (const p of (a as string).split(",")) {
    const u = createSocket({ type: "udp6" });
    u.on("message", (m) => {
      const [tag, seq] = m.toString().split(" ");
      const e = seen[tag as string] ?? { n: 0, first: Number(seq), last: Number(seq) };
      seen[tag as string] = e;
      e.n++;
      e.last = Math.max(e.last, Number(seq));
      e.first = Math.min(e.first, Number(seq));
    });
    u.bind(Number(p), "::");
  }
  flush();
  setInterval(flush, 50);
  process.on("SIGTERM", () => {
    flush();
    process.exit(0);
  });
} else {
  out({ error: `unknown mode ${mode}` });
  process.exit(2);
}
