/** The etcd client (src/cluster/etcd-client.ts) against a real etcd-server: key-value round
 * trips, transactions and racing claims, watches that lose and repeat nothing across a
 * restart, a crash, a silent connection and a member's death, compaction reported, leases
 * kept alive and lost, etcd unreachable, authentication and TLS. Partitions between client
 * and etcd go through a TCP relay (test/helpers/tcp-proxy.ts) while etcd stays up. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EtcdClient, type EtcdError, type WatchEvent } from "../../src/cluster/etcd-client";
import { StratumError } from "../../src/errors";
import { EtcdServer } from "../helpers/etcd-server";
import { runOk } from "../helpers/netns";
import { TestPki } from "../helpers/pki";
import { TcpProxy } from "../helpers/tcp-proxy";

const made: Array<{ destroy(): void } | { close(): void }> = [];
afterAll(() => {
  for (const m of made.reverse()) "destroy" in m ? m.destroy() : m.close();
});
function keep<T extends { destroy(): void } | { close(): void }>(x: T): T {
  made.push(x);
  return x;
}

const text = (v: Uint8Array | undefined) => (v ? new TextDecoder().decode(v) : undefined);

/** Waits until `cond` holds, polling; fails with `what` after `ms`. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<EtcdError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(StratumError);
    return e as EtcdError;
  }
  throw new Error("expected a failure");
}

/** A watch recording every event and every failure. */
function recorder(client: EtcdClient, prefix: string, startRevision?: number) {
  const events: WatchEvent[] = [];
  const errors: StratumError[] = [];
  let compacted = 0;
  const w = client.watch(
    prefix,
    { prefix: true, startRevision },
    {
      onEvents: (evs, rev) => {
        expect(rev).toBe(evs.at(-1)?.kv.modRevision as number);
        events.push(...evs);
      },
      onCompacted: (r) => {
        compacted = r;
      },
      onError: (e) => errors.push(e),
    },
  );
  return {
    w,
    events,
    errors,
    get compacted() {
      return compacted;
    },
    revisions: () => events.map((e) => e.kv.modRevision),
  };
}

const span = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

let etcd: EtcdServer;
let client: EtcdClient;
beforeAll(async () => {
  etcd = keep(await EtcdServer.start());
  client = keep(new EtcdClient({ endpoints: [etcd.url], timeoutMs: 3000 }));
}, 60_000);

describe("key-value", () => {
  test("binary values, versions, old revisions, prefix ranges, paging, keys-only and deletes", async () => {
    const bin = Uint8Array.from({ length: 256 }, (_, i) => i);
    const { revision: r1 } = await client.put("kv/bin", bin);
    const kv = await client.get("kv/bin");
    expect(kv?.value).toEqual(bin);
    expect(kv).toMatchObject({ key: "kv/bin", createRevision: r1, modRevision: r1, version: 1, lease: "0" });
    const { revision: r2 } = await client.put("kv/bin", "second");
    expect(r2).toBe(r1 + 1);
    expect(await client.get("kv/bin")).toMatchObject({ createRevision: r1, modRevision: r2, version: 2 });
    expect((await client.get("kv/bin", { revision: r1 }))?.value).toEqual(bin);
    expect(await client.get("kv/none")).toBeUndefined();

    // Prefix "kv/p/" takes neither "kv/p" nor "kv/p0" (the byte after "/").
    const names = Array.from({ length: 25 }, (_, i) => `kv/p/${String(i).padStart(2, "0")}-é`);
    for (const n of names) await client.put(n, n.toUpperCase());
    await client.put("kv/p", "x");
    await client.put("kv/p0", "x");
    const all = await client.range("kv/p/", { prefix: true });
    expect(all.kvs.map((k) => k.key)).toEqual(names);
    expect(all.kvs.map((k) => text(k.value))).toEqual(names.map((n) => n.toUpperCase()));
    expect(all.count).toBe(25);
    expect(all.more).toBe(false);
    const page = await client.range("kv/p/", { prefix: true, limit: 10 });
    expect({ n: page.kvs.length, more: page.more, count: page.count }).toEqual({ n: 10, more: true, count: 25 });
    const listed = await client.list("kv/p/", { pageSize: 7 });
    expect(listed.kvs.map((k) => k.key)).toEqual(names);
    expect(listed.revision).toBe(all.revision);
    const keysOnly = await client.range("kv/p/", { prefix: true, keysOnly: true });
    expect(keysOnly.kvs.every((k) => k.value.length === 0)).toBe(true);
    const counted = await client.range("kv/p/", { prefix: true, countOnly: true });
    expect({ n: counted.kvs.length, count: counted.count }).toEqual({ n: 0, count: 25 });

    const del = await client.delete("kv/p/", { prefix: true });
    expect(del.deleted).toBe(25);
    expect((await client.range("kv/p", { prefix: true })).kvs.map((k) => k.key)).toEqual(["kv/p", "kv/p0"]);
    expect((await client.delete("kv/bin")).deleted).toBe(1);
    expect(await client.get("kv/bin")).toBeUndefined();
  });

  test("bad requests are refused with etcd's reason: a future revision, a compacted one, an unknown lease", async () => {
    const { revision } = await client.put("bad/k", "v");
    const future = await failure(client.range("bad/k", { revision: revision + 1000 }));
    expect({ code: future.code, compacted: future.compacted }).toEqual({ code: "INVALID", compacted: false });
    expect(future.message).toContain("future revision");
    await client.put("bad/k", "w");
    await client.compact(revision + 1);
    const old = await failure(client.range("bad/k", { revision }));
    expect({ code: old.code, compacted: old.compacted }).toEqual({ code: "INVALID", compacted: true });
    expect((await failure(client.leaseRevoke("123456789"))).code).toBe("NOT_FOUND");
    expect(await client.leaseKeepAliveOnce("123456789")).toBe(0);
    expect((await client.leaseTimeToLive("123456789")).ttl).toBe(-1);
  });
});

