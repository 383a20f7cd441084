/** The DNS server on real loopback sockets: UDP and TCP clients (and dig) against its
 * listeners, truncation and the retry over TCP, access control by source address, listener
 * changes on update, and forwarding to a fake upstream that forges replies (wrong ID, wrong
 * source port or address, wrong question), answers slowly (coalescing), truncates (TCP
 * retry), and whose answers age in the cache on an injected clock. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import type { TCPSocketListener, udp } from "bun";
import * as dp from "dns-packet";
import { DnsServer } from "../../src/dns/server";
import { decodeMessage } from "../../src/dns/wire";
import type { ZoneInput } from "../../src/dns/zone";
import { StratumError } from "../../src/errors";
import { profileIp6 } from "../../src/model/network";

// Unique loopback addresses and ports, so parallel runs do not meet.
const A = 100 + Math.floor(Math.random() * 100);
const B = 1 + Math.floor(Math.random() * 200);
const NET = `127.${A}.${B}`;
const FWD = `127.${A}.${B + 1}`;
const EXTRA = `127.${A}.${B + 2}`;
const UP = `127.${A}.${B + 3}.53`;
const UP_OTHER = `127.${A}.${B + 3}.54`;
const PORT = 20000 + Math.floor(Math.random() * 20000);
const UPORT = PORT + 1;

let clock = Date.now();
const server = new DnsServer({ port: PORT, forwarderPort: UPORT, upstreamTimeoutMs: 300, now: () => clock });

const network = (name: string, prefix: string, forwarders: string[] = []): ZoneInput => ({
  network: {
    name,
    cidr: `${prefix}.0/24`,
    gateway: `${prefix}.1`,
    dnsZone: `${name}.internal`,
    dnsForwarders: forwarders,
  },
  endpoints: [{ name: "web", ip: `${prefix}.5`, mac: "02:00:01:00:00:04" }],
  records: Array.from({ length: 8 }, (_, i) => ({
    name: "big",
    type: "TXT" as const,
    value: `${i}`.repeat(200),
    ttl: 300,
  })),
});
const ZONES = [network("app-net", NET), network("fwd-net", FWD, [UP])];

function query(name: string, type: dp.RecordType, id = 4321, edns = false): Buffer {
  return dp.encode({
    id,
    type: "query",
    flags: dp.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
    additionals: edns ? [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as dp.Answer] : [],
  });
}

type Reply = dp.DecodedPacket & { rcode: string };

async function udpAsk(msg: Buffer, to: string, from: string, timeoutMs = 2000): Promise<Reply | undefined> {
  let done: (b: Buffer | undefined) => void = () => {};
  const got = new Promise<Buffer | undefined>((r) => {
    done = r;
  });
  const s = await Bun.udpSocket({ hostname: from, port: 0, socket: { data: (_s, buf) => done(Buffer.from(buf)) } });
  const t = setTimeout(() => done(undefined), timeoutMs);
  s.send(msg, PORT, to);
  const b = await got;
  clearTimeout(t);
  s.close();
  return b ? (decodeMessage(b) as Reply) : undefined;
}

/** Queries over one TCP connection from `from` (node:net: Bun.connect cannot pick the source address). */
async function tcpAsk(msgs: Buffer[], to: string, from: string): Promise<Reply[]> {
  const out: Reply[] = [];
  let acc = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: to, port: PORT, localAddress: from });
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error("tcp timeout"));
    }, 2000);
    c.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
    c.on("connect", () =>
      c.write(Buffer.concat(msgs.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])))),
    );
    c.on("data", (d: Buffer) => {
      acc = Buffer.concat([acc, d]);
      while (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        out.push(decodeMessage(acc.subarray(2, 2 + acc.readUInt16BE(0))) as Reply);
        acc = acc.subarray(2 + acc.readUInt16BE(0));
      }
      if (out.length === msgs.length) {
        clearTimeout(t);
        c.end();
        resolve(out);
      }
    });
  });
}

// ---- the fake upstream -------------------------------------------------------------------

