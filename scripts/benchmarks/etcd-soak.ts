/** The etcd client soak: Stratum's client (src/cluster/etcd-client.ts, the v3 JSON gateway
 * over fetch) against npm etcd3 (gRPC over grpc-js), each under Bun in a child process of
 * its own with an etcd of its own: a watch on a prefix, a writer putting a key every 50 ms, a
 * lease of 5 s kept alive. This process SIGKILLs etcd three times (down 1 s, then restarted
 * on the same data) and compacts once, watches the lease from outside, and prints what was
 * written against what the watch delivered. A child that crashes is reported, not fatal: its
 * figures up to the crash come from the JSON lines it printed.
 *   bun scripts/benchmarks/etcd-soak.ts [--seconds N] [--json] [gateway|etcd3 ...]
 *   scripts/bench etcd-soak          (STM_SOAK_SECONDS per client, default 60)
 * STM_SOAK_TRACE=DIR keeps every child's lines in DIR/<client>.jsonl.
 * A child: bun etcd-soak.ts child gateway|etcd3 URL (stdin "stop" ends it). */
import { parseArgs } from "node:util";
import { EtcdClient } from "../../src/cluster/etcd-client";
import { EtcdServer } from "../../test/helpers/etcd-server";
import { median } from "./harness";

const PREFIX = "soak/w/";
const LEASE_KEY = "soak/lease";
const TTL = 5;
const WRITE_EVERY_MS = 50;
const RESTARTS = [0.25, 0.5, 0.75];
const COMPACT_AT = 0.6;
const DOWN_MS = 1000;

export const CLIENTS = ["gateway", "etcd3"] as const;
type ClientName = (typeof CLIENTS)[number];

/** One line a child prints; t: Date.now() when it happened. */
type Line =
  | { e: "ready"; t: number; lease: string; rss: number }
  | { e: "ack"; t: number; seq: number; rev: number; ms: number }
  | { e: "fail"; t: number; seq: number; msg: string }
  | { e: "ev"; t: number; key: string; rev: number }
  | { e: "renew"; t: number; ttl: number }
  | { e: "kafail"; t: number; msg: string }
  | { e: "werr"; t: number; msg: string }
  /** etcd3 only: its watch (re-)created, at etcd's revision then. */
  | { e: "wconn"; t: number; rev: number }
  /** The watch was ended by etcd (a compacted start revision, or another cancel): it will not resume. */
  | { e: "wend"; t: number; msg: string }
  | { e: "lost"; t: number; msg: string }
  | { e: "rss"; t: number; rss: number }
  | { e: "uncaught" | "unhandled"; t: number; msg: string }
  | { e: "end"; t: number; rss: number };

// ---- the child: one client doing the work ----------------------------------------------------

const out = (l: Line) => process.stdout.write(`${JSON.stringify(l)}\n`);
const msgOf = (e: unknown) => String((e as Error)?.message ?? e).slice(0, 300);

/** What a client does; each calls `out` as things happen. */
interface Worker {
  start(): Promise<string>; // the lease id, once the lease is kept alive and the watch is up
  put(key: string, value: string): Promise<number>;
  /** Stops the watch and the keep-alive, revokes the lease, closes the client. */
  close(): Promise<void>;
}

function gatewayWorker(url: string): Worker {
  const c = new EtcdClient({ endpoints: [url] });
  let stopKa = () => {};
  let closeWatch = () => {};
  let lease = "";
  return {
    async start() {
      lease = (await c.leaseGrant(TTL)).id;
      await c.put(LEASE_KEY, "held", { lease });
      const ka = c.keepAlive(lease, {
        onLost: () => out({ e: "lost", t: Date.now(), msg: "onLost" }),
        onRenewed: (ttl) => out({ e: "renew", t: Date.now(), ttl }),
        onError: (e) => out({ e: "kafail", t: Date.now(), msg: msgOf(e) }),
      });
      stopKa = () => ka.stop();
      const w = c.watch(
        PREFIX,
        { prefix: true },
        {
          onEvents: (evs) => {
            const t = Date.now();
            for (const ev of evs) out({ e: "ev", t, key: ev.kv.key, rev: ev.kv.modRevision });
          },
          onCompacted: (rev) => out({ e: "wend", t: Date.now(), msg: `compacted (revision ${rev})` }),
          onError: (e) => out({ e: "werr", t: Date.now(), msg: msgOf(e) }),
        },
      );
      closeWatch = () => w.close();
      await w.ready;
      return lease;
    },
    async put(key, value) {
      return (await c.put(key, value)).revision;
    },
    async close() {
      closeWatch();
      stopKa();
      await c.leaseRevoke(lease).catch(() => {});
      c.close();
    },
  };
}

