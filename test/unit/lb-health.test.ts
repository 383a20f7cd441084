/** Load-balancer health checks: the rise/fall state machine on tables of results; probeOnce
 * against real loopback servers (IPv4 and IPv6) that accept, refuse, answer 200 or 503, say
 * nothing, or are not HTTP, with every probe's socket seen closed by the server; and the
 * HealthChecker on short timings against a real HTTP server that stops and comes back. */
import { afterEach, describe, expect, test } from "bun:test";
import type { Server, Socket, TCPSocketListener } from "bun";
import { StratumError } from "../../src/errors";
import {
  DEFAULT_TIMING,
  type HealthCheck,
  HealthChecker,
  type HealthState,
  type HealthTiming,
  initialHealth,
  maxDetectionMs,
  nextHealth,
  probeOnce,
} from "../../src/lb/health";

const HEALTH_TS = new URL("../../src/lb/health.ts", import.meta.url).pathname;
const HOSTS = ["127.0.0.1", "::1"] as const;
const HTTP200: HealthCheck = { kind: "http", path: "/healthz", expect: 200 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (cond()) return true;
    await sleep(5);
  }
  return cond();
}

// Everything a test starts is stopped here, pass or fail.
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A raw TCP listener that records what each connection sent and counts open connections; `reply`
 * decides what it answers to the first bytes (nothing when it returns undefined). */
function rawServer(
  hostname: string,
  reply: (req: string) => string | undefined,
  opts: { closeAfterReply?: boolean } = {},
) {
  const requests: string[] = [];
  const live = new Set<Socket<{ buf: string }>>();
  let accepted = 0;
  const listener: TCPSocketListener<{ buf: string }> = Bun.listen<{ buf: string }>({
    hostname,
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: "" };
        accepted++;
        live.add(s);
      },
      data(s, chunk) {
        s.data.buf += chunk.toString("latin1");
        if (!s.data.buf.includes("\r\n\r\n")) return;
        requests.push(s.data.buf);
        const out = reply(s.data.buf);
        if (out !== undefined) {
          s.write(out);
          if (opts.closeAfterReply ?? true) s.end();
        }
      },
      close(s) {
        live.delete(s);
      },
      error(s) {
        live.delete(s);
      },
    },
  });
  cleanups.push(() => listener.stop(true));
  return {
    port: listener.port,
    requests,
    get open() {
      return live.size;
    },
    get accepted() {
      return accepted;
    },
  };
}