const seen = new Map<string, number>();
let upstream: udp.Socket<"buffer">;
let wrongPort: udp.Socket<"buffer">;
let wrongAddr: udp.Socket<"buffer">;
let upstreamTcp: TCPSocketListener<undefined>;

function answer(
  q: dp.DecodedPacket,
  o: { ip?: string; ttl?: number; id?: number; qname?: string; tc?: boolean; n?: number; rcode?: number } = {},
) {
  const question = q.questions?.[0] as dp.Question;
  const name = o.qname ?? question.name;
  const nx = o.rcode === 3;
  return dp.encode({
    id: o.id ?? q.id,
    type: "response",
    flags: dp.RECURSION_AVAILABLE | dp.RECURSION_DESIRED | (o.tc ? dp.TRUNCATED_RESPONSE : 0) | (o.rcode ?? 0),
    questions: [{ ...question, name }],
    answers:
      o.tc || nx || o.rcode
        ? []
        : Array.from({ length: o.n ?? 1 }, (_, i) => ({
            name,
            type: "A" as const,
            ttl: o.ttl ?? 60,
            data: o.n ? `10.9.9.${i + 1}` : (o.ip ?? "1.2.3.4"),
          })),
    authorities: nx
      ? [
          {
            name: "example",
            type: "SOA",
            ttl: 600,
            data: { mname: "ns.example", rname: "h.example", serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 10 },
          },
        ]
      : [],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as dp.Answer],
  });
}

beforeAll(async () => {
  upstream = await Bun.udpSocket({
    hostname: UP,
    port: UPORT,
    socket: {
      data: (s, buf, port, addr) => {
        const q = dp.decode(Buffer.from(buf));
        const name = (q.questions?.[0]?.name ?? "").toLowerCase();
        seen.set(name, (seen.get(name) ?? 0) + 1);
        const forge = () => {
          s.send(answer(q, { id: ((q.id as number) + 1) & 0xffff, ip: "6.6.6.6" }), port, addr);
          s.send(answer(q, { qname: `x${name}`, ip: "6.6.6.6" }), port, addr);
          wrongPort.send(answer(q, { ip: "6.6.6.6" }), port, addr);
          wrongAddr.send(answer(q, { ip: "6.6.6.6" }), port, addr);
        };
        if (name === "forged.example") {
          forge();
          setTimeout(() => s.send(answer(q), port, addr), 30);
        } else if (name === "onlyforged.example") forge();
        else if (name === "slow.example") setTimeout(() => s.send(answer(q), port, addr), 150);
        else if (name === "tc.example") s.send(answer(q, { tc: true }), port, addr);
        else if (name === "ttl.example") s.send(answer(q, { ttl: 5 }), port, addr);
        else if (name === "nx.example") s.send(answer(q, { rcode: 3 }), port, addr);
        else if (name === "servfail.example") s.send(answer(q, { rcode: 2 }), port, addr);
        else s.send(answer(q), port, addr);
      },
    },
  });
  wrongPort = await Bun.udpSocket({ hostname: UP, port: 0 });
  wrongAddr = await Bun.udpSocket({ hostname: UP_OTHER, port: UPORT });
  upstreamTcp = Bun.listen({
    hostname: UP,
    port: UPORT,
    socket: {
      data: (s, d) => {
        const q = dp.decode(d.subarray(2));
        seen.set("tcp", (seen.get("tcp") ?? 0) + 1);
        const r = answer(q, { n: 5 });
        s.write(Buffer.concat([Buffer.from([r.length >> 8, r.length & 0xff]), r]));
      },
    },
  });
  await server.update(ZONES);
});

afterAll(() => {
  server.close();
  upstream?.close();
  wrongPort?.close();
  wrongAddr?.close();
  upstreamTcp?.stop(true);
});

const ttlOf = (a: dp.Answer | undefined) => (a as { ttl?: number } | undefined)?.ttl;
const ips = (r: Reply | undefined) => (r?.answers ?? []).map((a) => (a as { data: string }).data);