describe("listing over gRPC", () => {
  test("the same keys, values, revisions and lease ids as the gateway; etcd's refusals come as the gateway's", async () => {
    const names = Array.from({ length: 23 }, (_, i) => `grpc/k/${String(i).padStart(2, "0")}-é`);
    for (const n of names) await client.put(n, Uint8Array.from([0, 255, ...new TextEncoder().encode(n)]));
    const lease = await client.leaseGrant(60);
    await client.put("grpc/k/leased", "x", { lease: lease.id });
    const before = { ...client.grpc };
    const g = await client.list("grpc/k/", { pageSize: 5, grpc: true });
    const j = await client.list("grpc/k/", { pageSize: 5 });
    expect(client.grpc.pages - before.pages).toBe(5); // 24 keys, 5 a page, over gRPC
    expect(client.grpc.fallbacks).toBe(before.fallbacks);
    expect(g.revision).toBe(j.revision);
    expect(g.kvs.map((k) => ({ ...k, value: [...k.value] }))).toEqual(
      j.kvs.map((k) => ({ ...k, value: [...k.value] })),
    );
    expect(g.kvs.find((k) => k.key === "grpc/k/leased")?.lease).toBe(lease.id); // past 2^53, exact
    const pages: number[] = [];
    await client.list("grpc/k/", { pageSize: 10, grpc: true, onPage: (kvs) => pages.push(kvs.length) });
    expect(pages).toEqual([10, 10, 4]);
    // A compacted revision: gRPC's refusal is not taken as is, the gateway's answer is.
    const { revision } = await client.put("grpc/c", "1");
    await client.put("grpc/c", "2");
    await client.compact(revision + 1);
    const old = await failure(client.list("grpc/", { grpc: true, revision }));
    expect({ code: old.code, compacted: old.compacted }).toEqual({ code: "INVALID", compacted: true });
    expect(client.grpc.last).toContain("compacted");
    expect(client.grpc.unusable).toBeUndefined(); // an answer of etcd's, not a broken transport
  });

  test("an endpoint that does not speak gRPC: the gateway answers every page, and gRPC is not tried again", async () => {
    // A plain HTTP/1.1 server in front: the HTTP/2 connection fails, the JSON calls pass through.
    const front = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => {
        const u = new URL(req.url);
        return fetch(`${etcd.url}${u.pathname}`, { method: req.method, headers: req.headers, body: req.body });
      },
    });
    try {
      const c = keep(new EtcdClient({ endpoints: [`http://127.0.0.1:${front.port}`], timeoutMs: 2000 }));
      await c.put("front/a", "1");
      await c.put("front/b", "2");
      const r = await c.list("front/", { pageSize: 1, grpc: true });
      expect(r.kvs.map((k) => k.key)).toEqual(["front/a", "front/b"]);
      expect(c.grpc.pages).toBe(0);
      expect(c.grpc.unusable).toContain("etcd gRPC");
      const again = await c.list("front/", { grpc: true });
      expect(again.kvs).toHaveLength(2);
      expect(c.grpc.fallbacks).toBe(1); // the first page only: then it is not tried
    } finally {
      front.stop(true);
    }
  });
});