/** A port nothing listens on: bound by us, then released. */
function closedPort(hostname: string): number {
  const l = Bun.listen({ hostname, port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

function httpServer(hostname: string, status: () => number, port = 0) {
  const seen: Array<{ path: string; host: string | null }> = [];
  const server: Server<undefined> = Bun.serve({
    hostname,
    port,
    fetch(req) {
      const u = new URL(req.url);
      seen.push({ path: u.pathname + u.search, host: req.headers.get("host") });
      return new Response("", { status: status() });
    },
  });
  cleanups.push(() => server.stop(true));
  return { server, seen, port: server.port as number };
}

describe("nextHealth", () => {
  const timing: HealthTiming = { intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 3 };

  // Each row: starting state, results, then the healthy flag and streak after each result and where
  // a transition was reported.
  const rows: Array<{ name: string; start: boolean; results: string; healthy: string; streak: number[] }> = [
    { name: "new backend rises after 2", start: false, results: "++", healthy: "-+", streak: [1, 0] },
    { name: "a failure resets the rise", start: false, results: "+-++", healthy: "---+", streak: [1, 0, 1, 0] },
    { name: "failures keep it down", start: false, results: "---", healthy: "---", streak: [0, 0, 0] },
    { name: "healthy falls after 3", start: true, results: "---", healthy: "++-", streak: [1, 2, 0] },
    { name: "a success resets the fall", start: true, results: "--+--", healthy: "+++++", streak: [1, 2, 0, 1, 2] },
    {
      name: "down, up, down again",
      start: true,
      results: "---++---",
      healthy: "++--+++-",
      streak: [1, 2, 0, 1, 0, 1, 2, 0],
    },
  ];
  for (const row of rows) {
    test(row.name, () => {
      let s = initialHealth(0, row.start);
      const changes: number[] = [];
      [...row.results].forEach((r, i) => {
        const before = s.healthy;
        const out = nextHealth(s, r === "+", `r${i}`, timing, 100 + i);
        s = out.state;
        expect(out.changed).toBe(before !== s.healthy);
        if (out.changed) {
          changes.push(i);
          expect(s.lastChange).toBe(100 + i);
        }
        expect({ i, healthy: s.healthy, streak: s.streak }).toEqual({
          i,
          healthy: row.healthy[i] === "+",
          streak: row.streak[i]!,
        });
        expect(s.lastDetail).toBe(`r${i}`);
      });
      expect(s.checks).toBe(row.results.length);
      expect(s.failures).toBe([...row.results].filter((r) => r === "-").length);
      const flips = [...row.healthy].flatMap((h, i) =>
        (i === 0 ? row.start : row.healthy[i - 1] === "+") !== (h === "+") ? [i] : [],
      );
      expect(changes).toEqual(flips);
    });
  }

  test("does not mutate its input; lastChange stays put without a transition", () => {
    const s0 = initialHealth(7);
    expect(s0).toEqual({ healthy: false, streak: 0, lastDetail: "", lastChange: 7, checks: 0, failures: 0 });
    const frozen = Object.freeze({ ...s0 });
    const { state } = nextHealth(frozen, true, "ok 200", timing, 50);
    expect(frozen.checks).toBe(0);
    expect(state).toEqual({ healthy: false, streak: 1, lastDetail: "ok 200", lastChange: 7, checks: 1, failures: 0 });
  });

  test("rise and fall of 1 flip on a single result", () => {
    const t1 = { ...timing, rise: 1, fall: 1 };
    const up = nextHealth(initialHealth(0), true, "ok", t1, 1);
    expect(up.changed).toBe(true);
    const down = nextHealth(up.state, false, "refused", t1, 2);
    expect(down).toEqual({
      changed: true,
      state: { healthy: false, streak: 0, lastDetail: "refused", lastChange: 2, checks: 2, failures: 1 },
    });
  });

  test("maxDetectionMs is fall × interval + timeout", () => {
    expect(maxDetectionMs(DEFAULT_TIMING)).toBe(3 * 2000 + 1000);
    expect(maxDetectionMs({ intervalMs: 50, timeoutMs: 40, rise: 2, fall: 2 })).toBe(140);
  });
});

describe("probeOnce", () => {
  for (const host of HOSTS) {
    describe(host, () => {
      test("TCP: connects, then closes its socket", async () => {
        const srv = rawServer(host, () => undefined);
        const r = await probeOnce({ address: host, port: srv.port }, { kind: "tcp" }, 1000);
        expect(r.ok).toBe(true);
        expect(r.detail).toBe("ok connect");
        expect(r.ms).toBeGreaterThanOrEqual(0);
        expect(r.ms).toBeLessThan(1000);
        expect(srv.accepted).toBe(1);
        expect(await until(() => srv.open === 0, 500)).toBe(true);
      });

      test("TCP: refused", async () => {
        const r = await probeOnce({ address: host, port: closedPort(host) }, { kind: "tcp" }, 1000);
        expect(r).toMatchObject({ ok: false, detail: "connect refused" });
        expect(r.ms).toBeLessThan(1000);
      });

      test("HTTP: 200 when 200 is expected", async () => {
        const srv = httpServer(host, () => 200);
        const r = await probeOnce({ address: host, port: srv.port }, HTTP200, 1000);
        expect(r).toMatchObject({ ok: true, detail: "ok 200" });
        expect(srv.seen).toHaveLength(1);
      });

      test("HTTP: 503 when 200 is expected", async () => {
        const srv = httpServer(host, () => 503);
        const r = await probeOnce({ address: host, port: srv.port }, HTTP200, 1000);
        expect(r).toMatchObject({ ok: false, detail: "status 503, want 200" });
      });

      test("HTTP: a server that accepts and never answers times out, and the socket is closed", async () => {
        const srv = rawServer(host, () => undefined);
        const t0 = performance.now();
        const r = await probeOnce({ address: host, port: srv.port }, HTTP200, 150);
        const took = performance.now() - t0;
        expect(r.ok).toBe(false);
        expect(r.detail).toBe("timeout after 150 ms waiting for status");
        expect(took).toBeGreaterThanOrEqual(145);
        expect(took).toBeLessThan(150 + 200);
        expect(srv.requests).toHaveLength(1);
        expect(srv.accepted).toBe(1);
        expect(await until(() => srv.open === 0, 500)).toBe(true);
      });

      test("HTTP: sends the path and Host header, address by default", async () => {
        const ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        const srv = rawServer(host, () => ok);
        const dflt = await probeOnce(
          { address: host, port: srv.port },
          { kind: "http", path: "/hz?a=1", expect: 200 },
          1000,
        );
        const named = await probeOnce(
          { address: host, port: srv.port },
          { kind: "http", path: "/status", expect: 200, host: "api.example:8443" },
          1000,
        );
        expect([dflt.ok, named.ok]).toEqual([true, true]);
        const [first, second] = srv.requests;
        const hostHeader = host.includes(":") ? `[${host}]` : host;
        expect(first!.split("\r\n")[0]).toBe("GET /hz?a=1 HTTP/1.1");
        expect(first).toContain(`\r\nHost: ${hostHeader}\r\n`);
        expect(first).toContain("\r\nConnection: close\r\n");
        expect(second!.split("\r\n")[0]).toBe("GET /status HTTP/1.1");
        expect(second).toContain("\r\nHost: api.example:8443\r\n");
        expect(await until(() => srv.open === 0, 500)).toBe(true);
      });
    });
  }

  test("HTTP: the status line may arrive in pieces, and the status must match exactly", async () => {
    const chunks = ["HTT", "P/1.1 20", "4 No Content\r\n\r\n"];
    const l = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        async data(s) {
          for (const c of chunks) {
            s.write(c);
            s.flush();
            await sleep(10);
          }
          s.end();
        },
      },
    });
    cleanups.push(() => l.stop(true));
    const t = { address: "127.0.0.1", port: l.port };
    expect(await probeOnce(t, { kind: "http", path: "/", expect: 204 }, 1000)).toMatchObject({
      ok: true,
      detail: "ok 204",
    });
    expect(await probeOnce(t, HTTP200, 1000)).toMatchObject({ ok: false, detail: "status 204, want 200" });
  });

  test("HTTP: a server that is not HTTP, or hangs up, is named as such", async () => {
    const ssh = rawServer("127.0.0.1", () => "SSH-2.0-OpenSSH_9.6\r\n");
    const r = await probeOnce({ address: "127.0.0.1", port: ssh.port }, HTTP200, 1000);
    expect(r.ok).toBe(false);
    expect(r.detail).toStartWith("not HTTP: ");
    const mute = rawServer("127.0.0.1", () => "");
    const r2 = await probeOnce({ address: "127.0.0.1", port: mute.port }, HTTP200, 1000);
    expect(r2).toMatchObject({ ok: false, detail: "closed before status line" });
  });

  test("bad input is a failed probe, never a throw", async () => {
    const t = { address: "127.0.0.1", port: 80 };
    expect((await probeOnce({ address: "localhost", port: 80 }, { kind: "tcp" }, 100)).detail).toBe(
      "not an IP address: localhost",
    );
    expect((await probeOnce({ address: "127.0.0.1", port: 0 }, { kind: "tcp" }, 100)).ok).toBe(false);
    const injected = await probeOnce(t, { kind: "http", path: "/\r\nX-Evil: 1", expect: 200 }, 100);
    expect(injected.ok).toBe(false);
    expect(injected.detail).toStartWith("bad path");
    const badHost = await probeOnce(t, { kind: "http", path: "/", expect: 200, host: "a\nb" }, 100);
    expect(badHost.detail).toStartWith("bad host");
    const malformed = await probeOnce(t, { kind: "http" } as unknown as HealthCheck, 100);
    expect(malformed.ok).toBe(false);
    expect(malformed.detail).toStartWith("bad check: ");
  });

  // A connect the peer never completes (a listen backlog of 0, already full, drops the SYNs): the
  // probe must give up at its timeout and leave nothing behind that keeps a process alive.
  const python = Bun.which("python3");
  test.skipIf(!python)("TCP: a connect that never completes times out and leaves no handle", async () => {
    const holder = Bun.spawn(
      [
        python!,
        "-c",
        `import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
fill = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(s.getsockname())
    except BlockingIOError: pass
    fill.append(c)
print(s.getsockname()[1], flush=True)
sys.stdin.read()`,
      ],
      { stdin: "pipe", stdout: "pipe" },
    );
    cleanups.push(() => {
      holder.kill();
      return holder.exited;
    });
    const reader = holder.stdout.getReader();
    const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
    reader.releaseLock();
    expect(port).toBeGreaterThan(0);
    await sleep(50); // the filling connections settle into the full queue

    const t0 = performance.now();
    const r = await probeOnce({ address: "127.0.0.1", port }, { kind: "tcp" }, 150);
    expect(r).toMatchObject({ ok: false, detail: "timeout after 150 ms connecting" });
    expect(performance.now() - t0).toBeLessThan(350);

    // In a process of its own, the probe's end must leave the event loop empty: a pending connect
    // still held would keep it alive for the kernel's SYN retries.
    const child = Bun.spawn(
      [
        process.execPath,
        "-e",
        `import { probeOnce } from ${JSON.stringify(HEALTH_TS)};
const r = await probeOnce({ address: "127.0.0.1", port: ${port} }, { kind: "tcp" }, 100);
const at = performance.now();
console.log(JSON.stringify(r));
process.on("exit", () => console.log(JSON.stringify({ lingered: performance.now() - at })));`,
      ],
      { stdout: "pipe", stderr: "inherit" },
    );
    const killer = setTimeout(() => child.kill(), 3000);
    cleanups.push(() => {
      clearTimeout(killer);
      child.kill();
    });
    const code = await child.exited;
    const lines = (await new Response(child.stdout).text()).trim().split("\n");
    expect(code).toBe(0);
    expect(JSON.parse(lines[0]!)).toMatchObject({ ok: false, detail: "timeout after 100 ms connecting" });
    expect(JSON.parse(lines[1]!).lingered).toBeLessThan(100);
  });
});