async function etcd3Worker(url: string): Promise<Worker> {
  const { Etcd3 } = await import("etcd3");
  const c = new Etcd3({ hosts: url });
  const lease = c.lease(TTL);
  lease.on("lost", (e) => out({ e: "lost", t: Date.now(), msg: msgOf(e) }));
  lease.on("keepaliveSucceeded", (r) => out({ e: "renew", t: Date.now(), ttl: Number(r.TTL) }));
  lease.on("keepaliveFailed", (e) => out({ e: "kafail", t: Date.now(), msg: msgOf(e) }));
  let watcher: Awaited<ReturnType<ReturnType<typeof c.watch>["create"]>> | undefined;
  return {
    async start() {
      const id = await lease.grant();
      await lease.put(LEASE_KEY).value("held").exec();
      watcher = await c.watch().prefix(PREFIX).create();
      watcher.on("put", (kv) => out({ e: "ev", t: Date.now(), key: kv.key.toString(), rev: Number(kv.mod_revision) }));
      watcher.on("connected", (r) => out({ e: "wconn", t: Date.now(), rev: Number(r.header?.revision) }));
      watcher.on("disconnected", (e) => out({ e: "werr", t: Date.now(), msg: msgOf(e) }));
      // etcd3 emits "error" only for a watch etcd cancelled (it drops the watcher then); a
      // compacted start revision is one, with an empty reason.
      watcher.on("error", (e) => out({ e: "wend", t: Date.now(), msg: msgOf(e) }));
      return id;
    },
    async put(key, value) {
      return Number((await c.put(key).value(value).exec()).header.revision);
    },
    async close() {
      await watcher?.cancel().catch(() => {});
      await lease.revoke().catch(() => {});
      c.close();
    },
  };
}

async function child(name: ClientName, url: string): Promise<void> {
  // Counted and reported; without these handlers Bun would end the process on the first.
  process.on("uncaughtException", (e) => out({ e: "uncaught", t: Date.now(), msg: msgOf(e) }));
  process.on("unhandledRejection", (e) => out({ e: "unhandled", t: Date.now(), msg: msgOf(e) }));
  const w = name === "gateway" ? gatewayWorker(url) : await etcd3Worker(url);
  const lease = await w.start();
  out({ e: "ready", t: Date.now(), lease, rss: process.memoryUsage().rss });
  const rss = setInterval(() => out({ e: "rss", t: Date.now(), rss: process.memoryUsage().rss }), 5000);
  let stop = false;
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of Bun.stdin.stream()) if (dec.decode(chunk).includes("stop")) break;
    stop = true;
  })();
  let lastRev = 0;
  for (let seq = 0, next = Date.now(); !stop; seq++) {
    const t0 = Date.now();
    try {
      const rev = await w.put(`${PREFIX}${String(seq).padStart(6, "0")}`, String(seq));
      lastRev = Math.max(lastRev, rev);
      out({ e: "ack", t: Date.now(), seq, rev, ms: Date.now() - t0 });
    } catch (e) {
      out({ e: "fail", t: Date.now(), seq, msg: msgOf(e) });
    }
    next = Math.max(next + WRITE_EVERY_MS, Date.now());
    await Bun.sleep(next - Date.now());
  }
  // Give the watch time to deliver what was written last.
  await Bun.sleep(3000);
  clearInterval(rss);
  out({ e: "end", t: Date.now(), rss: process.memoryUsage().rss });
  await Promise.race([w.close(), Bun.sleep(5000)]);
  process.exit(0);
}