describe("transactions", () => {
  test("compare-and-swap on version, modRevision and value; the failure branch reads the winner", async () => {
    const claim = (key: string, who: string) =>
      client.txn({
        compare: [{ key, target: "version", value: 0 }],
        success: [{ type: "put", key, value: who }],
        failure: [{ type: "range", key }],
      });
    const first = await claim("txn/a", "one");
    expect(first.succeeded).toBe(true);
    expect(first.responses).toEqual([{ type: "put", revision: first.revision }]);
    const second = await claim("txn/a", "two");
    expect(second.succeeded).toBe(false);
    const got = second.responses[0];
    expect(got?.type === "range" && text(got.kvs[0]?.value)).toBe("one");

    const cur = (await client.get("txn/a"))?.modRevision as number;
    const swap = (mod: number) =>
      client.txn({
        compare: [
          { key: "txn/a", target: "modRevision", value: mod },
          { key: "txn/a", target: "value", value: "one" },
        ],
        success: [
          { type: "put", key: "txn/a", value: "three" },
          { type: "delete", key: "txn/b" },
        ],
      });
    expect((await swap(cur - 1)).succeeded).toBe(false);
    const ok = await swap(cur);
    expect(ok.succeeded).toBe(true);
    expect(ok.responses.map((r) => r.type)).toEqual(["put", "delete"]);
    expect(text((await client.get("txn/a"))?.value)).toBe("three");
  });

  test("two clients racing 100 create-if-absent claims each on the same 100 keys: each key claimed once", async () => {
    const a = keep(new EtcdClient({ endpoints: [etcd.url] }));
    const b = keep(new EtcdClient({ endpoints: [etcd.url] }));
    const keys = Array.from({ length: 100 }, (_, i) => `claim/${i}`);
    const claim = (c: EtcdClient, who: string, key: string) =>
      c
        .txn({
          compare: [{ key, target: "createRevision", value: 0 }],
          success: [{ type: "put", key, value: who }],
          failure: [{ type: "range", key }],
        })
        .then((r) => ({ key, who, won: r.succeeded, owner: r.responses[0] }));
    // Interleaved: a's and b's claims of each key are in flight together.
    const results = await Promise.all(keys.flatMap((k) => [claim(a, "a", k), claim(b, "b", k)]));
    for (const k of keys) {
      const mine = results.filter((r) => r.key === k);
      const winners = mine.filter((r) => r.won);
      expect({ k, winners: winners.length }).toEqual({ k, winners: 1 });
      const winner = (winners[0] as (typeof mine)[0]).who;
      const loser = mine.find((r) => !r.won);
      // The loser is told who holds it; etcd holds the winner's value.
      expect(loser?.owner?.type === "range" && text(loser.owner.kvs[0]?.value)).toBe(winner);
      expect(text((await client.get(k))?.value)).toBe(winner);
    }
    const wonA = results.filter((r) => r.won && r.who === "a").length;
    const wonB = results.filter((r) => r.won && r.who === "b").length;
    expect(wonA + wonB).toBe(100);
  });
});