describe("HealthChecker", () => {
  const FAST: HealthTiming = { intervalMs: 50, timeoutMs: 40, rise: 2, fall: 2 };
  const SLACK = 250;

  function checker(now?: () => number) {
    const events: Array<{ id: string; healthy: boolean; at: number; state: HealthState }> = [];
    const c = new HealthChecker({
      onChange: (id, state) => events.push({ id, healthy: state.healthy, at: performance.now(), state }),
      now,
    });
    cleanups.push(() => c.stop());
    return { c, events };
  }

  test("healthy, down when the server stops, up when it returns; set() keeps, removes, stop() ends", async () => {
    let srv = httpServer("127.0.0.1", () => 200);
    const port = srv.port;
    const target = { id: "web-1", address: "127.0.0.1", port, check: HTTP200, timing: FAST };
    const { c, events } = checker();
    c.set([target]);
    expect(c.state("web-1")).toMatchObject({ healthy: false, checks: 0 });

    // First probe within a quarter interval, then rise − 1 more intervals.
    expect(await until(() => events.length === 1, FAST.intervalMs / 4 + FAST.intervalMs + SLACK)).toBe(true);
    expect(events[0]).toMatchObject({ id: "web-1", healthy: true });
    expect(srv.seen[0]).toEqual({ path: "/healthz", host: "127.0.0.1" });

    // The same target again, as a new object: state and schedule carry on.
    const before = c.state("web-1")!;
    c.set([{ ...target, check: { ...HTTP200 }, timing: { ...FAST } }]);
    expect(c.state("web-1")).toBe(before);
    await sleep(FAST.intervalMs * 2);
    expect(c.state("web-1")!.checks).toBeGreaterThan(before.checks);
    expect(c.state("web-1")!.healthy).toBe(true);
    expect(events).toHaveLength(1);

    const stoppedAt = performance.now();
    await srv.server.stop(true);
    expect(await until(() => events.length === 2, maxDetectionMs(FAST) + SLACK)).toBe(true);
    expect(events[1]).toMatchObject({ id: "web-1", healthy: false });
    expect(events[1]!.at - stoppedAt).toBeLessThan(maxDetectionMs(FAST) + SLACK);
    expect(events[1]!.state.lastDetail).toBe("connect refused");
    expect(c.state("web-1")!.failures).toBeGreaterThanOrEqual(2);

    srv = httpServer("127.0.0.1", () => 200, port);
    expect(await until(() => events.length === 3, FAST.rise * FAST.intervalMs + FAST.timeoutMs + SLACK)).toBe(true);
    expect(events.map((e) => e.healthy)).toEqual([true, false, true]);

    // Removed: no more probes once the one in flight, if any, is done.
    c.set([]);
    expect(c.state("web-1")).toBeUndefined();
    expect(c.states().size).toBe(0);
    await sleep(FAST.timeoutMs + 10);
    const seen = srv.seen.length;
    await sleep(200);
    expect(srv.seen.length).toBe(seen);
    expect(events).toHaveLength(3);

    // Back again: a new target, probed again; then stop() silences it for good.
    c.set([target]);
    expect(c.state("web-1")).toMatchObject({ healthy: false, checks: 0 });
    expect(await until(() => srv.seen.length > seen, FAST.intervalMs + SLACK)).toBe(true);
    c.stop();
    c.stop();
    c.set([target]);
    expect(c.states().size).toBe(0);
    await sleep(FAST.timeoutMs + 10);
    const atStop = srv.seen.length;
    await sleep(300);
    expect(srv.seen.length).toBe(atStop);
  });

  test("a changed check keeps the verdict but re-earns it: a failing new check brings it down", async () => {
    const srv = httpServer("::1", () => 200);
    const { c, events } = checker();
    const target = { id: "v6", address: "::1", port: srv.port, check: HTTP200, timing: FAST };
    c.set([target]);
    expect(await until(() => events.length === 1, 400)).toBe(true);
    expect(srv.seen[0]!.host).toBe("[::1]");
    c.set([{ ...target, check: { kind: "http", path: "/healthz", expect: 204 } }]);
    expect(c.state("v6")).toMatchObject({ healthy: true, streak: 0 });
    expect(await until(() => events.length === 2, maxDetectionMs(FAST) + SLACK)).toBe(true);
    expect(events[1]!.state).toMatchObject({ healthy: false, lastDetail: "status 200, want 204" });
  });

  test("a probe never overlaps itself: ticks that find it running are skipped", async () => {
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    const c = new HealthChecker({
      onChange: () => {},
      probe: async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        await sleep(70);
        running--;
        return { ok: true, detail: "ok", ms: 70 };
      },
    });
    cleanups.push(() => c.stop());
    c.set([{ id: "slow", address: "127.0.0.1", port: 1, check: { kind: "tcp" }, timing: { ...FAST, intervalMs: 20 } }]);
    await sleep(300);
    c.stop();
    expect(maxRunning).toBe(1);
    // 300 ms of 20 ms ticks is 15 ticks; a 70 ms probe fits at most about 5 times.
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(calls).toBeLessThanOrEqual(5);
  });

  test("a result arriving after stop() is dropped", async () => {
    let release: () => void = () => {};
    const changes: string[] = [];
    const c = new HealthChecker({
      onChange: (id) => changes.push(id),
      probe: () =>
        new Promise((resolve) => {
          release = () => resolve({ ok: true, detail: "ok", ms: 1 });
        }),
    });
    cleanups.push(() => c.stop());
    const timing = { intervalMs: 40, timeoutMs: 30, rise: 1, fall: 1 };
    c.set([{ id: "a", address: "127.0.0.1", port: 1, check: { kind: "tcp" }, timing }]);
    await sleep(40);
    c.stop();
    release();
    await sleep(20);
    expect(changes).toEqual([]);
  });

  test("1,000 new targets: first probes spread over a quarter interval, state stamped with now()", async () => {
    const firstAt = new Map<number, number>();
    const t0 = performance.now();
    const c = new HealthChecker({
      onChange: () => {},
      now: () => 42,
      probe: async (target) => {
        if (!firstAt.has(target.port)) firstAt.set(target.port, performance.now() - t0);
        return { ok: true, detail: "ok", ms: 0 };
      },
    });
    cleanups.push(() => c.stop());
    const timing = { intervalMs: 400, timeoutMs: 100, rise: 1, fall: 1 };
    c.set(
      Array.from({ length: 1000 }, (_, i) => ({
        id: `t${i}`,
        address: "10.0.0.1",
        port: i + 1,
        check: { kind: "tcp" } as const,
        timing,
      })),
    );
    expect(await until(() => firstAt.size === 1000, 100 + SLACK)).toBe(true);
    const times = [...firstAt.values()];
    expect(Math.max(...times)).toBeLessThan(100 + 50);
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThan(50);
    // No 10-ms bucket holds more than a share of the probes (all at once would be 1,000 in
    // one; a busy machine that stalls the loop for a few ms piles those ms' probes together).
    const buckets = new Map<number, number>();
    for (const t of times) buckets.set(Math.floor(t / 10), (buckets.get(Math.floor(t / 10)) ?? 0) + 1);
    expect(Math.max(...buckets.values())).toBeLessThan(400);
    expect(await until(() => [...c.states().values()].every((s) => s.healthy), 100)).toBe(true);
    expect(c.state("t0")!.lastChange).toBe(42);
    c.stop();
  });

  test("an invalid timing throws before anything changes", () => {
    const { c } = checker();
    const good = { id: "a", address: "127.0.0.1", port: 1, check: { kind: "tcp" } as const, timing: DEFAULT_TIMING };
    c.set([good]);
    const bad = { ...good, id: "b", timing: { ...DEFAULT_TIMING, intervalMs: 0 } };
    expect(() => c.set([bad])).toThrow(StratumError);
    expect(() => c.set([{ ...good, timing: { ...DEFAULT_TIMING, rise: 1.5 } }])).toThrow(/rise and fall/);
    expect([...c.states().keys()]).toEqual(["a"]);
  });
});