describe("dns server: authoritative over UDP and TCP", () => {
  test("UDP: an A record, question case echoed, AA", async () => {
    const r = await udpAsk(query("WEB.app-net.INTERNAL", "A", 99), `${NET}.1`, `${NET}.9`);
    expect(r?.id).toBe(99);
    expect(r?.rcode).toBe("NOERROR");
    expect(r?.flag_aa).toBe(true);
    expect(r?.questions?.[0]?.name).toBe("WEB.app-net.INTERNAL");
    expect(ips(r)).toEqual([`${NET}.5`]);
  });

  test("a burst: 400 queries from 4 sockets at once each get their own answer (replies go out in batches)", async () => {
    const got = new Map<number, Reply>();
    const socks = await Promise.all(
      [0, 1, 2, 3].map((k) =>
        Bun.udpSocket({
          hostname: `${NET}.${20 + k}`,
          port: 0,
          socket: {
            data: (_s, buf) => {
              const r = decodeMessage(Buffer.from(buf)) as Reply;
              got.set(r.id as number, r);
            },
          },
        }),
      ),
    );
    try {
      const names = ["web", "gateway", "WEB", "GateWay"];
      for (let i = 0; i < 400; i++)
        socks[i % 4]?.send(query(`${names[i % 4]}.app-net.internal`, "A", 1000 + i), PORT, `${NET}.1`);
      for (let t = 0; t < 100 && got.size < 400; t++) await Bun.sleep(20);
      expect(got.size).toBe(400);
      for (let i = 0; i < 400; i++) {
        const r = got.get(1000 + i);
        expect(r?.questions?.[0]?.name).toBe(`${names[i % 4]}.app-net.internal`);
        expect(ips(r)).toEqual([i % 2 === 0 ? `${NET}.5` : `${NET}.1`]);
      }
      expect(server.stats().sendDropped).toBe(0);
    } finally {
      for (const s of socks) s.close();
    }
  });

  test("a source outside the network's subnet is REFUSED", async () => {
    const before = server.stats().refused;
    const r = await udpAsk(query("web.app-net.internal", "A"), `${NET}.1`, `127.${A}.${B + 4}.9`);
    expect(r?.rcode).toBe("REFUSED");
    expect(r?.answers).toEqual([]);
    expect(server.stats().refused).toBe(before + 1);
    // The forwarding network refuses outsiders too: never an open resolver.
    const f = await udpAsk(query("real.example", "A"), `${FWD}.1`, `${NET}.9`);
    expect(f?.rcode).toBe("REFUSED");
    expect(seen.get("real.example")).toBeUndefined();
  });

  test("UDP answer over the limit: TC and no records; the same over TCP is whole", async () => {
    const u = await udpAsk(query("big.app-net.internal", "TXT", 7, true), `${NET}.1`, `${NET}.9`);
    expect(u?.flag_tc).toBe(true);
    expect(u?.answers).toEqual([]);
    expect(u?.questions?.[0]?.name).toBe("big.app-net.internal");
    const [t] = await tcpAsk([query("big.app-net.internal", "TXT", 7, true)], `${NET}.1`, `${NET}.9`);
    expect(t?.flag_tc).toBe(false);
    expect(t?.answers?.length).toBe(8);
  });

  test("TCP: several queries on one connection", async () => {
    const rs = await tcpAsk(
      [
        query("web.app-net.internal", "A", 1),
        query("nope.app-net.internal", "A", 2),
        query("app-net.internal", "SOA", 3),
      ],
      `${NET}.1`,
      `${NET}.9`,
    );
    const byId = new Map(rs.map((r) => [r.id, r]));
    expect(ips(byId.get(1))).toEqual([`${NET}.5`]);
    expect(byId.get(2)?.rcode).toBe("NXDOMAIN");
    expect(byId.get(3)?.answers?.[0]?.type).toBe("SOA");
  });

  test("dig: truncated over UDP, retried over TCP, gets all eight strings", async () => {
    const before = server.stats();
    const p = Bun.spawn(
      ["dig", `@${NET}.1`, "-p", String(PORT), "-b", `${NET}.9`, "big.app-net.internal", "TXT", "+time=2", "+tries=1"],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(p.stdout).text();
    expect(await p.exited).toBe(0);
    expect(out).toContain("Truncated, retrying in TCP mode");
    expect(out).toContain("status: NOERROR");
    expect(out).toMatch(/flags: qr aa rd;/);
    expect(out.match(/^big\.app-net\.internal\.\s+300\s+IN\s+TXT/gm)?.length).toBe(8);
    const after = server.stats();
    expect(after.truncated).toBeGreaterThan(before.truncated);
    expect(after.queries.tcp).toBeGreaterThan(before.queries.tcp);
  });
});

describe("dns server: listeners follow update()", () => {
  test("a new network's address is served, a removed one closed; a failed bind leaves the others", async () => {
    await server.update([...ZONES, network("extra", EXTRA)]);
    expect(ips(await udpAsk(query("web.extra.internal", "A"), `${EXTRA}.1`, `${EXTRA}.9`))).toEqual([`${EXTRA}.5`]);
    await server.update(ZONES);
    await expect(tcpAsk([query("web.extra.internal", "A")], `${EXTRA}.1`, `${EXTRA}.9`)).rejects.toBeDefined();

    const bad = network("bad", "192.0.2");
    let err: unknown;
    try {
      await server.update([...ZONES, bad]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StratumError);
    expect((err as StratumError).message).toMatch(
      /DNS server of network bad: listen on 192.0.2.1 port \d+\/udp: EADDRNOTAVAIL/,
    );
    expect(ips(await udpAsk(query("web.app-net.internal", "A"), `${NET}.1`, `${NET}.9`))).toEqual([`${NET}.5`]);
    await server.update(ZONES);
  });
});

// IPv6 loopback: absent in some containers (net.ipv6.conf.all.disable_ipv6=1).
const HAVE_V6 = await Bun.udpSocket({ hostname: "::1", port: 0 }).then(
  (s) => {
    s.close();
    return true;
  },
  () => false,
);

describe("dns server: IPv6", () => {
  test.skipIf(!HAVE_V6)(
    "a listener on gateway6 answers its cidr6 over UDP and TCP (needs IPv6 loopback ::1)",
    async () => {
      const v6 = network("six", EXTRA);
      v6.network.cidr6 = "::/64";
      v6.network.gateway6 = "::1";
      await server.update([...ZONES, v6]);
      try {
        const r = await udpAsk(query("web.six.internal", "AAAA"), "::1", "::1");
        expect(ips(r)).toEqual([profileIp6("::/64", "02:00:01:00:00:04")]);
        const [t] = await tcpAsk([query("gateway.six.internal", "AAAA")], "::1", "::1");
        expect(ips(t)).toEqual(["::1"]);
      } finally {
        await server.update(ZONES);
      }
    },
  );
});

describe("dns server: forwarding", () => {
  const ask = (name: string, id = 1) => udpAsk(query(name, "A", id), `${FWD}.1`, `${FWD}.9`);

  test("an outside name is forwarded; the answer is cached; RA is set", async () => {
    const r = await ask("Real.Example", 11);
    expect(r?.id).toBe(11);
    expect(r?.questions?.[0]?.name).toBe("Real.Example");
    expect(r?.flag_ra).toBe(true);
    expect(r?.flag_aa).toBe(false);
    expect(ips(r)).toEqual(["1.2.3.4"]);
    const hits = server.stats().cacheHits;
    expect(ips(await ask("real.example", 12))).toEqual(["1.2.3.4"]);
    expect(seen.get("real.example")).toBe(1);
    expect(server.stats().cacheHits).toBe(hits + 1);
  });

  test("forged replies (wrong ID, question, source port, source address) are dropped, never returned or cached", async () => {
    const before = server.stats().forgedDropped;
    const r = await ask("forged.example");
    expect(ips(r)).toEqual(["1.2.3.4"]);
    expect(server.stats().forgedDropped - before).toBe(4);
    expect(ips(await ask("forged.example", 2))).toEqual(["1.2.3.4"]);
    expect(seen.get("forged.example")).toBe(1);
  });

  test("only forged replies: the upstream times out, SERVFAIL, nothing cached", async () => {
    const before = server.stats();
    const r = await ask("onlyforged.example");
    expect(r?.rcode).toBe("SERVFAIL");
    expect(r?.answers).toEqual([]);
    const after = server.stats();
    expect(after.upstreamTimeouts).toBe(before.upstreamTimeouts + 1);
    expect(after.forgedDropped - before.forgedDropped).toBe(4);
    expect((await ask("onlyforged.example"))?.rcode).toBe("SERVFAIL");
    expect(seen.get("onlyforged.example")).toBe(2);
  });

  test("two identical queries in flight: one upstream query, each client its own ID and case", async () => {
    const [a, b] = await Promise.all([ask("slow.example", 21), ask("SLOW.example", 22)]);
    expect(seen.get("slow.example")).toBe(1);
    expect([a?.id, b?.id]).toEqual([21, 22]);
    expect(b?.questions?.[0]?.name).toBe("SLOW.example");
    expect(ips(a)).toEqual(["1.2.3.4"]);
    expect(ips(b)).toEqual(["1.2.3.4"]);
  });

  test("an upstream TC is retried over TCP", async () => {
    const r = await udpAsk(query("tc.example", "A", 5, true), `${FWD}.1`, `${FWD}.9`);
    expect(r?.flag_tc).toBe(false);
    expect(ips(r)).toEqual(["10.9.9.1", "10.9.9.2", "10.9.9.3", "10.9.9.4", "10.9.9.5"]);
    expect(seen.get("tcp")).toBe(1);
  });

  test("cached answers age and expire with their TTL; negative ones by the SOA; SERVFAIL is not kept", async () => {
    const t0 = clock;
    expect(ttlOf((await ask("ttl.example"))?.answers?.[0])).toBe(5);
    clock = t0 + 3000;
    expect(ttlOf((await ask("ttl.example"))?.answers?.[0])).toBe(2);
    expect(seen.get("ttl.example")).toBe(1);
    clock = t0 + 6000;
    expect(ttlOf((await ask("ttl.example"))?.answers?.[0])).toBe(5);
    expect(seen.get("ttl.example")).toBe(2);

    expect((await ask("nx.example"))?.rcode).toBe("NXDOMAIN");
    clock += 9000;
    const nx = await ask("nx.example");
    expect(nx?.rcode).toBe("NXDOMAIN");
    expect(ttlOf(nx?.authorities?.[0])).toBe(600 - 9);
    expect(seen.get("nx.example")).toBe(1);
    clock += 2000;
    await ask("nx.example");
    expect(seen.get("nx.example")).toBe(2);

    expect((await ask("servfail.example"))?.rcode).toBe("SERVFAIL");
    expect((await ask("servfail.example"))?.rcode).toBe("SERVFAIL");
    expect(seen.get("servfail.example")).toBe(2);
    expect(server.stats().cacheEntries).toBeGreaterThan(0);
  });

  test("over TCP: forwarded, then from the cache", async () => {
    const [a, b] = await tcpAsk(
      [query("tcpclient.example", "A", 31), query("real.example", "A", 32)],
      `${FWD}.1`,
      `${FWD}.9`,
    );
    const byId = new Map([a, b].map((r) => [r?.id, r]));
    expect(ips(byId.get(31))).toEqual(["1.2.3.4"]);
    expect(ips(byId.get(32))).toEqual(["1.2.3.4"]);
    expect(seen.get("tcpclient.example")).toBe(1);
    expect(seen.get("real.example")).toBe(1);
  });

  test("the network's own names are still answered here, not forwarded", async () => {
    const r = await ask("web.fwd-net.internal");
    expect(r?.flag_aa).toBe(true);
    expect(r?.flag_ra).toBe(true);
    expect(ips(r)).toEqual([`${FWD}.5`]);
    // Another network's zone is an outside name on this network: forwarded.
    await ask("web.app-net.internal");
    expect(seen.get("web.app-net.internal")).toBe(1);
  });
});