describe("watch", () => {
  test("delivers every event once and in order across a SIGTERM restart and a SIGKILL", async () => {
    const { revision: r0 } = await client.put("other/start", "x");
    const rec = recorder(client, "w/", r0 + 1);
    await rec.w.ready;
    let stop = false;
    let i = 0;
    // Puts that failed while etcd was down, by code (expect in the loop would end the writer).
    const failed = new Map<string, number>();
    const writer = (async () => {
      while (!stop) {
        try {
          await client.put(`w/${i++}`, String(i));
        } catch (e) {
          const code = (e as StratumError).code;
          failed.set(code, (failed.get(code) ?? 0) + 1);
          await Bun.sleep(50);
        }
      }
    })();
    const written = (n: number) => until(`${n} writes`, () => i >= n);
    await written(50);
    await etcd.stop("SIGTERM");
    await Bun.sleep(300);
    await etcd.resume();
    await written(i + 50);
    await etcd.stop("SIGKILL");
    await Bun.sleep(300);
    await etcd.resume();
    await written(i + 50);
    stop = true;
    await writer;
    // A member shutting down or down answers "unavailable", never anything else.
    expect([...failed.keys()]).toEqual(["ETCD_UNAVAILABLE"]);
    const end = (await client.status()).revision;
    await until("the watch to catch up", () => rec.w.revision >= end);
    rec.w.close();
    expect(await rec.w.done).toBe("closed");
    // Every revision after r0 is one of the writer's puts: the watch saw each exactly once.
    expect(rec.revisions()).toEqual(span(r0 + 1, end));
    const stored = (await client.list("w/")).kvs.map((k) => `${k.key}@${k.modRevision}`);
    const seen = rec.events.map((e) => `${e.kv.key}@${e.kv.modRevision}`);
    expect(seen.sort()).toEqual(stored.sort());
    // It was cut off (twice) and said so.
    expect(rec.errors.length).toBeGreaterThanOrEqual(2);
    expect(rec.errors.every((e) => e.code === "ETCD_UNAVAILABLE")).toBe(true);
  }, 30_000);

  test("revisions compacted while the watch was cut off: reported; re-list and watch again converge", async () => {
    const proxy = keep(TcpProxy.start(etcd.url));
    const far = keep(new EtcdClient({ endpoints: [proxy.url], timeoutMs: 2000 }));
    const rec = recorder(far, "c/");
    await rec.w.ready;
    const { revision: r1 } = await client.put("c/1", "one");
    await until("c/1", () => rec.w.revision >= r1);
    proxy.cut();
    await client.put("c/2", "two");
    const { revision: r3 } = await client.put("c/3", "three");
    await client.compact(r3);
    proxy.restore();
    expect(await rec.w.done).toBe("compacted");
    expect(rec.compacted).toBe(r3);
    expect(rec.revisions()).toEqual([r1]);
    // The pattern: list at a revision, watch from the next one.
    const listed = await far.list("c/");
    expect(listed.kvs.map((k) => text(k.value))).toEqual(["one", "two", "three"]);
    const again = recorder(far, "c/", listed.revision + 1);
    const { revision: r4 } = await client.put("c/4", "four");
    await until("c/4", () => again.w.revision >= r4);
    expect(again.revisions()).toEqual([r4]);
    again.w.close();
    proxy.destroy();
  }, 20_000);

  test("a connection gone silent is found by the idle probe; the watch moves to the next endpoint", async () => {
    const proxy = keep(TcpProxy.start(etcd.url));
    // The relay first: the watch starts on it.
    const two = keep(new EtcdClient({ endpoints: [proxy.url, etcd.url], timeoutMs: 1000, watchIdleMs: 500 }));
    const rec = recorder(two, "s/");
    await rec.w.ready;
    expect(proxy.connections).toBeGreaterThan(0);
    const { revision: r1 } = await client.put("s/1", "one");
    await until("s/1", () => rec.w.revision >= r1);
    proxy.stall();
    const revs: number[] = [];
    for (let i = 2; i <= 5; i++) revs.push((await client.put(`s/${i}`, String(i))).revision);
    await until("s/2..s/5 through the other endpoint", () => rec.w.revision >= (revs.at(-1) as number));
    expect(rec.revisions()).toEqual([r1, ...revs]);
    expect(rec.errors.some((e) => e.code === "ETCD_UNAVAILABLE")).toBe(true);
    rec.w.close();
    proxy.destroy();
  }, 20_000);
});