// ---- the driver: etcd, its restarts, the figures ---------------------------------------------

interface Restart {
  killedAt: number;
  healthyAt: number;
  /** From etcd answering again to the first acknowledged put, and to the first watch event
   * of a put made after the restart (undefined: never). */
  writesBackMs?: number;
  watchBackMs?: number;
}

export interface SoakResult {
  client: string;
  seconds: number;
  exit: string;
  written: number;
  acked: number;
  failedPuts: number;
  failedButApplied: number;
  putMaxMs: number;
  received: number;
  missed: number;
  duplicated: number;
  outOfOrder: number;
  unknown: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  restarts: Restart[];
  compactedAt: number;
  /** When etcd ended the watch (seconds into the run) and why; undefined: it never did. */
  watchEnded?: string;
  watchErrors: number;
  renewals: number;
  renewalsMissed: number;
  renewalMaxGapMs: number;
  keepAliveFailures: number;
  leaseLost: number;
  leaseAliveAtEnd: boolean;
  leaseKeyAtEnd: boolean;
  leaseMinTtl: number;
  leaseExpiredSeen: boolean;
  uncaught: number;
  unhandled: number;
  firstProblems: string[];
  rssStartMiB: number;
  rssEndMiB: number;
  rssPeakMiB: number;
  stderrTail: string[];
}

const MiB = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

async function soakOne(name: ClientName, seconds: number, log: (s: string) => void): Promise<SoakResult> {
  const etcd = await EtcdServer.start();
  // The lease poll gives up quickly (etcd may be down); the rest waits as long as it takes.
  const observer = new EtcdClient({ endpoints: [etcd.url], timeoutMs: 1000 });
  const admin = new EtcdClient({ endpoints: [etcd.url], timeoutMs: 10_000 });
  const lines: Line[] = [];
  let stderr = "";
  const proc = Bun.spawn([process.execPath, import.meta.path, "child", name, etcd.url], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const ready = Promise.withResolvers<Extract<Line, { e: "ready" }>>();
  const reading = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += dec.decode(chunk, { stream: true });
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let l: Line;
        try {
          l = JSON.parse(text);
        } catch {
          stderr += `stdout: ${text}\n`;
          continue;
        }
        lines.push(l);
        if (l.e === "ready") ready.resolve(l);
      }
    }
  })();
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) stderr = (stderr + dec.decode(chunk)).slice(-20_000);
  })();
  const restarts: Restart[] = [];
  let compactedAt = 0;
  let leaseMinTtl = TTL;
  let leaseExpiredSeen = false;
  let leaseAliveAtEnd = false;
  let leaseKeyAtEnd = false;
  let polling = true;
  try {
    const r = await Promise.race([ready.promise, proc.exited.then(() => undefined), Bun.sleep(30_000)]);
    if (!r) throw new Error(`the ${name} child did not start: ${stderr.slice(-2000)}`);
    const t0 = Date.now();
    const poll = (async () => {
      while (polling) {
        try {
          const ttl = (await observer.leaseTimeToLive(r.lease)).ttl;
          if (ttl < 0) leaseExpiredSeen = true;
          else leaseMinTtl = Math.min(leaseMinTtl, ttl);
        } catch {
          // etcd is down: nothing to see
        }
        await Bun.sleep(500);
      }
    })();
    const at = (f: number) => Bun.sleep(Math.max(0, t0 + f * seconds * 1000 - Date.now()));
    const plan = [
      ...RESTARTS.map((f) => ({ f, what: "restart" as const })),
      { f: COMPACT_AT, what: "compact" as const },
    ].sort((a, b) => a.f - b.f);
    for (const step of plan) {
      await at(step.f);
      if (step.what === "compact") {
        compactedAt = (await admin.status()).revision;
        await admin.compact(compactedAt);
        log(`compacted at ${compactedAt}`);
      } else {
        const killedAt = Date.now();
        await etcd.stop("SIGKILL");
        await Bun.sleep(DOWN_MS);
        await etcd.resume();
        restarts.push({ killedAt, healthyAt: Date.now() });
        log(`restart ${restarts.length}: etcd answered ${Date.now() - killedAt} ms after SIGKILL`);
      }
    }
    await at(1);
    leaseAliveAtEnd = (await admin.leaseTimeToLive(r.lease)).ttl > 0;
    leaseKeyAtEnd = (await admin.get(LEASE_KEY))?.lease === r.lease;
    polling = false;
    await poll;
    proc.stdin.write("stop\n");
    await proc.stdin.flush();
    await Promise.race([proc.exited, Bun.sleep(20_000)]);
  } finally {
    polling = false;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await proc.exited;
    await reading;
  }
  const stored = (await admin.list(PREFIX)).kvs;
  observer.close();
  admin.close();
  etcd.destroy();
  const trace = process.env.STM_SOAK_TRACE;
  if (trace) {
    // Every line the child printed, the restarts and the keys in etcd: to see how a figure came about.
    const extra = [{ restarts }, { stored: stored.map((k) => [k.key, k.modRevision]) }];
    await Bun.write(`${trace}/${name}.jsonl`, [...lines, ...extra].map((l) => JSON.stringify(l)).join("\n"));
  }
  return figures(name, seconds, lines, stored, restarts, {
    exit: proc.signalCode ? `killed by ${proc.signalCode}` : `exit ${proc.exitCode}`,
    compactedAt,
    leaseMinTtl,
    leaseExpiredSeen,
    leaseAliveAtEnd,
    leaseKeyAtEnd,
    stderr,
  });
}