describe("leases", () => {
  test("keep-alive holds a key past 3×TTL; a lease left alone expires and takes its key", async () => {
    const held = await client.leaseGrant(2);
    const left = await client.leaseGrant(2);
    expect(held.ttl).toBe(2);
    await client.put("lease/held", "h", { lease: held.id });
    await client.put("lease/left", "l", { lease: left.id });
    expect((await client.get("lease/held"))?.lease).toBe(held.id);
    let lost = false;
    const ka = client.keepAlive(held.id, { onLost: () => (lost = true) });
    await until("lease/left to expire", async () => (await client.get("lease/left")) === undefined, 6000);
    expect((await client.leaseTimeToLive(left.id)).ttl).toBe(-1);
    expect(await client.leaseKeepAliveOnce(left.id)).toBe(0);
    await Bun.sleep(3 * 2000 + 500 - 0);
    expect(text((await client.get("lease/held"))?.value)).toBe("h");
    const ttl = await client.leaseTimeToLive(held.id, { keys: true });
    expect(ttl.keys).toEqual(["lease/held"]);
    expect(ttl.ttl).toBeGreaterThan(0);
    expect({ lost, ttl: ka.ttl }).toEqual({ lost: false, ttl: 2 });
    expect(ka.renewals).toBeGreaterThanOrEqual(6);
    ka.stop();
    await client.leaseRevoke(held.id);
    expect(await client.get("lease/held")).toBeUndefined();
  }, 20_000);

  test("etcd down longer than the TTL: etcd 3.4 restarts every lease with its full TTL, so none is lost", async () => {
    const kept = await client.leaseGrant(2);
    const idle = await client.leaseGrant(2);
    await client.put("outage/kept", "k", { lease: kept.id });
    await client.put("outage/idle", "i", { lease: idle.id });
    let lost = false;
    const ka = client.keepAlive(kept.id, { onLost: () => (lost = true) });
    await until("a renewal", () => ka.renewals > 0);
    await etcd.stop("SIGTERM");
    await Bun.sleep(5000); // 2.5×TTL with nobody to renew
    await etcd.resume();
    // Both leases came back with a fresh TTL: the outage did not count against them.
    expect((await client.leaseTimeToLive(idle.id)).ttl).toBeGreaterThan(0);
    expect(text((await client.get("outage/idle"))?.value)).toBe("i");
    const before = ka.renewals;
    // The lease nobody renews expires a TTL after the restart; the kept one stays.
    await until("outage/idle to expire", async () => (await client.get("outage/idle")) === undefined, 6000);
    expect(text((await client.get("outage/kept"))?.value)).toBe("k");
    expect(ka.renewals).toBeGreaterThan(before);
    expect(ka.failures).toBeGreaterThan(0);
    expect(lost).toBe(false);
    ka.stop();
    await client.leaseRevoke(kept.id);
  }, 30_000);

  test("onLost: cut off from a running etcd for longer than the TTL, and a lease revoked elsewhere", async () => {
    const proxy = keep(TcpProxy.start(etcd.url));
    const far = keep(new EtcdClient({ endpoints: [proxy.url], timeoutMs: 500 }));
    const cutOff = await client.leaseGrant(2);
    const revoked = await client.leaseGrant(2);
    await client.put("lost/cut", "c", { lease: cutOff.id });
    const lost: string[] = [];
    const errors: StratumError[] = [];
    const a = far.keepAlive(cutOff.id, { onLost: () => lost.push("cut"), onError: (e) => errors.push(e) });
    const b = client.keepAlive(revoked.id, { onLost: () => lost.push("revoked") });
    await until("renewals", () => a.renewals > 0 && b.renewals > 0);
    await client.leaseRevoke(revoked.id);
    await until("onLost of the revoked lease", () => lost.includes("revoked"), 3000);
    proxy.cut();
    await until("lost/cut to expire", async () => (await client.get("lost/cut")) === undefined, 6000);
    expect(lost).toEqual(["revoked"]);
    proxy.restore();
    await until("onLost of the lease cut off", () => lost.includes("cut"), 3000);
    expect(lost).toEqual(["revoked", "cut"]);
    expect(a.ttl).toBe(0);
    expect(errors.length).toBe(a.failures);
    expect(errors.every((e) => e.code === "ETCD_UNAVAILABLE")).toBe(true);
    proxy.destroy();
  }, 20_000);
});