function figures(
  name: string,
  seconds: number,
  lines: Line[],
  stored: Array<{ key: string; modRevision: number }>,
  restarts: Restart[],
  o: {
    exit: string;
    compactedAt: number;
    leaseMinTtl: number;
    leaseExpiredSeen: boolean;
    leaseAliveAtEnd: boolean;
    leaseKeyAtEnd: boolean;
    stderr: string;
  },
): SoakResult {
  const of = <E extends Line["e"]>(e: E) => lines.filter((l): l is Extract<Line, { e: E }> => l.e === e);
  const acks = of("ack");
  const fails = of("fail");
  const evs = of("ev");
  const renews = of("renew");
  const ready = of("ready")[0];
  const end = of("end")[0];
  const storedAt = new Map(stored.map((k) => [`${k.key}@${k.modRevision}`, k]));
  const seen = new Map<string, number>();
  let outOfOrder = 0;
  let prev = 0;
  for (const ev of evs) {
    const id = `${ev.key}@${ev.rev}`;
    seen.set(id, (seen.get(id) ?? 0) + 1);
    if (ev.rev < prev) outOfOrder++;
    prev = Math.max(prev, ev.rev);
  }
  const ackAt = new Map(acks.map((a) => [a.rev, a.t]));
  const lags = evs.flatMap((ev) => (ackAt.has(ev.rev) ? [Math.max(0, ev.t - (ackAt.get(ev.rev) as number))] : []));
  const sorted = [...lags].sort((a, b) => a - b);
  const pct = (p: number) =>
    sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0) : 0;
  const storedKeys = new Set(stored.map((k) => k.key));
  for (const r of restarts) {
    const firstAck = acks.find((a) => a.t >= r.healthyAt);
    if (firstAck) {
      r.writesBackMs = firstAck.t - r.healthyAt;
      const ev = evs.find((e) => e.rev >= firstAck.rev);
      if (ev) r.watchBackMs = ev.t - r.healthyAt;
    }
  }
  // Renewals: one every TTL/3 is what both clients aim at; a longer gap is renewals missed.
  const interval = (TTL * 1000) / 3;
  const times = [ready?.t ?? 0, ...renews.map((r) => r.t), end?.t ?? lines.at(-1)?.t ?? 0].filter((t) => t > 0);
  let missed = 0;
  let maxGap = 0;
  for (let i = 1; i < times.length; i++) {
    const gap = (times[i] as number) - (times[i - 1] as number);
    maxGap = Math.max(maxGap, gap);
    missed += Math.max(0, Math.round(gap / interval) - 1);
  }
  const rss = [ready?.rss ?? 0, ...of("rss").map((r) => r.rss), end?.rss ?? 0];
  const problems = [...of("uncaught"), ...of("unhandled"), ...of("lost")].map((l) => `${l.e}: ${l.msg}`);
  return {
    client: name,
    seconds,
    exit: o.exit,
    written: stored.length,
    acked: acks.length,
    failedPuts: fails.length,
    failedButApplied: fails.filter((f) => storedKeys.has(`${PREFIX}${String(f.seq).padStart(6, "0")}`)).length,
    putMaxMs: Math.max(0, ...acks.map((a) => a.ms)),
    received: evs.length,
    missed: [...storedAt.keys()].filter((id) => !seen.has(id)).length,
    duplicated: evs.length - seen.size,
    outOfOrder,
    unknown: [...seen.keys()].filter((id) => !storedAt.has(id)).length,
    lagP50Ms: median(lags.length ? lags : [0]),
    lagP99Ms: pct(0.99),
    lagMaxMs: sorted.at(-1) ?? 0,
    restarts,
    compactedAt: o.compactedAt,
    watchEnded: of("wend")
      .slice(0, 1)
      .map((w) => `at ${Math.round((w.t - (ready?.t ?? w.t)) / 1000)} s: ${w.msg}`)[0],
    watchErrors: of("werr").length,
    renewals: renews.length,
    renewalsMissed: missed,
    renewalMaxGapMs: maxGap,
    keepAliveFailures: of("kafail").length,
    leaseLost: of("lost").length,
    leaseAliveAtEnd: o.leaseAliveAtEnd,
    leaseKeyAtEnd: o.leaseKeyAtEnd,
    leaseMinTtl: o.leaseMinTtl,
    leaseExpiredSeen: o.leaseExpiredSeen,
    uncaught: of("uncaught").length,
    unhandled: of("unhandled").length,
    firstProblems: problems.slice(0, 3),
    rssStartMiB: MiB(ready?.rss ?? 0),
    rssEndMiB: MiB(end?.rss ?? 0),
    rssPeakMiB: MiB(Math.max(...rss)),
    stderrTail: o.stderr.trimEnd().split("\n").filter(Boolean).slice(-5),
  };
}

function versions(): Record<ClientName, string> {
  const v = (p: string) => {
    try {
      return require(`${p}/package.json`).version as string;
    } catch {
      return "?";
    }
  };
  return {
    gateway: "Stratum's client (JSON gateway, fetch)",
    etcd3: `etcd3 ${v("etcd3")} (grpc-js ${v("@grpc/grpc-js")})`,
  };
}

export function formatSoak(results: SoakResult[]): string {
  const names = versions();
  const yes = (b: boolean) => (b ? "yes" : "NO");
  const rows: Array<[string, (r: SoakResult) => string]> = [
    ["process", (r) => r.exit],
    ["puts acknowledged / failed", (r) => `${r.acked} / ${r.failedPuts}`],
    ["failed puts applied anyway", (r) => `${r.failedButApplied}`],
    ["slowest acknowledged put", (r) => `${r.putMaxMs} ms`],
    ["events written (keys in etcd)", (r) => `${r.written}`],
    ["events received", (r) => `${r.received}`],
    ["missed / duplicated / out of order", (r) => `${r.missed} / ${r.duplicated} / ${r.outOfOrder}`],
    ["received but never written", (r) => `${r.unknown}`],
    ["put ack to event p50 / p99 / max", (r) => `${r.lagP50Ms} / ${r.lagP99Ms} / ${r.lagMaxMs} ms`],
    ...RESTARTS.map((_, i): [string, (r: SoakResult) => string] => [
      `restart ${i + 1}: etcd up; then writes, watch`,
      (r) => {
        const x = r.restarts[i];
        const after = (n?: number) => (n === undefined ? "never" : `+${n} ms`);
        return x ? `${x.healthyAt - x.killedAt} ms; ${after(x.writesBackMs)}, ${after(x.watchBackMs)}` : "-";
      },
    ]),
    ["watch errors / disconnects reported", (r) => `${r.watchErrors}`],
    ["watch ended by etcd", (r) => r.watchEnded ?? "no"],
    ["lease alive at the end (its key too)", (r) => `${yes(r.leaseAliveAtEnd)} (${yes(r.leaseKeyAtEnd)})`],
    ["lease: lowest TTL seen, ever expired", (r) => `${r.leaseMinTtl} s, ${r.leaseExpiredSeen ? "YES" : "no"}`],
    ["renewals / missed / longest gap", (r) => `${r.renewals} / ${r.renewalsMissed} / ${r.renewalMaxGapMs} ms`],
    ["keep-alive failures reported / lost", (r) => `${r.keepAliveFailures} / ${r.leaseLost}`],
    ["uncaught exceptions / unhandled rejections", (r) => `${r.uncaught} / ${r.unhandled}`],
    ["RSS start / end / peak", (r) => `${r.rssStartMiB} / ${r.rssEndMiB} / ${r.rssPeakMiB} MiB`],
  ];
  const header = ["", ...results.map((r) => names[r.client as ClientName] ?? r.client)];
  const table = [header, ...rows.map(([label, f]) => [label, ...results.map(f)])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  const notes = results.flatMap((r) => [
    ...r.firstProblems.map((p) => `${r.client}: ${p}`),
    ...r.stderrTail.map((s) => `${r.client} stderr: ${s.slice(0, 200)}`),
  ]);
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...table.slice(1).map(line), ...notes].join("\n");
}