describe("unreachable etcd, failover, authentication, TLS", () => {
  test("nobody listening, or a listener that never answers: ETCD_UNAVAILABLE within the timeout", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const free = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const refused = `http://127.0.0.1:${free.port}`;
    free.stop(true);
    try {
      const c = keep(new EtcdClient({ endpoints: [refused, `http://127.0.0.1:${silent.port}`], timeoutMs: 800 }));
      const t0 = Date.now();
      const read = await failure(c.get("k"));
      const took = Date.now() - t0;
      expect({ code: read.code, maybeApplied: read.maybeApplied }).toEqual({
        code: "ETCD_UNAVAILABLE",
        maybeApplied: false,
      });
      expect(read.message).toContain(refused);
      expect(read.message).toContain("ECONNREFUSED");
      expect(took).toBeLessThan(800 + 1000); // the deadline holds (with slack for a busy machine)
      // A write that reached a silent listener may have been applied; one refused was not.
      const write = await failure(c.put("k", "v"));
      expect({ code: write.code, maybeApplied: write.maybeApplied }).toEqual({
        code: "ETCD_UNAVAILABLE",
        maybeApplied: true,
      });
      const only = keep(new EtcdClient({ endpoints: [refused], timeoutMs: 800 }));
      const w = await failure(only.put("k", "v"));
      expect({ code: w.code, maybeApplied: w.maybeApplied }).toEqual({ code: "ETCD_UNAVAILABLE", maybeApplied: false });
      // A watch keeps trying, saying why, until closed.
      const rec = recorder(only, "x/");
      await until("watch errors", () => rec.errors.length >= 2, 5000);
      expect(rec.errors.every((e) => e.code === "ETCD_UNAVAILABLE")).toBe(true);
      rec.w.close();
      expect(await rec.w.done).toBe("closed");
    } finally {
      silent.stop(true);
    }
  });

  test("a 3-member cluster: the client's member killed, then the leader; claims and the watch carry on", async () => {
    const cluster = keep(await EtcdServer.cluster(3));
    const c = keep(new EtcdClient({ endpoints: cluster.urls, timeoutMs: 3000 }));
    // A claim (create if absent) is safe to send again after "maybe applied": the second
    // attempt finds the first one's key. A write cut off by the leader's death is one such.
    const claim = async (n: number): Promise<number> => {
      for (let attempt = 0; ; attempt++) {
        try {
          const key = `f/${n}`;
          const r = await c.txn({
            compare: [{ key, target: "createRevision", value: 0 }],
            success: [{ type: "put", key, value: String(n) }],
            failure: [{ type: "range", key }],
          });
          const got = r.responses[0];
          if (r.succeeded) return r.revision;
          expect(attempt).toBeGreaterThan(0); // only a retry finds its own key
          return got?.type === "range" ? (got.kvs[0]?.modRevision as number) : 0;
        } catch (e) {
          const err = e as EtcdError;
          expect(err.code).toBe("ETCD_UNAVAILABLE");
          if (attempt >= 5) throw e;
        }
      }
    };
    const r0 = await claim(0);
    const rec = recorder(c, "f/", r0);
    await rec.w.ready;
    const status = async (m: EtcdServer) => c.status(m.url).catch(() => undefined);
    const leader = async () => {
      for (const m of cluster.members) {
        const s = await status(m);
        if (s && s.leader === s.memberId) return m;
      }
      throw new Error("no leader");
    };
    // The client talks to the first endpoint; kill it (a follower or the leader).
    const first = cluster.members[0] as EtcdServer;
    expect((await c.status()).endpoint).toBe(first.url);
    await first.stop("SIGKILL");
    for (let n = 1; n <= 10; n++) await claim(n);
    expect((await c.status()).endpoint).not.toBe(first.url);
    await first.resume();
    // Then whoever leads now: the others elect a new leader while claims are in flight.
    const lead = await leader();
    await lead.stop("SIGKILL");
    let last = 0;
    for (let n = 11; n <= 20; n++) last = await claim(n);
    expect(await leader()).not.toBe(lead);
    await until("the watch to see f/20", () => rec.w.revision >= last);
    // Each claim made exactly one revision, whatever was retried; the watch saw each once.
    expect(rec.revisions()).toEqual(span(r0, last));
    expect(rec.events.map((e) => e.kv.key)).toEqual(span(0, 20).map((n) => `f/${n}`));
    rec.w.close();
    // Quorum lost: once the last member knows it has no leader, it refuses a write at once
    // (the require-leader header), and the refusal proves the write was not applied.
    const alive = cluster.members.filter((m) => m.pid);
    await (alive[0] as EtcdServer).stop("SIGKILL");
    const last1 = alive[1] as EtcdServer;
    await until("the last member to lose its leader", async () => !Number((await status(last1))?.leader ?? 1), 10_000);
    const lone = keep(new EtcdClient({ endpoints: [last1.url], timeoutMs: 3000 }));
    // Without the header the write would wait out the deadline: "no answer in 3000 ms".
    const refused = await failure(lone.put("f/none", "x"));
    expect(refused.message).toContain("no leader");
    expect({ code: refused.code, maybeApplied: refused.maybeApplied }).toEqual({
      code: "ETCD_UNAVAILABLE",
      maybeApplied: false,
    });
    cluster.destroy();
  }, 30_000);

  test("user and password: a token, fetched again when a restart made etcd forget it", async () => {
    const e = keep(await EtcdServer.start());
    const ctl = (...args: string[]) => runOk(["etcdctl", "--endpoints", e.url, ...args], { env: { ETCDCTL_API: "3" } });
    ctl("user", "add", "root:root-pw");
    ctl("user", "add", "stm:stm-pw");
    ctl("role", "add", "stm");
    ctl("role", "grant-permission", "stm", "--prefix=true", "readwrite", "stm/");
    ctl("user", "grant-role", "stm", "stm");
    ctl("auth", "enable");
    const c = keep(new EtcdClient({ endpoints: [e.url], username: "stm", password: "stm-pw" }));
    await c.put("stm/a", "1");
    expect(text((await c.get("stm/a"))?.value)).toBe("1");
    expect((await failure(c.put("other/a", "1"))).code).toBe("PERMISSION");
    const anon = keep(new EtcdClient({ endpoints: [e.url] }));
    expect((await failure(anon.get("stm/a"))).code).toBe("PERMISSION");
    const wrong = keep(new EtcdClient({ endpoints: [e.url], username: "stm", password: "nope" }));
    const refused = await failure(wrong.get("stm/a"));
    expect(refused.code).toBe("PERMISSION");
    expect(refused.message).toContain("authentication failed");

    const rec = recorder(c, "stm/w/");
    await rec.w.ready;
    const { revision: r1 } = await c.put("stm/w/1", "1");
    await e.restart(); // simple tokens live in the member's memory
    const { revision: r2 } = await c.put("stm/w/2", "2");
    await until("stm/w/2", () => rec.w.revision >= r2);
    expect(rec.revisions()).toEqual([r1, r2]);
    rec.w.close();
  }, 20_000);

  test("TLS: the CA and a client certificate as PEM text; without the CA the server is not trusted", async () => {
    const pki = keep(new TestPki());
    const e = keep(await EtcdServer.start({ tls: { ...pki.server, ca: pki.ca } }));
    expect(e.url.startsWith("https://")).toBe(true);
    const c = keep(
      new EtcdClient({
        endpoints: [e.url],
        ca: pki.pem(pki.ca),
        cert: pki.pem(pki.client.cert),
        key: pki.pem(pki.client.key),
      }),
    );
    const rec = recorder(c, "tls/");
    await rec.w.ready;
    const { revision } = await c.put("tls/a", new Uint8Array([0, 1, 2]));
    expect((await c.get("tls/a"))?.value).toEqual(new Uint8Array([0, 1, 2]));
    await until("the watch over TLS", () => rec.w.revision >= revision);
    rec.w.close();
    const noCa = keep(
      new EtcdClient({
        endpoints: [e.url],
        cert: pki.pem(pki.client.cert),
        key: pki.pem(pki.client.key),
        timeoutMs: 1000,
      }),
    );
    const untrusted = await failure(noCa.get("tls/a"));
    expect(untrusted.code).toBe("ETCD_UNAVAILABLE");
    expect(untrusted.message).toMatch(/CERT|SIGNATURE|ISSUER/i);
  }, 20_000);
});