/** Runs the soak for each client in turn and prints the table (or JSON). */
export async function soak(o: { seconds?: number; json?: boolean; clients?: ClientName[] } = {}): Promise<void> {
  const seconds = o.seconds ?? Number(process.env.STM_SOAK_SECONDS ?? 60);
  if (!Number.isFinite(seconds) || seconds < 20) throw new Error(`etcd-soak: at least 20 s per client, not ${seconds}`);
  const results: SoakResult[] = [];
  const etcdVersion = Bun.spawnSync(["/usr/bin/etcd", "--version"]).stdout.toString().split("\n")[0] ?? "";
  process.stderr.write(
    `etcd-soak: ${seconds} s per client, ${etcdVersion}, Bun ${Bun.version}; ` +
      `etcd SIGKILLed and restarted at ${RESTARTS.map((f) => `${f * 100}%`).join(", ")}, compacted at ${COMPACT_AT * 100}%\n`,
  );
  for (const c of o.clients ?? [...CLIENTS]) {
    process.stderr.write(`etcd-soak: ${c}\n`);
    results.push(await soakOne(c, seconds, (s) => process.stderr.write(`  ${s}\n`)));
  }
  if (o.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else process.stdout.write(`${formatSoak(results)}\n`);
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv[0] === "child") await child(argv[1] as ClientName, argv[2] as string);
  else {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { seconds: { type: "string" }, json: { type: "boolean", default: false } },
      allowPositionals: true,
    });
    const bad = positionals.filter((p) => !(CLIENTS as readonly string[]).includes(p));
    if (bad.length) {
      process.stderr.write(`etcd-soak: unknown client ${bad.join(", ")} (${CLIENTS.join(", ")})\n`);
      process.exit(2);
    }
    await soak({
      seconds: values.seconds === undefined ? undefined : Number(values.seconds),
      json: values.json,
      clients: positionals.length ? (positionals as ClientName[]) : undefined,
    });
  }
}
